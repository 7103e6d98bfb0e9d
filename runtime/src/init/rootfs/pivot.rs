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
/// refuses a new root whose parent mount is shared (an `rshared` root).
pub fn make_parent_private(rootfs: &Path) -> io::Result<()> {
    let rootfs = std::fs::canonicalize(rootfs)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let Some((mount_point, _)) = covering_mount(&mountinfo, &rootfs) else {
        return Ok(());
    };
    nix::mount::mount(
        None::<&str>,
        mount_point.as_path(),
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

/// The mount point of the topmost mount covering `path`, and whether it is shared.
fn covering_mount(mountinfo: &str, path: &Path) -> Option<(std::path::PathBuf, bool)> {
    let mut best: Option<(std::path::PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mp = Path::new(mp);
        if !path.starts_with(mp) {
            continue;
        }
        let shared = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        // Later lines are mounted on top of earlier ones at the same point.
        if best
            .as_ref()
            .is_none_or(|(b, _)| mp.components().count() >= b.components().count())
        {
            best = Some((mp.to_path_buf(), shared));
        }
    }
    best
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

#[cfg(test)]
mod parent_tests {
    use super::*;

    #[test]
    fn the_deepest_covering_mount_wins_and_its_sharing_is_read() {
        let mi = "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
                  30 22 0:40 / /var/lib rw - tmpfs tmpfs rw\n\
                  31 22 0:41 / /var/lib/x rw shared:7 - tmpfs tmpfs rw\n";
        let (mp, shared) = covering_mount(mi, Path::new("/var/lib/hull/b")).unwrap();
        assert_eq!(mp, Path::new("/var/lib"));
        assert!(!shared);
        let (mp, shared) = covering_mount(mi, Path::new("/srv")).unwrap();
        assert_eq!(mp, Path::new("/"));
        assert!(shared);
        let (mp, _) = covering_mount(mi, Path::new("/var/lib/x/y")).unwrap();
        assert_eq!(mp, Path::new("/var/lib/x"));
    }
}
