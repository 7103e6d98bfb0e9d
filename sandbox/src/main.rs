//! The hull-sandbox command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hull_sandbox::sentry::InitSpec;

#[derive(Parser)]
#[command(name = "hull-sandbox", about = "OCI runtime running containers on a user-space kernel")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a command on a rootfs directory in a sandbox, in the foreground.
    Do {
        /// The root file system.
        #[arg(long)]
        rootfs: PathBuf,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Do { rootfs, args } => {
            let spec = InitSpec {
                argv: args,
                env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
                cwd: "/".into(),
                hostname: "sandbox".into(),
                ..Default::default()
            };
            match hull_sandbox::boot::run(&rootfs, &spec, Box::new(std::io::stderr())) {
                Ok(e) => ExitCode::from(e.shell_code() as u8),
                Err(e) => {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(&format!(": {s}"));
                        src = s.source();
                    }
                    eprintln!("hull-sandbox: {msg}");
                    ExitCode::from(125)
                }
            }
        }
    }
}
