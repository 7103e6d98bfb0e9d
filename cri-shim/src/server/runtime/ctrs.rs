//! CreateContainer, StartContainer, StopContainer, RemoveContainer, and noticing exits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tonic::{Code, Status};

use super::volumes::{unmount_image_volumes, ImageVolume};
use super::{internal, now_ns, remove_dir, status, Runtime};
use crate::api::{ContainerConfig, ContainerMetadata, PodSandboxMetadata};
use crate::monitor::{ExitRecord, Report};
use crate::records::{self, Ctr, CtrRecord, CtrState, CtrUser, Pod};
use crate::snapshot;

/// How long RemoveContainer and StopContainer wait for the monitor to record an exit
/// after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub(super) fn ctr_name(c: &ContainerMetadata, p: &PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, p.name, p.namespace, p.uid, c.attempt
    )
}

impl Runtime {
    /// CreateContainer.
    pub(super) async fn create_ctr(
        &self,
        pod_id: &str,
        config: Option<ContainerConfig>,
    ) -> Result<String, Status> {
        let pod_id = self.pod_id(pod_id)?;
        let mut config =
            config.ok_or_else(|| Status::invalid_argument("container config is required"))?;
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument("container config: metadata.name is required")
            })?;
        let pod = self
            .tables()
            .pods
            .get(&pod_id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {pod_id} not found")))?;
        if !pod.rec.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Status::invalid_argument(
                "container config: image.image is required",
            ));
        }
        let image = self.store.resolve(&image_name).ok_or_else(|| {
            Status::not_found(format!("image {image_name:?} not found: pull it first"))
        })?;
        let volumes = self.resolve_image_volumes(&mut config)?;
        let mut diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        // The volumes' layers too: GC keeps what records name while the container exists.
        for l in volumes.iter().flat_map(|v| &v.image.layers) {
            if !diff_ids.contains(&l.diff_id) {
                diff_ids.push(l.diff_id.clone());
            }
        }
        let id = records::new_id().map_err(|e| internal("container id", &e))?;
        let name = ctr_name(&meta, &pod.config.metadata.clone().unwrap_or_default());
        self.reserve(&name, &id)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut ctr = Ctr {
            config,
            rec: CtrRecord {
                id: id.clone(),
                pod_id: pod_id.clone(),
                image_name,
                image_id: image.id(),
                diff_ids,
                created_at_ns: now_ns(),
                cgroups_path: format!(
                    "{}/hull-cri-{id}",
                    pod.rec.cgroup_parent.trim_end_matches('/')
                ),
                handler: pod.rec.handler.clone(),
                ..Default::default()
            },
        };
        // Keeps GC (after a concurrent RemoveImage) off the layers until the record exists.
        let _pins = self.snapshots.pin(ctr.rec.diff_ids.clone());
        match self.set_up_ctr(&pod, &mut ctr, &image, &volumes).await {
            Ok(()) => {
                tracing::info!(container = %id, pod = %pod_id, name = %name, "container created");
                self.tables().ctrs.insert(id.clone(), ctr);
                Ok(id)
            }
            Err(e) => {
                if let Err(undo) = self.destroy_ctr(&ctr.rec).await {
                    tracing::error!(container = %id, error = %undo.message(), "rolling back a failed CreateContainer");
                }
                self.release(&name, &id);
                self.forget_lock(&id);
                Err(e)
            }
        }
    }

    async fn set_up_ctr(
        &self,
        pod: &Pod,
        ctr: &mut Ctr,
        image: &crate::store::ImageRecord,
        volumes: &[ImageVolume],
    ) -> Result<(), Status> {
        let id = ctr.rec.id.clone();
        let dir = self.paths.ctr_dir(&id);
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle)
            .map_err(|e| internal(format_args!("creating {}", bundle.display()), &e))?;
        records::write_config(&dir, &ctr.config).map_err(|e| internal("container config", &e))?;
        let lowers = self
            .snapshots
            .lowerdirs(&self.store, image)
            .map_err(|e| internal("preparing the image's layers", &e))?;
        let rootfs = snapshot::mount_rootfs(&lowers, &dir.join("fs"))
            .map_err(|e| internal("mounting the container's rootfs", &e))?;
        let volume_dirs = self.mount_image_volumes(&dir, &ctr.config, volumes)?;
        let spec = self.spec_for(pod, ctr, &image.config, &rootfs, &volume_dirs)?;
        ctr.rec.user = spec.process().as_ref().map(|p| CtrUser {
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        });
        let spec_path = bundle.join("config.json");
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| internal("serialising config.json", &e))?;
        std::fs::write(&spec_path, bytes)
            .map_err(|e| internal(format_args!("writing {}", spec_path.display()), &e))?;
        ctr.rec.log_path = log_path(&pod.config.log_directory, &ctr.config.log_path)?;
        self.spawn_monitor(ctr, &bundle).await?;
        records::write_state(&dir, &ctr.rec).map_err(|e| internal("container record", &e))
    }

    /// Starts the monitor, which runs `create`, and waits for its report.
    async fn spawn_monitor(&self, ctr: &mut Ctr, bundle: &Path) -> Result<(), Status> {
        let handler = self
            .handlers
            .get(&ctr.rec.handler)
            .map_err(|e| status(Code::FailedPrecondition, "CreateContainer", &e))?;
        let dir = self.paths.ctr_dir(&ctr.rec.id);
        let log = ctr
            .rec
            .log_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/null"));
        let diag = std::fs::File::create(dir.join("monitor.log"))
            .map_err(|e| internal("creating monitor.log", &e))?;
        let mut child = tokio::process::Command::new(&self.paths.monitor)
            .arg("--id")
            .arg(&ctr.rec.id)
            .arg("--bundle")
            .arg(bundle)
            .arg("--runtime")
            .arg(&handler.path)
            .arg("--runtime-root")
            .arg(&handler.root)
            .arg("--log")
            .arg(&log)
            .arg("--exit-file")
            .arg(dir.join("exit.json"))
            .arg("--pid-file")
            .arg(dir.join("init.pid"))
            .arg("--runtime-log")
            .arg(dir.join("runtime.log"))
            .args(ctr.config.tty.then_some("--tty"))
            .args(ctr.config.stdin.then_some("--stdin"))
            .args((ctr.config.stdin && ctr.config.stdin_once).then_some("--stdin-once"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(diag)
            .spawn()
            .map_err(|e| {
                internal(
                    format_args!("starting {}", self.paths.monitor.display()),
                    &e,
                )
            })?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout
                .read_to_string(&mut out)
                .await
                .map_err(|e| internal("reading the monitor's report", &e))?;
        }
        // The first monitor process exits as soon as it has detached; reap it.
        let _ = child.wait().await;
        match serde_json::from_str::<Report>(out.trim()) {
            Ok(Report::Created { pid, monitor }) => {
                ctr.rec.pid = pid;
                ctr.rec.monitor_pid = monitor;
                Ok(())
            }
            Ok(Report::Failed { message }) => Err(Status::internal(format!(
                "creating container {}: {message}",
                ctr.rec.id
            ))),
            Err(_) => Err(Status::internal(format!(
                "creating container {}: the monitor reported nothing (see {})",
                ctr.rec.id,
                dir.join("monitor.log").display()
            ))),
        }
    }

    /// StartContainer.
    pub(super) async fn start_ctr(&self, given: &str) -> Result<(), Status> {
        let id = self.ctr_id(given)?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut ctr = self.refreshed(&id)?;
        if ctr.rec.state != CtrState::Created {
            return Err(Status::failed_precondition(format!(
                "container {id} is {:?}, not created",
                ctr.rec.state
            )));
        }
        let handler = self
            .handlers
            .get(&ctr.rec.handler)
            .map_err(|e| status(Code::FailedPrecondition, "StartContainer", &e))?;
        // Taken before `start`: a short-lived process may exit, and be reaped with its
        // finish time recorded, before the runtime returns.
        let started_at = now_ns();
        let result = handler.start(&id).await;
        match &result {
            Ok(()) => {
                ctr.rec.state = CtrState::Running;
                ctr.rec.started_at_ns = started_at;
            }
            Err(e) => {
                ctr.rec.reason = "StartError".into();
                ctr.rec.message = crate::monitor::chain(e);
            }
        }
        self.save_ctr(ctr)?;
        result.map_err(|e| internal(format_args!("starting container {id}"), &e))
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds. Idempotent.
    pub(super) async fn stop_ctr(&self, given: &str, timeout: i64) -> Result<(), Status> {
        let id = match self.ctr_id(given) {
            Ok(id) => id,
            Err(e) if e.code() == Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let ctr = self.refreshed(&id)?;
        if !matches!(ctr.rec.state, CtrState::Created | CtrState::Running) {
            return Ok(());
        }
        let handler = self
            .handlers
            .get(&ctr.rec.handler)
            .map_err(|e| status(Code::FailedPrecondition, "StopContainer", &e))?;
        let exit = self.paths.ctr_dir(&id).join("exit.json");
        if timeout > 0 && ctr.rec.state == CtrState::Running {
            let sig = stop_signal(&ctr.config);
            if handler.kill(&id, &sig, false).await.is_ok()
                && wait_for(&exit, Duration::from_secs(timeout as u64)).await
            {
                self.refreshed(&id)?;
                return Ok(());
            }
        }
        // --all: with a pod-shared PID namespace the init's death does not end the rest.
        if let Err(e) = handler.kill(&id, "KILL", true).await {
            // The init may have exited on its own since the record was read: the runtime
            // then says it is not running, and exit.json follows once the monitor has
            // drained the output (up to 2 s when processes outlive the init in a pod-shared
            // PID namespace). Only a kill that fails while no exit comes is an error.
            if !wait_for(&exit, KILL_WAIT).await {
                return Err(internal(format_args!("killing container {id}"), &e));
            }
        }
        if !wait_for(&exit, KILL_WAIT).await {
            return Err(Status::deadline_exceeded(format!(
                "container {id} did not exit {}s after SIGKILL",
                KILL_WAIT.as_secs()
            )));
        }
        self.refreshed(&id)?;
        Ok(())
    }

    /// RemoveContainer: kills it if needed, then removes all its state. Idempotent.
    pub(super) async fn remove_ctr(&self, given: &str) -> Result<(), Status> {
        let id = match self.ctr_id(given) {
            Ok(id) => id,
            Err(e) if e.code() == Code::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_ctr(&id, 0).await?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(ctr) = self.tables().ctrs.get(&id).cloned() else {
            return Ok(());
        };
        self.destroy_ctr(&ctr.rec).await?;
        let mut t = self.tables();
        t.ctrs.remove(&id);
        let pod_meta = t
            .pods
            .get(&ctr.rec.pod_id)
            .and_then(|p| p.config.metadata.clone());
        drop(t);
        if let (Some(c), Some(p)) = (&ctr.config.metadata, pod_meta) {
            self.release(&ctr_name(c, &p), &id);
        }
        self.forget_lock(&id);
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    /// Removes the runtime's state, the rootfs mount and the directory of a container.
    async fn destroy_ctr(&self, rec: &CtrRecord) -> Result<(), Status> {
        if let Ok(handler) = self.handlers.get(&rec.handler) {
            handler
                .delete(&rec.id)
                .await
                .map_err(|e| internal(format_args!("deleting container {}", rec.id), &e))?;
        }
        let dir = self.paths.ctr_dir(&rec.id);
        unmount_image_volumes(&dir)?;
        snapshot::unmount_rootfs(&dir.join("fs"))
            .map_err(|e| internal("unmounting the container's rootfs", &e))?;
        remove_dir(&dir)
    }

    /// The container with its exit noticed and recorded if the monitor has written one.
    pub(super) fn refreshed(&self, id: &str) -> Result<Ctr, Status> {
        let mut ctr = self
            .tables()
            .ctrs
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        if matches!(ctr.rec.state, CtrState::Created | CtrState::Running)
            && self.notice_exit(&mut ctr.rec)
        {
            self.save_ctr(ctr.clone())?;
        }
        Ok(ctr)
    }

    /// Reads the exit file; true when the record changed.
    pub(super) fn notice_exit(&self, rec: &mut CtrRecord) -> bool {
        let path = self.paths.ctr_dir(&rec.id).join("exit.json");
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        let Ok(exit) = serde_json::from_slice::<ExitRecord>(&bytes) else {
            return false;
        };
        rec.state = CtrState::Exited;
        rec.exit_code = exit.exit_code;
        rec.finished_at_ns = exit.finished_at_ns;
        if rec.reason.is_empty() {
            rec.reason = if self.oom_killed(rec) {
                "OOMKilled".into()
            } else if exit.exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
        }
        true
    }

    fn oom_killed(&self, rec: &CtrRecord) -> bool {
        self.cgroups
            .as_ref()
            .and_then(|l| l.read(Path::new(&rec.cgroups_path)).ok())
            .and_then(|s| s.oom_kill)
            .is_some_and(|n| n > 0)
    }

    pub(super) fn save_ctr(&self, ctr: Ctr) -> Result<(), Status> {
        records::write_state(&self.paths.ctr_dir(&ctr.rec.id), &ctr.rec)
            .map_err(|e| internal("container record", &e))?;
        self.tables().ctrs.insert(ctr.rec.id.clone(), ctr);
        Ok(())
    }
}

fn stop_signal(config: &ContainerConfig) -> String {
    match config.stop_signal {
        // Signal enum of the CRI: 0 = RUNTIME_DEFAULT.
        0 => "TERM".to_string(),
        n => crate::api::Signal::try_from(n)
            .map(|s| s.as_str_name().trim_start_matches("SIG").to_string())
            .unwrap_or_else(|_| "TERM".to_string()),
    }
}

/// Waits until `path` exists, up to `limit`.
pub(super) async fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut step = Duration::from_millis(5);
    loop {
        if path.exists() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(step).await;
        step = (step * 2).min(Duration::from_millis(100));
    }
}

/// `log_directory/log_path`, with its parent created; none when either is empty.
fn log_path(dir: &str, rel: &str) -> Result<Option<PathBuf>, Status> {
    if dir.is_empty() || rel.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(rel);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Status::invalid_argument(format!(
            "container config: log_path {} must be relative, without \"..\"",
            rel.display()
        )));
    }
    let p = Path::new(dir).join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| internal(format_args!("creating {}", parent.display()), &e))?;
    }
    Ok(Some(p))
}
