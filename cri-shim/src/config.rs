//! The daemon's config file: per-registry mirrors and insecure hosts, like containerd's
//! `hosts.toml`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of loading the config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("reading config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("parsing config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// The config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per registry host (as in image references, `docker.io`, `registry.k8s.io`, `h:5000`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// RuntimeClass handler name → OCI runtime. `""` and `"runc"` default to hull.
    #[serde(default)]
    pub runtimes: BTreeMap<String, RuntimeConfig>,
    /// Pod networking.
    #[serde(default)]
    pub cni: CniConfig,
}

/// One RuntimeClass handler: a runc-compatible OCI runtime binary.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The runtime binary (`/usr/sbin/runc`, `/usr/bin/crun`, …).
    pub path: PathBuf,
}

/// Where CNI network configs and plugins are.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniConfig {
    /// Directory of `*.conflist` / `*.conf` files; the lexically first is used.
    #[serde(default = "default_cni_conf_dir")]
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order.
    #[serde(default = "default_cni_bin_dirs")]
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            conf_dir: default_cni_conf_dir(),
            bin_dirs: default_cni_bin_dirs(),
        }
    }
}

fn default_cni_conf_dir() -> PathBuf {
    PathBuf::from("/etc/cni/net.d")
}

/// Debian's containernetworking-plugins install to /usr/lib/cni; upstream's to /opt/cni/bin.
fn default_cni_bin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]
}

/// One registry host's settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Mirrors tried in order before the host itself: `http://127.0.0.1:5000` or a bare host.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Use plain HTTP for this host.
    #[serde(default)]
    pub insecure: bool,
}

/// Where to fetch a repository from: a base URL such as `http://127.0.0.1:5000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
}

impl Config {
    /// Loads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The endpoints for `registry`, in the order to try them: mirrors, then the host.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let cfg = self.registries.get(registry);
        let mut out: Vec<Endpoint> = cfg
            .map(|c| c.mirrors.iter().map(|m| self.endpoint_for(m)).collect())
            .unwrap_or_default();
        let upstream = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let insecure = cfg.is_some_and(|c| c.insecure);
        out.push(Endpoint {
            base: format!("{}://{upstream}", scheme(upstream, insecure)),
        });
        out
    }

    fn endpoint_for(&self, mirror: &str) -> Endpoint {
        let m = mirror.trim_end_matches('/');
        if m.starts_with("http://") || m.starts_with("https://") {
            return Endpoint {
                base: m.to_string(),
            };
        }
        let insecure = self.registries.get(m).is_some_and(|c| c.insecure);
        Endpoint {
            base: format!("{}://{m}", scheme(m, insecure)),
        }
    }
}

fn scheme(host: &str, insecure: bool) -> &'static str {
    if insecure || is_loopback(host) {
        "http"
    } else {
        "https"
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port (Docker's default
/// insecure set).
pub fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_first_then_upstream() {
        let c = Config::parse(
            r#"
            [registries."registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000/", "mirror.example:443"]
            [registries."docker.io"]
            mirrors = ["localhost:5000"]
            [registries."reg.internal:5000"]
            insecure = true
            "#,
        )
        .unwrap();
        let e: Vec<_> = c
            .endpoints("registry.k8s.io")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(
            e,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example:443",
                "https://registry.k8s.io"
            ]
        );
        let e: Vec<_> = c
            .endpoints("docker.io")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(e, ["http://localhost:5000", "https://registry-1.docker.io"]);
        assert_eq!(
            c.endpoints("reg.internal:5000")[0].base,
            "http://reg.internal:5000"
        );
        assert_eq!(c.endpoints("quay.io")[0].base, "https://quay.io");
    }

    #[test]
    fn loopback_is_plain_http_by_default() {
        let c = Config::default();
        assert_eq!(
            c.endpoints("127.0.0.1:5000")[0].base,
            "http://127.0.0.1:5000"
        );
        assert_eq!(c.endpoints("[::1]:5000")[0].base, "http://[::1]:5000");
        assert!(is_loopback("127.1.2.3"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("localhost.evil.com"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("[registries.\"x\"]\nmirror = []").is_err());
    }

    #[test]
    fn missing_file_is_default() {
        let c = Config::load(Path::new("/nonexistent/hull-cri.toml")).unwrap();
        assert!(c.registries.is_empty());
    }
}
