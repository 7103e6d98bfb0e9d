//! Process-level calls: clone3, pidfds, credentials, limits and exit.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::check;

/// The outcome of [`clone_process`] as seen by the calling process.
pub enum Forked {
    /// We are the parent. `pidfd` refers to the child.
    Parent { pid: i32, pidfd: OwnedFd },
    /// We are the new child.
    Child,
}

/// Returns true when this process has exactly one thread.
///
/// hull forks (clones without `CLONE_VM`) mid-program; that is sound only when no other
/// thread could hold a lock or be half-way through an allocation at that moment.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/thread-self/..")
        .map(|d| d.count() == 1)
        .unwrap_or(false)
}

/// clone3(2) without `CLONE_VM`: a fork that can create namespaces and hands the parent a
/// pidfd. `flags` are `CLONE_NEW*` flags; `cgroup` places the child straight into a
/// cgroup v2 directory (`CLONE_INTO_CGROUP`).
///
/// Fails with `EDEADLK` if the process has more than one thread, since the child would
/// inherit only this thread and possibly a lock another one held.
pub fn clone_process(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    if !single_threaded() {
        return Err(io::Error::from_raw_os_error(libc::EDEADLK));
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut pidfd: libc::c_int = -1;
    let mut args = [0u64; 11];
    args[0] = flags | libc::CLONE_PIDFD as u64 | cgroup.map_or(0, |_| CLONE_INTO_CGROUP);
    args[1] = &mut pidfd as *mut libc::c_int as u64;
    args[4] = libc::SIGCHLD as u64;
    args[10] = cgroup.map_or(0, |fd| fd.as_raw_fd() as u64);
    // SAFETY: the argument block is a valid `struct clone_args` (11 u64 fields, version 2)
    // living across the call; `pidfd` points to a live local int. Without CLONE_VM and with
    // a NULL stack the child gets a private copy of our memory, like fork(2), and we
    // checked above that no other thread exists whose locks the child could inherit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args.as_mut_ptr(),
            std::mem::size_of_val(&args),
        )
    };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as i32,
            // SAFETY: with CLONE_PIDFD the kernel stored a new fd that only we own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// pidfd_open(2): a pidfd for an existing process (not necessarily our child).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })? as i32;
    // SAFETY: the fd was just created for us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// pidfd_send_signal(2): signals the process behind `pidfd`, immune to pid reuse.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a NULL siginfo asks the kernel to fill in a default one; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret).map(drop)
}

/// Ends the calling process at once, without running atexit handlers or flushing stdio
/// buffers that belong to the parent's copy of memory.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// setdomainname(2); nix has no wrapper for it.
pub fn set_domainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe the bytes of a live &str.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    check(ret.into()).map(drop)
}

/// setrlimit(2) for a raw resource number, as found in config.json.
pub fn set_rlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call; an unknown resource number
    // fails with EINVAL.
    let ret = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
    check(ret.into()).map(drop)
}

/// umask(2).
pub fn set_umask(mask: u32) {
    // SAFETY: umask cannot fail and touches only the process's file mode creation mask.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: this prctl takes integers only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// prctl(PR_SET_KEEPCAPS): keep permitted capabilities across a uid change.
pub fn set_keepcaps(keep: bool) -> io::Result<()> {
    // SAFETY: this prctl takes integers only.
    let ret = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, u64::from(keep), 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// prctl(PR_SET_PDEATHSIG): the signal this process receives when its parent dies.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: this prctl takes integers only.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// prctl(PR_SET_CHILD_SUBREAPER).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: this prctl takes integers only.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// setgroups(2) with an explicit list (nix's wrapper caps the list length differently).
pub fn set_groups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live slice of gid_t (u32) values.
    let ret = unsafe { libc::setgroups(gids.len(), gids.as_ptr()) };
    check(ret.into()).map(drop)
}

/// Resets every signal disposition to default and unblocks all signals, so the
/// container's program does not inherit hull's signal state.
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always valid; numbers the kernel rejects (the ones
        // glibc reserves) fail with EINVAL, which we ignore.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    )
    .map_err(io::Error::from)
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a fresh session keyring, so containers do
/// not share the host's. Kernels without keyrings (ENOSYS) are tolerated, as in runc.
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated and outlives the call; keyctl reads only the name.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    match check(ret) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        other => other.map(drop),
    }
}

/// pidfd_getfd(2): a duplicate of descriptor `target` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptors and flags (0) by value and returns a new
    // fd in our table.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })?;
    // SAFETY: the kernel just installed this fd for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// pipe2(2) with O_CLOEXEC: (read end, write end).
pub fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}
