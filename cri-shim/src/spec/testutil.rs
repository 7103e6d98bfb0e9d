//! Fixtures shared by the spec tests.

use std::path::PathBuf;

use super::HostFacts;
use crate::api;

/// A host without AppArmor or SELinux, on cgroup v1, with 41 capabilities.
pub fn host() -> HostFacts {
    HostFacts {
        apparmor_enabled: false,
        apparmor_profiles: Vec::new(),
        selinux_enabled: false,
        cgroup_v2: false,
        cap_last_cap: 40,
        cap_bounding: u64::MAX,
        hostname: "node1".into(),
        dev_dir: PathBuf::from("/dev"),
        mountinfo: PathBuf::from("/proc/self/mountinfo"),
        hugetlb_cgroup: true,
        hugepages: Vec::new(),
        min_oom_score_adj: -1000,
    }
}

/// A pod named `web` in namespace `default` with hostname `pod-host`.
pub fn pod_config() -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "pod-host".into(),
        ..Default::default()
    }
}

/// A rootfs with the accounts the tests resolve: root (member of wheel), www-data 33
/// (member of predef 50000), nobody 65534, predefined 1000 (primary group 50000).
pub fn fake_rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "# accounts\nroot:x:0:0:root:/root:/bin/sh\nbroken line\n\
         www-data:x:33:33:www-data:/var/www:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n\
         predefined:x:1000:50000::/home/p:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\nwheel:x:10:root\nwww-data:x:33:\nstaff:x:50:\n\
         predef:x:50000:www-data\nnogroup:x:65534:\n",
    )
    .unwrap();
    d
}
