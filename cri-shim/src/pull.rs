//! Pulling an image: resolve through mirrors, fetch and verify every blob, then record the
//! image atomically. Concurrent pulls of one reference share one run; concurrent downloads
//! of one blob share one download.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::Config;
use crate::digest::Digest;
use crate::inflight::Inflight;
use crate::manifest::{Compression, ImageConfig, Manifest, ManifestError};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Credentials, RegistryError, Session};
use crate::store::{ImageRecord, LayerRecord, Store, StoreError};

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
    /// A download task panicked or was cancelled.
    #[error("download task of {reference} failed")]
    Task { reference: String },
}

/// A pull's shared result: the image id, or the error every waiter sees.
pub type PullResult = Result<String, Arc<PullError>>;

/// Pulls images into a [`Store`].
pub struct Puller {
    store: Arc<Store>,
    config: Config,
    http: reqwest::Client,
    pulls: Inflight<String, PullResult>,
    blobs: Arc<Inflight<Digest, Result<(), Arc<RegistryError>>>>,
}

impl Puller {
    /// A puller over `store` with the registry `config`.
    pub fn new(store: Arc<Store>, config: Config) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hull-cri/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("reqwest client without TLS builds");
        Self {
            store,
            config,
            http,
            pulls: Inflight::default(),
            blobs: Arc::default(),
        }
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
            let session = Arc::new(Session::new(
                self.http.clone(),
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
        let bad = |source| PullError::Manifest {
            reference: reference.clone(),
            source,
        };
        let reg = |source| PullError::Registry {
            reference: reference.clone(),
            source,
        };
        let store_err = |source| PullError::Store {
            reference: reference.clone(),
            source,
        };
        let mut extra = Vec::new();
        let (manifest, manifest_bytes, manifest_digest) =
            match Manifest::parse(content_type.as_deref(), &bytes).map_err(bad)? {
                Manifest::Image(m) => (m, bytes, top_digest.clone()),
                Manifest::Index(index) => {
                    let Some(d) = index.select(PLATFORM.0, PLATFORM.1) else {
                        return Err(PullError::NoPlatform {
                            reference,
                            offered: index.platforms(),
                        });
                    };
                    let (b, ct, md) = session.manifest(&d.digest.to_string()).await.map_err(reg)?;
                    let Manifest::Image(m) = Manifest::parse(ct.as_deref(), &b).map_err(bad)?
                    else {
                        return Err(bad(ManifestError::MediaType {
                            media_type: "nested index".into(),
                        }));
                    };
                    extra.push((top_digest.clone(), bytes));
                    (m, b, md)
                }
            };
        let config_bytes = match self
            .store
            .read_blob(&manifest.config.digest)
            .map_err(store_err)?
        {
            Some(b) => b,
            None => session
                .small_blob(&manifest.config.digest, manifest.config.size)
                .await
                .map_err(reg)?,
        };
        let config = ImageConfig::parse(&config_bytes, manifest.layers.len()).map_err(bad)?;

        // Pin everything this pull writes so GC cannot take it before the record exists.
        let mut pinned: Vec<Digest> = vec![manifest.config.digest.clone(), manifest_digest.clone()];
        pinned.extend(extra.iter().map(|(d, _)| d.clone()));
        pinned.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let _pins = Pins::new(&self.store, pinned);

        let mut tasks = JoinSet::new();
        for l in &manifest.layers {
            let (store, blobs, session, d, size) = (
                self.store.clone(),
                self.blobs.clone(),
                session.clone(),
                l.digest.clone(),
                l.size,
            );
            tasks.spawn(async move { fetch_blob(&store, &blobs, &session, d, size).await });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(PullError::Blob { reference, source }),
                Err(_) => return Err(PullError::Task { reference }),
            }
        }
        self.store
            .put_blob(&manifest.config.digest, &config_bytes)
            .map_err(store_err)?;
        self.store
            .put_blob(&manifest_digest, &manifest_bytes)
            .map_err(store_err)?;
        for (d, b) in &extra {
            self.store.put_blob(d, b).map_err(store_err)?;
        }
        let layers = manifest
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
        let size = manifest.config.size
            + manifest_bytes.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>();
        let rec = ImageRecord {
            config_digest: manifest.config.digest.clone(),
            manifest_digest,
            extra_blobs: extra.into_iter().map(|(d, _)| d).collect(),
            layers,
            repo_tags: r.tagged().into_iter().collect(),
            // RepoDigest names what the registry served for the reference (index if any).
            repo_digests: vec![r.with_digest(&top_digest)],
            size,
            config,
        };
        let rec = self.store.put_image(rec).map_err(store_err)?;
        tracing::info!(image = %reference, id = %rec.id(), "pulled");
        Ok(rec.id())
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
