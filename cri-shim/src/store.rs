//! The image store: content-addressed blobs and one crash-safe record per image.
//!
//! Layout under the root (see docs/design/cri.md): `blobs/sha256/<hex>`, `ingest/` (in-flight
//! downloads, emptied at open), `images/<config hex>.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil;
use crate::manifest::{Compression, ImageConfig};
use crate::reference::Reference;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on the store failed.
    #[error("image store: {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An image record cannot be (de)serialised.
    #[error("image store: record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One layer of an image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar (from the config).
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Compression of the blob.
    pub compression: Compression,
}

/// The record of one image, `images/<config hex>.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Config digest; the image id is `sha256:<hex>` of it.
    pub config_digest: Digest,
    /// Digest of the image manifest (platform-specific).
    pub manifest_digest: Digest,
    /// Every other blob the image pins: the index it was resolved from, if any.
    #[serde(default)]
    pub extra_blobs: Vec<Digest>,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
    /// `name:tag`, normalised.
    pub repo_tags: Vec<String>,
    /// `name@sha256:…`, normalised.
    pub repo_digests: Vec<String>,
    /// Sum of config, manifest and layer blob sizes.
    pub size: u64,
    /// The parsed config.
    pub config: ImageConfig,
}

impl ImageRecord {
    /// The image id: `sha256:<config digest hex>`.
    pub fn id(&self) -> String {
        self.config_digest.to_string()
    }

    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.config_digest, &self.manifest_digest]
            .into_iter()
            .chain(&self.extra_blobs)
            .chain(self.layers.iter().map(|l| &l.digest))
    }
}

#[derive(Default)]
struct State {
    images: BTreeMap<Digest, ImageRecord>,
    /// Blobs a pull in progress has written or is writing; GC leaves them alone.
    pins: HashMap<Digest, usize>,
}

/// The store. Methods do small synchronous file operations; blob downloads go through
/// [`Store::ingest_path`] and [`Store::commit_blob`].
pub struct Store {
    root: PathBuf,
    state: Mutex<State>,
}

