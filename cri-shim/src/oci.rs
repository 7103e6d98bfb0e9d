//! RuntimeClass handlers and the OCI runtime CLI they name.
//!
//! Every handler is a runc-compatible binary driven through its command line, exactly as
//! containerd's runc shim and CRI-O drive runc: `create` is run by the container's monitor
//! (it must be the parent of the init), everything else by hull-cri directly.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::config::RuntimeConfig;

/// Errors of handler lookup and runtime invocations.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No handler of that name is configured.
    #[error("unknown runtime handler {name:?} (configured: {known})")]
    UnknownHandler { name: String, known: String },
    /// The runtime binary could not be started.
    #[error("starting {runtime}")]
    Spawn {
        runtime: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime ran and failed; `message` is what it printed.
    #[error("{runtime} {op} {id}: {message}")]
    Failed {
        runtime: PathBuf,
        op: &'static str,
        id: String,
        message: String,
    },
}

/// One handler: a runtime binary and its state root.
#[derive(Debug)]
pub struct Handler {
    /// The handler's name as RuntimeClass gives it (`""` is the default).
    pub name: String,
    /// The runtime binary.
    pub path: PathBuf,
    /// The runtime's `--root`; one per binary so handlers never see each other's state.
    pub root: PathBuf,
}

/// The configured handlers.
#[derive(Debug)]
pub struct Handlers {
    map: BTreeMap<String, Arc<Handler>>,
}

impl Handlers {
    /// `""` and `"runc"` map to `hull`, and `"sandbox"` to `hull-sandbox` (when given),
    /// unless the config names them; every handler keeps its state under `state/<name>`.
    pub fn new(
        config: &BTreeMap<String, RuntimeConfig>,
        hull: PathBuf,
        sandbox: Option<PathBuf>,
        state: &Path,
    ) -> Self {
        let mut map = BTreeMap::new();
        let default = Arc::new(Handler {
            name: String::new(),
            path: hull,
            root: state.join("hull"),
        });
        map.insert(String::new(), default.clone());
        map.insert("runc".to_string(), default);
        if let Some(path) = sandbox {
            let h = Handler {
                name: "sandbox".to_string(),
                path,
                root: state.join("sandbox"),
            };
            map.insert("sandbox".to_string(), Arc::new(h));
        }
        for (name, c) in config {
            let key = if name.is_empty() { "default" } else { name };
            map.insert(
                name.clone(),
                Arc::new(Handler {
                    name: name.clone(),
                    path: c.path.clone(),
                    root: state.join(key),
                }),
            );
        }
        Self { map }
    }

    /// The handler called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Handler>, OciError> {
        self.map
            .get(name)
            .cloned()
            .ok_or_else(|| OciError::UnknownHandler {
                name: name.to_string(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Handler names, `""` first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

impl Handler {
    /// A command for this runtime with its `--root` set.
    pub fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.path);
        c.arg("--root").arg(&self.root);
        c.stdin(Stdio::null()).kill_on_drop(false);
        c
    }

    /// Runs `<runtime> <op> <args…> <id> <trailing…>`; a failure carries what it printed.
    async fn run(
        &self,
        op: &'static str,
        args: &[&OsStr],
        id: &str,
        trailing: &[&OsStr],
    ) -> Result<(), OciError> {
        let out = self
            .command()
            .arg(op)
            .args(args)
            .arg(id)
            .args(trailing)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| OciError::Spawn {
                runtime: self.path.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if message.is_empty() {
            message = format!("exited with {}", out.status);
        }
        Err(OciError::Failed {
            runtime: self.path.clone(),
            op,
            id: id.to_string(),
            message,
        })
    }

    /// `start`: lets the created container's init run its process.
    pub async fn start(&self, id: &str) -> Result<(), OciError> {
        self.run("start", &[], id, &[]).await
    }

    /// `kill [--all] <id> <signal>`.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), OciError> {
        let flags: &[&OsStr] = if all { &["--all".as_ref()] } else { &[] };
        self.run("kill", flags, id, &[signal.as_ref()]).await
    }

    /// `delete --force`: removes the container's runtime state, killing what is left.
    pub async fn delete(&self, id: &str) -> Result<(), OciError> {
        match self.run("delete", &["--force".as_ref()], id, &[]).await {
            Err(OciError::Failed { message, .. }) if is_not_found(&message) => Ok(()),
            r => r,
        }
    }

    /// `update -r <file>`: applies new resources (an OCI `LinuxResources` JSON file).
    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), OciError> {
        self.run("update", &["-r".as_ref(), resources.as_os_str()], id, &[])
            .await
    }
}

/// True when a runtime's message says the container does not exist (runc and hull both
/// say "does not exist"; crun says "not found" or "No such file").
pub fn is_not_found(message: &str) -> bool {
    message.contains("does not exist")
        || message.contains("not found")
        || message.contains("No such file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_runc_are_hull_and_unknown_names_fail() {
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "crun".to_string(),
            RuntimeConfig {
                path: PathBuf::from("/usr/bin/crun"),
            },
        );
        let h = Handlers::new(&cfg, PathBuf::from("/bin/hull"), None, Path::new("/run/x"));
        assert_eq!(h.get("").unwrap().path, Path::new("/bin/hull"));
        assert_eq!(h.get("runc").unwrap().root, Path::new("/run/x/hull"));
        assert_eq!(h.get("crun").unwrap().root, Path::new("/run/x/crun"));
        let e = h.get("kata").unwrap_err().to_string();
        assert!(e.contains("\"kata\"") && e.contains("crun"), "{e}");
    }
}
