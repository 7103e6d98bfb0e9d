//! OCI and Docker schema2 manifests, indexes and image configs: parsing and validation of
//! untrusted registry content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema1 (signed) manifest: refused.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header of manifest requests.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs larger than this are refused (registry content is untrusted).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Errors of manifest and config parsing.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON of the expected shape.
    #[error("malformed {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A media type this implementation does not handle.
    #[error("unsupported media type {media_type:?}")]
    MediaType { media_type: String },
    /// Docker schema1 or another schema version.
    #[error("unsupported manifest schema version {version}")]
    SchemaVersion { version: u32 },
    /// A layer media type that is not tar, tar+gzip or tar+zstd.
    #[error("unsupported layer media type {media_type:?}")]
    LayerMediaType { media_type: String },
    /// The config's diff_ids do not match the manifest's layers.
    #[error("image config lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    /// The document is larger than [`MAX_DOCUMENT`].
    #[error("{what} of {size} bytes exceeds the limit")]
    TooLarge { what: &'static str, size: u64 },
}

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An index entry's platform.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`, `windows`, …
    pub os: String,
    /// `v8`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, Deserialize)]
pub struct Index {
    /// One entry per platform.
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// A single-platform image.
    Image(ImageManifest),
    /// A multi-platform index.
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    schema_version: Option<u32>,
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses a manifest served with `content_type` (may be absent or generic).
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        let size = bytes.len() as u64;
        if size > MAX_DOCUMENT {
            return Err(ManifestError::TooLarge {
                what: "manifest",
                size,
            });
        }
        let json = |source| ManifestError::Json {
            what: "manifest",
            source,
        };
        let head: Head = serde_json::from_slice(bytes).map_err(json)?;
        match head.schema_version {
            Some(2) => {}
            Some(version) => return Err(ManifestError::SchemaVersion { version }),
            None => return Err(ManifestError::SchemaVersion { version: 0 }),
        }
        // The document's own mediaType wins; the Content-Type header is a fallback, and
        // OCI allows neither (then the shape decides).
        let generic = |t: &&str| !t.is_empty() && *t != "application/json" && *t != "text/plain";
        let media_type = head
            .media_type
            .clone()
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
            .filter(|t| generic(&t.as_str()));
        let is_index = match media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(other) => {
                return Err(ManifestError::MediaType {
                    media_type: other.to_string(),
                })
            }
            None if head.manifests.is_some() => true,
            None if head.config.is_some() => false,
            None => {
                return Err(ManifestError::MediaType {
                    media_type: String::new(),
                })
            }
        };
        if is_index {
            Ok(Self::Index(serde_json::from_slice(bytes).map_err(json)?))
        } else {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(json)?;
            if !m.config.media_type.is_empty()
                && m.config.media_type != OCI_CONFIG
                && m.config.media_type != DOCKER_CONFIG
            {
                return Err(ManifestError::MediaType {
                    media_type: m.config.media_type,
                });
            }
            for l in &m.layers {
                Compression::of_layer(&l.media_type)?;
            }
            Ok(Self::Image(m))
        }
    }
}

impl Index {
    /// The entry for `os`/`architecture` (variant ignored), the first one if several.
    pub fn select(&self, os: &str, architecture: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == architecture)
        })
    }

    /// `os/arch` of every entry, for error messages.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| format!("{}/{}", p.os, p.architecture))
            })
            .collect()
    }
}

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain tar.
    None,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl Compression {
    /// The compression a layer media type implies.
    pub fn of_layer(media_type: &str) -> Result<Self, ManifestError> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Self::Zstd),
            other => Err(ManifestError::LayerMediaType {
                media_type: other.to_string(),
            }),
        }
    }
}

/// The parts of an image config hull-cri uses.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageConfig {
    /// `amd64`, …
    #[serde(default)]
    pub architecture: String,
    /// `linux`, …
    #[serde(default)]
    pub os: String,
    /// The runtime defaults.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Layer digests of the uncompressed tars.
    pub rootfs: RootFs,
}

/// `config` of an image config: defaults for containers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `uid`, `name`, `uid:gid` or `name:group`.
    #[serde(default)]
    pub user: Option<String>,
    /// `KEY=value`.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// One per layer.
    pub diff_ids: Vec<Digest>,
}

