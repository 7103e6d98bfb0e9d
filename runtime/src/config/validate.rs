//! Semantic checks of a parsed config: the rules runtime-spec states (and runc enforces)
//! that a JSON schema cannot express. Each failure names the JSON path of the field.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A rule broken by one field of config.json.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct Invalid {
    /// JSON path of the offending field, e.g. `linux.namespaces[2].type`.
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks `spec` against the rules hull relies on.
pub fn validate(spec: &Spec) -> Result<(), Invalid> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            "ociVersion",
            format!("unsupported version {:?}", spec.version()),
        ));
    }
    check_root(spec)?;
    check_process(spec)?;
    check_mounts(spec)?;
    let namespaces = check_namespaces(spec)?;
    check_linux(spec, &namespaces)
}

fn check_root(spec: &Spec) -> Result<(), Invalid> {
    match spec.root() {
        Some(root) if !root.path().as_os_str().is_empty() => Ok(()),
        _ => Err(invalid("root.path", "is required")),
    }
}

fn check_process(spec: &Spec) -> Result<(), Invalid> {
    match spec.process() {
        Some(p) => process(p),
        None => Err(invalid("process", "is required to create a container")),
    }
}

/// Checks a process (of a config, or of `exec -p`); fields are named `process.*`.
pub fn process(process: &oci_spec::runtime::Process) -> Result<(), Invalid> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args", "must name the program to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd", "must be an absolute path"));
    }
    let mut seen = Vec::new();
    for (i, rl) in process.rlimits().iter().flatten().enumerate() {
        if rl.soft() > rl.hard() {
            return Err(invalid(
                format!("process.rlimits[{i}]"),
                "soft limit exceeds hard limit",
            ));
        }
        if seen.contains(&rl.typ()) {
            return Err(invalid(
                format!("process.rlimits[{i}].type"),
                "duplicate rlimit type",
            ));
        }
        seen.push(rl.typ());
    }
    for (i, var) in process.env().iter().flatten().enumerate() {
        if !var.contains('=') || var.contains('\0') {
            return Err(invalid(
                format!("process.env[{i}]"),
                "must have the form NAME=value",
            ));
        }
    }
    Ok(())
}

fn check_mounts(spec: &Spec) -> Result<(), Invalid> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination().as_os_str().is_empty() {
            return Err(invalid(format!("mounts[{i}].destination"), "is required"));
        }
        let bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind");
        let typ = m.typ().as_deref().unwrap_or("");
        if !bind && typ.is_empty() {
            return Err(invalid(
                format!("mounts[{i}].type"),
                "is required unless the mount is a bind mount",
            ));
        }
        if bind && m.source().is_none() {
            return Err(invalid(
                format!("mounts[{i}].source"),
                "a bind mount needs a source",
            ));
        }
    }
    Ok(())
}

/// The namespaces the container gets, by type, with whether each is joined by path.
pub(crate) type NamespaceSet = Vec<(LinuxNamespaceType, bool)>;

fn check_namespaces(spec: &Spec) -> Result<NamespaceSet, Invalid> {
    let mut out: NamespaceSet = Vec::new();
    let Some(linux) = spec.linux() else {
        return Ok(out);
    };
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if out.iter().any(|(t, _)| *t == ns.typ()) {
            return Err(invalid(
                format!("linux.namespaces[{i}].type"),
                "duplicate namespace type",
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(
                    format!("linux.namespaces[{i}].path"),
                    "must be absolute",
                ));
            }
        }
        out.push((ns.typ(), ns.path().is_some()));
    }
    let has = |t| out.iter().any(|(x, _)| *x == t);
    let new_user = out
        .iter()
        .any(|(t, joined)| *t == LinuxNamespaceType::User && !joined);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !new_user {
        return Err(invalid(
            "linux.uidMappings",
            "id mappings need a new user namespace",
        ));
    }
    if new_user && !maps {
        return Err(invalid(
            "linux.uidMappings",
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if new_user {
        check_mapped(spec, linux)?;
    }
    if spec.hostname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "hostname",
            "setting a hostname needs a private UTS namespace",
        ));
    }
    if spec.domainname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "domainname",
            "setting a domainname needs a private UTS namespace",
        ));
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        return Err(invalid(
            "linux.timeOffsets",
            "time offsets need a time namespace",
        ));
    }
    Ok(out)
}

