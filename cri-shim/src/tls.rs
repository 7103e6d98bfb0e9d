//! HTTP clients for registries: one per registry host with TLS settings (extra CA, client
//! certificate, skip_verify), one shared by all other hosts. Each is built once, at start,
//! and reused by every pull, so connections are pooled per host.
//!
//! Trust: the system's roots (`/etc/ssl/certs`, read by rustls-native-certs) for every host,
//! plus a host's `ca_file`. The host name or IP is verified against the certificate's SANs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Certificate, Client, ClientBuilder, Identity};

use crate::config::{host_of_url, Config, RegistryConfig};

/// Errors of building the clients: each names the registry section and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file cannot be read.
    #[error("registry {host}: reading {field} {path}")]
    Read {
        host: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configured file is not usable PEM.
    #[error("registry {host}: {field} {path} is not a PEM certificate/key")]
    Pem {
        host: String,
        field: &'static str,
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    /// `ca_file` holds no certificate.
    #[error("registry {host}: ca_file {path} holds no certificate")]
    NoCertificate { host: String, path: PathBuf },
    /// The TLS configuration was refused (a malformed CA certificate, a key not matching).
    #[error("registry {host}: building its HTTPS client")]
    Build {
        host: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The clients, by registry section name.
pub struct Clients {
    default: Client,
    by_host: BTreeMap<String, HostClient>,
}

struct HostClient {
    http: Client,
    skip_verify: bool,
}

impl Clients {
    /// Builds the shared client and one per registry section with TLS settings, reading
    /// their files now so a bad path fails at start, not at the first pull.
    pub fn new(config: &Config) -> Result<Self, TlsError> {
        let default = builder().build().map_err(|source| TlsError::Build {
            host: "(default)".into(),
            source,
        })?;
        let mut by_host = BTreeMap::new();
        for (host, r) in &config.registries {
            if !r.has_tls_settings() {
                continue;
            }
            let http = host_builder(host, r)?
                .build()
                .map_err(|source| TlsError::Build {
                    host: host.clone(),
                    source,
                })?;
            let skip_verify = r.skip_verify;
            by_host.insert(host.clone(), HostClient { http, skip_verify });
        }
        Ok(Self { default, by_host })
    }

    /// The client for connections to `host` (`host[:port]`); `docker.io`'s settings apply to
    /// `registry-1.docker.io`.
    pub fn for_host(&self, host: &str) -> &Client {
        self.lookup(host).map_or(&self.default, |c| &c.http)
    }

    /// The client for `url`'s host (token realms, which may live on another host).
    pub fn for_url(&self, url: &str) -> &Client {
        self.for_host(host_of_url(url))
    }

    /// True when connections to `host` accept any certificate.
    pub fn skips_verify(&self, host: &str) -> bool {
        self.lookup(host).is_some_and(|c| c.skip_verify)
    }

    fn lookup(&self, host: &str) -> Option<&HostClient> {
        self.by_host.get(host).or_else(|| {
            (host == "registry-1.docker.io")
                .then(|| self.by_host.get("docker.io"))
                .flatten()
        })
    }
}

/// What every client shares. TLS 1.2 is the floor rustls supports; that is what registries
/// serve.
fn builder() -> ClientBuilder {
    Client::builder()
        .user_agent(concat!("hull-cri/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
}

fn host_builder(host: &str, r: &RegistryConfig) -> Result<ClientBuilder, TlsError> {
    let mut b = builder();
    if let Some(path) = &r.ca_file {
        let pem = read(host, "ca_file", path)?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|source| TlsError::Pem {
            host: host.to_string(),
            field: "ca_file",
            path: path.clone(),
            source,
        })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                host: host.to_string(),
                path: path.clone(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(cert), Some(key)) = (&r.client_cert, &r.client_key) {
        // reqwest takes the chain and the key as one PEM document.
        let mut pem = read(host, "client_cert", cert)?;
        pem.push(b'\n');
        pem.extend(read(host, "client_key", key)?);
        let id = Identity::from_pem(&pem).map_err(|source| TlsError::Pem {
            host: host.to_string(),
            field: "client_cert/client_key",
            path: cert.clone(),
            source,
        })?;
        b = b.identity(id);
    }
    Ok(b.danger_accept_invalid_certs(r.skip_verify))
}

fn read(host: &str, field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        host: host.to_string(),
        field,
        path: path.to_path_buf(),
        source,
    })
}

/// The TLS failure in an error chain, if a handshake failed: rustls's error, which says
/// what was wrong (`invalid peer certificate: UnknownIssuer`, `… NotValidForName`, …).
pub fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    // An io::Error's source() skips the error it wraps (which may be another io::Error),
    // so look inside it explicitly.
    let wrapped = e
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref);
    if let Some(found) = wrapped.and_then(|w| tls_cause(w)) {
        return Some(found);
    }
    e.source().and_then(tls_cause)
}

/// What an admin can do about a certificate failure with `host`, for the error message.
pub fn hint(host: &str, e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let c = match e {
        rustls::Error::InvalidCertificate(c) => c,
        rustls::Error::AlertReceived(A::BadCertificate | A::CertificateRequired) => {
            return format!(
                ": it refused our client certificate or wants one (client_cert and client_key of [registries.\"{host}\"])"
            )
        }
        _ => return String::new(),
    };
    match c {
        C::UnknownIssuer => format!(
            ": its certificate is not signed by a trusted CA (a private CA goes in ca_file of [registries.\"{host}\"])"
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            format!(": its certificate does not name {host}")
        }
        C::Expired | C::ExpiredContext { .. } => ": its certificate has expired".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn hosts_without_tls_settings_share_the_default_client() {
        let c = Clients::new(&config(
            "[registries.\"a:5000\"]\ninsecure = true\n[registries.\"b\"]\nskip_verify = true\n",
        ))
        .unwrap();
        assert!(c.by_host.contains_key("b") && !c.by_host.contains_key("a:5000"));
        assert!(c.skips_verify("b"));
        assert!(!c.skips_verify("a:5000") && !c.skips_verify("quay.io"));
        assert!(c.skips_verify(host_of_url("https://b/v2/token")));
    }

    #[test]
    fn docker_io_settings_apply_to_its_upstream_host() {
        let c = Clients::new(&config("[registries.\"docker.io\"]\nskip_verify = true\n")).unwrap();
        assert!(c.skips_verify("registry-1.docker.io"));
    }

    #[test]
    fn missing_and_empty_ca_files_are_errors_naming_host_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let text = format!("[registries.\"r\"]\nca_file = \"{}\"\n", missing.display());
        let e = Clients::new(&config(&text)).err().unwrap();
        assert!(matches!(&e, TlsError::Read { host, path, .. } if host == "r" && *path == missing));
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let text = format!("[registries.\"r\"]\nca_file = \"{}\"\n", empty.display());
        let e = Clients::new(&config(&text)).err().unwrap();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    }

    #[test]
    fn a_client_key_without_a_key_block_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let text = format!(
            "[registries.\"r\"]\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
        let e = Clients::new(&config(&text)).err().unwrap();
        assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    }

    #[test]
    fn finds_a_rustls_error_in_a_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::other(inner));
        let e = Outer(nested);
        let found = tls_cause(&e).unwrap();
        assert_eq!(found.to_string(), "invalid peer certificate: UnknownIssuer");
        assert!(hint("r:5000", found).contains("ca_file of [registries.\"r:5000\"]"));
        assert!(tls_cause(&std::io::Error::other("plain")).is_none());
    }
}
