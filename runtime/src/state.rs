//! The on-disk record of a container: `<root>/<id>/state.json`, written atomically.
//!
//! The status is not stored as truth; it is derived each time from the init process (alive,
//! same start time, not a zombie) and from the exec fifo, which exists only until `start`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the fifo whose presence means "created, not yet started".
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";
const CONFIG_FILE: &str = "config.json";

/// Errors reading or writing container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.'")]
    BadId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("cannot access state {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt state file {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// runtime-spec statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        };
        f.write_str(s)
    }
}

/// Where the container's cgroup is, so that `delete` and `kill --all` can find it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupRecord {
    pub path: PathBuf,
    pub systemd: bool,
    /// crun's `--cgroup-manager=disabled`: no cgroup is created or joined.
    #[serde(default)]
    pub disabled: bool,
}

/// What hull keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub oci_version: String,
    pub id: String,
    /// Host pid of the container's init; 0 while creating.
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/pid/stat), to detect pid reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub owner: String,
    pub cgroup: CgroupRecord,
    /// True when the container has its own pid namespace: killing init then kills all.
    pub own_pid_ns: bool,
    /// Set while `create` is in progress.
    #[serde(default)]
    pub creating: bool,
    /// The container's mounts live in the host's mount namespace (it has none of its
    /// own), so destroying it must unmount them.
    #[serde(default)]
    pub host_mounts: bool,
    /// In the init, the number of the read end of a close-on-exec pipe whose write end
    /// only the init holds: `start` takes a copy (pidfd_getfd) and reads it to end of
    /// file, which comes when the init execs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_done_fd: Option<i32>,
    /// The config's hooks, for the phases that run after `create` (poststart, poststop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// The JSON `state` and `list -f json` print, in runc's field order.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'a str,
}

/// A container's state directory.
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

/// Checks a container id as runc does; the id becomes a directory name.
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadId(id.to_owned()))
    }
}

/// Directory of container `id` under `root`.
pub fn dir_of(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    check_id(id)?;
    Ok(root.join(id))
}

/// Creates the state directory of a new container; fails if it exists.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    let dir = dir_of(root, id)?;
    fs::create_dir_all(root).map_err(io_err(root))?;
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::Exists(id.to_owned()))
        }
        Err(e) => Err(io_err(&dir)(e)),
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Container {
    /// Loads container `id` from `root`.
    pub fn load(root: &Path, id: &str) -> Result<Self, StateError> {
        let dir = dir_of(root, id)?;
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_owned()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let record = serde_json::from_slice(&bytes)
            .map_err(|source| StateError::Corrupt { path, source })?;
        Ok(Self { dir, record })
    }

    /// Writes the record atomically: a temporary file, fsync-free (tmpfs), then rename.
    pub fn save(&self) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let json = serde_json::to_vec(&self.record).expect("state serialises");
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&json).map_err(io_err(&tmp))?;
        let dst = self.dir.join(STATE_FILE);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Keeps the config the container was created from, for `exec` and hooks: the
    /// bundle may change or vanish while the container runs.
    pub fn save_config(&self, spec: &oci_spec::runtime::Spec) -> Result<(), StateError> {
        let path = self.dir.join(CONFIG_FILE);
        let json = serde_json::to_vec(spec).expect("spec serialises");
        fs::write(&path, json).map_err(io_err(&path))
    }

    /// The config saved by [`Container::save_config`].
    pub fn config(&self) -> Result<oci_spec::runtime::Spec, StateError> {
        let path = self.dir.join(CONFIG_FILE);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// The exec fifo path.
    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Derives the current status from the init process and the fifo.
    pub fn status(&self) -> Status {
        if self.record.creating {
            return Status::Creating;
        }
        if !crate::procinfo::alive(self.record.pid, self.record.pid_start) {
            return Status::Stopped;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if crate::cgroups::is_frozen(&self.record.cgroup) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The runc-shaped report for `state` and `list`.
    pub fn report(&self, status: Status) -> Report<'_> {
        let r = &self.record;
        Report {
            oci_version: &r.oci_version,
            id: &r.id,
            pid: if status == Status::Stopped { 0 } else { r.pid },
            status,
            bundle: &r.bundle,
            rootfs: &r.rootfs,
            created: &r.created,
            annotations: &r.annotations,
            owner: &r.owner,
        }
    }

    /// Removes the state directory.
    pub fn remove_dir(&self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&self.dir)(e)),
            _ => Ok(()),
        }
    }
}

/// Ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| check_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let dir = create_dir(root.path(), "c1").unwrap();
        assert!(matches!(
            create_dir(root.path(), "c1"),
            Err(StateError::Exists(_))
        ));
        let c = Container {
            dir,
            record: Record {
                oci_version: "1.2.0".into(),
                id: "c1".into(),
                pid: 0,
                pid_start: 0,
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                created: "x".into(),
                annotations: HashMap::new(),
                owner: "root".into(),
                cgroup: CgroupRecord::default(),
                own_pid_ns: true,
                creating: true,
                host_mounts: false,
                exec_done_fd: None,
                hooks: None,
            },
        };
        c.save().unwrap();
        let back = Container::load(root.path(), "c1").unwrap();
        assert_eq!(back.status(), Status::Creating);
        assert_eq!(list_ids(root.path()).unwrap(), vec!["c1".to_string()]);
        back.remove_dir().unwrap();
        assert!(matches!(
            Container::load(root.path(), "c1"),
            Err(StateError::NotFound(_))
        ));
    }
}
