//! The daemon's config file: per-registry mirrors, plain-HTTP hosts and TLS settings, like
//! containerd's `hosts.toml`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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
    /// A registry section whose settings contradict each other or cannot be used.
    #[error("config {path}: [registries.\"{host}\"]: {reason}")]
    Registry {
        path: PathBuf,
        host: String,
        reason: &'static str,
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
    /// The streaming server behind Exec, Attach and PortForward.
    #[serde(default)]
    pub streaming: StreamingConfig,
}

/// Where the streaming server listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// `ip:port`; port 0 takes any free port. The URLs the RPCs return name the address
    /// actually bound (loopback for a wildcard address). Loopback by default: the streams
    /// carry no authentication beyond their one-time tokens.
    #[serde(default = "default_streaming_address")]
    pub address: SocketAddr,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: default_streaming_address(),
        }
    }
}

fn default_streaming_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
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

/// One registry host's settings. The TLS settings apply to connections to this host, also
/// when it serves as another registry's mirror.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Mirrors tried in order before the host itself: `http://127.0.0.1:5000` or a bare host.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// `true`: plain HTTP. `false`: HTTPS even on loopback. Unset: HTTPS, except plain HTTP
    /// for a loopback host with no TLS settings (Docker's default).
    #[serde(default)]
    pub insecure: Option<bool>,
    /// PEM file of CA certificates trusted for this host besides the system's
    /// (containerd's `ca`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to this host; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate (containerd's `skip_verify`). A warning is logged on
    /// each pull that uses it.
    #[serde(default)]
    pub skip_verify: bool,
}

impl RegistryConfig {
    /// True when a TLS setting is given, which makes the host HTTPS even on loopback.
    pub fn has_tls_settings(&self) -> bool {
        self.ca_file.is_some()
            || self.client_cert.is_some()
            || self.client_key.is_some()
            || self.skip_verify
    }

    /// Why this section is unusable, if it is.
    fn problem(&self) -> Option<&'static str> {
        let paths = [&self.ca_file, &self.client_cert, &self.client_key];
        if self.insecure == Some(true) && self.has_tls_settings() {
            Some("insecure = true (plain HTTP) contradicts the TLS settings")
        } else if self.client_cert.is_some() != self.client_key.is_some() {
            Some("client_cert and client_key must be given together")
        } else if paths
            .iter()
            .any(|p| p.as_ref().is_some_and(|p| p.is_relative()))
        {
            Some("ca_file, client_cert and client_key must be absolute paths")
        } else {
            None
        }
    }
}

/// Where to fetch a repository from: a base URL such as `http://127.0.0.1:5000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    /// `host[:port]` of `base`: the section whose TLS settings apply.
    pub host: String,
}

impl Endpoint {
    /// An endpoint for a base URL `scheme://host[:port][/prefix]`.
    pub fn new(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Self {
            host: host_of_url(&base).to_string(),
            base,
        }
    }
}

/// The `host[:port]` of an `http(s)://` URL (empty for anything else).
pub fn host_of_url(url: &str) -> &str {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or("");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials in a URL (`user:pw@host`) are not the host.
    authority.rsplit('@').next().unwrap_or("")
}

