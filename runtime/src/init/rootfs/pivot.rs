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
    nix::unistd::fchdir(root.fd().as_raw_fd())?;
    nix::unistd::pivot_root(".", ".")?;
    // The old root is now mounted over ".": make sure its unmount stays in here.
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