impl Store {
    /// Opens (creating) the store at `root`: empties `ingest/`, loads every record.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let store = Self {
            root: root.to_path_buf(),
            state: Mutex::default(),
        };
        for d in [store.blob_dir(), store.images_dir()] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        let ingest = store.ingest_dir();
        match fs::remove_dir_all(&ingest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("clean", &ingest)(e))
            }
            _ => {}
        }
        fs::create_dir_all(&ingest).map_err(io_err("create", &ingest))?;
        let images_dir = store.images_dir();
        let mut images = BTreeMap::new();
        for entry in fs::read_dir(&images_dir).map_err(io_err("read", &images_dir))? {
            let path = entry.map_err(io_err("read", &images_dir))?.path();
            let Some(hex) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                let _ = fs::remove_file(&path); // an interrupted write's temp file
                continue;
            };
            let Some(id) = Digest::from_hex(hex) else {
                continue;
            };
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            let rec: ImageRecord =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Record {
                    path: path.clone(),
                    source,
                })?;
            images.insert(id, rec);
        }
        store.lock().images = images;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store root (ImageFsInfo's mountpoint).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blob_dir().join(d.hex())
    }

    /// True when blob `d` is in the store.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads blob `d` and checks its digest (the store is trusted less than its code).
    pub fn read_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.blob_path(d);
        match fs::read(&p) {
            Ok(b) if d.verify(&b).is_ok() => Ok(Some(b)),
            Ok(_) => {
                let _ = fs::remove_file(&p); // corrupt: drop it so it is fetched again
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// A fresh temp path in `ingest/` for a download of `d`.
    pub fn ingest_path(&self, d: &Digest) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ingest_dir().join(format!("{}-{n}", d.hex()))
    }

    /// Moves a verified download into place.
    pub fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<(), StoreError> {
        let dst = self.blob_path(d);
        fs::rename(tmp, &dst).map_err(io_err("commit", &dst))
    }

    /// Writes verified bytes as blob `d`.
    pub fn put_blob(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let dst = self.blob_path(d);
        fsutil::write_atomic(&dst, bytes).map_err(io_err("write", &dst))
    }

    /// Protects `d` from GC until [`Store::unpin`].
    pub fn pin(&self, d: &Digest) {
        *self.lock().pins.entry(d.clone()).or_default() += 1;
    }

    /// Drops one pin of `d`.
    pub fn unpin(&self, d: &Digest) {
        let mut s = self.lock();
        if let Some(n) = s.pins.get_mut(d) {
            *n -= 1;
            if *n == 0 {
                s.pins.remove(d);
            }
        }
    }

    /// Records `rec`, merging names with an existing record of the same id, and moves its
    /// tags away from any other image (a tag names one image).
    pub fn put_image(&self, mut rec: ImageRecord) -> Result<ImageRecord, StoreError> {
        let mut s = self.lock();
        let mut changed = Vec::new();
        for (id, other) in s.images.iter_mut() {
            if *id == rec.config_digest {
                continue;
            }
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !rec.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                changed.push(other.clone());
            }
        }
        if let Some(old) = s.images.get(&rec.config_digest) {
            for t in &old.repo_tags {
                if !rec.repo_tags.contains(t) {
                    rec.repo_tags.push(t.clone());
                }
            }
            for d in &old.repo_digests {
                if !rec.repo_digests.contains(d) {
                    rec.repo_digests.push(d.clone());
                }
            }
            for b in &old.extra_blobs {
                if !rec.extra_blobs.contains(b) {
                    rec.extra_blobs.push(b.clone());
                }
            }
        }
        rec.repo_tags.sort();
        rec.repo_digests.sort();
        changed.push(rec.clone());
        for r in &changed {
            self.write_record(r)?;
        }
        s.images.insert(rec.config_digest.clone(), rec.clone());
        Ok(rec)
    }

    fn write_record(&self, r: &ImageRecord) -> Result<(), StoreError> {
        let path = self
            .images_dir()
            .join(format!("{}.json", r.config_digest.hex()));
        let bytes = serde_json::to_vec_pretty(r).map_err(|source| StoreError::Record {
            path: path.clone(),
            source,
        })?;
        fsutil::write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }

    /// Every image.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().images.values().cloned().collect()
    }

    /// Finds an image by id (`sha256:<hex>` or bare hex), by tag or by digest reference.
    pub fn resolve(&self, name: &str) -> Option<ImageRecord> {
        let s = self.lock();
        let id = name.strip_prefix("sha256:").unwrap_or(name);
        if let Some(d) = Digest::from_hex(id) {
            if let Some(r) = s.images.get(&d) {
                return Some(r.clone());
            }
        }
        let r = Reference::parse(name).ok()?;
        let wanted_digest = r.digest.as_ref().map(|d| r.with_digest(d));
        let wanted_tag = if r.digest.is_none() { r.tagged() } else { None };
        s.images
            .values()
            .find(|img| {
                wanted_digest
                    .as_ref()
                    .is_some_and(|w| img.repo_digests.contains(w))
                    || wanted_tag
                        .as_ref()
                        .is_some_and(|w| img.repo_tags.contains(w))
            })
            .cloned()
    }

    /// Removes the image `name` resolves to (all its names) and collects garbage. Returns the
    /// removed record, or None when there was no such image.
    pub fn remove(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        let Some(rec) = self.resolve(name) else {
            return Ok(None);
        };
        {
            let mut s = self.lock();
            let path = self
                .images_dir()
                .join(format!("{}.json", rec.config_digest.hex()));
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove", &path)(e))
                }
                _ => {}
            }
            s.images.remove(&rec.config_digest);
        }
        self.gc()?;
        Ok(Some(rec))
    }

    /// Deletes blobs no record names and no pull has pinned. Returns how many went.
    pub fn gc(&self) -> Result<usize, StoreError> {
        let s = self.lock();
        let live: HashSet<&Digest> = s
            .images
            .values()
            .flat_map(ImageRecord::blobs)
            .chain(s.pins.keys())
            .collect();
        let dir = self.blob_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let path = entry.map_err(io_err("read", &dir))?.path();
            let keep = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Digest::from_hex)
                .is_some_and(|d| live.contains(&d));
            if !keep {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes and inodes the store uses.
    pub fn usage(&self) -> Result<(u64, u64), StoreError> {
        fsutil::usage(&self.root).map_err(io_err("measure", &self.root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RootFs;

    fn record(store: &Store, tag: &str, config: &[u8]) -> ImageRecord {
        let layer = format!("layer of {tag}").into_bytes();
        let (cd, md, ld) = (
            Digest::of(config),
            Digest::of(b"manifest"),
            Digest::of(&layer),
        );
        store.put_blob(&cd, config).unwrap();
        store.put_blob(&md, b"manifest").unwrap();
        store.put_blob(&ld, &layer).unwrap();
        ImageRecord {
            config_digest: cd,
            manifest_digest: md.clone(),
            extra_blobs: vec![],
            layers: vec![LayerRecord {
                digest: ld.clone(),
                diff_id: ld,
                size: 1,
                compression: Compression::None,
            }],
            repo_tags: vec![format!("docker.io/library/{tag}")],
            repo_digests: vec![format!("docker.io/library/busybox@{md}")],
            size: 3,
            config: ImageConfig {
                rootfs: RootFs::default(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn records_survive_reopen_and_resolve_by_every_name() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let r = store
            .put_image(record(&store, "busybox:latest", b"c1"))
            .unwrap();
        fs::write(d.path().join("ingest/partial"), b"x").unwrap();
        drop(store);
        let store = Store::open(d.path()).unwrap();
        assert!(
            !d.path().join("ingest/partial").exists(),
            "ingest emptied at open"
        );
        assert_eq!(store.resolve(&r.id()).unwrap(), r);
        assert_eq!(store.resolve(r.config_digest.hex()).unwrap(), r);
        assert_eq!(store.resolve("busybox").unwrap(), r);
        assert_eq!(
            store
                .resolve(&format!("busybox@{}", r.manifest_digest))
                .unwrap(),
            r
        );
        assert!(store.resolve("busybox:other").is_none());
    }

    #[test]
    fn tags_move_and_remove_collects_garbage() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let a = store
            .put_image(record(&store, "busybox:latest", b"c1"))
            .unwrap();
        let b = store
            .put_image(record(&store, "busybox:latest", b"c2"))
            .unwrap();
        assert!(
            store.resolve(&a.id()).unwrap().repo_tags.is_empty(),
            "tag moved off the old image"
        );
        assert_eq!(store.resolve("busybox").unwrap().id(), b.id());
        let orphan = Digest::of(b"orphan");
        store.put_blob(&orphan, b"orphan").unwrap();
        let pinned = Digest::of(b"pinned");
        store.put_blob(&pinned, b"pinned").unwrap();
        store.pin(&pinned);
        assert_eq!(
            store.remove("busybox:latest").unwrap().unwrap().id(),
            b.id()
        );
        assert!(!store.has_blob(&orphan));
        assert!(!store.has_blob(&b.config_digest));
        assert!(store.has_blob(&pinned), "pinned blobs survive GC");
        assert!(
            store.has_blob(&a.config_digest),
            "other images keep their blobs"
        );
        assert!(store.has_blob(&a.manifest_digest), "shared blobs stay");
        assert!(store.remove("busybox:latest").unwrap().is_none());
        let (bytes, inodes) = store.usage().unwrap();
        assert!(bytes > 0 && inodes > 0);
    }

    #[test]
    fn corrupt_blob_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let good = Digest::of(b"good");
        fs::write(store.blob_path(&good), b"evil").unwrap();
        assert_eq!(store.read_blob(&good).unwrap(), None);
        assert!(!store.has_blob(&good));
    }
}
