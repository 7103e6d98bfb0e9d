//! `spec`: a default config.json like runc's, for the busybox-style bundle layout
//! (`rootfs/` beside config.json).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::CmdError;

const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": typ, "source": src, "options": opts})
}

/// runc's default mounts; a rootless container binds the host's /sys and has no cgroup
/// mount or devpts gid (it cannot map gid 5).
fn default_mounts(rootless: bool) -> Vec<Value> {
    let devpts: &[&str] = if rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    if rootless {
        mounts.push(mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        ));
    } else {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
        let cgroup = ["nosuid", "noexec", "nodev", "relatime", "ro"];
        mounts.push(mount("/sys/fs/cgroup", "cgroup", "cgroup", &cgroup));
    }
    mounts
}

/// The `linux` section: namespaces, masked and read-only paths, and either the
/// device cgroup rule or, rootless, the id mappings of the caller.
fn default_linux(rootless: bool) -> Value {
    let mut namespaces = vec!["pid", "network", "ipc", "uts", "mount"];
    let mut linux = json!({
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    });
    if rootless {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        namespaces.retain(|n| *n != "network");
        namespaces.push("user");
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    } else {
        linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }
    let namespaces: Vec<Value> = namespaces.iter().map(|t| json!({"type": t})).collect();
    linux["namespaces"] = json!(namespaces);
    linux
}

/// The default configuration; `rootless` maps the caller to root in a user namespace.
pub fn default_spec(rootless: bool) -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "hull",
        "mounts": default_mounts(rootless),
        "linux": default_linux(rootless)
    })
}

/// Writes config.json into `bundle` (default: the current directory); never overwrites.
pub fn write(bundle: Option<&Path>, rootless: bool) -> Result<(), CmdError> {
    let path = bundle.unwrap_or(Path::new(".")).join("config.json");
    let err = |source| CmdError::Write {
        path: path.clone(),
        source,
    };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CmdError::Exists { path: path.clone() })
        }
        other => other.map_err(err)?,
    };
    let text = serde_json::to_string_pretty(&default_spec(rootless)).expect("serialises") + "\n";
    f.write_all(text.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_specs_validate() {
        for rootless in [false, true] {
            let text = default_spec(rootless).to_string();
            crate::config::parse(text.as_bytes(), Path::new("config.json")).unwrap();
        }
    }
}
