//! Pulling an image: resolve through mirrors, fetch and verify every blob, unpack each layer
//! into its snapshot as soon as it is downloaded (checking its diff_id), then record the
//! image atomically. Concurrent pulls of one reference share one run; concurrent downloads
//! of one blob share one download.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::Config;
use crate::digest::Digest;
use crate::inflight::Inflight;
use crate::manifest::{Compression, ImageConfig, ImageManifest, Manifest, ManifestError};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Credentials, RegistryError, Session};
use crate::snapshot::{SnapshotError, Snapshots};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};
use crate::tls::{Clients, TlsError};

/// The platform indexes resolve to.
pub const PLATFORM: (&str, &str) = ("linux", "amd64");

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse.
    #[error("invalid image reference")]
    Reference(#[from] ReferenceError),
    /// No endpoint could serve the manifest; the last endpoint's error is the source.
    #[error("pulling {reference}")]
    Registry {
        reference: String,
        #[source]
        source: RegistryError,
    },
    /// The manifest or config is unusable.
    #[error("image {reference}: bad manifest or config")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    /// The index has no linux/amd64 entry.
    #[error("image {reference} has no linux/amd64 manifest (offers {offered:?})")]
    NoPlatform {
        reference: String,
        offered: Vec<String>,
    },
    /// The store failed.
    #[error("storing image {reference}")]
    Store {
        reference: String,
        #[source]
        source: StoreError,
    },
    /// A layer download (possibly shared with another pull) failed.
    #[error("pulling {reference}: layer download")]
    Blob {
        reference: String,
        #[source]
        source: Arc<RegistryError>,
    },
    /// A layer did not unpack: corrupt or hostile content, a diff_id mismatch, or a local
    /// filesystem failure.
    #[error("pulling {reference}: unpacking a layer")]
    Unpack {
        reference: String,
        #[source]
        source: Box<SnapshotError>,
    },
    /// A download task panicked or was cancelled.
    #[error("download task of {reference} failed")]
    Task { reference: String },
}

/// A pull's shared result: the image id, or the error every waiter sees.
pub type PullResult = Result<String, Arc<PullError>>;

/// Pulls images into a [`Store`] and unpacks their layers into [`Snapshots`].
pub struct Puller {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    config: Config,
    clients: Arc<Clients>,
    pulls: Inflight<String, PullResult>,
    blobs: Arc<Inflight<Digest, Result<(), Arc<RegistryError>>>>,
}

impl Puller {
    /// A puller into `store` and `snapshots` with the registry `config`. Fails when a
    /// registry's TLS files (CA, client certificate) cannot be read or used.
    pub fn new(
        store: Arc<Store>,
        snapshots: Arc<Snapshots>,
        config: Config,
    ) -> Result<Self, TlsError> {
        let clients = Arc::new(Clients::new(&config)?);
        Ok(Self {
            store,
            snapshots,
            config,
            clients,
            pulls: Inflight::default(),
            blobs: Arc::default(),
        })
    }

    /// Pulls `image` and returns its id. Concurrent calls for the same normalised reference
    /// share one pull (the first caller's credentials are used).
    pub async fn pull(&self, image: &str, creds: Credentials) -> PullResult {
        let r = Reference::parse(image).map_err(|e| Arc::new(PullError::from(e)))?;
        let key = r.to_string();
        self.pulls
            .run(key, || async {
                self.pull_once(&r, creds).await.map_err(Arc::new)
            })
            .await
    }

    async fn pull_once(&self, r: &Reference, creds: Credentials) -> Result<String, PullError> {
        let reference = r.to_string();
        let mut last = None;
        for endpoint in self.config.endpoints(&r.registry) {
            // Each endpoint is tried at most once per pull, so this warns once per pull.
            if endpoint.base.starts_with("https://") && self.clients.skips_verify(&endpoint.host) {
                tracing::warn!(image = %reference, registry = %endpoint.host, "skip_verify: the registry's certificate is not checked, anyone on the path can serve this pull");
            }
            let session = Arc::new(Session::new(
                self.clients.clone(),
                endpoint,
                &r.repository,
                creds.clone(),
            ));
            match session.manifest(&r.manifest_ref()).await {
                Ok(top) => return self.pull_from(r, session, top).await,
                Err(e) => {
                    tracing::debug!(image = %reference, endpoint = session.base(), error = %e, "endpoint failed");
                    last = Some(e);
                }
            }
        }
        let source = last.expect("endpoints() always lists the upstream host");
        Err(PullError::Registry { reference, source })
    }

