//! Layer snapshots and container root filesystems.
//!
//! Each layer is unpacked once, keyed by its diff_id, into `<root>/snapshots/<hex>/fs`. An
//! unpack runs in `snapshots/tmp-<hex>-<n>/fs` and is renamed into place only after the
//! diff_id matched and the filesystem was synced, so a snapshot that exists is complete;
//! `tmp-*` left by a crash is deleted at open. A container's rootfs is an overlayfs whose
//! lower layers are snapshots and whose upper and work dirs are the container's own.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::digest::Digest;
use crate::store::{ImageRecord, LayerRecord, Store};
use crate::sys;
use crate::unpack::{unpack_layer, UnpackError, UnpackOptions};

/// Errors of snapshots and rootfs mounts.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem operation failed.
    #[error("snapshots: {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The layer blob is not in the image store.
    #[error("layer blob {digest} is not in the image store")]
    MissingBlob { digest: Digest },
    /// Unpacking the layer failed; nothing of it is left.
    #[error("unpacking layer {digest} (diff_id {diff_id})")]
    Unpack {
        digest: Digest,
        diff_id: Digest,
        #[source]
        source: UnpackError,
    },
    /// Mounting the overlay failed; `detail` is the kernel's message when it gave one.
    #[error("mounting overlay at {target}: {op}{detail}")]
    Mount {
        target: PathBuf,
        op: &'static str,
        detail: String,
        #[source]
        source: io::Error,
    },
    /// A path that the classic mount option string cannot carry.
    #[error("mounting overlay at {target}: {path} contains ',', ':' or '\\' (needs kernel 6.8+)")]
    MountPath { target: PathBuf, path: PathBuf },
    /// Unmounting left a mount at the rootfs; the directory was not removed.
    #[error("{path} is still a mount point after unmounting; not removing it")]
    StillMounted { path: PathBuf },
}

