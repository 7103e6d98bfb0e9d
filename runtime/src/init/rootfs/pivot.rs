//! Making the prepared rootfs the container's `/`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::options::propagation;
use super::resolve::Root;
use crate::sys::{self, AttrChange};

/// pivot_root(".", ".") then a lazy unmount of the old root stacked on top: no directory
/// for the old root is needed inside the container, so none can be left behind.
pub fn pivot(root: &Root) -> io::Result<()> {
    // The old root, held so the steps below act on it and not on the new root: after
    // pivot_root the cwd is still the new root, and a recursive rslave there would turn
    // the container's `rshared` binds into slaves of the host's mounts (runc fchdirs to
    // the old root for the same reason).
    let old_root = sys::open_path(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)?;
    nix::unistd::fchdir(root.fd().as_raw_fd())?;
    nix::unistd::pivot_root(".", ".")?;
    nix::unistd::fchdir(old_root.as_raw_fd())?;
    // The old root is now mounted over "/": make sure its unmount stays in here.
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// `--no-pivot`: move the rootfs mount over `/` and chroot into it, for hosts where
/// pivot_root is impossible (a ramfs root).
pub fn move_root(root: &Root) -> io::Result<()> {
    nix::unistd::fchdir(root.fd().as_raw_fd())?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Without a mount namespace of its own the container only gets a chroot: pivot_root
/// or a move over `/` would change the host's root.
pub fn chroot(root: &Root) -> io::Result<()> {
    nix::unistd::fchdir(root.fd().as_raw_fd())?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// Makes the mount holding `rootfs` private, as runc's rootfsParentMountPrivate does: the
/// rootfs is bound onto itself next, which an `unbindable` root refuses, and pivot_root
/// refuses a new root whose parent mount is shared (an `rshared` root). MS_PRIVATE on a
/// path that is not a mount root fails with EINVAL, so walking up to the first one costs a
/// syscall per level and no read of the mount table on the start path.
pub fn make_parent_private(rootfs: &Path) -> io::Result<()> {
    let mut dir = rootfs;
    loop {
        match nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINVAL) => match dir.parent() {
                Some(up) => dir = up,
                None => return Ok(()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// Applies `root.readonly` and `linux.rootfsPropagation` to the new `/`.
pub fn finish_root(readonly: bool, prop: Option<&str>) -> io::Result<()> {
    if !readonly && prop.is_none() {
        return Ok(());
    }
    let slash = sys::open_path(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)?;
    if readonly {
        let ro = AttrChange {
            set: sys::MOUNT_ATTR_RDONLY,
            ..Default::default()
        };
        sys::set_mount_attr(slash.as_fd(), ro, false)?;
    }
    if let Some(p) = prop {
        let (flag, recursive) = propagation(p);
        let change = AttrChange {
            propagation: flag,
            ..Default::default()
        };
        sys::set_mount_attr(slash.as_fd(), change, recursive)?;
    }
    Ok(())
}
