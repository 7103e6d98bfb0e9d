//! `linux.namespaces`: which of the pod's namespaces a container joins and which it gets
//! new. No entry for a type means the host's namespace of that type.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType as Ns};

use super::{built, HostFacts, PodContext, SpecError};
use crate::api::{self, NamespaceMode};

const NS_OPTS: &str = "linux.security_context.namespace_options";

/// The container's namespace modes, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modes {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    pub target_id: String,
    /// The container shares the host's network namespace.
    pub host_network: bool,
}

fn mode(field: &str, v: i32) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(v)
        .map_err(|_| SpecError::invalid(format!("{NS_OPTS}.{field}"), v, "unknown namespace mode"))
}

/// Decodes the namespace options (all POD when absent).
pub fn modes(sc: &api::LinuxContainerSecurityContext) -> Result<Modes, SpecError> {
    let o = sc.namespace_options.clone().unwrap_or_default();
    let network = mode("network", o.network)?;
    let m = Modes {
        network,
        pid: mode("pid", o.pid)?,
        ipc: mode("ipc", o.ipc)?,
        target_id: o.target_id,
        host_network: network == NamespaceMode::Node,
    };
    // Kubernetes has no per-container network or IPC target; a container network
    // namespace would leave the container without the pod's network.
    if matches!(m.network, NamespaceMode::Container | NamespaceMode::Target) {
        return Err(SpecError::unsupported(
            format!("{NS_OPTS}.network"),
            m.network.as_str_name(),
        ));
    }
    if m.ipc == NamespaceMode::Target {
        return Err(SpecError::unsupported(format!("{NS_OPTS}.ipc"), "TARGET"));
    }
    if m.pid == NamespaceMode::Target && m.target_id.is_empty() {
        return Err(SpecError::invalid(
            format!("{NS_OPTS}.target_id"),
            "",
            "PID mode TARGET needs a target container id",
        ));
    }
    Ok(m)
}

fn ns(typ: Ns, path: Option<&Path>) -> Result<LinuxNamespace, SpecError> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    built("linux.namespaces", b.build())
}

/// Joins the pod's namespace of a kind when it has one (POD mode), none for NODE (or a
/// pod on the host's), a new one for CONTAINER.
fn pod_or(
    typ: Ns,
    m: NamespaceMode,
    pod_path: &Option<PathBuf>,
) -> Result<Option<LinuxNamespace>, SpecError> {
    match m {
        NamespaceMode::Node => Ok(None),
        NamespaceMode::Container => ns(typ, None).map(Some),
        _ => pod_path.as_deref().map(|p| ns(typ, Some(p))).transpose(),
    }
}

