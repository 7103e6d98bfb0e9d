//! seccomp(2): loading a filter program and probing filter flags.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: seccomp(2) returns a notification fd.
const NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;

/// Loads `prog` as a seccomp filter of the calling thread with seccomp(2)
/// `SECCOMP_SET_MODE_FILTER` and `flags`. Returns the listener fd when
/// `flags` has `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN.
pub fn seccomp_set_mode_filter(
    flags: u32,
    prog: &[libc::sock_filter],
) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(prog.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program; the mutable pointer is the C type's.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, `len` valid instructions that outlive
    // the call; the kernel copies the program and keeps no pointer to it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    let ret = super::check(ret)?;
    if flags & NEW_LISTENER == 0 {
        return Ok(None);
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: with NEW_LISTENER, a successful seccomp(2) returns a new fd that
    // nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Tells whether the kernel knows seccomp filter `flags`, the way libseccomp
/// probes: SECCOMP_SET_MODE_FILTER with a NULL program fails with EFAULT when
/// the flags are valid and EINVAL when not, and installs nothing either way.
pub fn seccomp_flags_supported(flags: u32) -> bool {
    // SAFETY: a NULL program makes the kernel fail before it installs
    // anything or allocates a listener fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}
