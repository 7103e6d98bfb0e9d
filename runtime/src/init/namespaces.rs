//! Namespace plan: which namespaces the init is cloned into, which it joins by path, and
//! which it unshares itself after the parent has placed it in its cgroup.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// How each namespace type is obtained.
#[derive(Debug, Default, Clone)]
pub struct NsPlan {
    /// `CLONE_NEW*` flags for clone3 (user, pid, mount, net, ipc, uts).
    pub clone_flags: u64,
    /// Namespaces to join in the init, user namespace first.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
    /// pid namespace to enter for children, joined by the parent before cloning.
    pub join_pid: Option<PathBuf>,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub new_pid: bool,
    pub new_mount: bool,
    /// No mount namespace at all: the container shares the host's, as runc allows. Its
    /// mounts are then made on the host, under the rootfs, and removed by `delete`.
    pub host_mount: bool,
}

/// Failures planning or entering namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("cannot open {kind} namespace {path}")]
    Open {
        kind: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot join {kind} namespace {path}")]
    Join {
        kind: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create a {kind} namespace")]
    Unshare {
        kind: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("a new user namespace combined with joining an existing {kind} namespace is not supported yet: join the user namespace too")]
    UserWithJoin { kind: String },
}

fn flag(t: LinuxNamespaceType) -> u64 {
    let f = match t {
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => return 0x80,
    };
    f.bits() as u64
}

/// Works out the namespace plan for `spec`.
pub fn plan(spec: &Spec) -> Result<NsPlan, NsError> {
    let mut p = NsPlan::default();
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &list {
        let t = ns.typ();
        match (ns.path(), t) {
            (Some(path), LinuxNamespaceType::Pid) => p.join_pid = Some(path.clone()),
            (Some(path), LinuxNamespaceType::User) => p.join.insert(0, (t, path.clone())),
            (Some(path), _) => p.join.push((t, path.clone())),
            (None, LinuxNamespaceType::Cgroup) => p.new_cgroup = true,
            (None, LinuxNamespaceType::Time) => p.new_time = true,
            (None, _) => p.clone_flags |= flag(t),
        }
        match (ns.path(), t) {
            (None, LinuxNamespaceType::User) => p.new_user = true,
            (None, LinuxNamespaceType::Pid) => p.new_pid = true,
            (None, LinuxNamespaceType::Mount) => p.new_mount = true,
            _ => {}
        }
    }
    let joined_mount = p.join.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount);
    p.host_mount = !p.new_mount && !joined_mount;
    if p.new_user {
        if let Some((t, _)) = p.join.first() {
            return Err(NsError::UserWithJoin {
                kind: t.to_string(),
            });
        }
    }
    Ok(p)
}

/// Opens each namespace to join, so a bad path fails early with its name.
pub fn open_joins(p: &NsPlan) -> Result<Vec<(LinuxNamespaceType, PathBuf, File)>, NsError> {
    p.join
        .iter()
        .map(|(t, path)| {
            File::open(path)
                .map(|f| (*t, path.clone(), f))
                .map_err(|source| NsError::Open {
                    kind: t.to_string(),
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// Joins the opened namespaces (user first, as ordered by [`plan`]).
pub fn join(opened: &[(LinuxNamespaceType, PathBuf, File)]) -> Result<(), NsError> {
    for (t, path, f) in opened {
        let flags = CloneFlags::from_bits_truncate(flag(*t) as i32);
        nix::sched::setns(f, flags).map_err(|e| NsError::Join {
            kind: t.to_string(),
            path: path.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Joins the pid namespace at `path` for our future children (parent side).
pub fn join_pid_for_children(path: &PathBuf) -> Result<(), NsError> {
    let f = File::open(path).map_err(|source| NsError::Open {
        kind: "pid".into(),
        path: path.clone(),
        source,
    })?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWPID).map_err(|e| NsError::Join {
        kind: "pid".into(),
        path: path.clone(),
        source: e.into(),
    })
}

/// Unshares the namespaces that must be created after the cgroup is joined (cgroup) or
/// that take effect at execve (time).
pub fn unshare_late(p: &NsPlan) -> Result<(), NsError> {
    if p.new_cgroup {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| NsError::Unshare {
            kind: "cgroup",
            source: e.into(),
        })?;
    }
    if p.new_time {
        nix::sched::unshare(CloneFlags::from_bits_retain(0x80)).map_err(|e| NsError::Unshare {
            kind: "time",
            source: e.into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str) -> Spec {
        let json = format!(r#"{{"ociVersion":"1.2.0","linux":{{"namespaces":{ns}}}}}"#);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn plans_new_and_joined() {
        let p = plan(&spec(r#"[{"type":"mount"},{"type":"pid"},{"type":"cgroup"},{"type":"network","path":"/proc/1/ns/net"}]"#)).unwrap();
        assert_eq!(
            p.clone_flags,
            (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64
        );
        assert!(p.new_cgroup && p.new_pid && !p.new_user);
        assert_eq!(p.join.len(), 1);
    }

    #[test]
    fn user_joined_first() {
        let p = plan(&spec(
            r#"[{"type":"mount"},{"type":"ipc","path":"/a"},{"type":"user","path":"/b"}]"#,
        ))
        .unwrap();
        assert_eq!(p.join[0].0, LinuxNamespaceType::User);
    }

    #[test]
    fn no_mount_namespace_means_the_hosts() {
        assert!(plan(&spec(r#"[{"type":"pid"}]"#)).unwrap().host_mount);
        assert!(
            !plan(&spec(r#"[{"type":"mount","path":"/x"}]"#))
                .unwrap()
                .host_mount
        );
    }

    #[test]
    fn new_user_with_join_is_refused() {
        let r = plan(&spec(
            r#"[{"type":"mount"},{"type":"user"},{"type":"network","path":"/x"}]"#,
        ));
        assert!(matches!(r, Err(NsError::UserWithJoin { .. })));
    }
}
