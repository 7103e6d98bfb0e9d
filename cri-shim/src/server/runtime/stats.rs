//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.

use std::path::Path;

use tonic::Status;

use super::{internal, Runtime};
use crate::api::*;
use crate::records::{Ctr, CtrState, Pod};
use crate::stats::{filesystem_usage, writable_layer_usage, CgroupStats};

impl Runtime {
    fn cgroup_stats(&self, path: &str) -> Result<CgroupStats, Status> {
        let layout = self.cgroups.as_ref().ok_or_else(|| {
            Status::failed_precondition("stats: this host has no cgroup filesystem")
        })?;
        let mut s = layout
            .read(Path::new(path))
            .map_err(|e| internal(format_args!("stats of cgroup {path}"), &e))?;
        let mut cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
        cpu.update(Path::new(path), &mut s);
        Ok(s)
    }

    fn stats_of(&self, c: &Ctr) -> Result<ContainerStats, Status> {
        let s = self.cgroup_stats(&c.rec.cgroups_path)?;
        let upper = self.paths.ctr_dir(&c.rec.id).join("fs").join("upper");
        let layer = writable_layer_usage(&upper).ok().map(|(bytes, inodes)| {
            filesystem_usage(s.timestamp_ns, &self.paths.root, bytes, inodes)
        });
        let attributes = ContainerAttributes {
            id: c.rec.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        };
        Ok(s.container_stats(attributes, layer))
    }

    /// ContainerStats.
    pub(super) fn ctr_stats(&self, given: &str) -> Result<ContainerStats, Status> {
        let id = self.ctr_id(given)?;
        let c = self.refreshed(&id)?;
        self.stats_of(&c)
    }

    /// ListContainerStats: running containers matching the filter; a container whose
    /// cgroup vanished meanwhile (it exited) is left out rather than failing the list.
    pub(super) fn list_ctr_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Vec<ContainerStats> {
        let f = filter.unwrap_or_default();
        self.all_ctrs()
            .into_iter()
            .filter(|c| c.rec.state == CtrState::Running)
            .filter(|c| f.id.is_empty() || c.rec.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.rec.pod_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| c.config.labels.get(k) == Some(v))
            })
            .filter_map(|c| self.stats_of(&c).ok())
            .collect()
    }

    fn pod_stats_of(&self, p: &Pod) -> Result<PodSandboxStats, Status> {
        let s = self.cgroup_stats(&p.rec.cgroup_parent)?;
        let containers = self.list_ctr_stats(Some(ContainerStatsFilter {
            pod_sandbox_id: p.rec.id.clone(),
            ..Default::default()
        }));
        let attributes = PodSandboxAttributes {
            id: p.rec.id.clone(),
            metadata: p.config.metadata.clone(),
            labels: p.config.labels.clone(),
            annotations: p.config.annotations.clone(),
        };
        Ok(s.pod_sandbox_stats(attributes, containers))
    }

    /// PodSandboxStats.
    pub(super) fn pod_stats(&self, given: &str) -> Result<PodSandboxStats, Status> {
        let id = self.pod_id(given)?;
        let p = self
            .tables()
            .pods
            .get(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id} not found")))?;
        self.pod_stats_of(&p)
    }

    /// ListPodSandboxStats: ready pods matching the filter.
    pub(super) fn list_pod_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Vec<PodSandboxStats> {
        let f = filter.unwrap_or_default();
        let pods: Vec<Pod> = self.tables().pods.values().cloned().collect();
        pods.iter()
            .filter(|p| p.rec.ready)
            .filter(|p| f.id.is_empty() || p.rec.id.starts_with(&f.id))
            .filter(|p| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| p.config.labels.get(k) == Some(v))
            })
            .filter_map(|p| self.pod_stats_of(p).ok())
            .collect()
    }
}
