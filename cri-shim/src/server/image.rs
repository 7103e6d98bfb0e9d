//! ImageService: pull, list, status, remove, filesystem usage.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::api::image_service_server::ImageService;
use crate::api::*;
use crate::manifest::user_of;
use crate::pull::{PullError, Puller};
use crate::reference::Reference;
use crate::registry::{base64_decode, Credentials, RegistryError};
use crate::snapshot::Snapshots;
use crate::store::{ImageRecord, Store};

/// Reports the diff ids live containers use.
pub type LayersInUse = Arc<dyn Fn() -> HashSet<crate::digest::Digest> + Send + Sync>;

/// The ImageService implementation.
pub struct ImageServer {
    store: Arc<Store>,
    snapshots: Arc<Snapshots>,
    layers_in_use: LayersInUse,
    puller: Arc<Puller>,
}

impl ImageServer {
    /// A service over `store` and its layer `snapshots`, pulling with `puller`.
    /// Layers that snapshot GC must keep besides those of image records: the diff ids of
    /// live containers' layers.
    pub fn keep_layers(mut self, f: LayersInUse) -> Self {
        self.layers_in_use = f;
        self
    }

    /// A service over `store` and `snapshots`, pulling with `puller`.
    pub fn new(store: Arc<Store>, snapshots: Arc<Snapshots>, puller: Arc<Puller>) -> Self {
        Self {
            store,
            snapshots,
            puller,
            layers_in_use: Arc::new(HashSet::new),
        }
    }
}