/// runc's check: the process's ids must exist in the new user namespace.
fn check_mapped(spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<(), Invalid> {
    let Some(user) = spec.process().as_ref().map(|p| p.user()) else {
        return Ok(());
    };
    let mapped = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32| {
        maps.iter().flatten().any(|m| {
            id >= m.container_id()
                && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
        })
    };
    if !mapped(linux.uid_mappings(), user.uid()) {
        let reason = format!(
            "uid {} is unmapped in the container's user namespace",
            user.uid()
        );
        return Err(invalid("process.user.uid", reason));
    }
    if !mapped(linux.gid_mappings(), user.gid()) {
        let reason = format!(
            "gid {} is unmapped in the container's user namespace",
            user.gid()
        );
        return Err(invalid("process.user.gid", reason));
    }
    for (i, g) in user.additional_gids().iter().flatten().enumerate() {
        if !mapped(linux.gid_mappings(), *g) {
            let reason = format!("gid {g} is unmapped in the container's user namespace");
            return Err(invalid(format!("process.user.additionalGids[{i}]"), reason));
        }
    }
    Ok(())
}

fn check_linux(spec: &Spec, ns: &NamespaceSet) -> Result<(), Invalid> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let has = |t| ns.iter().any(|(x, _)| *x == t);
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        check_sysctl(
            key,
            has(LinuxNamespaceType::Ipc),
            has(LinuxNamespaceType::Network),
            has(LinuxNamespaceType::Uts),
        )
        .map_err(|reason| invalid(format!("linux.sysctl.{key}"), reason))?;
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err(invalid(
                format!("linux.devices[{i}].path"),
                "must be an absolute path under /dev",
            ));
        }
    }
    for (name, paths) in [
        ("maskedPaths", linux.masked_paths()),
        ("readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in paths.iter().flatten().enumerate() {
            if !Path::new(p).is_absolute() {
                return Err(invalid(
                    format!("linux.{name}[{i}]"),
                    "must be an absolute path",
                ));
            }
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(
            p.as_str(),
            "private"
                | "rprivate"
                | "slave"
                | "rslave"
                | "shared"
                | "rshared"
                | "unbindable"
                | "runbindable"
        ) {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    Ok(())
}

/// runc's rule: a sysctl may only be set when it belongs to a namespace the container owns.
fn check_sysctl(key: &str, ipc: bool, net: bool, uts: bool) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.contains("..") || key.contains('/') && key.contains('.') && key.starts_with('/') {
        return Err("malformed sysctl name".into());
    }
    let ok = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        ipc
    } else if key.starts_with("net.") {
        net
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        uts
    } else {
        return Err("sysctl is not namespaced, so it cannot be set for one container".into());
    };
    if ok {
        Ok(())
    } else {
        Err("sysctl needs a private namespace of its kind".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const BASE: &str = r#""ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#;

    #[test]
    fn accepts_minimal() {
        validate(&spec(&format!("{{{BASE}}}"))).unwrap();
    }

    #[test]
    fn relative_cwd() {
        let s = spec(
            r#"{"ociVersion":"1.2.0","root":{"path":"r"},"process":{"cwd":"tmp","args":["sh"],"user":{"uid":0,"gid":0}}}"#,
        );
        assert_eq!(validate(&s).unwrap_err().field, "process.cwd");
    }

    #[test]
    fn hostname_without_uts() {
        let s = spec(&format!(
            r#"{{{BASE},"hostname":"x","linux":{{"namespaces":[{{"type":"pid"}}]}}}}"#
        ));
        assert_eq!(validate(&s).unwrap_err().field, "hostname");
    }

    #[test]
    fn duplicate_namespace() {
        let s = spec(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"pid"}}]}}}}"#
        ));
        assert_eq!(validate(&s).unwrap_err().field, "linux.namespaces[1].type");
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let s = spec(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"user"}}]}}}}"#
        ));
        assert_eq!(validate(&s).unwrap_err().field, "linux.uidMappings");
    }

    #[test]
    fn unmapped_uid() {
        let maps = r#""uidMappings":[{"containerID":0,"hostID":100000,"size":1000}],"gidMappings":[{"containerID":0,"hostID":100000,"size":1000}]"#;
        let ns = r#""namespaces":[{"type":"user"},{"type":"mount"}]"#;
        let ok = spec(&format!(r#"{{{BASE},"linux":{{{ns},{maps}}}}}"#));
        validate(&ok).unwrap();
        let bad =
            format!(r#"{{{BASE},"linux":{{{ns},{maps}}}}}"#).replace(r#""uid":0"#, r#""uid":1000"#);
        let e = validate(&spec(&bad)).unwrap_err();
        assert_eq!(e.field, "process.user.uid");
        assert!(e.reason.contains("1000"));
    }

    #[test]
    fn sysctl_rules() {
        assert!(check_sysctl("net.ipv4.ip_forward", true, true, true).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward", true, false, true).is_err());
        assert!(check_sysctl("kernel.shmmax", true, false, false).is_ok());
        assert!(check_sysctl("vm.swappiness", true, true, true).is_err());
    }

    #[test]
    fn rlimit_soft_above_hard() {
        let s = spec(
            r#"{"ociVersion":"1.2.0","root":{"path":"r"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]}}"#,
        );
        assert_eq!(validate(&s).unwrap_err().field, "process.rlimits[0]");
    }
}