/// Builds `linux.namespaces`. `target_pid` finds the init pid of the TARGET container.
pub fn build(
    pod: &PodContext,
    m: &Modes,
    sc: &api::LinuxContainerSecurityContext,
    host: &HostFacts,
    target_pid: &dyn Fn(&str) -> Option<u32>,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let pid = if m.pid == NamespaceMode::Target {
        let pid = target_pid(&m.target_id).ok_or_else(|| SpecError::TargetNotRunning {
            id: m.target_id.clone(),
        })?;
        Some(ns(
            Ns::Pid,
            Some(&PathBuf::from(format!("/proc/{pid}/ns/pid"))),
        )?)
    } else {
        pod_or(Ns::Pid, m.pid, &pod.ns.pid)?
    };
    let net = pod_or(Ns::Network, m.network, &pod.ns.net)?;
    let ipc = pod_or(Ns::Ipc, m.ipc, &pod.ns.ipc)?;
    // The UTS namespace always follows the pod's (the host's for a host-network pod).
    let uts = pod_or(Ns::Uts, NamespaceMode::Pod, &pod.ns.uts)?;
    let mut out: Vec<LinuxNamespace> = [pid, ipc, uts].into_iter().flatten().collect();
    out.push(ns(Ns::Mount, None)?);
    out.extend(net);
    // containerd gives a cgroup namespace on a cgroup v2 host to non-privileged
    // containers only; on v1 the container sees its cgroup paths through the bind mounts.
    if host.cgroup_v2 && !sc.privileged {
        out.push(ns(Ns::Cgroup, None)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{host, pod_config};
    use crate::spec::{PodFiles, PodNamespaces};

    fn sc(
        net: NamespaceMode,
        pid: NamespaceMode,
        ipc: NamespaceMode,
        target: &str,
    ) -> api::LinuxContainerSecurityContext {
        api::LinuxContainerSecurityContext {
            namespace_options: Some(api::NamespaceOption {
                network: net as i32,
                pid: pid as i32,
                ipc: ipc as i32,
                target_id: target.into(),
                userns_options: None,
            }),
            ..Default::default()
        }
    }

    fn render(list: &[LinuxNamespace]) -> Vec<String> {
        list.iter()
            .map(|n| match n.path() {
                Some(p) => format!("{}={}", n.typ(), p.display()),
                None => n.typ().to_string(),
            })
            .collect()
    }

    fn run(
        pod_ns: PodNamespaces,
        s: &api::LinuxContainerSecurityContext,
        v2: bool,
    ) -> Result<Vec<String>, SpecError> {
        let cfg = pod_config();
        let pod = PodContext {
            id: "p",
            config: &cfg,
            ns: pod_ns,
            files: PodFiles::default(),
        };
        let mut h = host();
        h.cgroup_v2 = v2;
        let m = modes(s)?;
        let lookup = |id: &str| (id == "t1").then_some(4242);
        build(&pod, &m, s, &h, &lookup).map(|l| render(&l))
    }

    fn pinned() -> PodNamespaces {
        PodNamespaces {
            net: Some("/run/hull-cri/ns/p/net".into()),
            ipc: Some("/run/hull-cri/ns/p/ipc".into()),
            uts: Some("/run/hull-cri/ns/p/uts".into()),
            pid: Some("/run/hull-cri/ns/p/pid".into()),
        }
    }

    use NamespaceMode::{Container as C, Node as N, Pod as P, Target as T};

    #[test]
    fn pod_modes_join_the_pinned_namespaces() {
        let got = run(pinned(), &sc(P, P, P, ""), false).unwrap();
        assert_eq!(
            got,
            [
                "pid=/run/hull-cri/ns/p/pid",
                "ipc=/run/hull-cri/ns/p/ipc",
                "uts=/run/hull-cri/ns/p/uts",
                "mnt",
                "net=/run/hull-cri/ns/p/net"
            ]
        );
        let got = run(pinned(), &sc(P, C, P, ""), true).unwrap();
        assert_eq!(got[0], "pid");
        assert_eq!(got.last().unwrap(), "cgroup");
    }

    #[test]
    fn node_modes_and_host_pods_get_no_entry() {
        let got = run(pinned(), &sc(N, N, N, ""), false).unwrap();
        assert_eq!(got, ["uts=/run/hull-cri/ns/p/uts", "mnt"]);
        let got = run(PodNamespaces::default(), &sc(N, P, P, ""), false).unwrap();
        assert_eq!(got, ["mnt"]);
    }

    #[test]
    fn target_pid_joins_the_target() {
        let got = run(pinned(), &sc(P, T, P, "t1"), false).unwrap();
        assert_eq!(got[0], "pid=/proc/4242/ns/pid");
        let e = run(pinned(), &sc(P, T, P, "gone"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"gone\""), "{e}");
        let e = run(pinned(), &sc(P, T, P, ""), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target_id"), "{e}");
    }

    #[test]
    fn container_network_is_refused() {
        let e = run(pinned(), &sc(C, P, P, ""), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace_options.network"), "{e}");
        let mut bad = sc(P, P, P, "");
        bad.namespace_options.as_mut().unwrap().pid = 9;
        let e = run(pinned(), &bad, false).unwrap_err().to_string();
        assert!(e.contains("namespace_options.pid = \"9\""), "{e}");
    }
}