impl SnapshotError {
    /// True when the layer itself is at fault (corrupt, hostile, wrong diff_id).
    pub fn is_bad_layer(&self) -> bool {
        matches!(self, Self::Unpack { source, .. } if source.is_bad_layer())
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The snapshot store, `<root>/snapshots`.
pub struct Snapshots {
    dir: PathBuf,
    opts: UnpackOptions,
    /// One lock per diff_id being unpacked, so concurrent callers unpack it once.
    locks: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// diff_ids GC must keep although no image record names them yet (pulls in progress).
    /// GC holds this lock while it decides, which orders it against [`SnapshotPins`] drops.
    pins: Mutex<HashMap<Digest, usize>>,
}

/// diff_ids protected from GC until dropped.
pub struct SnapshotPins<'a> {
    snaps: &'a Snapshots,
    ids: Vec<Digest>,
}

impl Drop for SnapshotPins<'_> {
    fn drop(&mut self) {
        let mut pins = lock(&self.snaps.pins);
        for d in &self.ids {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}

impl Snapshots {
    /// Opens (creating) `<root>/snapshots` and deletes unfinished unpacks. Unpacks are
    /// privileged when running as root.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Self::open_with(root, UnpackOptions::for_current_user())
    }

    /// [`Snapshots::open`] with explicit unpack options.
    pub fn open_with(root: &Path, opts: UnpackOptions) -> Result<Self, SnapshotError> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let path = entry.map_err(io_err("read", &dir))?.path();
            if path
                .file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b"tmp-"))
            {
                fs::remove_dir_all(&path).map_err(io_err("remove unfinished", &path))?;
            }
        }
        Ok(Self {
            dir,
            opts,
            locks: Mutex::default(),
            pins: Mutex::default(),
        })
    }

    /// Where the snapshot of `diff_id` lives (whether or not it exists).
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex()).join("fs")
    }

    /// Protects `diff_ids` from [`Snapshots::gc`] while the guard lives.
    pub fn pin(&self, diff_ids: impl IntoIterator<Item = Digest>) -> SnapshotPins<'_> {
        let ids: Vec<Digest> = diff_ids.into_iter().collect();
        let mut pins = lock(&self.pins);
        for d in &ids {
            *pins.entry(d.clone()).or_default() += 1;
        }
        SnapshotPins { snaps: self, ids }
    }

    /// Unpacks `layer` from its blob in `store` unless its snapshot exists, and returns the
    /// snapshot's path. Blocking. Concurrent calls for one diff_id unpack it once. The caller
    /// should hold a pin (or an image record naming the layer) so GC leaves it alone.
    pub fn unpack(&self, store: &Store, layer: &LayerRecord) -> Result<PathBuf, SnapshotError> {
        let fs = self.path(&layer.diff_id);
        if fs.is_dir() {
            return Ok(fs);
        }
        let m = lock(&self.locks)
            .entry(layer.diff_id.clone())
            .or_default()
            .clone();
        let result = {
            let _held = lock(&m);
            if fs.is_dir() {
                Ok(fs)
            } else {
                self.unpack_locked(store, layer)
            }
        };
        let mut locks = lock(&self.locks);
        // Forget the lock when no other caller holds or waits on it (map + ours = 2).
        if Arc::strong_count(&m) == 2 {
            locks.remove(&layer.diff_id);
        }
        result
    }

    fn unpack_locked(&self, store: &Store, layer: &LayerRecord) -> Result<PathBuf, SnapshotError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let blob_path = store.blob_path(&layer.digest);
        let blob = match File::open(&blob_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::MissingBlob {
                    digest: layer.digest.clone(),
                })
            }
            Err(e) => return Err(io_err("open blob", &blob_path)(e)),
        };
        let hex = layer.diff_id.hex();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("tmp-{hex}-{}-{n}", std::process::id()));
        let result = self.unpack_into(blob, layer, &tmp);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp); // the error being returned matters more
        }
        result
    }

    fn unpack_into(
        &self,
        blob: File,
        layer: &LayerRecord,
        tmp: &Path,
    ) -> Result<PathBuf, SnapshotError> {
        let fs_tmp = tmp.join("fs");
        fs::create_dir(tmp).map_err(io_err("create", tmp))?;
        fs::create_dir(&fs_tmp).map_err(io_err("create", &fs_tmp))?;
        fs::set_permissions(&fs_tmp, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &fs_tmp))?;
        let started = std::time::Instant::now();
        let done = unpack_layer(blob, layer.compression, &fs_tmp, &layer.diff_id, &self.opts)
            .map_err(|source| SnapshotError::Unpack {
                digest: layer.digest.clone(),
                diff_id: layer.diff_id.clone(),
                source,
            })?;
        // Data must be on disk before the rename makes the snapshot count as complete.
        let d = File::open(tmp).map_err(io_err("open", tmp))?;
        sys::syncfs(d.as_fd()).map_err(io_err("sync", tmp))?;
        let dst = self.dir.join(layer.diff_id.hex());
        fs::rename(tmp, &dst).map_err(io_err("rename into place", &dst))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))?;
        tracing::debug!(diff_id = %layer.diff_id, entries = done.entries, bytes = done.bytes,
            ms = started.elapsed().as_millis() as u64, "layer unpacked");
        Ok(dst.join("fs"))
    }

    /// The snapshots of `image`, unpacking missing ones, top-most layer first (the order of
    /// overlayfs' `lowerdir`).
    pub fn lowerdirs(
        &self,
        store: &Store,
        image: &ImageRecord,
    ) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut dirs = image
            .layers
            .iter()
            .map(|l| self.unpack(store, l))
            .collect::<Result<Vec<_>, _>>()?;
        dirs.reverse();
        Ok(dirs)
    }

    /// Removes every snapshot whose diff_id no image in `store`, no entry of `keep_extra`
    /// (e.g. layers of live containers) and no pin names. Returns how many went.
    pub fn gc(&self, store: &Store, keep_extra: &HashSet<Digest>) -> Result<usize, SnapshotError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut doomed = Vec::new();
        {
            // Decided under the pins lock: a pull writes its record before dropping its
            // pins, so each snapshot is seen either pinned or named by a record.
            let pins = lock(&self.pins);
            let keep: HashSet<Digest> = store
                .list()
                .iter()
                .flat_map(|i| i.layers.iter().map(|l| l.diff_id.clone()))
                .collect();
            for entry in fs::read_dir(&self.dir).map_err(io_err("read", &self.dir))? {
                let entry = entry.map_err(io_err("read", &self.dir))?;
                let name = entry.file_name();
                if name.as_bytes().starts_with(b"tmp-") {
                    continue; // unpacks in progress, and trash of an earlier GC
                }
                let live = name.to_str().and_then(Digest::from_hex).is_some_and(|d| {
                    keep.contains(&d) || keep_extra.contains(&d) || pins.contains_key(&d)
                });
                if !live {
                    let n = SEQ.fetch_add(1, Ordering::Relaxed);
                    let trash = self.dir.join(format!("tmp-gc-{}-{n}", std::process::id()));
                    let path = entry.path();
                    fs::rename(&path, &trash).map_err(io_err("retire", &path))?;
                    doomed.push(trash);
                }
            }
        }
        // Deleted outside the lock: they are invisible already, and pulls may proceed.
        for trash in &doomed {
            fs::remove_dir_all(trash).map_err(io_err("remove", trash))?;
        }
        Ok(doomed.len())
    }
}

