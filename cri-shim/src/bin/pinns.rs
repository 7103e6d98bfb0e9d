//! `hull-cri-pinns`: pins a pod's namespaces; see `hull_cri::pinns`.

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use hull_cri::pinns::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    match pinns::run(&args) {
        Ok(holder) => {
            println!("{}", pinns::success_line(holder));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = format!("hull-cri-pinns: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}
