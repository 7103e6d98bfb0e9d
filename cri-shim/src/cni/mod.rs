//! The CNI driver: attaches a pod's network namespace to the network configured in a conf dir
//! (default `/etc/cni/net.d`, the lexically first `.conflist`/`.conf`/`.json`), by executing
//! the plugins (default dirs `/usr/lib/cni`, Debian's, then `/opt/cni/bin`).
//!
//! - ADD runs the plugins in order, each getting the previous one's result as `prevResult`;
//!   the last result is the attachment's. If a plugin fails, DEL runs for the whole list, so
//!   no veth, IP allocation or iptables rule stays behind.
//! - DEL runs them in reverse and is idempotent.
//! - A cache file per attachment (`<cache dir>/<container id>-<ifname>.json`) holds the config
//!   list, the port mappings and the result. It is written *before* the first plugin runs, so
//!   a DEL after a restart of hull-cri (even mid-ADD) uses the very config ADD used, with the
//!   result as `prevResult`, even if the conf dir changed meanwhile.

pub mod config;
pub mod exec;
pub mod result;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::config::NetworkConfig;
use self::exec::{CallEnv, Op};
pub use self::result::{CniResult, IpConfig};

/// Errors of the CNI driver. [`CniError::code`] gives the gRPC status code for each.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The conf dir has no network configuration.
    #[error("no cni network config in {dir}")]
    NoConfig { dir: PathBuf },
    /// A config file is not JSON.
    #[error("cni config {path}")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A config file is JSON but not a valid network config.
    #[error("cni config {path}: {why}")]
    InvalidConfig { path: PathBuf, why: String },
    /// A config's `cniVersion` is not one whose results this driver parses.
    #[error("cni config {path}: cniVersion {version:?} unsupported (0.3.0 to 1.0.0)")]
    UnsupportedVersion { path: PathBuf, version: String },
    /// No plugin binary of that type in the plugin dirs.
    #[error("cni plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    /// An attachment field is unusable (a `;` in CNI_ARGS, a bad container id...).
    #[error("cni attachment: invalid {field} {value:?}")]
    InvalidArgument { field: &'static str, value: String },
    /// A plugin could not be run.
    #[error("cni plugin {plugin}: run")]
    Spawn {
        plugin: String,
        #[source]
        source: io::Error,
    },
    /// A plugin ran longer than [`exec::PLUGIN_TIMEOUT`] and was killed.
    #[error("cni plugin {plugin} {command}: timed out after {secs} s")]
    Timeout {
        plugin: String,
        command: &'static str,
        secs: u64,
    },
    /// A plugin failed; `code` is the CNI error code (0 when it printed no error object).
    #[error("cni plugin {plugin} {command} failed (code {code}): {msg}")]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
    },
    /// A plugin's ADD result is not a valid result.
    #[error("cni plugin {plugin}: result")]
    BadResult {
        plugin: String,
        #[source]
        source: result::ResultError,
    },
    /// Reading or writing the cache or the conf dir failed.
    #[error("cni: {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cache file is corrupt.
    #[error("cni cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl CniError {
    /// The gRPC status code this error maps to.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            CniError::NoConfig { .. }
            | CniError::ConfigJson { .. }
            | CniError::InvalidConfig { .. }
            | CniError::UnsupportedVersion { .. }
            | CniError::PluginNotFound { .. } => Code::FailedPrecondition,
            CniError::InvalidArgument { .. } => Code::InvalidArgument,
            CniError::Timeout { .. } => Code::DeadlineExceeded,
            // CNI error code 11: "try again later".
            CniError::Plugin { code: 11, .. } => Code::Unavailable,
            CniError::Plugin { .. }
            | CniError::Spawn { .. }
            | CniError::BadResult { .. }
            | CniError::Io { .. }
            | CniError::Cache { .. } => Code::Internal,
        }
    }
}

/// A port of the pod published on the host, given to plugins declaring the `portMappings`
/// capability (`portmap`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Host address to bind; empty = every address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// One pod's attachment to the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The pod sandbox id (`CNI_CONTAINERID`, `K8S_POD_INFRA_CONTAINER_ID`).
    pub container_id: String,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// Interface name in the pod (`CNI_IFNAME`), normally `eth0`.
    pub ifname: String,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: String,
    /// `K8S_POD_NAME`.
    pub pod_name: String,
    /// `K8S_POD_UID`.
    pub pod_uid: String,
    /// Published ports.
    pub port_mappings: Vec<PortMapping>,
}