fn cpath(p: &Path) -> CString {
    // Paths here are built by hull-cri from the state root and hex digests.
    CString::new(p.as_os_str().as_bytes()).expect("paths built by hull-cri have no NUL")
}

/// Which mount interface [`mount_rootfs_with`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountApi {
    /// The new mount API with one `lowerdir+` per layer (Linux 6.8+), else the classic one.
    Auto,
    /// `mount(2)` with one option string, limited to a page: long lists of lower dirs are
    /// passed as `/proc/self/fd/N` of fds held open across the call.
    Classic,
}

/// Mounts an overlayfs at `dir/rootfs` over `lowers` (top-most first; none = one empty
/// dir), with upper and work dirs `dir/upper` and `dir/work`, and returns `dir/rootfs`.
/// On failure the directories it created are removed.
pub fn mount_rootfs(lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, SnapshotError> {
    mount_rootfs_with(lowers, dir, MountApi::Auto)
}

/// [`mount_rootfs`] with the mount interface chosen (the fallback is tested this way).
pub fn mount_rootfs_with(
    lowers: &[PathBuf],
    dir: &Path,
    api: MountApi,
) -> Result<PathBuf, SnapshotError> {
    let created = !dir.exists();
    let result = mount_prepared(lowers, dir, api);
    if result.is_err() {
        if created {
            let _ = fs::remove_dir_all(dir); // the mount error is the one to report
        } else {
            for sub in ["rootfs", "work", "upper", "empty"] {
                let _ = fs::remove_dir_all(dir.join(sub));
            }
        }
    }
    result
}

fn mount_prepared(lowers: &[PathBuf], dir: &Path, api: MountApi) -> Result<PathBuf, SnapshotError> {
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    for d in [&upper, &work, &rootfs] {
        fs::create_dir(d).map_err(io_err("create", d))?;
    }
    let mut lowers = lowers.to_vec();
    if lowers.is_empty() {
        // overlayfs needs a lower layer; an image without layers gets an empty one.
        let empty = dir.join("empty");
        fs::create_dir(&empty).map_err(io_err("create", &empty))?;
        lowers.push(empty);
    }
    let rw = Some((upper.as_path(), work.as_path()));
    if api == MountApi::Auto && mount_new(&lowers, rw, &rootfs)? {
        return Ok(rootfs);
    }
    mount_classic(&lowers, rw, &rootfs)?;
    Ok(rootfs)
}

/// Mounts a read-only overlayfs at `dir/rootfs` over `lowers` (top-most first) and returns
/// `dir/rootfs`: an image volume. Without an upper dir overlayfs is read-only by
/// construction and needs two lower dirs, so empty ones pad a shorter list. On failure the
/// directories it created are removed. [`unmount_rootfs`] undoes it.
pub fn mount_volume(lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, SnapshotError> {
    let created = !dir.exists();
    let result = mount_volume_prepared(lowers, dir);
    if result.is_err() {
        if created {
            let _ = fs::remove_dir_all(dir); // the mount error is the one to report
        } else {
            for sub in ["rootfs", "pad0", "pad1"] {
                let _ = fs::remove_dir_all(dir.join(sub));
            }
        }
    }
    result
}

fn mount_volume_prepared(lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, SnapshotError> {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
    let mut lowers = lowers.to_vec();
    // Two distinct directories: overlayfs refuses one directory named twice (ELOOP).
    for pad in ["pad0", "pad1"]
        .iter()
        .take(2usize.saturating_sub(lowers.len()))
    {
        let empty = dir.join(pad);
        fs::create_dir(&empty).map_err(io_err("create", &empty))?;
        lowers.push(empty);
    }
    if mount_new(&lowers, None, &rootfs)? {
        return Ok(rootfs);
    }
    mount_classic(&lowers, None, &rootfs)?;
    Ok(rootfs)
}

/// The new mount API. Ok(false) when the kernel lacks it or `lowerdir+` (before 6.8), or
/// refuses the context with EINVAL, which is how 6.1 reports an unknown `lowerdir+`.
/// `rw` holds the upper and work dirs; without them the overlay is read-only.
fn mount_new(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<bool, SnapshotError> {
    let fail = |op, fs: Option<&OwnedFd>, source| SnapshotError::Mount {
        target: target.to_path_buf(),
        op,
        detail: fs.map(fs_log).unwrap_or_default(),
        source,
    };
    let fs = match sys::fsopen(c"overlay") {
        Ok(fs) => fs,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(false),
        Err(e) => return Err(fail("fsopen", None, e)),
    };
    for (i, l) in lowers.iter().enumerate() {
        match sys::fsconfig_string(fs.as_fd(), c"lowerdir+", &cpath(l)) {
            Ok(()) => {}
            Err(e) if i == 0 && e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
            Err(e) => return Err(fail("lowerdir+", Some(&fs), e)),
        }
    }
    if let Some((upper, work)) = rw {
        sys::fsconfig_string(fs.as_fd(), c"upperdir", &cpath(upper))
            .map_err(|e| fail("upperdir", Some(&fs), e))?;
        sys::fsconfig_string(fs.as_fd(), c"workdir", &cpath(work))
            .map_err(|e| fail("workdir", Some(&fs), e))?;
    }
    match sys::fsconfig_create(fs.as_fd()) {
        Ok(()) => {}
        // Before 6.5 overlayfs has no fs_context of its own: the kernel's legacy shim takes
        // any key at fsconfig time and only the create rejects `lowerdir+` (6.1's "unrecognized
        // mount option"). The classic mount reports a genuinely bad layer again.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
        Err(e) => return Err(fail("create", Some(&fs), e)),
    }
    let mnt = sys::fsmount(fs.as_fd()).map_err(|e| fail("fsmount", Some(&fs), e))?;
    sys::move_mount(mnt.as_fd(), &cpath(target)).map_err(|e| fail("move_mount", None, e))?;
    Ok(true)
}

/// The messages the kernel queued on a filesystem context (": overlay: …"), if any.
fn fs_log(fs: &OwnedFd) -> String {
    let mut f = match fs.try_clone() {
        Ok(fd) => File::from(fd),
        Err(_) => return String::new(),
    };
    let mut out = String::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        match f.read(&mut buf) {
            Ok(n) if n > 0 => {
                out.push_str(": ");
                out.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            }
            _ => break,
        }
    }
    out
}

fn mount_classic(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), SnapshotError> {
    let rw_dirs = rw.map(|(u, w)| [u, w]).into_iter().flatten();
    for p in lowers.iter().map(PathBuf::as_path).chain(rw_dirs) {
        if p.as_os_str().as_bytes().iter().any(|b| b",:\\".contains(b)) {
            return Err(SnapshotError::MountPath {
                target: target.to_path_buf(),
                path: p.to_path_buf(),
            });
        }
    }
    let data = |lower: String| match rw {
        Some((upper, work)) => format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        ),
        None => format!("lowerdir={lower}"),
    };
    let joined = |it: Vec<String>| it.join(":");
    let mut opts = data(joined(
        lowers.iter().map(|l| l.display().to_string()).collect(),
    ));
    let mut _held = Vec::new();
    // mount(2) copies at most one page of options.
    if opts.len() >= 4096 {
        for l in lowers {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(sys::O_PATH | sys::O_DIRECTORY)
                .open(l)
                .map_err(io_err("open", l))?;
            _held.push(f);
        }
        let fds = _held
            .iter()
            .map(|f| format!("/proc/self/fd/{}", f.as_raw_fd()))
            .collect();
        opts = data(joined(fds));
    }
    let opts = CString::new(opts).expect("no NUL in paths");
    sys::mount(c"overlay", &cpath(target), c"overlay", &opts).map_err(|source| {
        SnapshotError::Mount {
            target: target.to_path_buf(),
            op: "mount(2)",
            detail: String::new(),
            source,
        }
    })
}

/// Unmounts `dir/rootfs` (every mount stacked there, detached) and removes `dir`. Not
/// mounted or missing is success, so the call is idempotent.
pub fn unmount_rootfs(dir: &Path) -> Result<(), SnapshotError> {
    let rootfs = dir.join("rootfs");
    let c = cpath(&rootfs);
    for _ in 0..64 {
        match sys::umount_detach(&c) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => break,
            Err(e) => {
                return Err(SnapshotError::Mount {
                    target: rootfs,
                    op: "umount",
                    detail: String::new(),
                    source: e,
                })
            }
        }
    }
    // Never recurse into a mounted overlay: that would delete through it.
    if let (Ok(r), Ok(d)) = (fs::symlink_metadata(&rootfs), fs::symlink_metadata(dir)) {
        if r.dev() != d.dev() {
            return Err(SnapshotError::StillMounted { path: rootfs });
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", dir)(e)),
        _ => Ok(()),
    }
}
