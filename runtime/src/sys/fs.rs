//! File-descriptor level filesystem calls: openat2 and friends.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{check, cstr};

/// `RESOLVE_*` flags of openat2(2).
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2): opens `path` relative to `dir` with the given resolve restrictions.
/// `O_CLOEXEC` is always added.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // open_how is non-exhaustive in libc (it may grow); zero-fill, then set our fields.
    // SAFETY: open_how is plain integers, for which all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    // SAFETY: `c` is a NUL-terminated string and `how` a fully initialised open_how that
    // both outlive the call; the size passed is exactly that of the struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = check(ret)? as i32;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` as an `O_PATH` descriptor with plain open(2), for host paths that are
/// trusted (the bundle, the state directory).
pub fn open_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned by open(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every fd from `first` upwards close-on-exec (close_range(2) with
/// CLOSE_RANGE_CLOEXEC), so nothing of hull's leaks into the container's program.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; it frees no
    // memory and invalidates no descriptor that Rust code holds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// Clears `FD_CLOEXEC` on `fd`, so that it survives execve (used for --preserve-fds).
pub fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: F_SETFD only alters a flag of the descriptor number; an invalid number fails
    // with EBADF and touches nothing.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    check(ret.into()).map(drop)
}

/// dup3(2) of `fd` onto `target` (without `O_CLOEXEC`): used to install stdio.
pub fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        return clear_cloexec(target);
    }
    // SAFETY: dup3 with a valid source fd; the target number is replaced atomically and is
    // one of the stdio numbers that no Rust object in the init owns.
    let ret = unsafe { libc::dup3(fd.as_raw_fd(), target, 0) };
    check(ret.into()).map(drop)
}

/// fstatfs(2) magic number of the filesystem `fd` lives on.
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` points to writable memory of the right size for one statfs.
    let ret = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    check(ret.into())?;
    // SAFETY: fstatfs succeeded, so the kernel filled the struct.
    Ok(unsafe { st.assume_init() }.f_type)
}

/// The path of an fd as `/proc/self/fd/N`, for the few calls that only take paths.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// ioctl(TIOCGPTPEER): opens the pty peer of the master `fd` without a path lookup.
pub fn pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: TIOCGPTPEER takes open(2) flags by value and returns a new fd; no memory is
    // passed to the kernel.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    check(fd.into())?;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// unlockpt(3) equivalent: ioctl(TIOCSPTLCK, 0).
pub fn pty_unlock(master: BorrowedFd<'_>) -> io::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which points to a live local.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    check(ret.into()).map(drop)
}

/// ioctl(TIOCSCTTY): makes the terminal `fd` the controlling terminal of this session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value (0: do not steal).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    check(ret.into()).map(drop)
}

/// Reads a C string constant as `&CStr` (helper for fsconfig keys).
pub fn cstr_lit(bytes: &'static [u8]) -> &'static CStr {
    CStr::from_bytes_with_nul(bytes).expect("literal has exactly one trailing NUL")
}

/// The current directory as a borrowed fd, for *at calls on absolute host paths.
pub fn cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a sentinel value the kernel interprets as "the current
    // directory"; it is never closed, so borrowing it for 'static is sound.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// True when `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; an unused number fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Copies the window size of terminal `from` to terminal `to`; silently does nothing when
/// `from` is not a terminal.
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut ws = std::mem::MaybeUninit::<libc::winsize>::zeroed();
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which is large enough.
    if unsafe { libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, ws.as_mut_ptr()) } == 0 {
        // SAFETY: the ioctl succeeded, so `ws` is initialised; TIOCSWINSZ only reads it.
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, ws.as_ptr()) };
    }
}
