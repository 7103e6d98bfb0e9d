//! Which namespace a sysctl belongs to, and writing it through `/proc/sys`.
//!
//! Only namespaced sysctls are accepted: `net.*` (network namespace) and the IPC ones
//! Kubernetes lists as namespaced (`kernel.shm*`, `kernel.msg*`, `kernel.sem`,
//! `fs.mqueue.*`). Anything else would change the host and is refused. Files under
//! `/proc/sys/net` and the IPC files follow the namespaces of the process that opens them,
//! so writing them from inside the new namespaces changes only the pod's copy.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

/// The namespace that owns a sysctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlNs {
    /// `net.*`.
    Net,
    /// `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`.
    Ipc,
}

impl SysctlNs {
    /// The flag of `hull-cri-pinns` that creates this namespace.
    pub fn flag(self) -> &'static str {
        match self {
            SysctlNs::Net => "--net",
            SysctlNs::Ipc => "--ipc",
        }
    }
}

/// Why a sysctl name is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SysctlNameError {
    /// Empty components, `.`/`..`, or a NUL byte.
    #[error("sysctl {0:?}: malformed name")]
    Malformed(String),
    /// Not in a namespace pinns creates: it would change the host.
    #[error("sysctl {0:?}: not a namespaced sysctl (only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)")]
    NotNamespaced(String),
}

/// The components of a sysctl name. `a.b.c` and `a/b/c` are both accepted; with slashes,
/// dots stay inside a component (an interface name like `eth0.100`), as sysctl(8) does.
fn components(name: &str) -> Result<Vec<&str>, SysctlNameError> {
    let parts: Vec<&str> = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    let bad = |p: &&str| p.is_empty() || *p == "." || *p == ".." || p.contains('\0');
    if parts.iter().any(bad) {
        return Err(SysctlNameError::Malformed(name.to_owned()));
    }
    Ok(parts)
}

/// The namespace owning `name`, and its file under `/proc/sys`.
pub fn classify(name: &str) -> Result<(SysctlNs, PathBuf), SysctlNameError> {
    let parts = components(name)?;
    let ns = match parts.as_slice() {
        ["net", _, ..] => SysctlNs::Net,
        ["kernel", leaf]
            if leaf.starts_with("shm") || leaf.starts_with("msg") || *leaf == "sem" =>
        {
            SysctlNs::Ipc
        }
        ["fs", "mqueue", _] => SysctlNs::Ipc,
        _ => return Err(SysctlNameError::NotNamespaced(name.to_owned())),
    };
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok((ns, path))
}

/// Writes `value` to the sysctl file `path` of the calling process's namespaces.
pub fn write(path: &std::path::Path, value: &str) -> io::Result<()> {
    if value.contains('\n') || value.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "value contains a newline or NUL",
        ));
    }
    // No O_CREAT: a sysctl that does not exist in this namespace must fail (ENOENT).
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_sysctls() {
        let (ns, p) = classify("net.ipv4.ip_unprivileged_port_start").unwrap();
        assert_eq!(ns, SysctlNs::Net);
        assert_eq!(
            p,
            PathBuf::from("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        );
        assert_eq!(classify("kernel.shmmax").unwrap().0, SysctlNs::Ipc);
        assert_eq!(classify("kernel.msgmnb").unwrap().0, SysctlNs::Ipc);
        assert_eq!(classify("kernel.sem").unwrap().0, SysctlNs::Ipc);
        assert_eq!(classify("fs.mqueue.msg_max").unwrap().0, SysctlNs::Ipc);
        let (_, p) = classify("net/ipv4/conf/eth0.100/rp_filter").unwrap();
        assert_eq!(
            p,
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
    }

    #[test]
    fn host_wide_and_malformed_refused() {
        for name in [
            "vm.overcommit_memory",
            "kernel.pid_max",
            "fs.file-max",
            "kernel.semx",
        ] {
            assert!(
                matches!(classify(name), Err(SysctlNameError::NotNamespaced(_))),
                "{name}"
            );
        }
        for name in ["net..ipv4", "net/../../etc", "", "net.ipv4.", "net"] {
            assert!(classify(name).is_err(), "{name}");
        }
        assert!(matches!(
            classify("net/.."),
            Err(SysctlNameError::Malformed(_))
        ));
    }

    #[test]
    fn value_with_newline_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "").unwrap();
        assert!(write(&p, "1\n2").is_err());
        assert!(write(&d.path().join("missing"), "1").is_err());
    }
}