fn to_image(r: &ImageRecord) -> Image {
    let (uid, username) = user_of(r.config.user());
    Image {
        id: r.id(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid: uid.map(|value| Int64Value { value }),
        username,
        spec: Some(ImageSpec {
            image: r.id(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn image_name(spec: Option<ImageSpec>, rpc: &str) -> Result<String, Status> {
    match spec.map(|s| s.image).filter(|s| !s.is_empty()) {
        Some(s) => Ok(s),
        None => Err(Status::invalid_argument(format!(
            "{rpc}: image spec with a non-empty image is required"
        ))),
    }
}

fn credentials(auth: Option<AuthConfig>) -> Result<Credentials, Status> {
    let Some(a) = auth else {
        return Ok(Credentials::default());
    };
    let mut c = Credentials::default();
    if !a.username.is_empty() {
        c.basic = Some((a.username, a.password));
    } else if !a.auth.is_empty() {
        let decoded = base64_decode(&a.auth)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Status::invalid_argument("PullImage: auth.auth is not base64 of user:password")
            })?;
        let (u, p) = decoded.split_once(':').ok_or_else(|| {
            Status::invalid_argument("PullImage: auth.auth is not base64 of user:password")
        })?;
        c.basic = Some((u.to_string(), p.to_string()));
    }
    if !a.registry_token.is_empty() {
        c.bearer = Some(a.registry_token);
    } else if !a.identity_token.is_empty() {
        c.bearer = Some(a.identity_token);
    }
    Ok(c)
}

/// Maps a pull failure to a gRPC status with the whole cause chain in the message.
fn pull_status(e: &PullError) -> Status {
    let code = match e {
        PullError::Reference(_) => Code::InvalidArgument,
        PullError::NoPlatform { .. } => Code::NotFound,
        PullError::Manifest { .. } => Code::InvalidArgument,
        PullError::Registry { source, .. } => registry_code(source),
        PullError::Blob { source, .. } => registry_code(source),
        PullError::Unpack { source, .. } if source.is_bad_layer() => Code::DataLoss,
        PullError::Unpack { .. } | PullError::Store { .. } | PullError::Task { .. } => {
            Code::Internal
        }
    };
    Status::new(code, chain(e))
}

fn registry_code(e: &RegistryError) -> Code {
    match e {
        RegistryError::Unreachable { .. } | RegistryError::Tls { .. } => Code::Unavailable,
        RegistryError::NotFound { .. } => Code::NotFound,
        RegistryError::Denied { .. } | RegistryError::Token { .. } => Code::PermissionDenied,
        RegistryError::Digest { .. }
        | RegistryError::Short { .. }
        | RegistryError::TooLarge { .. } => Code::DataLoss,
        RegistryError::Status { .. } => Code::Unavailable,
        RegistryError::Write { .. } => Code::Internal,
    }
}

/// `error: cause: cause…`, as one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn internal(e: &dyn std::error::Error) -> Status {
    Status::internal(chain(e))
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let wanted = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let images = match wanted {
            Some(name) => self.store.resolve(&name).iter().map(to_image).collect(),
            None => self.store.list().iter().map(to_image).collect(),
        };
        Ok(Response::new(ListImagesResponse { images }))
    }

    type StreamImagesStream =
        Pin<Box<dyn Stream<Item = Result<StreamImagesResponse, Status>> + Send + 'static>>;

    async fn stream_images(
        &self,
        _req: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        // kubelet falls back to ListImages on UNIMPLEMENTED.
        Err(Status::unimplemented("ImageService/StreamImages is not implemented yet in hull-cri (tracked by issue 4); use ListImages"))
    }

    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image, "ImageStatus")?;
        // An unknown image is not an error: the response carries no image.
        let Some(rec) = self.store.resolve(&name) else {
            return Ok(Response::new(ImageStatusResponse::default()));
        };
        let mut info = HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "id": rec.id(),
                "manifestDigest": rec.manifest_digest,
                "layers": rec.layers,
                "config": rec.config,
                "storePath": self.store.root(),
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: Some(to_image(&rec)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        req: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = image_name(req.image, "PullImage")?;
        let creds = credentials(req.auth)?;
        let span = tracing::info_span!("pull", image = %name);
        match self.puller.pull(&name, creds).instrument(span).await {
            Ok(image_ref) => Ok(Response::new(PullImageResponse { image_ref })),
            Err(e) => Err(pull_status(&e)),
        }
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let name = image_name(req.into_inner().image, "RemoveImage")?;
        if self.store.resolve(&name).is_none()
            && Reference::parse(&name).is_err()
            && !name.starts_with("sha256:")
        {
            return Err(Status::invalid_argument(format!(
                "RemoveImage: invalid image reference {name:?}"
            )));
        }
        // Removing an image that is not there succeeds (the call is idempotent). An image
        // in use may be removed, as with containerd: its containers' layers are kept.
        let (store, snapshots) = (self.store.clone(), self.snapshots.clone());
        let keep = (self.layers_in_use)();
        tokio::task::spawn_blocking(move || {
            store.remove(&name).map_err(|e| internal(&e))?;
            snapshots.gc(&store, &keep).map_err(|e| internal(&e))
        })
        .await
        .map_err(|e| Status::internal(format!("RemoveImage task: {e}")))??;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        // The store's usage walks its whole root, snapshots (`<root>/snapshots`) included.
        let store = self.store.clone();
        let (used, inodes) = tokio::task::spawn_blocking(move || store.usage())
            .await
            .map_err(|e| Status::internal(format!("ImageFsInfo task: {e}")))?
            .map_err(|e| internal(&e))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let usage = FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: self.store.root().display().to_string(),
            }),
            used_bytes: Some(UInt64Value { value: used }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: vec![],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_to_credentials() {
        let c = credentials(Some(AuthConfig {
            auth: "dXNlcjpwYXNz".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(c.basic, Some(("user".into(), "pass".into())));
        let c = credentials(Some(AuthConfig {
            registry_token: "t".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(c.bearer.as_deref(), Some("t"));
        assert!(credentials(Some(AuthConfig {
            auth: "!!".into(),
            ..Default::default()
        }))
        .is_err());
    }

    #[test]
    fn bad_layer_is_data_loss_and_local_failure_internal() {
        use crate::digest::Digest;
        use crate::snapshot::SnapshotError;
        use crate::unpack::UnpackError;
        let unpack = |source| PullError::Unpack {
            reference: "r".into(),
            source: Box::new(SnapshotError::Unpack {
                digest: Digest::of(b"l"),
                diff_id: Digest::of(b"d"),
                source,
            }),
        };
        let mismatch = unpack(UnpackError::DiffId {
            expected: Digest::of(b"d"),
            actual: Digest::of(b"x"),
        });
        assert_eq!(pull_status(&mismatch).code(), Code::DataLoss);
        assert!(pull_status(&mismatch)
            .message()
            .contains("the image config says"));
        let local = unpack(UnpackError::Io {
            path: "f".into(),
            op: "write file",
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(pull_status(&local).code(), Code::Internal);
    }

    #[test]
    fn bad_reference_is_invalid_argument() {
        let e = PullError::Reference(Reference::parse("UPPER").unwrap_err());
        assert_eq!(pull_status(&e).code(), Code::InvalidArgument);
    }
}