impl Config {
    /// Loads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let c = Self::parse(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?;
                c.check(path)?;
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses TOML text (without [`Config::check`]).
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Refuses registry sections whose settings contradict each other; `path` names the file
    /// in the error.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        for (host, r) in &self.registries {
            if let Some(reason) = r.problem() {
                return Err(ConfigError::Registry {
                    path: path.to_path_buf(),
                    host: host.clone(),
                    reason,
                });
            }
        }
        Ok(())
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
        out.push(Endpoint {
            base: format!("{}://{upstream}", self.scheme(upstream, registry)),
            host: upstream.to_string(),
        });
        out
    }

    fn endpoint_for(&self, mirror: &str) -> Endpoint {
        let m = mirror.trim_end_matches('/');
        if m.starts_with("http://") || m.starts_with("https://") {
            return Endpoint::new(m);
        }
        Endpoint {
            base: format!("{}://{m}", self.scheme(m, m)),
            host: m.to_string(),
        }
    }

    /// The scheme for `host`, configured by the section `section` (`docker.io` configures
    /// `registry-1.docker.io`).
    fn scheme(&self, host: &str, section: &str) -> &'static str {
        let cfg = self.registries.get(section);
        match cfg.and_then(|c| c.insecure) {
            Some(true) => "http",
            Some(false) => "https",
            None if is_loopback(host) && !cfg.is_some_and(RegistryConfig::has_tls_settings) => {
                "http"
            }
            None => "https",
        }
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

    fn bases(c: &Config, registry: &str) -> Vec<String> {
        c.endpoints(registry).into_iter().map(|e| e.base).collect()
    }

    #[test]
    fn tls_settings_parse() {
        let c = Config::parse(
            r#"
            [registries."reg.example:5000"]
            ca_file = "/etc/hull/certs/reg-ca.pem"
            client_cert = "/etc/hull/certs/client.pem"
            client_key = "/etc/hull/certs/client-key.pem"
            [registries."lab.example"]
            skip_verify = true
            "#,
        )
        .unwrap();
        c.check(Path::new("cri.toml")).unwrap();
        let r = &c.registries["reg.example:5000"];
        assert_eq!(
            r.ca_file.as_deref(),
            Some(Path::new("/etc/hull/certs/reg-ca.pem"))
        );
        assert_eq!(
            r.client_key.as_deref(),
            Some(Path::new("/etc/hull/certs/client-key.pem"))
        );
        assert!(r.has_tls_settings() && !r.skip_verify && r.insecure.is_none());
        assert!(c.registries["lab.example"].skip_verify);
    }

    #[test]
    fn contradictory_tls_settings_are_refused_naming_the_section() {
        for (body, want) in [
            ("insecure = true\nca_file = \"/ca.pem\"", "contradicts"),
            ("insecure = true\nskip_verify = true", "contradicts"),
            ("client_cert = \"/c.pem\"", "together"),
            ("client_key = \"/k.pem\"", "together"),
            ("ca_file = \"ca.pem\"", "absolute"),
        ] {
            let c = Config::parse(&format!("[registries.\"r:1\"]\n{body}\n")).unwrap();
            let e = c.check(Path::new("/etc/hull/cri.toml")).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{body}: {msg}");
            assert!(msg.contains("[registries.\"r:1\"]") && msg.contains("/etc/hull/cri.toml"));
        }
    }

    #[test]
    fn streaming_address_defaults_to_any_loopback_port() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.streaming.address, "127.0.0.1:0".parse().unwrap());
        let c = Config::parse("[streaming]\naddress = \"0.0.0.0:10010\"\n").unwrap();
        assert_eq!(c.streaming.address.port(), 10010);
        assert!(Config::parse("[streaming]\naddress = \"localhost\"\n").is_err());
        assert!(Config::parse("[streaming]\nport = 1\n").is_err());
    }

    #[test]
    fn load_checks_the_registry_sections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cri.toml");
        std::fs::write(&p, "[registries.\"r\"]\nclient_cert = \"/c.pem\"\n").unwrap();
        assert!(matches!(
            Config::load(&p),
            Err(ConfigError::Registry { host, .. }) if host == "r"
        ));
    }

    #[test]
    fn loopback_with_tls_settings_or_insecure_false_is_https() {
        let c = Config::parse(
            r#"
            [registries."127.0.0.1:5443"]
            ca_file = "/ca.pem"
            [registries."localhost:5443"]
            insecure = false
            [registries."localhost:5000"]
            [registries."registry.k8s.io"]
            mirrors = ["https://127.0.0.1:6000/", "127.0.0.1:5443", "localhost:5000"]
            [registries."docker.io"]
            ca_file = "/docker-ca.pem"
            "#,
        )
        .unwrap();
        assert_eq!(bases(&c, "127.0.0.1:5443"), ["https://127.0.0.1:5443"]);
        assert_eq!(bases(&c, "localhost:5443"), ["https://localhost:5443"]);
        assert_eq!(bases(&c, "localhost:5000"), ["http://localhost:5000"]);
        let e = c.endpoints("registry.k8s.io");
        let hosts: Vec<_> = e.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "127.0.0.1:6000",
                "127.0.0.1:5443",
                "localhost:5000",
                "registry.k8s.io"
            ]
        );
        assert_eq!(e[0].base, "https://127.0.0.1:6000");
        assert_eq!(e[1].base, "https://127.0.0.1:5443");
        assert_eq!(e[2].base, "http://localhost:5000");
        // docker.io's section configures its upstream host.
        assert_eq!(bases(&c, "docker.io"), ["https://registry-1.docker.io"]);
    }

    #[test]
    fn host_of_url_takes_the_authority() {
        assert_eq!(host_of_url("https://h:5000/v2/x"), "h:5000");
        assert_eq!(host_of_url("http://[::1]:5000"), "[::1]:5000");
        assert_eq!(
            host_of_url("https://u:p@auth.example/token?x=1"),
            "auth.example"
        );
        assert_eq!(host_of_url("ftp://h"), "");
        assert_eq!(Endpoint::new("https://m.example/prefix/").host, "m.example");
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
