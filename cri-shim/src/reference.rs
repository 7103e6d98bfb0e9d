//! Image references, normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// The registry of references without a host part.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Errors of reference parsing.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("empty image reference")]
    Empty,
    /// A repository path component is not `[a-z0-9]+` joined by `.`, `_`, `__` or `-`.
    #[error("invalid repository name in image reference {reference:?}")]
    Repository { reference: String },
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag in image reference {reference:?}")]
    Tag { reference: String },
    /// The host part is malformed.
    #[error("invalid registry host in image reference {reference:?}")]
    Host { reference: String },
    /// The digest part is malformed or not sha256.
    #[error("invalid digest in image reference {reference:?}")]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
}

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest, when pulled by digest.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `reference`.
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        if reference.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::Digest {
                    reference: reference.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: reference.to_string(),
                });
            }
        }
        let (registry, repository) = split_host(name);
        let registry = match registry {
            Some(h) if !valid_host(h) => {
                return Err(ReferenceError::Host {
                    reference: reference.to_string(),
                });
            }
            Some("index.docker.io") | None => DEFAULT_REGISTRY.to_string(),
            Some(h) => h.to_string(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if !repository.split('/').all(valid_component) {
            return Err(ReferenceError::Repository {
                reference: reference.to_string(),
            });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when there is a tag (a RepoTag).
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` (a RepoDigest).
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What to ask the registry's manifests endpoint for: the digest, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits off the first component when it is a host: it has a `.` or `:`, or is `localhost`.
fn split_host(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_host(host: &str) -> bool {
    let (h, port) = if host.starts_with('[') {
        let Some(i) = host.find(']') else {
            return false;
        };
        let tail = &host[i + 1..];
        match tail.strip_prefix(':') {
            Some(p) => (&host[..=i], Some(p)),
            None if tail.is_empty() => (&host[..=i], None),
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(ip6) => !ip6.is_empty() && ip6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
        None => {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                && !h.starts_with(['.', '-'])
        }
    };
    port_ok && host_ok
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    // Separators: one `.`, one or two `_`, or any run of `-`, between alphanumerics.
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"_.-".contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9700f9a2f3e7a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5";

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = Reference::parse("user/app:1.0").unwrap();
        assert_eq!(r.tagged().unwrap(), "docker.io/user/app:1.0");
        let r = Reference::parse("index.docker.io/library/nginx").unwrap();
        assert_eq!(r.name(), "docker.io/library/nginx");
    }

    #[test]
    fn hosts_ports_and_localhost() {
        let r = Reference::parse("127.0.0.1:5000/hull/busybox:latest").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "hull/busybox")
        );
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.registry, "localhost");
        let r = Reference::parse("registry.k8s.io/e2e-test-images/busybox:1.29-2").unwrap();
        assert_eq!(r.repository, "e2e-test-images/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.29-2"));
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("registry.k8s.io/pause@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        let r = Reference::parse(&format!("pause:3.9@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.9"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/pause:3.9@{D}"));
        assert!(matches!(
            Reference::parse("pause@sha256:12"),
            Err(ReferenceError::Digest { .. })
        ));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "UPPER/case",
            "a//b",
            "-a",
            "a:",
            "a:-x",
            "a/b:bad/tag",
            "a..b",
            "x/.y",
            "host:port:1/a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::parse("a__b/c-d.e").is_ok());
    }
}
