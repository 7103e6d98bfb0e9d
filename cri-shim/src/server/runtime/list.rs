//! Status and list RPCs for pods and containers, with CRI's filters.

use std::collections::HashMap;

use tonic::Status;

use super::pods::host_network;
use super::Runtime;
use crate::api::*;
use crate::records::{Ctr, CtrState, Pod};

fn labels_match(want: &HashMap<String, String>, have: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn pod_state(p: &Pod) -> i32 {
    if p.rec.ready {
        PodSandboxState::SandboxReady as i32
    } else {
        PodSandboxState::SandboxNotready as i32
    }
}

fn ctr_state(c: &Ctr) -> i32 {
    (match c.rec.state {
        CtrState::Created => ContainerState::ContainerCreated,
        CtrState::Running => ContainerState::ContainerRunning,
        CtrState::Exited => ContainerState::ContainerExited,
        CtrState::Unknown => ContainerState::ContainerUnknown,
    }) as i32
}

impl Runtime {
    /// ListPodSandbox.
    pub(super) fn list_pods(&self, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
        let f = filter.unwrap_or_default();
        let t = self.tables();
        t.pods
            .values()
            .filter(|p| f.id.is_empty() || p.rec.id.starts_with(&f.id))
            .filter(|p| f.state.as_ref().is_none_or(|s| s.state == pod_state(p)))
            .filter(|p| labels_match(&f.label_selector, &p.config.labels))
            .map(|p| PodSandbox {
                id: p.rec.id.clone(),
                metadata: p.config.metadata.clone(),
                state: pod_state(p),
                created_at: p.rec.created_at_ns,
                labels: p.config.labels.clone(),
                annotations: p.config.annotations.clone(),
                runtime_handler: p.rec.handler.clone(),
            })
            .collect()
    }

    /// PodSandboxStatus.
    pub(super) fn pod_status(
        &self,
        given: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse, Status> {
        let id = self.pod_id(given)?;
        let pod = self
            .tables()
            .pods
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))?;
        let ns = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let network = (!host_network(&pod.config)).then(|| PodSandboxNetworkStatus {
            ip: pod.rec.ips.first().cloned().unwrap_or_default(),
            additional_ips: pod
                .rec
                .ips
                .iter()
                .skip(1)
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        });
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "record": &pod.rec,
                "runDir": self.paths.pod_run_dir(&id),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id: id.clone(),
                metadata: pod.config.metadata.clone(),
                state: pod_state(&pod),
                created_at: pod.rec.created_at_ns,
                network,
                linux: Some(LinuxPodSandboxStatus {
                    namespaces: Some(Namespace { options: ns }),
                }),
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
                runtime_handler: pod.rec.handler.clone(),
            }),
            info,
            containers_statuses: Vec::new(),
            timestamp: super::now_ns(),
        })
    }

    /// All containers with exits noticed.
    pub(super) fn all_ctrs(&self) -> Vec<Ctr> {
        let ids: Vec<String> = self.tables().ctrs.keys().cloned().collect();
        ids.iter()
            .filter_map(|id| self.refreshed(id).ok())
            .collect()
    }

    /// ListContainers.
    pub(super) fn list_ctrs(&self, filter: Option<ContainerFilter>) -> Vec<Container> {
        let f = filter.unwrap_or_default();
        self.all_ctrs()
            .into_iter()
            .filter(|c| f.id.is_empty() || c.rec.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.rec.pod_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| f.state.as_ref().is_none_or(|s| s.state == ctr_state(c)))
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| Container {
                id: c.rec.id.clone(),
                pod_sandbox_id: c.rec.pod_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.rec.image_id.clone(),
                state: ctr_state(&c),
                created_at: c.rec.created_at_ns,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.rec.image_id.clone(),
            })
            .collect()
    }

    /// ContainerStatus.
    pub(super) fn ctr_status(
        &self,
        given: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, Status> {
        let id = self.ctr_id(given)?;
        let c = self.refreshed(&id)?;
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({ "pid": c.rec.pid, "record": &c.rec });
            info.insert("info".to_string(), detail.to_string());
        }
        let status = ContainerStatus {
            id: id.clone(),
            metadata: c.config.metadata.clone(),
            state: ctr_state(&c),
            created_at: c.rec.created_at_ns,
            started_at: c.rec.started_at_ns,
            finished_at: c.rec.finished_at_ns,
            exit_code: c.rec.exit_code,
            image: Some(ImageSpec {
                image: c.rec.image_name.clone(),
                ..Default::default()
            }),
            image_ref: c.rec.image_id.clone(),
            reason: c.rec.reason.clone(),
            message: c.rec.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c
                .rec
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: c
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|r| ContainerResources {
                    linux: Some(r),
                    ..Default::default()
                }),
            image_id: c.rec.image_id.clone(),
            user: c.rec.user.as_ref().map(|u| ContainerUser {
                linux: Some(LinuxContainerUser {
                    uid: i64::from(u.uid),
                    gid: i64::from(u.gid),
                    supplemental_groups: u.additional_gids.iter().map(|&g| i64::from(g)).collect(),
                }),
            }),
            stop_signal: c.config.stop_signal,
        };
        Ok(ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }
}
