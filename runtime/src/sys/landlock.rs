//! Landlock (landlock(7)): landlock_create_ruleset, landlock_add_rule and
//! landlock_restrict_self. The syscall numbers are the same on every architecture.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::check;

const SYS_LANDLOCK_CREATE_RULESET: libc::c_long = 444;
const SYS_LANDLOCK_ADD_RULE: libc::c_long = 445;
const SYS_LANDLOCK_RESTRICT_SELF: libc::c_long = 446;

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1 << 0;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;
const LANDLOCK_RULE_NET_PORT: u32 = 2;

/// `struct landlock_ruleset_attr`: what a ruleset handles (denies unless a rule allows).
/// The kernel grew it over time: `handled_access_net` came with ABI 4, `scoped` with 6.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LandlockRulesetAttr {
    pub handled_access_fs: u64,
    pub handled_access_net: u64,
    pub scoped: u64,
}

impl LandlockRulesetAttr {
    /// The size to pass: up to the last non-zero field, so that a kernel older than a
    /// field never sees it (old kernels reject a larger struct unless the tail is zero,
    /// and this keeps the call identical to what a program written for them would make).
    fn size(&self) -> usize {
        if self.scoped != 0 {
            24
        } else if self.handled_access_net != 0 {
            16
        } else {
            8
        }
    }
}

/// `struct landlock_path_beneath_attr` (packed: 12 bytes).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// `struct landlock_net_port_attr`.
#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): the highest Landlock
/// ABI the kernel supports. Fails with ENOSYS when Landlock is not built in and
/// EOPNOTSUPP when it is disabled at boot.
pub fn landlock_abi_version() -> io::Result<u32> {
    // SAFETY: with the VERSION flag the kernel requires a NULL attr and a zero size and
    // touches no memory; it returns the ABI version.
    let ret = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            std::ptr::null::<LandlockRulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    Ok(check(ret)? as u32)
}

/// landlock_create_ruleset(2): a new ruleset fd handling what `attr` says.
pub fn landlock_create_ruleset(attr: &LandlockRulesetAttr) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, fully initialised repr(C) struct and the size passed never
    // exceeds its size; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            SYS_LANDLOCK_CREATE_RULESET,
            attr as *const LandlockRulesetAttr,
            attr.size(),
            0u32,
        )
    };
    let fd = check(ret)? as i32;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// landlock_add_rule(LANDLOCK_RULE_PATH_BENEATH): allows `access` beneath the file or
/// directory `parent` (usually an `O_PATH` fd).
pub fn landlock_add_path_rule(
    ruleset: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    access: u64,
) -> io::Result<()> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: `attr` is a live packed struct of the layout the kernel expects for this
    // rule type; the kernel only reads it, and `parent` is a valid borrowed fd.
    let ret = unsafe {
        libc::syscall(
            SYS_LANDLOCK_ADD_RULE,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    check(ret).map(drop)
}

/// landlock_add_rule(LANDLOCK_RULE_NET_PORT): allows `access` for TCP port `port`.
pub fn landlock_add_port_rule(ruleset: BorrowedFd<'_>, port: u16, access: u64) -> io::Result<()> {
    let attr = NetPortAttr {
        allowed_access: access,
        port: u64::from(port),
    };
    // SAFETY: `attr` is a live repr(C) struct of the layout the kernel expects for this
    // rule type; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            SYS_LANDLOCK_ADD_RULE,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_NET_PORT,
            &attr as *const NetPortAttr,
            0u32,
        )
    };
    check(ret).map(drop)
}

/// landlock_restrict_self(2): confines the calling thread (and what it execs) to the
/// ruleset, for good. Needs no_new_privs or CAP_SYS_ADMIN in the user namespace (EPERM).
pub fn landlock_restrict_self(ruleset: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: takes an fd and flags by value; no memory is passed.
    let ret = unsafe { libc::syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset.as_raw_fd(), 0u32) };
    check(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LandlockRulesetAttr>(), 24);
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
        assert_eq!(std::mem::size_of::<NetPortAttr>(), 16);
    }

    #[test]
    fn attr_size_covers_the_last_used_field() {
        let mut a = LandlockRulesetAttr {
            handled_access_fs: 1,
            ..Default::default()
        };
        assert_eq!(a.size(), 8);
        a.handled_access_net = 1;
        assert_eq!(a.size(), 16);
        a.scoped = 2;
        assert_eq!(a.size(), 24);
    }
}
