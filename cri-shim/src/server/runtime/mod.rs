//! RuntimeService: pods, containers, exec, stats, runtime status.
//!
//! The service keeps in-memory tables rebuilt from the records on disk (`crate::records`).
//! Table locks are plain mutexes never held across an await; lifecycle operations on one
//! object are serialised by a per-id async lock, so a slow StopContainer of one container
//! never blocks another.

mod bundle;
mod ctrs;
mod exec;
mod info;
mod list;
mod pods;
mod recover;
mod service;
mod stats;
mod streaming;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tonic::{Code, Status};

use crate::cni::Cni;
use crate::digest::Digest;
use crate::oci::Handlers;
use crate::records::{Ctr, Pod};
use crate::snapshot::Snapshots;
use crate::spec::HostFacts;
use crate::stats::{CgroupLayout, CpuSampler};
use crate::store::Store;

pub use streaming::RuntimeBackend;

/// Where the service keeps things.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Persistent state (`/var/lib/hull-cri`): pod and container records, rootfs.
    pub root: PathBuf,
    /// Volatile state (`/run/hull-cri`): namespace pins, /dev/shm, runtime state.
    pub run: PathBuf,
    /// The per-container monitor binary.
    pub monitor: PathBuf,
    /// The namespace pinning helper binary.
    pub pinns: PathBuf,
}

impl Paths {
    fn pod_dir(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }
    fn pod_run_dir(&self, id: &str) -> PathBuf {
        self.run.join("pods").join(id)
    }
    fn ctr_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}

#[derive(Default)]
struct Tables {
    pods: HashMap<String, Pod>,
    ctrs: HashMap<String, Ctr>,
    /// Names reserved by pods and containers (`name_namespace_uid_attempt`), to their ids.
    names: HashMap<String, String>,
}

/// Everything RuntimeService needs, shared by its handlers.
pub struct Runtime {
    paths: Paths,
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    handlers: Handlers,
    cni: Cni,
    tables: Mutex<Tables>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cpu: Mutex<CpuSampler>,
    /// The host's cgroup mounts, for stats; `None` on a host without cgroups.
    cgroups: Option<CgroupLayout>,
    /// What the host supports (AppArmor, cgroup v2, capabilities), for container specs.
    host: HostFacts,
}

/// The RuntimeService implementation.
#[derive(Clone)]
pub struct RuntimeServer {
    rt: Arc<Runtime>,
    /// Issues the Exec/Attach/PortForward URLs; `None` until a streaming server runs.
    streaming: Option<Arc<crate::stream::StreamUrls>>,
}

impl RuntimeServer {
    /// A service over the given state, recovering pods and containers from `paths.root`.
    pub async fn new(
        paths: Paths,
        store: Arc<Store>,
        snapshots: Arc<Snapshots>,
        handlers: Handlers,
        cni: Cni,
    ) -> Result<Self, Status> {
        let rt = Arc::new(Runtime {
            paths,
            store,
            snapshots,
            handlers,
            cni,
            tables: Mutex::default(),
            locks: Mutex::default(),
            cpu: Mutex::new(CpuSampler::new()),
            cgroups: CgroupLayout::detect().ok(),
            host: HostFacts::detect(),
        });
        rt.recover().await?;
        Ok(Self {
            rt,
            streaming: None,
        })
    }

    /// Serves Exec, Attach and PortForward with URLs from `urls`, whose server must be
    /// running (`crate::stream::serve`); without it those RPCs answer UNAVAILABLE.
    pub fn with_streaming(mut self, urls: Arc<crate::stream::StreamUrls>) -> Self {
        self.streaming = Some(urls);
        self
    }

    /// Diff ids of the layers live containers use, which snapshot GC must keep.
    pub fn layers_in_use(&self) -> HashSet<Digest> {
        self.rt.layers_in_use()
    }
}

impl Runtime {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock is a bug; the tables are still consistent enough
        // to keep serving (every mutation is a single insert or remove).
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The async lock serialising lifecycle operations on `id`.
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.remove(id);
    }

    fn layers_in_use(&self) -> HashSet<Digest> {
        self.tables()
            .ctrs
            .values()
            .flat_map(|c| c.rec.diff_ids.iter().cloned())
            .collect()
    }

    /// The full id of a pod given a unique prefix, as crictl's short ids.
    fn pod_id(&self, given: &str) -> Result<String, Status> {
        let t = self.tables();
        resolve_id(given, t.pods.keys(), "pod sandbox")
    }

    fn ctr_id(&self, given: &str) -> Result<String, Status> {
        let t = self.tables();
        resolve_id(given, t.ctrs.keys(), "container")
    }
}

fn resolve_id<'a>(
    given: &str,
    ids: impl Iterator<Item = &'a String>,
    what: &str,
) -> Result<String, Status> {
    if given.is_empty() {
        return Err(Status::invalid_argument(format!("{what} id is required")));
    }
    let matches: Vec<&String> = ids.filter(|id| id.starts_with(given)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Status::not_found(format!("{what} {given:?} not found"))),
        _ => Err(Status::invalid_argument(format!(
            "{what} id prefix {given:?} is ambiguous"
        ))),
    }
}

/// A gRPC status whose message is `what` followed by the error's whole cause chain.
fn status(code: Code, what: impl std::fmt::Display, e: &dyn std::error::Error) -> Status {
    Status::new(code, format!("{what}: {}", crate::monitor::chain(e)))
}

fn internal(what: impl std::fmt::Display, e: &dyn std::error::Error) -> Status {
    status(Code::Internal, what, e)
}

/// Nanoseconds since the epoch.
fn now_ns() -> i64 {
    crate::monitor::now_ns()
}

fn remove_dir(path: &Path) -> Result<(), Status> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(internal(format_args!("removing {}", path.display()), &e)),
    }
}
