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
    /// The host's hostname, the `HOSTNAME` of a host-network pod without one.
    pub hostname: String,
    /// The directory whose device nodes a privileged container gets (`/dev`).
    pub dev_dir: PathBuf,
    /// The mount table consulted for propagation checks (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
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
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            dev_dir: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
        }
    }
}
