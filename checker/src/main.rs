//! hull-checker: a static probe run inside test containers.
//!
//! Prints what the process sees as one JSON object on stdout. Subcommands:
//! `facts`, `write <path>`, `read <path>`, `ls <dir>`, `exit <code>`,
//! `sleep <secs>`, `signal-self <signum>`, `syscalls <abi>`, `call <abi> <nr> <args>...`,
//! `load-filter <file> <flags> <cmd> [args...]`.

mod facts;
mod fileops;
mod json;
mod loadfilter;
mod mountinfo;
mod sys;
mod syscalls;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use json::Json;

const USAGE: &str = "usage: hull-checker facts | write <path> | read <path> | ls <dir> \
                     | exit <code> | sleep <secs> | signal-self <signum> \
                     | syscalls x86_64|x32|x86 | call <abi> <nr> <a0,a1,...>... \
                     | load-filter <file> <flags> <cmd> [args...]";

fn print(v: &Json) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", v.render()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(3),
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn parse<T: std::str::FromStr>(arg: Option<&str>) -> Option<T> {
    arg?.parse().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str);
    let arg = args.get(1).map(String::as_str);
    match (cmd, arg) {
        (Some("facts"), None) => print(&facts::collect()),
        (Some("write"), Some(path)) => print(&fileops::write(path)),
        (Some("read"), Some(path)) => print(&fileops::read(path)),
        (Some("ls"), Some(path)) => print(&fileops::ls(path)),
        (Some("syscalls"), Some(abi)) => syscalls::sweep(abi).map_or_else(usage, |v| print(&v)),
        (Some("call"), Some(_)) => syscalls::calls(&args[1..]).map_or_else(usage, |v| print(&v)),
        (Some("load-filter"), Some(_)) => {
            eprintln!("hull-checker: {}", loadfilter::run(&args[1..]));
            ExitCode::from(1)
        }
        (Some("exit"), _) => match parse::<i32>(arg) {
            Some(code) => std::process::exit(code),
            None => usage(),
        },
        (Some("sleep"), _) => match parse::<f64>(arg) {
            Some(secs) if secs >= 0.0 && secs.is_finite() => {
                std::thread::sleep(Duration::from_secs_f64(secs));
                ExitCode::SUCCESS
            }
            _ => usage(),
        },
        (Some("signal-self"), _) => match parse::<i32>(arg) {
            Some(sig) => match sys::signal_self(sig) {
                Ok(()) => {
                    eprintln!("hull-checker: signal {sig} did not end the process");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("hull-checker: signal-self {sig}: {e}");
                    ExitCode::from(1)
                }
            },
            None => usage(),
        },
        _ => usage(),
    }
}