    async fn pull_from(
        &self,
        r: &Reference,
        session: Arc<Session>,
        (bytes, content_type, top_digest): (Vec<u8>, Option<String>, Digest),
    ) -> Result<String, PullError> {
        let reference = r.to_string();
        let m = self
            .resolve_manifest(&reference, &session, bytes, content_type, top_digest)
            .await?;
        let config_bytes = match self
            .store
            .read_blob(&m.manifest.config.digest)
            .map_err(store_err(&reference))?
        {
            Some(b) => b,
            None => session
                .small_blob(&m.manifest.config.digest, m.manifest.config.size)
                .await
                .map_err(reg_err(&reference))?,
        };
        let config = ImageConfig::parse(&config_bytes, m.manifest.layers.len())
            .map_err(bad_manifest(&reference))?;
        let layers = m
            .manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(l, diff)| LayerRecord {
                digest: l.digest.clone(),
                diff_id: diff.clone(),
                size: l.size,
                compression: Compression::of_layer(&l.media_type).unwrap_or(Compression::None),
            })
            .collect::<Vec<_>>();

        // Pin everything this pull writes so GC cannot take it before the record exists.
        let mut pinned: Vec<Digest> = vec![m.manifest.config.digest.clone(), m.digest.clone()];
        pinned.extend(m.extra.iter().map(|(d, _)| d.clone()));
        pinned.extend(layers.iter().map(|l| l.digest.clone()));
        let _pins = Pins::new(&self.store, pinned);
        let _snapshot_pins = self.snapshots.pin(layers.iter().map(|l| l.diff_id.clone()));

        self.fetch_and_unpack(&reference, &session, &layers).await?;
        let rec = self.record(r, m, &config_bytes, config, layers)?;
        tracing::info!(image = %reference, id = %rec.id(), "pulled");
        Ok(rec.id())
    }

    /// Parses the top manifest and, for an index, fetches the linux/amd64 image manifest.
    async fn resolve_manifest(
        &self,
        reference: &str,
        session: &Session,
        bytes: Vec<u8>,
        content_type: Option<String>,
        top_digest: Digest,
    ) -> Result<Resolved, PullError> {
        let bad = bad_manifest(reference);
        match Manifest::parse(content_type.as_deref(), &bytes).map_err(bad)? {
            Manifest::Image(manifest) => Ok(Resolved {
                manifest,
                bytes,
                digest: top_digest.clone(),
                top_digest,
                extra: Vec::new(),
            }),
            Manifest::Index(index) => {
                let Some(d) = index.select(PLATFORM.0, PLATFORM.1) else {
                    return Err(PullError::NoPlatform {
                        reference: reference.to_string(),
                        offered: index.platforms(),
                    });
                };
                let (b, ct, md) = session
                    .manifest(&d.digest.to_string())
                    .await
                    .map_err(reg_err(reference))?;
                let bad = bad_manifest(reference);
                let Manifest::Image(manifest) = Manifest::parse(ct.as_deref(), &b).map_err(bad)?
                else {
                    return Err(bad_manifest(reference)(ManifestError::MediaType {
                        media_type: "nested index".into(),
                    }));
                };
                Ok(Resolved {
                    manifest,
                    bytes: b,
                    digest: md,
                    top_digest: top_digest.clone(),
                    extra: vec![(top_digest, bytes)],
                })
            }
        }
    }

    /// One task per layer: download it, then unpack it into its snapshot (blocking, on the
    /// blocking pool), so layers unpack while others still download. The first failure
    /// aborts the other tasks (dropping the set); an unpack already running completes or
    /// fails on its own and leaves a complete snapshot or nothing.
    async fn fetch_and_unpack(
        &self,
        reference: &str,
        session: &Arc<Session>,
        layers: &[LayerRecord],
    ) -> Result<(), PullError> {
        let mut tasks = JoinSet::new();
        for l in layers {
            let (store, snapshots, blobs, session, l) = (
                self.store.clone(),
                self.snapshots.clone(),
                self.blobs.clone(),
                session.clone(),
                l.clone(),
            );
            tasks.spawn(async move {
                fetch_blob(&store, &blobs, &session, l.digest.clone(), l.size)
                    .await
                    .map_err(LayerError::Fetch)?;
                tokio::task::spawn_blocking(move || snapshots.unpack(&store, &l))
                    .await
                    .map_err(|_| LayerError::Task)?
                    .map_err(|e| LayerError::Unpack(Box::new(e)))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let reference = reference.to_string();
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(LayerError::Fetch(source))) => {
                    return Err(PullError::Blob { reference, source })
                }
                Ok(Err(LayerError::Unpack(source))) => {
                    return Err(PullError::Unpack { reference, source })
                }
                Ok(Err(LayerError::Task)) | Err(_) => return Err(PullError::Task { reference }),
            }
        }
        Ok(())
    }

    /// Stores the small blobs and writes the image record (the step that makes it visible).
    fn record(
        &self,
        r: &Reference,
        m: Resolved,
        config_bytes: &[u8],
        config: ImageConfig,
        layers: Vec<LayerRecord>,
    ) -> Result<ImageRecord, PullError> {
        let reference = r.to_string();
        let store_err = store_err(&reference);
        let config_digest = m.manifest.config.digest.clone();
        self.store
            .put_blob(&config_digest, config_bytes)
            .map_err(&store_err)?;
        self.store
            .put_blob(&m.digest, &m.bytes)
            .map_err(&store_err)?;
        for (d, b) in &m.extra {
            self.store.put_blob(d, b).map_err(&store_err)?;
        }
        let size = m.manifest.config.size
            + m.bytes.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>();
        let rec = ImageRecord {
            config_digest,
            manifest_digest: m.digest,
            extra_blobs: m.extra.into_iter().map(|(d, _)| d).collect(),
            layers,
            repo_tags: r.tagged().into_iter().collect(),
            // RepoDigest names what the registry served for the reference (index if any).
            repo_digests: vec![r.with_digest(&m.top_digest)],
            size,
            config,
        };
        self.store.put_image(rec).map_err(store_err)
    }
}

