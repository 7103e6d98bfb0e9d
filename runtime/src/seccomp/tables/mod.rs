//! The syscall ABIs hull filters and their name tables, generated from the
//! kernel UAPI headers by `../gen_tables.sh`.

mod x32;
mod x86;
mod x86_64;

use std::collections::HashMap;
use std::sync::OnceLock;

/// `AUDIT_ARCH_X86_64`: the `seccomp_data.arch` of x86_64 and x32 syscalls.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: the `seccomp_data.arch` of i386 (int 0x80) syscalls.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscall numbers are the x32 table's numbers with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI of the x86 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64 = 0,
    X32 = 1,
    X86 = 2,
}

impl Abi {
    pub const ALL: [Abi; 3] = [Abi::X86_64, Abi::X32, Abi::X86];

    /// The `seccomp_data.arch` value of the ABI's syscalls.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
        }
    }

    /// libseccomp's argument width: x32 is a 32-bit ABI to it, as i386 is.
    pub fn args_are_64bit(self) -> bool {
        self == Abi::X86_64
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => x86_64::X86_64,
            Abi::X32 => x32::X32,
            Abi::X86 => x86::X86,
        }
    }

    /// The number `seccomp_data.nr` carries for `name` (x32: with the x32 bit).
    pub fn number(self, name: &str) -> Option<u32> {
        numbers(name)[self as usize]
    }

    /// Every name of the ABI's table, in byte order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.table().iter().map(|(name, _)| *name)
    }

    /// The name of syscall `nr` (x32: given with or without the x32 bit).
    pub fn name(self, nr: u32) -> Option<&'static str> {
        let raw = if self == Abi::X32 {
            nr & !X32_SYSCALL_BIT
        } else {
            nr
        };
        self.table()
            .iter()
            .find(|(_, n)| *n == raw)
            .map(|(name, _)| *name)
    }
}

/// The numbers of `name` on each ABI, indexed by `Abi as usize`. One hash
/// lookup serves all three ABIs; the index is built on first use.
pub fn numbers(name: &str) -> [Option<u32>; 3] {
    static INDEX: OnceLock<HashMap<&'static str, [Option<u32>; 3]>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index: HashMap<&'static str, [Option<u32>; 3]> = HashMap::new();
        for abi in Abi::ALL {
            for &(name, nr) in abi.table() {
                let nr = if abi == Abi::X32 {
                    nr | X32_SYSCALL_BIT
                } else {
                    nr
                };
                index.entry(name).or_default()[abi as usize] = Some(nr);
            }
        }
        index
    });
    index.get(name).copied().unwrap_or_default()
}

/// i386 socketcall(2) and ipc(2).
pub const X86_SOCKETCALL: u32 = 102;
pub const X86_IPC: u32 = 117;

/// For an i386 name libseccomp multiplexes: the multiplexer syscall and the
/// call number its argument 0 must equal. libseccomp's pseudo-numbers are
/// -100 - call for socket calls (net.h `SYS_*`) and -200 - call for SysV IPC.
pub fn x86_multiplexed(name: &str) -> Option<(u32, u32)> {
    let socket = |call| Some((X86_SOCKETCALL, call));
    let ipc = |call| Some((X86_IPC, call));
    match name {
        "socket" => socket(1),
        "bind" => socket(2),
        "connect" => socket(3),
        "listen" => socket(4),
        "accept" => socket(5),
        "getsockname" => socket(6),
        "getpeername" => socket(7),
        "socketpair" => socket(8),
        "send" => socket(9),
        "recv" => socket(10),
        "sendto" => socket(11),
        "recvfrom" => socket(12),
        "shutdown" => socket(13),
        "setsockopt" => socket(14),
        "getsockopt" => socket(15),
        "sendmsg" => socket(16),
        "recvmsg" => socket(17),
        "accept4" => socket(18),
        "recvmmsg" => socket(19),
        "sendmmsg" => socket(20),
        "semop" => ipc(1),
        "semget" => ipc(2),
        "semctl" => ipc(3),
        "semtimedop" => ipc(4),
        "msgsnd" => ipc(11),
        "msgrcv" => ipc(12),
        "msgget" => ipc(13),
        "msgctl" => ipc(14),
        "shmat" => ipc(21),
        "shmdt" => ipc(22),
        "shmget" => ipc(23),
        "shmctl" => ipc(24),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_resolve_both_ways() {
        assert_eq!(Abi::X86_64.number("read"), Some(0));
        assert_eq!(Abi::X86.number("read"), Some(3));
        assert_eq!(Abi::X32.number("read"), Some(X32_SYSCALL_BIT));
        // x32 has its own numbers for calls with compat structures.
        assert_eq!(Abi::X32.number("readv"), Some(X32_SYSCALL_BIT | 515));
        assert_eq!(Abi::X86_64.number("_llseek"), None);
        assert_eq!(Abi::X86.number("_llseek"), Some(140));
        assert_eq!(Abi::X86_64.name(59), Some("execve"));
        assert_eq!(Abi::X32.name(X32_SYSCALL_BIT | 520), Some("execve"));
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for abi in Abi::ALL {
            assert!(abi.table().windows(2).all(|w| w[0].0 < w[1].0), "{abi:?}");
        }
    }
}
