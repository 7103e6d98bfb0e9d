//! Applying tar entries below the destination's descriptor (see the parent module for the
//! rules). Every path is resolved with `openat2(RESOLVE_IN_ROOT)` on that descriptor, and
//! every final component is created with a `*at` call that does not follow it.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::{
    classify, clean_path, read_err, xattr_allowed, Name, UnpackError, UnpackOptions, OPAQUE_XATTR,
};
use crate::sys;

const RESOLVE: u64 = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;

/// Metadata of one entry.
#[derive(Clone, Copy, Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Meta {
    fn of(h: &tar::Header, path: &str) -> Result<Self, UnpackError> {
        let bad = |reason| UnpackError::BadEntry {
            path: path.to_string(),
            reason,
        };
        let id = |v: io::Result<u64>| {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("uid or gid unreadable or out of range"))
        };
        Ok(Self {
            mode: h.mode().map_err(|_| bad("unreadable mode"))? & 0o7777,
            uid: id(h.uid())?,
            gid: id(h.gid())?,
            mtime: h.mtime().map_err(|_| bad("unreadable mtime"))?,
        })
    }

    fn time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.mtime.min(i64::MAX as u64 / 2))
    }
}

type Xattrs = Vec<(CString, Vec<u8>)>;

pub(super) struct Unpacker<'a> {
    /// The destination, opened once; every path resolves below it.
    root: File,
    opts: &'a UnpackOptions,
    /// Directory metadata, applied at the end: a 0555 directory must stay writable while
    /// its children are created, and creating children changes its mtime.
    dirs: BTreeMap<Vec<u8>, Meta>,
    buf: Vec<u8>,
}

fn cstr(bytes: &[u8]) -> CString {
    // clean_path and link-name checks refuse NUL bytes before any name gets here.
    CString::new(bytes).expect("NUL bytes are refused earlier")
}