impl ImageConfig {
    /// Parses a config blob and checks it against the manifest's layer count.
    pub fn parse(bytes: &[u8], layers: usize) -> Result<Self, ManifestError> {
        let size = bytes.len() as u64;
        if size > MAX_DOCUMENT {
            return Err(ManifestError::TooLarge {
                what: "image config",
                size,
            });
        }
        let c: Self = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image config",
            source,
        })?;
        if c.rootfs.diff_ids.len() != layers {
            return Err(ManifestError::LayerCount {
                diff_ids: c.rootfs.diff_ids.len(),
                layers,
            });
        }
        Ok(c)
    }

    /// The configured user, empty when none.
    pub fn user(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or("")
    }
}

/// Splits an image `User` into a numeric uid or a user name (the group part is ignored), as
/// ImageStatus reports them. Empty → neither.
pub fn user_of(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) if uid >= 0 => (Some(uid), String::new()),
        _ => (None, name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image_manifest(media: Option<&str>, layer_type: &str) -> String {
        let mt = media
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":10}},
            "layers":[{{"mediaType":"{layer_type}","digest":"{}","size":20}}]}}"#,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn parses_oci_and_docker_manifests() {
        for (media, layer, comp) in [
            (
                Some(OCI_MANIFEST),
                "application/vnd.oci.image.layer.v1.tar",
                Compression::None,
            ),
            (
                Some(DOCKER_MANIFEST),
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                None,
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
        ] {
            let Manifest::Image(m) =
                Manifest::parse(None, image_manifest(media, layer).as_bytes()).unwrap()
            else {
                panic!("not an image manifest")
            };
            assert_eq!(m.layers.len(), 1);
            assert_eq!(m.layers[0].size, 20);
            assert_eq!(
                Compression::of_layer(&m.layers[0].media_type).unwrap(),
                comp
            );
        }
    }

    #[test]
    fn refuses_unknown_layers_and_schema1() {
        let bad = image_manifest(Some(OCI_MANIFEST), "application/x-evil");
        assert!(matches!(
            Manifest::parse(None, bad.as_bytes()),
            Err(ManifestError::LayerMediaType { .. })
        ));
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(Some(DOCKER_SCHEMA1), s1.as_bytes()),
            Err(ManifestError::SchemaVersion { version: 1 })
        ));
        assert!(Manifest::parse(None, b"not json").is_err());
        let bad_digest =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../x","size":1},"layers":[]}"#;
        assert!(Manifest::parse(None, bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn content_type_fallback_and_conflict() {
        let body = image_manifest(None, "application/vnd.oci.image.layer.v1.tar");
        assert!(Manifest::parse(
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            body.as_bytes()
        )
        .is_ok());
        assert!(Manifest::parse(Some("application/json"), body.as_bytes()).is_ok());
        assert!(matches!(
            Manifest::parse(Some("application/vnd.example+json"), body.as_bytes()),
            Err(ManifestError::MediaType { .. })
        ));
    }

    #[test]
    fn index_resolves_linux_amd64() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('c'),
            d('e')
        );
        let Manifest::Index(i) = Manifest::parse(None, body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            i.select("linux", "amd64").unwrap().digest.to_string(),
            d('e')
        );
        assert!(i.select("windows", "amd64").is_none());
        assert_eq!(i.platforms(), ["linux/arm64", "linux/amd64"]);
    }

    #[test]
    fn config_and_users() {
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"www-data:1004","Cmd":["sh"]}},
            "rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            d('f')
        );
        let c = ImageConfig::parse(cfg.as_bytes(), 1).unwrap();
        assert_eq!(c.user(), "www-data:1004");
        assert!(matches!(
            ImageConfig::parse(cfg.as_bytes(), 2),
            Err(ManifestError::LayerCount { .. })
        ));
        assert_eq!(user_of("www-data:1004"), (None, "www-data".to_string()));
        assert_eq!(user_of("1003:1004"), (Some(1003), String::new()));
        assert_eq!(user_of("1002"), (Some(1002), String::new()));
        assert_eq!(user_of(""), (None, String::new()));
    }

    #[test]
    fn size_limit() {
        let big = vec![b' '; (MAX_DOCUMENT + 1) as usize];
        assert!(matches!(
            Manifest::parse(None, &big),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}
