//! Running hull from a sealed in-memory copy of its own binary (CVE-2019-5736).
//!
//! While hull's code runs inside a container's namespaces (the init before its execve, the
//! child of `exec`), `/proc/<pid>/exe` of that process is visible to the container. If it
//! named the binary on the host, a container process could open it and, once hull exits,
//! write through it: the host's runtime binary would be replaced. hull therefore
//! re-executes itself from a file nobody can write before entering a container:
//!
//! 1. a detached, read-only overlayfs over the binary's directory (runc 1.2 does the
//!    same): no copy, the page cache is shared with the original;
//! 2. where overlayfs cannot be mounted (no CAP_SYS_ADMIN), a sealed memfd copy, which
//!    costs a copy of the whole binary (several ms for a 6 MB binary).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::check;

const MFD_CLOEXEC: u32 = 0x1;
const MFD_ALLOW_SEALING: u32 = 0x2;
const MFD_EXEC: u32 = 0x10;
const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// True when our executable cannot be written: a sealed memfd, or a file on a read-only
/// overlayfs (the mount [`reexec_sealed`] makes).
pub fn running_sealed() -> bool {
    use nix::sys::{statfs, statvfs::FsFlags};
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // One statfs gives both the type and the mount flags (fstatvfs is a second statfs).
    if statfs::fstatfs(&f).is_ok_and(|st| {
        st.filesystem_type() == statfs::OVERLAYFS_SUPER_MAGIC
            && st.flags().contains(FsFlags::ST_RDONLY)
    }) {
        return true;
    }
    // SAFETY: F_GET_SEALS reads the seals of a descriptor we own; on a regular file it
    // fails with EINVAL.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let create = |flags: u32| {
        // SAFETY: `name` is NUL-terminated and outlives the call; flags are integers.
        check(unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), flags) })
    };
    // MFD_EXEC (6.3+) keeps the copy executable under vm.memfd_noexec; older kernels
    // reject the flag, and their memfds are executable anyway.
    let fd = create(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC)
        .or_else(|_| create(MFD_CLOEXEC | MFD_ALLOW_SEALING))? as i32;
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Our binary opened through a detached read-only overlayfs of its directory. overlayfs
/// needs two lower layers when it has no upper one. The second is /sys/fs, which is
/// mounted on every host and cannot overlap a binary's directory; where /sys is absent
/// (hull inside a container), an empty detached tmpfs (taken by 6.x, which clones
/// lower layers from any mount; 6.1 refuses it). The second layer is never read: the
/// binary is opened by name from the first, and the mount is reachable only through
/// the descriptor. Making the tmpfs cost a superblock per run; /sys/fs costs a lookup.
fn overlay_copy() -> io::Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mnt = overlay_of(dir, "/sys/fs").or_else(|_| {
        let empty = super::FsContext::open("tmpfs")?;
        empty.set("size=4k")?;
        let empty = empty.mount(super::MOUNT_ATTR_RDONLY)?;
        overlay_of(dir, &format!("/proc/self/fd/{}", empty.as_raw_fd()))
    })?;
    super::openat2(
        mnt.as_fd(),
        std::path::Path::new(name),
        libc::O_RDONLY,
        0,
        super::RESOLVE_BENEATH,
    )
}

/// A detached read-only overlayfs of `dir` over `second`.
fn overlay_of(dir: &std::path::Path, second: &str) -> io::Result<OwnedFd> {
    let overlay = super::FsContext::open("overlay")?;
    overlay.set(&format!("lowerdir={}:{second}", dir.display()))?;
    overlay.mount(super::MOUNT_ATTR_RDONLY | super::MOUNT_ATTR_NODEV | super::MOUNT_ATTR_NOSUID)
}

/// Our binary copied into a sealed memfd.
fn memfd_copy() -> io::Result<OwnedFd> {
    let mut exe = std::fs::File::open("/proc/self/exe")?;
    let copy = memfd(c"hull")?;
    io::copy(&mut exe, &mut std::fs::File::from(copy.try_clone()?))?;
    // SAFETY: F_ADD_SEALS takes an int of seal flags; the fd is ours.
    check(unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) }.into())?;
    Ok(copy)
}

/// Re-executes hull from an unwritable copy of its binary, with the same arguments and
/// environment. Returns only on failure.
pub fn reexec_sealed() -> io::Result<std::convert::Infallible> {
    let copy = overlay_copy().or_else(|_| memfd_copy())?;
    let cstrings = |v: Vec<OsString>| -> io::Result<Vec<CString>> {
        v.into_iter()
            .map(|s| {
                CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
            })
            .collect()
    };
    let args = cstrings(std::env::args_os().collect())?;
    let env = cstrings(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect(),
    )?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into `args` and `env`,
    // which live until the call returns (it only returns on failure); the path is the
    // empty string, meaning the fd itself with AT_EMPTY_PATH.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_execveat,
            copy.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    check(ret)?;
    unreachable!("execveat returned without an error")
}
