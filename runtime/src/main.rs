//! The `hull` binary: parse the command line, run the subcommand, map failure to exit 1.

use std::process::ExitCode;

use clap::Parser;
use hull::{cli, cli::Cli, commands, logging, report};

fn main() -> ExitCode {
    // Seal before parsing: the first image only decides and re-executes.
    let may_enter = cli::may_enter_container(std::env::args_os().skip(1));
    if may_enter && !hull::sys::running_sealed() {
        let Err(e) = hull::sys::reexec_sealed();
        eprintln!("hull: cannot re-execute from a sealed copy of the binary: {e}");
        return ExitCode::from(1);
    }
    let cli = Cli::parse();
    // Checked once above when the scan matched; the parse only guards the scan.
    if cli.command.enters_container() && !may_enter && !hull::sys::running_sealed() {
        let Err(e) = hull::sys::reexec_sealed();
        eprintln!("hull: cannot re-execute from a sealed copy of the binary: {e}");
        return ExitCode::from(1);
    }
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let logged = cli.log.is_some();
    match commands::dispatch(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            let msg = report::chain(&e);
            // containerd reads the error from the log file; people read stderr.
            if logged {
                tracing::error!("{msg}");
            }
            eprintln!("hull: {msg}");
            ExitCode::from(1)
        }
    }
}
