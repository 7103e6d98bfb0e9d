//! The `cgroup` mount type: the container's view of its cgroups under /sys/fs/cgroup.
//!
//! On cgroup v2 hosts this is one cgroup2 mount. On v1 (legacy or hybrid) hosts it is a
//! tmpfs holding one mount per hierarchy, as runc builds it. With a private cgroup
//! namespace each hierarchy is mounted fresh, so it shows the namespace root; without
//! one, the container's own cgroup directory of each hierarchy is bind-mounted.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::mounts::{apply_attrs, new_fs};
use super::options::MountOptions;
use super::resolve::Root;
use crate::sys;

/// A v1 hierarchy mounted on the host.
#[derive(Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// Host mount point, e.g. /sys/fs/cgroup/cpu.
    pub mount_point: PathBuf,
    /// Controllers or `name=` option, e.g. ["cpu"] or ["name=systemd"].
    pub options: Vec<String>,
}

/// Mounts the cgroup filesystem at `dest`.
pub fn mount(root: &Root, dest: &Path, opts: &MountOptions, new_ns: bool) -> io::Result<()> {
    let target = root.mkdir_all(dest)?;
    let unified =
        sys::fs_magic(sys::open_path(Path::new("/sys/fs/cgroup"), libc::O_PATH)?.as_fd())?
            == libc::CGROUP2_SUPER_MAGIC;
    let own = own_cgroups()?;
    if unified {
        let tree = if new_ns {
            new_fs("cgroup2", "cgroup2", opts)?
        } else {
            // /proc/self/cgroup paths are absolute; joined as-is they would replace the base.
            let rel = own.get("").cloned().unwrap_or_default();
            let rel = rel.strip_prefix("/").unwrap_or(&rel);
            bind_tree(&Path::new("/sys/fs/cgroup").join(rel), opts)?
        };
        return sys::move_mount_fd(tree.as_fd(), target.as_fd());
    }
    let mut tmpfs_opts = opts.clone();
    tmpfs_opts.data = vec!["mode=755".into()];
    tmpfs_opts.attr_set &= !sys::MOUNT_ATTR_RDONLY;
    let tmpfs = new_fs("tmpfs", "tmpfs", &tmpfs_opts)?;
    sys::move_mount_fd(tmpfs.as_fd(), target.as_fd())?;
    for h in v1_hierarchies()? {
        let Some(name) = h.mount_point.file_name() else {
            continue;
        };
        let sub = root.mkdir_all(&dest.join(name))?;
        let tree = if new_ns {
            let fs_opts = MountOptions {
                data: h.options.clone(),
                ..opts.clone()
            };
            new_fs("cgroup", "cgroup", &fs_opts)?
        } else {
            let key = h.options.join(",");
            let rel = own.get(&key).cloned().unwrap_or_default();
            bind_tree(
                &h.mount_point.join(rel.strip_prefix("/").unwrap_or(&rel)),
                opts,
            )?
        };
        sys::move_mount_fd(tree.as_fd(), sub.as_fd())?;
    }
    apply_attrs(tmpfs.as_fd(), opts, false)
}

fn bind_tree(path: &Path, opts: &MountOptions) -> io::Result<std::os::fd::OwnedFd> {
    let tree = sys::clone_tree(sys::cwd(), path, false)?;
    apply_attrs(tree.as_fd(), opts, false)?;
    Ok(tree)
}

/// The v1 hierarchies of the host, from /proc/self/mountinfo.
pub fn v1_hierarchies() -> io::Result<Vec<Hierarchy>> {
    Ok(parse_hierarchies(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        if !mount_point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let options = super_opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
            .filter(|o| !o.starts_with("clone_children") && !o.starts_with("xattr"))
            .map(str::to_owned)
            .collect();
        out.push(Hierarchy {
            mount_point: PathBuf::from(mount_point),
            options,
        });
    }
    out
}

/// This process's cgroup per hierarchy, keyed by the comma-joined controller list of
/// /proc/self/cgroup ("" for v2).
fn own_cgroups() -> io::Result<std::collections::HashMap<String, PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?.to_owned();
            Some((ctrls, PathBuf::from(parts.next()?)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_hierarchies() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n\
                  31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let h = parse_hierarchies(mi);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].options, vec!["cpu"]);
        assert_eq!(h[1].options, vec!["name=systemd"]);
    }
}