/// The image manifest a reference resolved to.
struct Resolved {
    manifest: ImageManifest,
    /// The image manifest's bytes and digest.
    bytes: Vec<u8>,
    digest: Digest,
    /// What the registry served for the reference: the index, or the manifest itself.
    top_digest: Digest,
    /// Other documents to keep: the index, if any.
    extra: Vec<(Digest, Vec<u8>)>,
}

/// How one layer task failed.
enum LayerError {
    Fetch(Arc<RegistryError>),
    Unpack(Box<SnapshotError>),
    Task,
}

fn bad_manifest(reference: &str) -> impl Fn(ManifestError) -> PullError + '_ {
    move |source| PullError::Manifest {
        reference: reference.to_string(),
        source,
    }
}

fn reg_err(reference: &str) -> impl Fn(RegistryError) -> PullError + '_ {
    move |source| PullError::Registry {
        reference: reference.to_string(),
        source,
    }
}

fn store_err(reference: &str) -> impl Fn(StoreError) -> PullError + '_ {
    move |source| PullError::Store {
        reference: reference.to_string(),
        source,
    }
}

/// Downloads one layer blob unless present, sharing concurrent downloads of one digest.
async fn fetch_blob(
    store: &Store,
    blobs: &Inflight<Digest, Result<(), Arc<RegistryError>>>,
    session: &Session,
    d: Digest,
    size: u64,
) -> Result<(), Arc<RegistryError>> {
    if store.has_blob(&d) {
        return Ok(());
    }
    blobs
        .run(d.clone(), || async {
            if store.has_blob(&d) {
                return Ok(());
            }
            let tmp = store.ingest_path(&d);
            let r = session.blob_to_file(&d, size, &tmp).await;
            let r = r.and_then(|()| {
                store
                    .commit_blob(&tmp, &d)
                    .map_err(|e| RegistryError::Write {
                        path: tmp.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r.map_err(Arc::new)
        })
        .await
}

/// Pins held for the life of a pull.
struct Pins<'a> {
    store: &'a Store,
    digests: Vec<Digest>,
}

impl<'a> Pins<'a> {
    fn new(store: &'a Store, digests: Vec<Digest>) -> Self {
        for d in &digests {
            store.pin(d);
        }
        Self { store, digests }
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        for d in &self.digests {
            self.store.unpin(d);
        }
    }
}
