//! Pod and container records on disk, and the in-memory tables rebuilt from them.
//!
//! Each object has a directory holding `config.pb` (the CRI request's config, protobuf,
//! written once) and `state.json` (the mutable record, replaced atomically). The directory
//! is created first and the state written last, so a crash half-way through a creation
//! leaves a directory without `state.json`, which the next start removes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::api::{ContainerConfig, PodSandboxConfig};
use crate::fsutil::write_atomic;

/// Errors of reading and writing records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file could not be read, written or removed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `state.json` is not a record.
    #[error("record {path} is corrupt")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `config.pb` is not the expected message.
    #[error("config {path} is corrupt")]
    Proto {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RecordError + 'a {
    move |source| RecordError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The mutable part of a pod.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PodRecord {
    /// Pod id (64 hex digits).
    pub id: String,
    /// RuntimeClass handler the pod's containers run with.
    pub handler: String,
    /// Creation time, ns since the epoch.
    pub created_at_ns: i64,
    /// False once stopped.
    pub ready: bool,
    /// Pod IPs from CNI, the first is the pod IP.
    #[serde(default)]
    pub ips: Vec<String>,
    /// PID of the holder of a pod-shared PID namespace.
    #[serde(default)]
    pub holder_pid: Option<i32>,
    /// Namespaces were pinned under the pod's run directory.
    #[serde(default)]
    pub pinned: bool,
    /// CNI ADD succeeded and DEL is owed.
    #[serde(default)]
    pub network: bool,
    /// The pod's /dev/shm tmpfs is mounted.
    #[serde(default)]
    pub shm: bool,
    /// The cgroup parent containers are placed under.
    #[serde(default)]
    pub cgroup_parent: String,
    /// hull-cri chose the parent (the request named none), so it removes it with the pod.
    #[serde(default)]
    pub own_cgroup: bool,
}

/// Container states, as CRI names them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CtrState {
    /// Created, not started.
    #[default]
    Created,
    /// Started and not seen to exit.
    Running,
    /// Its init exited.
    Exited,
    /// Its state cannot be known (the monitor vanished without an exit file).
    Unknown,
}

/// The mutable part of a container.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CtrRecord {
    /// Container id.
    pub id: String,
    /// Its pod.
    pub pod_id: String,
    /// The image as requested.
    pub image_name: String,
    /// The image id (`sha256:<config digest>`).
    pub image_id: String,
    /// Layer diff ids, which the snapshot GC must keep while the container exists.
    #[serde(default)]
    pub diff_ids: Vec<crate::digest::Digest>,
    /// State.
    pub state: CtrState,
    /// Times, ns since the epoch; 0 = not yet.
    pub created_at_ns: i64,
    /// Start time.
    #[serde(default)]
    pub started_at_ns: i64,
    /// Exit time.
    #[serde(default)]
    pub finished_at_ns: i64,
    /// Exit code.
    #[serde(default)]
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, … once exited.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// Absolute CRI log path, if the pod has a log directory.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The init's host pid.
    #[serde(default)]
    pub pid: i32,
    /// The monitor's pid (for ReopenContainerLog).
    #[serde(default)]
    pub monitor_pid: i32,
    /// `linux.cgroupsPath` of the container.
    #[serde(default)]
    pub cgroups_path: String,
    /// The handler (copied from the pod).
    #[serde(default)]
    pub handler: String,
    /// The identity its processes run as, resolved at creation (none in records written
    /// before this field existed).
    #[serde(default)]
    pub user: Option<CtrUser>,
}

/// The uid, gid and supplementary groups of a container's processes, as its spec holds
/// them: what ContainerStatus reports as `user.linux`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtrUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids, the primary one included.
    pub additional_gids: Vec<u32>,
}

/// An in-memory pod: its config and record.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The request's config.
    pub config: PodSandboxConfig,
    /// The record.
    pub rec: PodRecord,
}

/// An in-memory container.
#[derive(Clone, Debug)]
pub struct Ctr {
    /// The request's config.
    pub config: ContainerConfig,
    /// The record.
    pub rec: CtrRecord,
}

