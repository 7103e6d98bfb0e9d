//! `load-filter <file> <flags> <cmd> [args...]`: loads a seccomp BPF program
//! (raw `struct sock_filter` array, native endian) and execs `cmd` under it.
//! Lets tests run a filter compiled on the host in a container whose runtime
//! installs none.

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::sys;

pub fn run(args: &[String]) -> String {
    let [file, flags, cmd, rest @ ..] = args else {
        return "usage: load-filter <file> <flags> <cmd> [args...]".into();
    };
    let Ok(flags) = flags.parse::<u32>() else {
        return format!("bad flags {flags}");
    };
    let bytes = match std::fs::read(file) {
        Ok(b) if b.len() % 8 == 0 && !b.is_empty() => b,
        Ok(b) => return format!("{file}: {} bytes is not a BPF program", b.len()),
        Err(e) => return format!("{file}: {e}"),
    };
    let prog: Vec<libc::sock_filter> = bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if let Err(e) = sys::load_seccomp(flags, &prog) {
        return format!("loading the filter: {e}");
    }
    let err = Command::new(cmd).args(rest).exec();
    format!("exec {cmd}: {err}")
}
