//! `linux.maskedPaths` and `linux.readonlyPaths`.
//!
//! Masking binds a verified /dev/null (opened on the host before the rootfs existed, and
//! checked to be char device 1:3) or an empty read-only tmpfs over the path. The
//! container's own /dev/null is never trusted: it could be a planted file or symlink
//! (CVE-2025-31133).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::mounts::new_fs;
use super::options::MountOptions;
use super::resolve::Root;
use crate::sys::{self, AttrChange};

/// The host's /dev/null, held as an `O_PATH` descriptor; each masked file gets a fresh
/// bind of it (kernels before 6.x refuse to clone an already detached mount).
pub struct NullSource {
    tree: OwnedFd,
}

impl NullSource {
    /// Opens the host /dev/null and checks that it is the real null device.
    pub fn open() -> io::Result<Self> {
        let tree = sys::open_path(Path::new("/dev/null"), libc::O_PATH | libc::O_NOFOLLOW)?;
        let meta = std::fs::metadata(sys::fd_path(tree.as_fd()))?;
        use std::os::unix::fs::MetadataExt;
        if !meta.file_type().is_char_device() || meta.rdev() != libc::makedev(1, 3) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        Ok(Self { tree })
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Masks `path` if it exists.
pub fn mask(root: &Root, null: &NullSource, path: &Path) -> io::Result<()> {
    let target = match root.lookup(path) {
        Err(e) if is_missing(&e) => return Ok(()),
        other => other?,
    };
    let meta = std::fs::metadata(sys::fd_path(target.as_fd()))?;
    let cover = if meta.is_dir() {
        let opts = MountOptions {
            attr_set: sys::MOUNT_ATTR_RDONLY,
            ..Default::default()
        };
        new_fs("tmpfs", "tmpfs", &opts)?
    } else {
        sys::clone_tree(null.tree.as_fd(), Path::new(""), false)?
    };
    sys::move_mount_fd(cover.as_fd(), target.as_fd())
}

/// Makes `path` (and what is mounted below it) read-only, if it exists.
pub fn make_readonly(root: &Root, path: &Path) -> io::Result<()> {
    let target = match root.lookup(path) {
        Err(e) if is_missing(&e) => return Ok(()),
        other => other?,
    };
    let tree = sys::clone_tree(target.as_fd(), Path::new(""), true)?;
    let ro = AttrChange {
        set: sys::MOUNT_ATTR_RDONLY,
        ..Default::default()
    };
    sys::set_mount_attr(tree.as_fd(), ro, true)?;
    sys::move_mount_fd(tree.as_fd(), target.as_fd())
}