/// Writes an object's `config.pb` (once, at creation).
pub fn write_config<M: Message>(dir: &Path, config: &M) -> Result<(), RecordError> {
    let path = dir.join("config.pb");
    write_atomic(&path, &config.encode_to_vec()).map_err(io("writing", &path))
}

/// Replaces an object's `state.json`.
pub fn write_state<T: Serialize>(dir: &Path, rec: &T) -> Result<(), RecordError> {
    let path = dir.join("state.json");
    let bytes = serde_json::to_vec_pretty(rec).map_err(|source| RecordError::Json {
        path: path.clone(),
        source,
    })?;
    write_atomic(&path, &bytes).map_err(io("writing", &path))
}

fn read_object<M: Message + Default, T: DeserializeOwned>(
    dir: &Path,
) -> Result<Option<(M, T)>, RecordError> {
    let state = dir.join("state.json");
    let bytes = match std::fs::read(&state) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading", &state)(e)),
    };
    let rec = serde_json::from_slice(&bytes).map_err(|source| RecordError::Json {
        path: state.clone(),
        source,
    })?;
    let cfg_path = dir.join("config.pb");
    let raw = std::fs::read(&cfg_path).map_err(io("reading", &cfg_path))?;
    let config = M::decode(raw.as_slice()).map_err(|source| RecordError::Proto {
        path: cfg_path,
        source,
    })?;
    Ok(Some((config, rec)))
}

/// Loads every object under `parent`; directories without a state (a creation that never
/// finished) are returned in the second list for the caller to clean up.
#[allow(clippy::type_complexity)]
pub fn load_all<M: Message + Default, T: DeserializeOwned>(
    parent: &Path,
) -> Result<(HashMap<String, (M, T)>, Vec<PathBuf>), RecordError> {
    let mut found = HashMap::new();
    let mut incomplete = Vec::new();
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((found, incomplete)),
        Err(e) => return Err(io("listing", parent)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("listing", parent))?;
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        match read_object::<M, T>(&dir)? {
            Some(obj) => {
                found.insert(name, obj);
            }
            None => incomplete.push(dir),
        }
    }
    Ok((found, incomplete))
}

/// Loads pods.
pub fn load_pods(parent: &Path) -> Result<(HashMap<String, Pod>, Vec<PathBuf>), RecordError> {
    let (m, inc) = load_all::<PodSandboxConfig, PodRecord>(parent)?;
    let pods = m
        .into_iter()
        .map(|(k, (config, rec))| (k, Pod { config, rec }))
        .collect();
    Ok((pods, inc))
}

/// Loads containers.
pub fn load_ctrs(parent: &Path) -> Result<(HashMap<String, Ctr>, Vec<PathBuf>), RecordError> {
    let (m, inc) = load_all::<ContainerConfig, CtrRecord>(parent)?;
    let ctrs = m
        .into_iter()
        .map(|(k, (config, rec))| (k, Ctr { config, rec }))
        .collect();
    Ok((ctrs, inc))
}

/// A new random id: 64 hex digits, as containerd's and runc's ids look.
pub fn new_id() -> Result<String, RecordError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", Path::new("/dev/urandom")))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PodSandboxMetadata;

    #[test]
    fn records_round_trip_and_incomplete_dirs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pods");
        let a = pods.join("a");
        std::fs::create_dir_all(&a).unwrap();
        let cfg = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            hostname: "h".into(),
            ..Default::default()
        };
        write_config(&a, &cfg).unwrap();
        let rec = PodRecord {
            id: "a".into(),
            ready: true,
            ips: vec!["10.88.0.2".into()],
            ..Default::default()
        };
        write_state(&a, &rec).unwrap();
        std::fs::create_dir_all(pods.join("b")).unwrap();
        let (found, incomplete) = load_pods(&pods).unwrap();
        assert_eq!(found["a"].config, cfg);
        assert_eq!(found["a"].rec.ips, ["10.88.0.2"]);
        assert_eq!(incomplete, [pods.join("b")]);
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("state.json"), b"{").unwrap();
        let e = load_pods(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a/state.json"), "{e}");
    }

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id().unwrap());
    }
}
