//! The container's place in the cgroup v1 hierarchies (legacy and hybrid hosts), written
//! directly: the directories, the join, cpuset's inherited masks, removal.
//!
//! libcgroups' v1 manager resolves every controller's mount point and the runtime's own
//! cgroup separately, each through a freshly verified procfs handle: on this kind of host
//! that was about 750 system calls and 3 ms of CPU per `run`, more than a third of hull's
//! whole cost. One read of /proc/self/mountinfo gives every hierarchy at once. libcgroups
//! still applies the resource limits (see `Cgroup::apply_limits`); placement is done here.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One mounted v1 hierarchy (or the controller-less cgroup2 mount of a hybrid host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// The controllers bound to it (`cpu`, `cpuacct`, …; `name=systemd` for a named one).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Every v1 hierarchy in `mountinfo`, each once (a hierarchy bind-mounted twice has one
/// device number), plus the hybrid host's cgroup2 mount, which runc joins too so that
/// the container's /proc/self/cgroup shows its own cgroup on the `0::` line.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut l = left.split(' ');
        let (Some(dev), Some(mount)) = (l.nth(2), l.nth(1)) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        let controllers = match fstype {
            "cgroup" => super_opts
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "noprefix" | "clone_children"))
                .filter(|o| !o.starts_with("release_agent="))
                .map(str::to_owned)
                .collect(),
            "cgroup2" if mount == "/sys/fs/cgroup/unified" => Vec::new(),
            _ => continue,
        };
        if seen.contains(&dev) {
            continue;
        }
        seen.push(dev);
        out.push(Hierarchy {
            mount: PathBuf::from(unescape(mount)),
            controllers,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates `dir` and its missing parents. In the cpuset hierarchy each new level first
/// gets its parent's cpus and mems: a v1 cpuset starts empty, and a task cannot join
/// one, nor can a child be given more than its parent has.
pub fn create(dir: &Path, cpuset: bool) -> std::io::Result<()> {
    if !cpuset {
        return std::fs::create_dir_all(dir);
    }
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        at = match at.parent() {
            Some(p) => p,
            None => break,
        };
    }
    for level in missing.into_iter().rev() {
        match std::fs::create_dir(level) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if let Some(parent) = level.parent() {
            inherit_cpuset(level, parent)?;
        }
    }
    Ok(())
}

/// Gives the cpuset `level` its parent's cpus and mems where its own are empty.
fn inherit_cpuset(level: &Path, parent: &Path) -> std::io::Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(level.join(file))?;
        if own.trim().is_empty() {
            let inherited = std::fs::read_to_string(parent.join(file))?;
            std::fs::write(level.join(file), inherited.trim())?;
        }
    }
    Ok(())
}

/// Every pid in `dir` and the cgroups below it (a container may make its own).
pub fn pids(dir: &Path) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.extend(pids(&e.path())?);
        }
    }
    Ok(out)
}

/// Removes `dir` and the cgroups below it, killing what still runs there. rmdir fails
/// with EBUSY until killed tasks have left, so it is retried for about a second.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        r => r?,
    };
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            remove(&e.path())?;
        }
    }
    let mut delay = Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_secs(1) => {
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 25 0:29 / /mnt/cpu\\040again rw,relatime - cgroup cgroup rw,cpu
43 25 0:39 / /mnt/other2 rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn every_hierarchy_once_with_its_controllers() {
        let h = hierarchies(MOUNTINFO);
        let names: Vec<_> = h.iter().map(|h| h.mount.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/net_cls,net_prio",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
        );
        assert_eq!(h[2].controllers, ["cpuset"]);
        assert_eq!(h[3].controllers, ["net_cls", "net_prio"]);
        assert_eq!(h[4].controllers, ["name=systemd"]);
        assert!(h[5].controllers.is_empty());
        assert!(h[3].has("net_prio") && !h[3].has("cpu"));
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(unescape("/plain\\0x"), "/plain\\0x");
    }

    #[test]
    fn empty_cpuset_masks_are_inherited_and_set_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let child = tmp.path().join("c");
        std::fs::create_dir(&child).unwrap();
        std::fs::write(tmp.path().join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(tmp.path().join("cpuset.mems"), "0\n").unwrap();
        std::fs::write(child.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(child.join("cpuset.mems"), "1\n").unwrap();
        inherit_cpuset(&child, tmp.path()).unwrap();
        let read = |f: &str| std::fs::read_to_string(child.join(f)).unwrap();
        assert_eq!(
            (read("cpuset.cpus").as_str(), read("cpuset.mems").as_str()),
            ("0-3", "1\n")
        );
        // A parent without the files (not a cpuset) is an error naming the file's absence.
        std::fs::write(child.join("cpuset.cpus"), "").unwrap();
        let err = inherit_cpuset(&child, &tmp.path().join("nowhere")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn removal_takes_nested_cgroups_and_tolerates_absence() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir_all(dir.join("inner/deeper")).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }
}
