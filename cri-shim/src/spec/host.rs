//! Facts about the host that change the spec, read once so the translation itself can be
//! tested with any combination of them.

use std::path::{Path, PathBuf};

/// What the host offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// AppArmor is enabled (`/sys/module/apparmor/parameters/enabled` reads `Y`), the test
    /// hull applies before writing a profile.
    pub apparmor_enabled: bool,
    /// AppArmor profiles loaded in the kernel, by name.
    pub apparmor_profiles: Vec<String>,
    /// SELinux is enabled (`/sys/fs/selinux/enforce` exists).
    pub selinux_enabled: bool,
    /// `/sys/fs/cgroup` is the cgroup v2 unified hierarchy.
    pub cgroup_v2: bool,
    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub cap_last_cap: u32,
    /// hull-cri's capability bounding set (`CapBnd` in `/proc/self/status`). The runtime it
    /// starts, running as root, gets exactly these, so a container can be given no others:
    /// on a host (or in an outer container) that withholds one, asking for it fails capset.
    pub cap_bounding: u64,
    /// The host's hostname, the `HOSTNAME` of a host-network pod without one.
    pub hostname: String,
    /// The directory whose device nodes a privileged container gets (`/dev`).
    pub dev_dir: PathBuf,
    /// The mount table consulted for propagation checks (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// The hugetlb cgroup controller is mounted (v1) or available (v2).
    pub hugetlb_cgroup: bool,
    /// Hugepages the host can hand out, by CRI page size (`2MB`): preallocated plus
    /// overcommit pages, in bytes.
    pub hugepages: Vec<(String, u64)>,
    /// The lowest oom_score_adj containers can get: -1000 with CAP_SYS_RESOURCE, else
    /// hull-cri's own value, below which the kernel refuses to go without that capability.
    pub min_oom_score_adj: i32,
}

/// The AppArmor profile RuntimeDefault maps to, when loaded.
pub const HULL_APPARMOR_PROFILE: &str = "hull-default";

impl HostFacts {
    /// Reads the facts of this host.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let apparmor_enabled = Path::new("/sys/kernel/security/apparmor").is_dir()
            && read("/sys/module/apparmor/parameters/enabled").trim() == "Y";
        // Lines are `name (mode)`; a profile name may itself contain spaces.
        let apparmor_profiles = read("/sys/kernel/security/apparmor/profiles")
            .lines()
            .filter_map(|l| l.rsplit_once(" (").map(|(name, _)| name.to_string()))
            .collect();
        Self {
            apparmor_enabled,
            apparmor_profiles,
            selinux_enabled: Path::new("/sys/fs/selinux/enforce").exists(),
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            // 40 (CAP_CHECKPOINT_RESTORE) is the last one of Linux 5.9 to 6.x.
            cap_last_cap: read("/proc/sys/kernel/cap_last_cap")
                .trim()
                .parse()
                .unwrap_or(40),
            cap_bounding: cap_bounding(&read("/proc/self/status")),
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            dev_dir: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            hugetlb_cgroup: hugetlb_controller(
                &read("/proc/self/mountinfo"),
                &read("/sys/fs/cgroup/cgroup.controllers"),
            ),
            hugepages: hugepage_pools(Path::new("/sys/kernel/mm/hugepages")),
            min_oom_score_adj: min_oom_score_adj(
                &read("/proc/self/status"),
                &read("/proc/self/oom_score_adj"),
            ),
        }
    }

    /// Bytes of `page_size` hugepages the host can give at most (0 for an unknown size).
    pub fn hugepage_capacity(&self, page_size: &str) -> u64 {
        self.hugepages
            .iter()
            .find(|(s, _)| s == page_size)
            .map_or(0, |(_, b)| *b)
    }
}

/// The `CapBnd` mask of a `/proc/<pid>/status` text; every bit when the line is missing or
/// malformed (the kernel then decides, as before this fact was read).
fn cap_bounding(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX)
}

/// -1000 when the effective capabilities (`CapEff` of /proc/self/status) hold
/// CAP_SYS_RESOURCE (24), else the current oom_score_adj.
fn min_oom_score_adj(status: &str, current: &str) -> i32 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        -1000
    } else {
        current.trim().parse().unwrap_or(0)
    }
}

/// True when a v1 `cgroup` mount carries the hugetlb controller, or the v2 root lists it.
fn hugetlb_controller(mountinfo: &str, v2_controllers: &str) -> bool {
    v2_controllers.split_whitespace().any(|c| c == "hugetlb")
        || mountinfo.lines().any(|l| {
            let Some((_, post)) = l.split_once(" - ") else {
                return false;
            };
            let f: Vec<&str> = post.split_whitespace().collect();
            f.first() == Some(&"cgroup")
                && f.get(2)
                    .is_some_and(|o| o.split(',').any(|x| x == "hugetlb"))
        })
}

/// The pools under /sys/kernel/mm/hugepages (`hugepages-2048kB/nr_hugepages`, …) as CRI
/// page sizes with their capacity in bytes.
fn hugepage_pools(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let num = |p: PathBuf| -> u64 {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|r| r.strip_suffix("kB"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let pages =
            num(e.path().join("nr_hugepages")) + num(e.path().join("nr_overcommit_hugepages"));
        out.push((cri_page_size(kb), pages * kb * 1024));
    }
    out
}

/// `2048` (kB) → `2MB`, `1048576` → `1GB`, as kubelet names page sizes.
fn cri_page_size(kb: u64) -> String {
    if kb.is_multiple_of(1024 * 1024) {
        format!("{}GB", kb / (1024 * 1024))
    } else if kb.is_multiple_of(1024) {
        format!("{}MB", kb / 1024)
    } else {
        format!("{kb}KB")
    }
}

#[cfg(test)]
mod hugepage_tests {
    use super::*;

    #[test]
    fn the_oom_floor_depends_on_cap_sys_resource() {
        // This machine's root: every capability but CAP_SYS_RESOURCE.
        assert_eq!(min_oom_score_adj("CapEff:\t000001fffeffffff\n", "0\n"), 0);
        assert_eq!(
            min_oom_score_adj("CapEff:\t000001ffffffffff\n", "0\n"),
            -1000
        );
        assert_eq!(min_oom_score_adj("CapEff:\t0\n", "-500"), -500);
    }

    #[test]
    fn page_sizes_are_named_as_kubelet_does() {
        assert_eq!(cri_page_size(2048), "2MB");
        assert_eq!(cri_page_size(1048576), "1GB");
        assert_eq!(cri_page_size(64), "64KB");
    }

    #[test]
    fn the_bounding_set_is_read_from_proc_status() {
        let status = "Name:\tx\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(cap_bounding(status), 0x1ff_feff_ffff);
        assert_eq!(cap_bounding("Name:\tx\n"), u64::MAX);
        assert_eq!(cap_bounding("CapBnd:\tzz\n"), u64::MAX);
    }

    #[test]
    fn the_hugetlb_controller_is_found_in_v1_mounts_or_v2_controllers() {
        let v1 = "35 25 0:30 / /sys/fs/cgroup/hugetlb rw,nosuid - cgroup cgroup rw,hugetlb\n";
        assert!(hugetlb_controller(v1, ""));
        let other = "35 25 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert!(!hugetlb_controller(other, ""));
        assert!(hugetlb_controller("", "cpu memory hugetlb pids"));
    }
}
