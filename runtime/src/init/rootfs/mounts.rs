//! One config.json mount at a time: bind mounts through open_tree, filesystems through
//! fsopen/fsmount, both attached with move_mount onto a target resolved inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::options::{self, MountOptions};
use super::resolve::{clean, Root};
use super::RootfsError;
use super::{cgroupfs, copyup};
use crate::sys::{self, AttrChange, FsContext};

/// What mounting needs to know beyond the mount entry itself.
pub struct MountCtx<'a> {
    pub bundle: &'a Path,
    pub new_cgroup_ns: bool,
}

/// Paths under /proc that runc lets a config mount over (lxcfs-style overrides).
const PROC_ALLOWED: [&str; 9] = [
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "proc/loadavg",
    "proc/slabinfo",
    "proc/sys/kernel/ns_last_pid",
];

/// Mounts entry `index` of `mounts`.
pub fn mount_one(root: &Root, m: &Mount, index: usize, ctx: &MountCtx) -> Result<(), RootfsError> {
    let dest = m.destination();
    let err = |source| RootfsError::Mount {
        index,
        dest: dest.clone(),
        source,
    };
    let opts = options::parse(m.options().as_deref().unwrap_or_default())
        .map_err(|e| RootfsError::Option { index, source: e })?;
    let typ = m.typ().as_deref().unwrap_or("");
    check_proc_dest(dest, typ).map_err(|()| RootfsError::ProcDest { dest: dest.clone() })?;
    let attached = match opts.bind {
        Some(recursive) => {
            let src = source_path(m, ctx.bundle);
            let meta = std::fs::metadata(&src).map_err(|source| RootfsError::Source {
                index,
                path: src.clone(),
                source,
            })?;
            bind(root, m, &src, meta.is_dir(), &opts, recursive).map_err(err)?
        }
        None if typ == "cgroup" || typ == "cgroup2" => {
            cgroupfs::mount(root, dest, &opts, ctx.new_cgroup_ns).map_err(err)?;
            return Ok(());
        }
        None => filesystem(root, m, typ, &opts).map_err(err)?,
    };
    for &(flag, recursive) in &opts.propagation {
        let change = AttrChange {
            propagation: flag,
            ..Default::default()
        };
        sys::set_mount_attr(attached.as_fd(), change, recursive).map_err(err)?;
    }
    Ok(())
}

fn check_proc_dest(dest: &Path, typ: &str) -> Result<(), ()> {
    let rel = clean(dest);
    if !rel.starts_with("proc") || (rel == Path::new("proc") && typ == "proc") {
        return Ok(());
    }
    if PROC_ALLOWED.iter().any(|p| rel == Path::new(p)) {
        return Ok(());
    }
    Err(())
}

fn source_path(m: &Mount, bundle: &Path) -> PathBuf {
    let src = m.source().clone().unwrap_or_default();
    if src.is_absolute() {
        src
    } else {
        bundle.join(src)
    }
}

/// A bind mount: a detached copy of the host source, with attributes set before it becomes
/// visible, moved onto the target.
fn bind(
    root: &Root,
    m: &Mount,
    src: &Path,
    is_dir: bool,
    opts: &MountOptions,
    recursive: bool,
) -> std::io::Result<OwnedFd> {
    let target = if is_dir {
        root.mkdir_all(m.destination())?
    } else {
        root.create_file(m.destination())?
    };
    let tree = sys::clone_tree(sys::cwd(), src, recursive)?;
    // Options such as `ro` apply to the top mount only, as runc's bind remount does: the
    // submounts an rbind brings keep their own flags (`rro` would be the recursive form).
    apply_attrs(tree.as_fd(), opts, false)?;
    sys::move_mount_fd(tree.as_fd(), target.as_fd())?;
    Ok(tree)
}

/// Sets the mount attributes of `opts` (if any) on the mount `fd`.
pub fn apply_attrs(
    fd: BorrowedFd<'_>,
    opts: &MountOptions,
    recursive: bool,
) -> std::io::Result<()> {
    if opts.attr_set == 0 && opts.attr_clear == 0 {
        return Ok(());
    }
    let change = AttrChange {
        set: opts.attr_set,
        clear: opts.attr_clear,
        propagation: 0,
    };
    sys::set_mount_attr(fd, change, recursive)
}

/// A new filesystem instance (tmpfs, proc, sysfs, devpts, mqueue, ...).
fn filesystem(root: &Root, m: &Mount, typ: &str, opts: &MountOptions) -> std::io::Result<OwnedFd> {
    if opts.tmpcopyup && typ != "tmpfs" {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let target = root.mkdir_all(m.destination())?;
    // Read the image's directory before the new filesystem hides it.
    let underlying = if opts.tmpcopyup {
        Some(copyup::readable(target.as_fd())?)
    } else {
        None
    };
    let source = m
        .source()
        .as_ref()
        .and_then(|s| s.to_str())
        .unwrap_or(typ)
        .to_owned();
    let detached = match new_fs(typ, &source, opts) {
        // sysfs cannot be mounted from a user namespace that does not own the network
        // namespace; like runc, fall back to a recursive bind of the host's /sys.
        Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
            let tree = sys::clone_tree(sys::cwd(), Path::new("/sys"), true)?;
            apply_attrs(tree.as_fd(), opts, true)?;
            tree
        }
        other => other?,
    };
    if let Some(src) = underlying {
        let dst = copyup::readable(detached.as_fd())?;
        copyup::copy_tree(src.as_fd(), dst.as_fd())?;
    }
    sys::move_mount_fd(detached.as_fd(), target.as_fd())?;
    Ok(detached)
}

/// Creates a detached mount of a new `typ` filesystem.
pub fn new_fs(typ: &str, source: &str, opts: &MountOptions) -> std::io::Result<OwnedFd> {
    let ctx = FsContext::open(typ)?;
    ctx.set_source(source)?;
    for d in &opts.data {
        ctx.set(d)?;
    }
    ctx.mount(opts.attr_set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_destinations() {
        assert!(check_proc_dest(Path::new("/proc"), "proc").is_ok());
        assert!(check_proc_dest(Path::new("/proc/meminfo"), "bind").is_ok());
        assert!(check_proc_dest(Path::new("/proc/self/fd"), "bind").is_err());
        assert!(check_proc_dest(Path::new("/proc/../proc/sys"), "tmpfs").is_err());
        assert!(check_proc_dest(Path::new("/tmp"), "tmpfs").is_ok());
    }
}