impl Attachment {
    /// Checks the fields that end up in file names and in `CNI_ARGS`.
    fn validate(&self) -> Result<(), CniError> {
        let bad = |field, value: &str| CniError::InvalidArgument {
            field,
            value: value.to_owned(),
        };
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !s.starts_with('.')
        };
        if !id_ok(&self.container_id) {
            return Err(bad("container id", &self.container_id));
        }
        if !id_ok(&self.ifname) || self.ifname.len() > 15 {
            return Err(bad("interface name", &self.ifname));
        }
        for (field, v) in [
            ("pod namespace", &self.pod_namespace),
            ("pod name", &self.pod_name),
            ("pod uid", &self.pod_uid),
        ] {
            if v.contains([';', '=', '\0']) {
                return Err(bad(field, v));
            }
        }
        for m in &self.port_mappings {
            if !["tcp", "udp", "sctp"].contains(&m.protocol.as_str()) {
                return Err(bad("port protocol", &m.protocol));
            }
        }
        Ok(())
    }

    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod_namespace, self.pod_name, self.container_id, self.pod_uid
        )
    }
}

/// What the cache file holds for one attachment.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    config: Value,
    attachment: Attachment,
    result: Option<Value>,
}

/// The CNI driver.
#[derive(Clone, Debug)]
pub struct Cni {
    conf_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
}

impl Cni {
    /// Default configuration directory.
    pub const DEFAULT_CONF_DIR: &'static str = "/etc/cni/net.d";
    /// Default plugin directories, searched in order.
    pub const DEFAULT_PLUGIN_DIRS: [&'static str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

    /// A driver reading configs in `conf_dir`, plugins in `plugin_dirs`, keeping its cache in
    /// `cache_dir` (created on first ADD).
    pub fn new(conf_dir: PathBuf, plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Cni {
        Cni {
            conf_dir,
            plugin_dirs,
            cache_dir,
        }
    }

    /// The current network config, if every plugin it names is installed (NetworkReady).
    pub fn status(&self) -> Result<NetworkConfig, CniError> {
        let cfg = self.current()?;
        for ty in cfg.plugin_types() {
            exec::find_plugin(ty, &self.plugin_dirs)?;
        }
        Ok(cfg)
    }

    fn current(&self) -> Result<NetworkConfig, CniError> {
        config::load(&self.conf_dir)?.ok_or_else(|| CniError::NoConfig {
            dir: self.conf_dir.clone(),
        })
    }

    fn cache_path(&self, att: &Attachment) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}.json", att.container_id, att.ifname))
    }

    fn call_env(&self, att: &Attachment) -> CallEnv {
        CallEnv {
            container_id: att.container_id.clone(),
            netns: att.netns.clone(),
            ifname: att.ifname.clone(),
            args: att.cni_args(),
            path: self
                .plugin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        }
    }

    /// Attaches `att.netns` to the network. On failure, everything the plugins did is undone.
    pub async fn add(&self, att: &Attachment) -> Result<CniResult, CniError> {
        att.validate()?;
        let cfg = self.current()?;
        self.write_cache(att, &cfg, None)?;
        let mut prev = None;
        let outcome = self.add_chain(&cfg, att, &mut prev).await;
        if outcome.is_err() {
            // The ADD failure is the error returned; a cleanup failure is a second, separate
            // problem, so it is logged (and the cache kept, for a later DEL to retry).
            match self.run_chain(&cfg, att, prev.as_ref(), true).await {
                Ok(()) => self.remove_cache(att)?,
                Err(e) => tracing::warn!(
                    container_id = %att.container_id,
                    error = %error_chain(&e),
                    "cni: cleanup after a failed ADD failed; DEL will retry"
                ),
            }
        }
        outcome
    }

