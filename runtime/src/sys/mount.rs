//! The new mount API (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount).
//!
//! hull mounts through file descriptors: every target is an `O_PATH` fd that was
//! resolved inside the rootfs, so a symlink swapped in after the check cannot
//! redirect a mount to the host (the CVE-2021-30465 class).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{check, cstr};

pub const OPEN_TREE_CLONE: u32 = 1;
pub const AT_RECURSIVE: u32 = 0x8000;
const AT_EMPTY_PATH: u32 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;

const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

pub const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub const MOUNT_ATTR_NODEV: u64 = 0x04;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x08;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x00;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A change of mount attributes and propagation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AttrChange {
    pub set: u64,
    pub clear: u64,
    /// One of `MS_PRIVATE`, `MS_SLAVE`, `MS_SHARED`, `MS_UNBINDABLE`, or 0.
    pub propagation: u64,
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)? as i32;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at `path`
/// (relative to `dir`; an empty path means `dir` itself). `recursive` copies submounts.
pub fn clone_tree(dir: BorrowedFd<'_>, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= AT_EMPTY_PATH;
    }
    // SAFETY: `c` is NUL-terminated and outlives the call; the flags are valid for open_tree.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c.as_ptr(), flags) })
}

/// move_mount(2) of the detached or attached mount `from` onto the object `to`.
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both paths are the empty C string, interpreted with the *_EMPTY_PATH flags
    // as "the fd itself"; both fds are valid for the call's duration.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(ret).map(drop)
}

/// mount_setattr(2) on the mount referred to by `fd`.
pub fn set_mount_attr(fd: BorrowedFd<'_>, change: AttrChange, recursive: bool) -> io::Result<()> {
    let mut attr = MountAttr {
        attr_set: change.set,
        attr_clr: change.clear,
        propagation: change.propagation,
        userns_fd: 0,
    };
    // Changing the atime mode requires clearing the whole atime field first.
    if change.set & MOUNT_ATTR__ATIME != 0 || change.clear & MOUNT_ATTR__ATIME != 0 {
        attr.attr_clr |= MOUNT_ATTR__ATIME;
    }
    let mut flags = AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `attr` is a valid mount_attr (version 0 size) living across the call and the
    // path is the empty C string, meaning `fd` itself.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// A filesystem context being configured (fsopen(2)).
pub struct FsContext {
    fd: OwnedFd,
}

impl FsContext {
    /// fsopen(2) for filesystem type `fstype`.
    pub fn open(fstype: &str) -> io::Result<Self> {
        let c = CString::new(fstype).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        const FSOPEN_CLOEXEC: u32 = 1;
        // SAFETY: `c` is NUL-terminated and outlives the call.
        let fd = owned(unsafe { libc::syscall(libc::SYS_fsopen, c.as_ptr(), FSOPEN_CLOEXEC) })?;
        Ok(Self { fd })
    }

    fn config(&self, cmd: u32, key: Option<&CStr>, value: Option<&CStr>) -> io::Result<()> {
        let key = key.map_or(std::ptr::null(), CStr::as_ptr);
        let value = value.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: key and value are NULL or NUL-terminated strings that outlive the call,
        // as fsconfig(2) requires for the flag, string and create commands.
        let ret =
            unsafe { libc::syscall(libc::SYS_fsconfig, self.fd.as_raw_fd(), cmd, key, value, 0) };
        check(ret).map(drop)
    }

    /// Sets one filesystem option: `key=value`, or a bare flag `key`.
    pub fn set(&self, option: &str) -> io::Result<()> {
        let inval = |_| io::Error::from_raw_os_error(libc::EINVAL);
        match option.split_once('=') {
            Some((k, v)) => self.config(
                FSCONFIG_SET_STRING,
                Some(&CString::new(k).map_err(inval)?),
                Some(&CString::new(v).map_err(inval)?),
            ),
            None => self.config(
                FSCONFIG_SET_FLAG,
                Some(&CString::new(option).map_err(inval)?),
                None,
            ),
        }
    }

    /// Sets the source (device) name shown in mountinfo.
    pub fn set_source(&self, source: &str) -> io::Result<()> {
        let v = CString::new(source).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.config(FSCONFIG_SET_STRING, Some(c"source"), Some(&v))
    }

    /// Creates the superblock and returns a detached mount of it with `attrs`
    /// (`MOUNT_ATTR_*`).
    pub fn mount(self, attrs: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)?;
        const FSMOUNT_CLOEXEC: u32 = 1;
        // SAFETY: fsmount takes the context fd and integer flags; it returns a new fd.
        owned(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        })
    }
}

/// mknodat(2) relative to `dir`.
pub fn mknod_at(dir: BorrowedFd<'_>, name: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated and outlives the call; mode and dev are plain integers.
    let ret = unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) };
    check(ret.into()).map(drop)
}

/// fchownat(2) of `fd` itself (AT_EMPTY_PATH).
pub fn fchown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the empty path with AT_EMPTY_PATH designates `fd`; the ids are integers.
    let ret =
        unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) };
    check(ret.into()).map(drop)
}
