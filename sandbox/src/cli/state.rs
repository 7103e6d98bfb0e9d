//! The sandbox's state directory under `--root`: state.json, the start fifo, the Sentry's
//! log and its control socket.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// hull's state rules refused it (a bad or taken id, an unreadable root).
    #[error(transparent)]
    Hull(#[from] hull::state::StateError),
    /// No such sandbox.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A file could not be read or written.
    #[error("{what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// state.json is corrupt.
    #[error("parsing {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What hull-sandbox keeps about a sandbox between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// Host pid of the Sentry; 0 while creating.
    pub pid: i32,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The cgroup the Sentry was placed in, if any.
    #[serde(default)]
    pub cgroup: Option<hull::state::CgroupRecord>,
}

/// The lifecycle status the OCI `state` operation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Started and running.
    Running,
    /// The Sentry has exited.
    Stopped,
}

impl Status {
    /// The runtime-spec name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// The state directory of `id` (checked as hull checks ids).
pub fn dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    Ok(hull::state::dir_of(root, id)?)
}

/// The start fifo: present until `start`.
pub fn fifo(dir: &Path) -> PathBuf {
    dir.join("start.fifo")
}

/// The Sentry's control socket (exec).
pub fn control(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Loads `id`'s record.
pub fn load(root: &Path, id: &str) -> Result<Record, StateError> {
    let path = dir(root, id)?.join("state.json");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NotFound(id.to_string()))
        }
        Err(source) => {
            return Err(StateError::Io {
                what: "reading",
                path,
                source,
            })
        }
    };
    serde_json::from_slice(&data).map_err(|source| StateError::Parse { path, source })
}

/// Writes `rec` atomically.
pub fn save(root: &Path, rec: &Record) -> Result<(), StateError> {
    let d = dir(root, &rec.id)?;
    let tmp = d.join("state.json.tmp");
    let data = serde_json::to_vec_pretty(rec).unwrap_or_default();
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, d.join("state.json")))
        .map_err(|source| StateError::Io {
            what: "writing",
            path: tmp,
            source,
        })
}

/// The status of a sandbox from its record: the Sentry's liveness and the fifo.
pub fn status(root: &Path, rec: &Record) -> Status {
    let alive = pid_alive(rec.pid);
    if !alive {
        return Status::Stopped;
    }
    let d = root.join(&rec.id);
    if fifo(&d).exists() {
        Status::Created
    } else {
        Status::Running
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && hull::procinfo::stat(pid).is_some_and(|(_, st)| st != 'Z' && st != 'X')
}

/// The ids under `root` (hull's listing: directories holding a state.json).
pub fn list(root: &Path) -> Vec<String> {
    hull::state::list_ids(root).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_safe_components() {
        assert!(dir(Path::new("/r"), "abc-1.2_x").is_ok());
        for bad in ["", "../x", "a/b", "..", "sp ace"] {
            assert!(dir(Path::new("/r"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dead_pid_is_stopped() {
        assert!(!pid_alive(i32::MAX));
        assert!(pid_alive(std::process::id() as i32));
    }
}
