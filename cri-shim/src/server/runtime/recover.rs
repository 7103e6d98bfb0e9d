//! Rebuilding the tables from disk at start.

use tonic::Status;

use super::ctrs::ctr_name;
use super::exec::monitor_alive;
use super::pods::pod_name;
use super::{internal, remove_dir, Runtime};
use crate::records::{self, CtrState};

impl Runtime {
    /// Loads every pod and container record. Directories of creations that never finished
    /// are removed; containers whose monitor vanished without an exit file become Unknown.
    pub(super) async fn recover(&self) -> Result<(), Status> {
        let (pods, bad_pods) = records::load_pods(&self.paths.root.join("pods"))
            .map_err(|e| internal("loading pod records", &e))?;
        let (ctrs, bad_ctrs) = records::load_ctrs(&self.paths.root.join("containers"))
            .map_err(|e| internal("loading container records", &e))?;
        for dir in bad_pods.iter().chain(&bad_ctrs) {
            tracing::warn!(dir = %dir.display(), "removing the remains of an unfinished creation");
            if dir.starts_with(self.paths.root.join("containers")) {
                // Volumes first: removing the directory must not walk into a mount.
                super::volumes::unmount_image_volumes(dir)?;
                let _ = crate::snapshot::unmount_rootfs(&dir.join("fs"));
            }
            remove_dir(dir)?;
        }
        let mut t = self.tables();
        for (id, pod) in &pods {
            if let Some(m) = &pod.config.metadata {
                t.names.insert(pod_name(m), id.clone());
            }
        }
        for (id, c) in &ctrs {
            let pod_meta = pods
                .get(&c.rec.pod_id)
                .and_then(|p| p.config.metadata.as_ref());
            if let (Some(cm), Some(pm)) = (&c.config.metadata, pod_meta) {
                t.names.insert(ctr_name(cm, pm), id.clone());
            }
        }
        t.pods = pods;
        t.ctrs = ctrs;
        let ids: Vec<String> = t.ctrs.keys().cloned().collect();
        drop(t);
        for id in ids {
            let mut c = self.refreshed(&id)?;
            if matches!(c.rec.state, CtrState::Created | CtrState::Running)
                && !monitor_alive(c.rec.monitor_pid, &id)
            {
                // The monitor may have written its exit file and exited just now.
                if !self.notice_exit(&mut c.rec) {
                    c.rec.state = CtrState::Unknown;
                    c.rec.reason = "Unknown".into();
                    c.rec.message =
                        "the container's monitor exited without recording an exit".into();
                }
                self.save_ctr(c)?;
            }
        }
        let t = self.tables();
        tracing::info!(
            pods = t.pods.len(),
            containers = t.ctrs.len(),
            "recovered state"
        );
        Ok(())
    }
}
