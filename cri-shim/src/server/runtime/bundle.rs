//! The container's OCI spec from the pod, the request and the image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use tonic::{Code, Status};

use super::pods::ns_options;
use super::{status, Runtime};
use crate::api::NamespaceMode;
use crate::manifest::ImageConfig;
use crate::records::{Ctr, CtrState, Pod};
use crate::spec::{self, ContainerContext, PodContext, PodFiles, PodNamespaces};

impl Runtime {
    /// The spec of `ctr` in `pod`: pinned pod namespaces are joined by path, and the pod's
    /// hostname, resolv.conf, hosts and /dev/shm are bound in, and the image volumes mounted
    /// at `image_volumes` (by request mount index).
    pub(super) fn spec_for(
        &self,
        pod: &Pod,
        ctr: &Ctr,
        image: &ImageConfig,
        rootfs: &Path,
        image_volumes: &HashMap<usize, PathBuf>,
    ) -> Result<Spec, Status> {
        let id = &pod.rec.id;
        let run = self.paths.pod_run_dir(id);
        let pins = run.join("ns");
        let dir = self.paths.pod_dir(id);
        let (net, pid, ipc) = ns_options(&pod.config);
        let node = NamespaceMode::Node as i32;
        let ns = PodNamespaces {
            net: (net != node).then(|| pins.join("net")),
            ipc: (ipc != node).then(|| pins.join("ipc")),
            // A host-network pod also has the host's hostname, as in Kubernetes.
            uts: (net != node).then(|| pins.join("uts")),
            pid: (pid == NamespaceMode::Pod as i32).then(|| pins.join("pid")),
        };
        let files = PodFiles {
            hostname: Some(dir.join("hostname")),
            resolv_conf: Some(dir.join("resolv.conf")),
            hosts: Some(dir.join("hosts")),
            shm: pod.rec.shm.then(|| run.join("shm")),
        };
        let target_pid = |cid: &str| -> Option<u32> {
            let t = self.tables();
            t.ctrs
                .get(cid)
                .filter(|c| c.rec.pod_id == *id && c.rec.state == CtrState::Running)
                .and_then(|c| u32::try_from(c.rec.pid).ok())
        };
        let pod_ctx = PodContext {
            id,
            config: &pod.config,
            ns,
            files,
        };
        let ctr_ctx = ContainerContext {
            config: &ctr.config,
            image,
            image_name: &ctr.rec.image_name,
            rootfs,
            cgroups_path: &ctr.rec.cgroups_path,
            target_pid: &target_pid,
            image_volumes,
        };
        spec::container_spec(&pod_ctx, &ctr_ctx, &self.host)
            .map_err(|e| status(Code::InvalidArgument, "CreateContainer", &e))
    }
}
