//! The syscall ABIs hull filters and their name tables, generated from the
//! kernel UAPI headers by `../gen_tables.sh`.

mod x32;
mod x86;
mod x86_64;

/// `AUDIT_ARCH_X86_64`: the `seccomp_data.arch` of x86_64 and x32 syscalls.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: the `seccomp_data.arch` of i386 (int 0x80) syscalls.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 syscall numbers are the x32 table's numbers with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI of the x86 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64,
    X32,
    X86,
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
        let table = self.table();
        let i = table.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        let nr = table[i].1;
        Some(if self == Abi::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
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

/// i386 socket calls libseccomp also matches through socketcall(2), with
/// their `SYS_*` call number as argument 0 (`__PNR_*` = -100 - call).
const SOCKETCALLS: &[(&str, u32)] = &[
    ("socket", 1),
    ("bind", 2),
    ("connect", 3),
    ("listen", 4),
    ("accept", 5),
    ("getsockname", 6),
    ("getpeername", 7),
    ("socketpair", 8),
    ("send", 9),
    ("recv", 10),
    ("sendto", 11),
    ("recvfrom", 12),
    ("shutdown", 13),
    ("setsockopt", 14),
    ("getsockopt", 15),
    ("sendmsg", 16),
    ("recvmsg", 17),
    ("accept4", 18),
    ("recvmmsg", 19),
    ("sendmmsg", 20),
];

/// i386 SysV IPC calls libseccomp also matches through ipc(2) (`__PNR_*` = -200 - call).
const IPCCALLS: &[(&str, u32)] = &[
    ("semop", 1),
    ("semget", 2),
    ("semctl", 3),
    ("semtimedop", 4),
    ("msgsnd", 11),
    ("msgrcv", 12),
    ("msgget", 13),
    ("msgctl", 14),
    ("shmat", 21),
    ("shmdt", 22),
    ("shmget", 23),
    ("shmctl", 24),
];

/// i386 socketcall(2) and ipc(2).
pub const X86_SOCKETCALL: u32 = 102;
pub const X86_IPC: u32 = 117;

/// For an i386 name libseccomp multiplexes: the multiplexer syscall and the
/// call number its argument 0 must equal.
pub fn x86_multiplexed(name: &str) -> Option<(u32, u32)> {
    let find = |list: &[(&str, u32)]| list.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
    find(SOCKETCALLS)
        .map(|c| (X86_SOCKETCALL, c))
        .or_else(|| find(IPCCALLS).map(|c| (X86_IPC, c)))
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
