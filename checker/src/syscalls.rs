//! `syscalls <abi>` and `call <abi> <nr> <args>...`: what the seccomp filter
//! (and then the kernel) answer, as errnos (0 for success).
//!
//! `syscalls` makes every syscall number 0..=547 of one ABI (x86_64, x32 or
//! x86 = i386 through int 0x80), plus a few edge numbers, with every argument
//! -1: invalid fds, pointers, flags and sizes, so each call fails harmlessly
//! or only queries. The numbers in the skip lists are never made.

use crate::json::Json;
use crate::sys;

/// 0..=547 covers every x86_64 number and the x32 compat range (512-547).
const MAX_NR: u32 = 547;
const X32_BIT: u32 = 0x4000_0000;

/// Why each skipped x86_64 (and x32) number is never made.
const SKIP_X86_64: &[(u32, &str)] = &[
    (
        15,
        "rt_sigreturn: restores a signal frame that is not on the stack",
    ),
    (34, "pause: blocks until a signal"),
    (56, "clone: would create a process"),
    (57, "fork: would create a process"),
    (58, "vfork: would create a process"),
    (60, "exit: ends the probe"),
    (
        112,
        "setsid: changes the session, which runtimes may set up differently",
    ),
    (130, "rt_sigsuspend: blocks until a signal"),
    (162, "sync: flushes every filesystem of the host, slowly"),
    (169, "reboot: never worth the risk"),
    (231, "exit_group: ends the probe"),
    (
        335,
        "uretprobe: SIGILL outside a uprobe trampoline (Linux 6.11+)",
    ),
    (
        336,
        "uprobe: SIGILL outside a uprobe trampoline (Linux 6.16+)",
    ),
    (435, "clone3: would create a process"),
    (
        513,
        "rt_sigreturn (x32): restores a signal frame that is not on the stack",
    ),
];

/// Why each skipped i386 number is never made.
const SKIP_X86: &[(u32, &str)] = &[
    (1, "exit: ends the probe"),
    (2, "fork: would create a process"),
    (29, "pause: blocks until a signal"),
    (36, "sync: flushes every filesystem of the host, slowly"),
    (
        66,
        "setsid: changes the session, which runtimes may set up differently",
    ),
    (72, "sigsuspend: blocks until a signal"),
    (88, "reboot: never worth the risk"),
    (
        119,
        "sigreturn: restores a signal frame that is not on the stack",
    ),
    (120, "clone: would create a process"),
    (
        173,
        "rt_sigreturn: restores a signal frame that is not on the stack",
    ),
    (179, "rt_sigsuspend: blocks until a signal"),
    (190, "vfork: would create a process"),
    (252, "exit_group: ends the probe"),
    (435, "clone3: would create a process"),
];

#[derive(Clone, Copy, PartialEq)]
enum Abi {
    X86_64,
    X32,
    X86,
}

fn parse_abi(s: &str) -> Option<Abi> {
    match s {
        "x86_64" => Some(Abi::X86_64),
        "x32" => Some(Abi::X32),
        "x86" => Some(Abi::X86),
        _ => None,
    }
}

/// Makes syscall `nr` (without the x32 bit) of `abi` with `args`.
fn call(abi: Abi, nr: u32, args: [u64; 6]) -> i32 {
    match abi {
        Abi::X86_64 => sys::syscall6(i64::from(nr), args),
        Abi::X32 => sys::syscall6(i64::from(nr | X32_BIT), args),
        Abi::X86 => sys::int80(nr, args.map(|a| a as u32)),
    }
}

/// `syscalls <abi>`: `{"abi":..,"errno":{"<nr>":errno,...},"skipped":[...]}`.
/// Edge numbers: -1 (4294967295, what tracers use to skip a call) and
/// 0x80000005 (above the x32 bit's range check but without the bit).
pub fn sweep(abi_name: &str) -> Option<Json> {
    let abi = parse_abi(abi_name)?;
    let skip = if abi == Abi::X86 {
        SKIP_X86
    } else {
        SKIP_X86_64
    };
    let mut results = Vec::new();
    let edges = [u32::MAX, 0x8000_0005];
    for nr in (0..=MAX_NR).chain(edges) {
        if skip.iter().any(|(s, _)| *s == nr) {
            continue;
        }
        // The x32 bit on an edge number would change it; make those as they are.
        let errno = match abi {
            Abi::X32 if edges.contains(&nr) => sys::syscall6(i64::from(nr), [u64::MAX; 6]),
            _ => call(abi, nr, [u64::MAX; 6]),
        };
        results.push((nr.to_string(), Json::Int(i64::from(errno))));
    }
    let skipped = skip
        .iter()
        .map(|(nr, _)| Json::UInt(u64::from(*nr)))
        .collect();
    Some(Json::obj([
        ("abi", Json::str(abi_name)),
        ("errno", Json::Obj(results)),
        ("skipped", Json::Arr(skipped)),
    ]))
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `call <abi> <nr> <a0,a1,...> [<a0,...> ...]`: makes the syscall once per
/// argument list (missing arguments are 0) and prints
/// `{"abi":..,"nr":..,"errno":[...]}`. The caller picks calls that are harmless.
pub fn calls(args: &[String]) -> Option<Json> {
    let (abi_name, nr, lists) = match args {
        [abi, nr, lists @ ..] if !lists.is_empty() => (abi, nr.parse::<u32>().ok()?, lists),
        _ => return None,
    };
    let abi = parse_abi(abi_name)?;
    let mut results = Vec::new();
    for list in lists {
        let mut a = [0u64; 6];
        for (i, v) in list.split(',').enumerate() {
            *a.get_mut(i)? = parse_u64(v)?;
        }
        results.push(Json::Int(i64::from(call(abi, nr, a))));
    }
    Some(Json::obj([
        ("abi", Json::str(abi_name.as_str())),
        ("nr", Json::UInt(u64::from(nr))),
        ("errno", Json::Arr(results)),
    ]))
}
