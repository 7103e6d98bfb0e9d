//! `features`: what this build of hull implements, in runtime-spec features.md's shape.
//! Every entry is true to the code: a feature is listed only once it works.

use super::{print, CmdError};

/// Mount options [`crate::init`] understands.
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "exec",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "relatime",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "ro",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "unbindable",
];

pub fn features_json() -> serde_json::Value {
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false },
            "seccomp": crate::seccomp::features(),
            "apparmor": { "enabled": crate::apparmor::is_enabled() },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.hull.version": env!("CARGO_PKG_VERSION")
        }
    })
}

pub fn print_features() -> Result<(), CmdError> {
    let json = serde_json::to_string_pretty(&features_json()).expect("serialises");
    print(&(json + "\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let f = super::features_json();
        assert_eq!(f["ociVersionMax"], "1.3.0");
        assert!(f["linux"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(f["hooks"].as_array().unwrap().len(), 6);
    }
}