    async fn add_chain(
        &self,
        cfg: &NetworkConfig,
        att: &Attachment,
        prev: &mut Option<Value>,
    ) -> Result<CniResult, CniError> {
        let env = self.call_env(att);
        let mut last = "";
        for plugin in &cfg.plugins {
            let (ty, binary, stdin) = self.prepare(cfg, plugin, att, prev.as_ref())?;
            last = ty;
            let out = exec::run(ty, &binary, Op::Add, &env, &stdin).await?;
            let value = serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
                plugin: ty.to_owned(),
                source: result::ResultError::Json(e),
            })?;
            *prev = Some(value);
        }
        let raw = prev.clone().unwrap_or(Value::Null);
        let parsed = result::parse(raw).map_err(|source| CniError::BadResult {
            plugin: last.to_owned(),
            source,
        })?;
        self.write_cache(att, cfg, Some(&parsed.raw))?;
        Ok(parsed)
    }

    /// Detaches the pod: DEL for every plugin, in reverse, with the config and result cached by
    /// ADD (else the current config). Idempotent; the cache is removed once DEL succeeded.
    pub async fn del(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let (cfg, cached_att, prev) = match self.read_cache(att)? {
            Some(entry) => {
                let cfg = config::from_value(entry.config, &self.cache_path(att))?;
                let mut cached = entry.attachment;
                cached.netns = att.netns.clone();
                (cfg, cached, entry.result)
            }
            None => match config::load(&self.conf_dir)? {
                Some(cfg) => (cfg, att.clone(), None),
                None => return Ok(()), // never attached by this driver, no network to leave
            },
        };
        self.run_chain(&cfg, &cached_att, prev.as_ref(), false)
            .await?;
        self.remove_cache(att)
    }

    /// DEL for every plugin in reverse; every plugin runs even if one fails, the first error is
    /// returned. `after_failed_add` skips plugins that are not installed: this very ADD could
    /// not have run them, so they hold nothing (a plain DEL reports them, since a binary
    /// removed after ADD may leave its work behind).
    async fn run_chain(
        &self,
        cfg: &NetworkConfig,
        att: &Attachment,
        prev: Option<&Value>,
        after_failed_add: bool,
    ) -> Result<(), CniError> {
        let env = self.call_env(att);
        let mut first_err = None;
        for plugin in cfg.plugins.iter().rev() {
            let r = match self.prepare(cfg, plugin, att, prev) {
                Ok((ty, binary, stdin)) => exec::run(ty, &binary, Op::Del, &env, &stdin).await,
                Err(CniError::PluginNotFound { .. }) if after_failed_add => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The plugin's type, binary and stdin: its object with `name`, `cniVersion`,
    /// `prevResult` and the `runtimeConfig` of the capabilities it declares.
    fn prepare<'c>(
        &self,
        cfg: &NetworkConfig,
        plugin: &'c Map<String, Value>,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(&'c str, PathBuf, Vec<u8>), CniError> {
        let ty = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let binary = exec::find_plugin(ty, &self.plugin_dirs)?;
        Ok((ty, binary, plugin_stdin(cfg, plugin, att, prev)))
    }

    fn write_cache(
        &self,
        att: &Attachment,
        cfg: &NetworkConfig,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| CniError::Io { op, path, source }
        };
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(io("create cache directory", &self.cache_dir))?;
        let entry = CacheEntry {
            config: cfg.to_value(),
            attachment: att.clone(),
            result: result.cloned(),
        };
        let path = self.cache_path(att);
        let bytes = serde_json::to_vec(&entry).expect("a cache entry serializes");
        crate::fsutil::write_atomic(&path, &bytes).map_err(io("write cache", &path))
    }

    fn read_cache(&self, att: &Attachment) -> Result<Option<CacheEntry>, CniError> {
        let path = self.cache_path(att);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CniError::Io {
                    op: "read cache",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CniError::Cache { path, source })
    }

    fn remove_cache(&self, att: &Attachment) -> Result<(), CniError> {
        let path = self.cache_path(att);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CniError::Io {
                op: "remove cache",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// The stdin of one plugin.
fn plugin_stdin(
    cfg: &NetworkConfig,
    plugin: &Map<String, Value>,
    att: &Attachment,
    prev: Option<&Value>,
) -> Vec<u8> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), cfg.name.clone().into());
    conf.insert("cniVersion".into(), cfg.cni_version.clone().into());
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    let wants_ports = plugin
        .get("capabilities")
        .and_then(|c| c.get("portMappings"))
        .and_then(Value::as_bool)
        == Some(true);
    if wants_ports && !att.port_mappings.is_empty() {
        conf.insert(
            "runtimeConfig".into(),
            serde_json::json!({ "portMappings": att.port_mappings }),
        );
    }
    serde_json::to_vec(&conf).expect("a JSON object serializes")
}

/// `e` and its sources, joined by ": ", for a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
