//! `SECCOMP_RET_*` values of the spec's actions, as runc maps them.

use oci_spec::runtime::LinuxSeccompAction as Action;

use super::SeccompError;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// What runc's ENOSYS stub returns.
pub const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// Encodes `action` with its `errnoRet` (`defaultErrnoRet` for the default
/// action). ERRNO and TRACE default to EPERM as in runc; the other actions
/// ignore the value. `what` names the rule in errors.
pub fn encode(
    action: Action,
    ret: Option<u32>,
    what: &dyn Fn() -> String,
) -> Result<u32, SeccompError> {
    let data = |base: u32| {
        let value = ret.unwrap_or(libc::EPERM as u32);
        // SECCOMP_RET_DATA is 16 bits wide; runc would silently truncate.
        if value > 0xffff {
            return Err(SeccompError::RetData {
                what: what(),
                value,
            });
        }
        Ok(base | value)
    };
    Ok(match action {
        Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
        Action::ScmpActKillProcess => RET_KILL_PROCESS,
        Action::ScmpActTrap => RET_TRAP,
        Action::ScmpActErrno => data(RET_ERRNO)?,
        Action::ScmpActTrace => data(RET_TRACE)?,
        Action::ScmpActNotify => RET_USER_NOTIF,
        Action::ScmpActLog => RET_LOG,
        Action::ScmpActAllow => RET_ALLOW,
    })
}

/// runc's `isAllowAction`: a default that lets unknown syscalls run (a good
/// tracer handles new syscalls itself) needs no ENOSYS stub.
pub fn is_allow_ish(action: Action) -> bool {
    matches!(
        action,
        Action::ScmpActAllow | Action::ScmpActLog | Action::ScmpActTrace
    )
}

/// The spec's names of every action, for `features`.
pub const ACTION_NAMES: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
