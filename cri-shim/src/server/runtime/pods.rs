//! RunPodSandbox, StopPodSandbox, RemovePodSandbox.
//!
//! A pod is its pinned namespaces (no pause container), a CNI network in the pinned network
//! namespace, a /dev/shm tmpfs, and three files containers bind in (hostname, resolv.conf,
//! hosts). Every step sets a flag in the record; teardown undoes exactly the flagged steps,
//! so the same code serves StopPodSandbox and the rollback of a failed RunPodSandbox.

use std::path::Path;

use tonic::{Code, Status};

use super::{internal, now_ns, remove_dir, status, Runtime};
use crate::api::{NamespaceMode, PodSandboxConfig, PodSandboxMetadata};
use crate::cni::{Attachment, PortMapping};
use crate::podns::{self, PinRequest};
use crate::records::{self, Pod, PodRecord};

/// Size of a pod's /dev/shm, Docker's and containerd's default.
const SHM_SIZE: &str = "size=65536k";

/// The reserved name of a pod: unique per (name, namespace, uid, attempt), as kubelet
/// expects RunPodSandbox to refuse a duplicate.
pub(super) fn pod_name(m: &PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

pub(super) fn ns_options(config: &PodSandboxConfig) -> (i32, i32, i32) {
    let o = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    o.map_or((0, 0, 0), |o| (o.network, o.pid, o.ipc))
}

/// True when the pod uses the host's network namespace.
pub(super) fn host_network(config: &PodSandboxConfig) -> bool {
    ns_options(config).0 == NamespaceMode::Node as i32
}

impl Runtime {
    /// RunPodSandbox.
    pub(super) async fn run_pod(
        &self,
        config: Option<PodSandboxConfig>,
        handler: String,
    ) -> Result<String, Status> {
        let config =
            config.ok_or_else(|| Status::invalid_argument("pod sandbox config is required"))?;
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty() && !m.namespace.is_empty() && !m.uid.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(
                    "pod sandbox config: metadata name, namespace and uid are required",
                )
            })?;
        self.handlers
            .get(&handler)
            .map_err(|e| status(Code::InvalidArgument, "RunPodSandbox", &e))?;
        let id = records::new_id().map_err(|e| internal("pod id", &e))?;
        let name = pod_name(&meta);
        self.reserve(&name, &id)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut pod = Pod {
            config,
            rec: PodRecord {
                id: id.clone(),
                handler,
                created_at_ns: now_ns(),
                ..Default::default()
            },
        };
        match self.set_up_pod(&mut pod).await {
            Ok(()) => {
                tracing::info!(pod = %id, name = %name, ip = ?pod.rec.ips, "pod ready");
                self.tables().pods.insert(id.clone(), pod);
                Ok(id)
            }
            Err(e) => {
                // The original failure is what the caller needs; a failed undo is logged.
                if let Err(undo) = self.tear_down_pod(&mut pod, true).await {
                    tracing::error!(pod = %id, error = %undo.message(), "rolling back a failed RunPodSandbox");
                }
                let _ = remove_dir(&self.paths.pod_dir(&id));
                let _ = remove_dir(&self.paths.pod_run_dir(&id));
                self.release(&name, &id);
                self.forget_lock(&id);
                Err(e)
            }
        }
    }

    async fn set_up_pod(&self, pod: &mut Pod) -> Result<(), Status> {
        let id = pod.rec.id.clone();
        let dir = self.paths.pod_dir(&id);
        let run = self.paths.pod_run_dir(&id);
        for d in [&dir, &run] {
            std::fs::create_dir_all(d)
                .map_err(|e| internal(format_args!("creating {}", d.display()), &e))?;
        }
        records::write_config(&dir, &pod.config).map_err(|e| internal("pod config", &e))?;
        write_pod_files(&dir, &pod.config)?;
        let (net, pid, ipc) = ns_options(&pod.config);
        let given = pod
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty());
        pod.rec.own_cgroup = given.is_none();
        pod.rec.cgroup_parent = given.unwrap_or_else(|| format!("/hull-cri-{id}"));
        if ipc != NamespaceMode::Node as i32 {
            mount_shm(&run.join("shm"))?;
            pod.rec.shm = true;
        }
        let req = PinRequest {
            net: net != NamespaceMode::Node as i32,
            ipc: ipc != NamespaceMode::Node as i32,
            uts: net != NamespaceMode::Node as i32,
            pid: pid == NamespaceMode::Pod as i32,
            hostname: (net != NamespaceMode::Node as i32 && !pod.config.hostname.is_empty())
                .then(|| pod.config.hostname.clone()),
            sysctls: sysctls(&pod.config),
        };
        // Marked before pinning: a failed pin may have left part of its work, which the
        // idempotent unpin removes.
        pod.rec.pinned = true;
        let pinned = podns::pin(&self.paths.pinns, &run.join("ns"), &req)
            .await
            .map_err(|e| status(Code::InvalidArgument, "pinning the pod's namespaces", &e))?;
        pod.rec.holder_pid = pinned.holder_pid;
        if req.net {
            pod.rec.network = true;
            let result = self
                .cni
                .add(&self.pod_net(pod))
                .await
                .map_err(|e| status(e.code(), "setting up the pod network (CNI ADD)", &e))?;
            pod.rec.ips = result
                .pod_ip()
                .into_iter()
                .chain(result.additional_ips())
                .map(|ip| ip.to_string())
                .collect();
        }
        pod.rec.ready = true;
        records::write_state(&dir, &pod.rec).map_err(|e| internal("pod record", &e))
    }

    pub(super) fn pod_net(&self, pod: &Pod) -> Attachment {
        let m = pod.config.metadata.clone().unwrap_or_default();
        Attachment {
            container_id: pod.rec.id.clone(),
            netns: self.paths.pod_run_dir(&pod.rec.id).join("ns").join("net"),
            ifname: "eth0".into(),
            pod_namespace: m.namespace,
            pod_name: m.name,
            pod_uid: m.uid,
            port_mappings: pod
                .config
                .port_mappings
                .iter()
                .filter(|p| p.host_port > 0)
                .map(|p| PortMapping {
                    host_port: p.host_port as u16,
                    container_port: p.container_port as u16,
                    protocol: protocol(p.protocol),
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
        }
    }

    /// Undoes every step the record says was done; each success clears its flag, so a
    /// retry after a partial failure continues where it stopped. Without `keep_going` the
    /// first failure ends it: a failed CNI DEL keeps the namespaces pinned, so a retried
    /// StopPodSandbox can run DEL in them again. A rollback, which no retry follows, passes
    /// `keep_going` to undo every other step anyway; the first error is returned.
    pub(super) async fn tear_down_pod(
        &self,
        pod: &mut Pod,
        keep_going: bool,
    ) -> Result<(), Status> {
        let run = self.paths.pod_run_dir(&pod.rec.id);
        let mut first = None;
        if pod.rec.network {
            let r = self
                .cni
                .del(&self.pod_net(pod))
                .await
                .map_err(|e| status(e.code(), "tearing down the pod network (CNI DEL)", &e));
            if carry_on(r, keep_going, &mut first)? {
                pod.rec.network = false;
            }
        }
        if pod.rec.pinned {
            // unpin waits (up to 2 s) for the holder to die: off the async workers.
            let (dir, holder) = (run.join("ns"), pod.rec.holder_pid);
            let r = match tokio::task::spawn_blocking(move || podns::unpin(&dir, holder)).await {
                Ok(r) => r.map_err(|e| internal("unpinning the pod's namespaces", &e)),
                Err(e) => Err(internal("unpinning the pod's namespaces", &e)),
            };
            if carry_on(r, keep_going, &mut first)? {
                pod.rec.pinned = false;
                pod.rec.holder_pid = None;
            }
        }
        if pod.rec.shm && carry_on(unmount(&run.join("shm")), keep_going, &mut first)? {
            pod.rec.shm = false;
        }
        first.map_or(Ok(()), Err)
    }

    /// StopPodSandbox: stops every container, then the pod's network and namespaces.
    /// Idempotent; an unknown id succeeds, as kubelet requires.
    pub(super) async fn stop_pod(&self, given: &str) -> Result<(), Status> {
        let id = match self.pod_id(given) {
            Ok(id) => id,
            Err(e) if e.code() == Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for cid in self.ctrs_of(&id) {
            self.stop_ctr(&cid, 0).await?;
        }
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(mut pod) = self.tables().pods.get(&id).cloned() else {
            return Ok(());
        };
        let result = self.tear_down_pod(&mut pod, false).await;
        pod.rec.ready = false;
        records::write_state(&self.paths.pod_dir(&id), &pod.rec)
            .map_err(|e| internal("pod record", &e))?;
        self.tables().pods.insert(id, pod);
        result
    }

    /// RemovePodSandbox: stops the pod if needed, removes its containers and its state.
    pub(super) async fn remove_pod(&self, given: &str) -> Result<(), Status> {
        let id = match self.pod_id(given) {
            Ok(id) => id,
            Err(e) if e.code() == Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod(&id).await?;
        for cid in self.ctrs_of(&id) {
            self.remove_ctr(&cid).await?;
        }
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(pod) = self.tables().pods.get(&id).cloned() else {
            return Ok(());
        };
        if pod.rec.own_cgroup {
            remove_cgroup(&pod.rec.cgroup_parent)?;
        }
        remove_dir(&self.paths.pod_run_dir(&id))?;
        remove_dir(&self.paths.pod_dir(&id))?;
        let mut t = self.tables();
        t.pods.remove(&id);
        if let Some(m) = &pod.config.metadata {
            if t.names.get(&pod_name(m)) == Some(&id) {
                t.names.remove(&pod_name(m));
            }
        }
        drop(t);
        self.forget_lock(&id);
        tracing::info!(pod = %id, "pod removed");
        Ok(())
    }

    pub(super) fn ctrs_of(&self, pod: &str) -> Vec<String> {
        let t = self.tables();
        t.ctrs
            .values()
            .filter(|c| c.rec.pod_id == pod)
            .map(|c| c.rec.id.clone())
            .collect()
    }

    pub(super) fn reserve(&self, name: &str, id: &str) -> Result<(), Status> {
        let mut t = self.tables();
        if let Some(owner) = t.names.get(name) {
            return Err(Status::already_exists(format!(
                "name {name:?} is reserved by {owner}"
            )));
        }
        t.names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    pub(super) fn release(&self, name: &str, id: &str) {
        let mut t = self.tables();
        if t.names.get(name).is_some_and(|owner| owner == id) {
            t.names.remove(name);
        }
    }
}

/// True when the step succeeded; a failure is the error, or with `keep_going` is kept in
/// `first` (if it is the first) and the caller goes on to the next step.
fn carry_on(
    r: Result<(), Status>,
    keep_going: bool,
    first: &mut Option<Status>,
) -> Result<bool, Status> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if keep_going => {
            first.get_or_insert(e);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn sysctls(config: &PodSandboxConfig) -> std::collections::BTreeMap<String, String> {
    config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default()
}

fn protocol(p: i32) -> String {
    match crate::api::Protocol::try_from(p) {
        Ok(crate::api::Protocol::Udp) => "udp",
        Ok(crate::api::Protocol::Sctp) => "sctp",
        _ => "tcp",
    }
    .to_string()
}

/// Writes the pod's hostname, resolv.conf and hosts files, which containers bind in.
fn write_pod_files(dir: &Path, config: &PodSandboxConfig) -> Result<(), Status> {
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| internal(format_args!("writing {}", p.display()), &e))
    };
    let hostname = if host_network(config) || config.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        config.hostname.clone()
    };
    write("hostname", format!("{hostname}\n"))?;
    let resolv = match &config.dns_config {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            resolv_conf(d)
        }
        // As containerd does: without a DNS config the pod gets the host's resolver.
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    write("resolv.conf", resolv)?;
    let hosts = if host_network(config) {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n"
            .to_string()
    };
    write("hosts", hosts)
}

fn resolv_conf(d: &crate::api::DnsConfig) -> String {
    let mut s = String::new();
    if !d.searches.is_empty() {
        s.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    for server in &d.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !d.options.is_empty() {
        s.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    s
}

/// Removes a pod cgroup hull-cri made from every cgroup hierarchy; its containers' cgroups
/// below it were removed by the runtime, so it is empty.
fn remove_cgroup(path: &str) -> Result<(), Status> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| internal("reading /proc/self/mountinfo", &e))?;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if !matches!(post.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        let Some(mount) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let dir = Path::new(mount).join(path.trim_start_matches('/'));
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(internal(
                    format_args!("removing cgroup {}", dir.display()),
                    &e,
                ))
            }
        }
    }
    Ok(())
}

fn mount_shm(path: &Path) -> Result<(), Status> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(path)
        .map_err(|e| internal(format_args!("creating {}", path.display()), &e))?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| internal(format_args!("mounting tmpfs on {}", path.display()), &e))
}

fn unmount(path: &Path) -> Result<(), Status> {
    use nix::mount::{umount2, MntFlags};
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(internal(format_args!("unmounting {}", path.display()), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DnsConfig;

    #[test]
    fn resolv_conf_has_search_servers_and_options() {
        let d = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&d),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn pod_names_include_attempt() {
        let m = PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            attempt: 2,
        };
        assert_eq!(pod_name(&m), "web_default_u1_2");
    }
}