fn join(comps: &[&[u8]]) -> CString {
    cstr(&comps.join(&b'/'))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(root: File, opts: &'a UnpackOptions) -> Self {
        Self {
            root,
            opts,
            dirs: BTreeMap::new(),
            buf: vec![0; 1 << 17],
        }
    }

    /// Applies one entry.
    pub(super) fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason| UnpackError::BadEntry {
            path: shown.clone(),
            reason,
        };
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(()); // archive comments (git archive); nothing to apply
        }
        let comps = clean_path(&raw).map_err(bad)?;
        let meta = Meta::of(e.header(), &shown)?;
        let xattrs = self.xattrs(e, &shown)?;
        let Some((name, parent)) = comps.split_last() else {
            if !kind.is_dir() {
                return Err(bad("only a directory may name the layer root"));
            }
            self.dirs.insert(Vec::new(), meta);
            let root = self.root.try_clone().map_err(self.io(&shown, "dup"))?;
            return self.set_xattrs(&root, &xattrs, &shown);
        };
        let dir = self.dir(parent, &shown)?;
        match classify(name).map_err(bad)? {
            Name::Plain => {}
            Name::Opaque => return self.opaque(&dir, &shown),
            Name::AufsMeta => return Ok(()),
            Name::Whiteout(target) => {
                let target = cstr(target);
                self.clear(&dir, &target, false, &shown)?;
                return sys::mknodat(dir.as_fd(), &target, libc::S_IFCHR, 0, 0)
                    .map_err(self.io(&shown, "create whiteout"));
            }
        }
        let name = cstr(name);
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => self.file(e, &dir, &name, meta, &xattrs, &shown),
            T::Directory => {
                if !self.clear(&dir, &name, true, &shown)? {
                    sys::mkdirat(dir.as_fd(), &name, 0o700).map_err(self.io(&shown, "mkdir"))?;
                }
                self.dirs.insert(comps.join(&b'/'), meta);
                if xattrs.is_empty() {
                    return Ok(());
                }
                let d = sys::openat(dir.as_fd(), &name, sys::O_RDONLY | sys::O_DIRECTORY, 0)
                    .map_err(self.io(&shown, "open directory"))?;
                self.set_xattrs(&File::from(d), &xattrs, &shown)
            }
            T::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(bad("symlink target empty or contains a NUL byte"));
                }
                self.clear(&dir, &name, false, &shown)?;
                sys::symlinkat(&cstr(&target), dir.as_fd(), &name)
                    .map_err(self.io(&shown, "symlink"))?;
                self.node_meta(&dir, &name, meta, None, &xattrs, &shown)
            }
            T::Link => self.hardlink(e, &dir, &name, &shown),
            T::Char | T::Block | T::Fifo => self.node(e, &dir, &name, meta, &xattrs, &shown),
            T::GNUSparse => Err(bad("GNU sparse files are not supported")),
            other => Err(UnpackError::Unsupported {
                path: shown,
                kind: char::from(other.as_byte()),
            }),
        }
    }

    fn io<'s>(
        &self,
        path: &'s str,
        op: &'static str,
    ) -> impl FnOnce(io::Error) -> UnpackError + 's {
        move |source| UnpackError::Io {
            path: path.to_string(),
            op,
            source,
        }
    }

    fn xattrs<R: Read>(
        &self,
        e: &mut tar::Entry<'_, R>,
        path: &str,
    ) -> Result<Xattrs, UnpackError> {
        let mut out = Vec::new();
        let Some(exts) = e
            .pax_extensions()
            .map_err(|source| UnpackError::Read { source })?
        else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|source| UnpackError::Read { source })?;
            let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            if !xattr_allowed(key) || key.contains(&0) {
                return Err(UnpackError::Xattr {
                    path: path.to_string(),
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
            out.push((cstr(key), ext.value_bytes().to_vec()));
        }
        Ok(out)
    }

    fn set_xattrs(&self, f: &File, xattrs: &Xattrs, path: &str) -> Result<(), UnpackError> {
        for (k, v) in xattrs {
            sys::fsetxattr(f.as_fd(), k, v).map_err(self.io(path, "set xattr"))?;
        }
        Ok(())
    }

    fn opaque(&self, dir: &File, path: &str) -> Result<(), UnpackError> {
        if !self.opts.privileged {
            return Err(UnpackError::NeedsRoot {
                path: path.to_string(),
                what: "an opaque directory (trusted.overlay.opaque)",
            });
        }
        sys::fsetxattr(dir.as_fd(), OPAQUE_XATTR, b"y").map_err(self.io(path, "mark opaque"))
    }

    /// Opens the directory `comps` below the root, creating missing ones (0755).
    fn dir(&self, comps: &[&[u8]], path: &str) -> Result<File, UnpackError> {
        if comps.is_empty() {
            return self.root.try_clone().map_err(self.io(path, "dup"));
        }
        match self.open_dir(&join(comps)) {
            Ok(f) => Ok(f),
            Err(e) if errno(&e) == libc::ENOENT => self.make_dirs(comps, path),
            Err(e) => Err(self.parent_err(e, path)),
        }
    }

    fn open_dir(&self, path: &CStr) -> io::Result<File> {
        let flags = sys::O_RDONLY | sys::O_DIRECTORY;
        sys::openat2(self.root.as_fd(), path, flags, 0, RESOLVE).map(File::from)
    }

    fn parent_err(&self, e: io::Error, path: &str) -> UnpackError {
        match errno(&e) {
            libc::ENOTDIR | libc::ELOOP | libc::ENOENT => UnpackError::BadEntry {
                path: path.to_string(),
                reason: "a parent is not a directory (a file or a dangling symlink)",
            },
            _ => self.io(path, "open parent directory")(e),
        }
    }

    fn make_dirs(&self, comps: &[&[u8]], path: &str) -> Result<File, UnpackError> {
        let mut cur = self.root.try_clone().map_err(self.io(path, "dup"))?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            cur = match self.open_dir(&prefix) {
                Ok(f) => f,
                Err(e) if errno(&e) == libc::ENOENT => {
                    match sys::mkdirat(cur.as_fd(), &cstr(comps[i]), 0o755) {
                        Err(e) if errno(&e) != libc::EEXIST => {
                            return Err(self.io(path, "create parent directory")(e))
                        }
                        _ => {}
                    }
                    let f = self
                        .open_dir(&prefix)
                        .map_err(|e| self.parent_err(e, path))?;
                    // mkdir applied the umask; implicit directories are 0755 like tar's.
                    f.set_permissions(Permissions::from_mode(0o755))
                        .map_err(self.io(path, "chmod parent directory"))?;
                    f
                }
                Err(e) => return Err(self.parent_err(e, path)),
            };
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` so a new entry can take its place. A directory is kept
    /// when `keep_dir` (returns true); a non-empty directory is never replaced.
    fn clear(
        &self,
        dir: &File,
        name: &CStr,
        keep_dir: bool,
        path: &str,
    ) -> Result<bool, UnpackError> {
        match sys::unlinkat(dir.as_fd(), name, false) {
            Ok(()) => Ok(false),
            Err(e) if errno(&e) == libc::ENOENT => Ok(false),
            Err(e) if errno(&e) == libc::EISDIR => {
                if keep_dir {
                    return Ok(true);
                }
                match sys::unlinkat(dir.as_fd(), name, true) {
                    Ok(()) => Ok(false),
                    Err(e) if matches!(errno(&e), libc::ENOTEMPTY | libc::EEXIST) => {
                        Err(UnpackError::BadEntry {
                            path: path.to_string(),
                            reason: "replaces a non-empty directory",
                        })
                    }
                    Err(e) => Err(self.io(path, "remove existing directory")(e)),
                }
            }
            Err(e) => Err(self.io(path, "remove existing entry")(e)),
        }
    }

    fn file<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        dir: &File,
        name: &CStr,
        meta: Meta,
        xattrs: &Xattrs,
        path: &str,
    ) -> Result<(), UnpackError> {
        self.clear(dir, name, false, path)?;
        let flags = sys::O_WRONLY | libc::O_CREAT | sys::O_EXCL | sys::O_NOFOLLOW;
        let mut f = File::from(
            sys::openat(dir.as_fd(), name, flags, 0o600).map_err(self.io(path, "create file"))?,
        );
        loop {
            let n = match e.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e, self.opts.max_bytes)),
            };
            f.write_all(&self.buf[..n])
                .map_err(self.io(path, "write file"))?;
        }
        if self.opts.privileged {
            std::os::unix::fs::fchown(&f, Some(meta.uid), Some(meta.gid))
                .map_err(self.io(path, "chown"))?;
        }
        // After chown, which clears setuid and setgid bits.
        f.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(self.io(path, "chmod"))?;
        self.set_xattrs(&f, xattrs, path)?;
        let t = meta.time();
        f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
            .map_err(self.io(path, "set times"))
    }

    fn hardlink<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        dir: &File,
        name: &CStr,
        path: &str,
    ) -> Result<(), UnpackError> {
        let bad = |reason| UnpackError::BadEntry {
            path: path.to_string(),
            reason,
        };
        let raw = e.link_name_bytes().unwrap_or_default();
        let comps = clean_path(&raw).map_err(|_| bad("hard link target outside the layer"))?;
        let Some((tname, tparent)) = comps.split_last() else {
            return Err(bad("hard link to the layer root"));
        };
        let tdir = if tparent.is_empty() {
            self.root.try_clone().map_err(self.io(path, "dup"))?
        } else {
            self.open_dir(&join(tparent))
                .map_err(|_| bad("hard link target missing"))?
        };
        self.clear(dir, name, false, path)?;
        match sys::linkat(tdir.as_fd(), &cstr(tname), dir.as_fd(), name) {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == libc::ENOENT => Err(bad("hard link target missing")),
            Err(e) if errno(&e) == libc::EPERM => Err(bad("hard link to a directory")),
            Err(e) => Err(self.io(path, "hard link")(e)),
        }
    }

    fn node<R: Read>(
        &self,
        e: &tar::Entry<'_, R>,
        dir: &File,
        name: &CStr,
        meta: Meta,
        xattrs: &Xattrs,
        path: &str,
    ) -> Result<(), UnpackError> {
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Char => libc::S_IFCHR,
            tar::EntryType::Block => libc::S_IFBLK,
            _ => libc::S_IFIFO,
        };
        if kind != libc::S_IFIFO && !self.opts.privileged {
            return Err(UnpackError::NeedsRoot {
                path: path.to_string(),
                what: "a device node",
            });
        }
        let num = |v: io::Result<Option<u32>>| {
            v.map(Option::unwrap_or_default)
                .map_err(|_| UnpackError::BadEntry {
                    path: path.to_string(),
                    reason: "unreadable device number",
                })
        };
        let (major, minor) = (num(h.device_major())?, num(h.device_minor())?);
        self.clear(dir, name, false, path)?;
        sys::mknodat(dir.as_fd(), name, kind | 0o600, major, minor)
            .map_err(self.io(path, "mknod"))?;
        self.node_meta(dir, name, meta, Some(meta.mode), xattrs, path)
    }

    /// Ownership, mode (not for symlinks), xattrs and times of a node that cannot be opened.
    fn node_meta(
        &self,
        dir: &File,
        name: &CStr,
        meta: Meta,
        mode: Option<u32>,
        xattrs: &Xattrs,
        path: &str,
    ) -> Result<(), UnpackError> {
        if self.opts.privileged {
            sys::lchownat(dir.as_fd(), name, meta.uid, meta.gid).map_err(self.io(path, "chown"))?;
        }
        if let Some(mode) = mode {
            sys::fchmodat(dir.as_fd(), name, mode).map_err(self.io(path, "chmod"))?;
        }
        if !xattrs.is_empty() {
            // The parent fd's magic link is ours; the final component is not followed.
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(name.to_bytes());
            let p = cstr(&p);
            for (k, v) in xattrs {
                sys::lsetxattr(&p, k, v).map_err(self.io(path, "set xattr"))?;
            }
        }
        let secs = meta.mtime.min(i64::MAX as u64) as i64;
        sys::lutimesat(dir.as_fd(), name, secs).map_err(self.io(path, "set times"))
    }

    /// Applies directory metadata now that no more children will be created.
    pub(super) fn finish_dirs(&self) -> Result<(), UnpackError> {
        for (raw, meta) in &self.dirs {
            let shown = String::from_utf8_lossy(raw);
            let dir = if raw.is_empty() {
                self.root.try_clone().map_err(self.io(&shown, "dup"))?
            } else {
                let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_NOFOLLOW;
                match sys::openat2(self.root.as_fd(), &cstr(raw), flags, 0, RESOLVE) {
                    Ok(fd) => File::from(fd),
                    // A later entry replaced or whited out this directory.
                    Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => {
                        continue
                    }
                    Err(e) => return Err(self.io(&shown, "reopen directory")(e)),
                }
            };
            if self.opts.privileged {
                std::os::unix::fs::fchown(&dir, Some(meta.uid), Some(meta.gid))
                    .map_err(self.io(&shown, "chown"))?;
            }
            dir.set_permissions(Permissions::from_mode(meta.mode))
                .map_err(self.io(&shown, "chmod"))?;
            let t = meta.time();
            dir.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                .map_err(self.io(&shown, "set times"))?;
        }
        Ok(())
    }
}
