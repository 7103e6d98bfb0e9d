//! Unpacking one layer (a tar stream, plain, gzip or zstd) into a directory.
//!
//! The stream comes from a registry and is hostile until proven otherwise (see "Threat
//! model" in docs/design/cri.md):
//! - every entry path is split into components; `..` and absolute paths are refused;
//! - the parent directory is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//!   relative to the destination, so a symlink the layer planted (`a -> /etc`) resolves
//!   inside the destination, never outside it;
//! - the final component is created with `*at` calls on that parent fd and never followed
//!   (an existing entry is unlinked first, files are opened `O_EXCL | O_NOFOLLOW`);
//! - hard links name a target resolved the same way;
//! - device nodes need real root, unknown entry types and sparse files are refused, and the
//!   uncompressed size is capped.
//!
//! Whiteouts become what overlayfs reads: `.wh.<name>` a char device 0:0 named `<name>`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory. The uncompressed
//! stream is hashed on the way and must equal the layer's `diff_id`.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::manifest::Compression;
use crate::sys;

mod apply;

use apply::Unpacker;

/// The default cap on a layer's uncompressed size: 20 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;

/// The xattr overlayfs reads to make a directory opaque.
pub const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// Errors of unpacking one layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination directory cannot be opened.
    #[error("opening unpack destination {path}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The stream is corrupt: bad compression, bad tar framing, or cut short.
    #[error("reading the layer stream")]
    Read {
        #[source]
        source: io::Error,
    },
    /// The uncompressed stream exceeds the cap.
    #[error("layer is larger than {max} bytes uncompressed")]
    TooLarge { max: u64 },
    /// An entry is refused (path escape, bad link, malformed header).
    #[error("layer entry {path:?}: {reason}")]
    BadEntry { path: String, reason: &'static str },
    /// An entry type hull-cri does not unpack.
    #[error("layer entry {path:?}: unsupported tar entry type {kind:?}")]
    Unsupported { path: String, kind: char },
    /// An extended attribute outside the allowed namespaces.
    #[error("layer entry {path:?}: extended attribute {key:?} is not allowed")]
    Xattr { path: String, key: String },
    /// The entry needs privileges this process does not have.
    #[error("layer entry {path:?}: {what} needs root")]
    NeedsRoot { path: String, what: &'static str },
    /// A filesystem operation for an entry failed.
    #[error("layer entry {path:?}: {op}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The content does not hash to the config's diff_id.
    #[error("layer content is {actual}, the image config says {expected}")]
    DiffId { expected: Digest, actual: Digest },
}

impl UnpackError {
    /// True when the layer itself is at fault (corrupt, hostile or unsupported), false when
    /// the local system failed.
    pub fn is_bad_layer(&self) -> bool {
        !matches!(self, Self::Dest { .. } | Self::Io { .. })
    }
}

/// How to unpack.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Apply ownership and create device nodes and opaque markers: needs real root.
    pub privileged: bool,
    /// Cap on the uncompressed stream, in bytes.
    pub max_bytes: u64,
}

impl UnpackOptions {
    /// Privileged when the effective uid is 0; the default size cap.
    pub fn for_current_user() -> Self {
        Self {
            privileged: sys::geteuid() == 0,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What one unpack did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Tar entries applied.
    pub entries: u64,
    /// Bytes of uncompressed stream.
    pub bytes: u64,
}

/// Unpacks `blob` (compressed as `compression`) into the existing directory `dest` and
/// checks the uncompressed stream against `diff_id`. On error `dest` holds a partial tree;
/// the caller owns `dest` and removes it.
pub fn unpack_layer(
    blob: impl Read,
    compression: Compression,
    dest: &Path,
    diff_id: &Digest,
    opts: &UnpackOptions,
) -> Result<Unpacked, UnpackError> {
    let root = File::open(dest).map_err(|source| UnpackError::Dest {
        path: dest.to_path_buf(),
        source,
    })?;
    let reader = Hashing {
        inner: decoder(blob, compression)?,
        hasher: Hasher::default(),
        max: opts.max_bytes,
    };
    let mut archive = tar::Archive::new(reader);
    let mut u = Unpacker::new(root, opts);
    let mut entries = 0;
    for e in archive.entries().map_err(|e| read_err(e, opts.max_bytes))? {
        let mut e = e.map_err(|e| read_err(e, opts.max_bytes))?;
        u.entry(&mut e)?;
        entries += 1;
    }
    u.finish_dirs()?;
    let mut reader = archive.into_inner();
    // The diff_id covers the whole stream, including padding after the end-of-archive mark.
    io::copy(&mut reader, &mut io::sink()).map_err(|e| read_err(e, opts.max_bytes))?;
    let bytes = reader.hasher.len();
    let actual = reader.hasher.finish();
    if actual != *diff_id {
        return Err(UnpackError::DiffId {
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(Unpacked { entries, bytes })
}

fn decoder<'a>(
    blob: impl Read + 'a,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let buffered = io::BufReader::with_capacity(1 << 17, blob);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        // Multi-member: parallel compressors (pigz) concatenate gzip members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(ruzstd::decoding::StreamingDecoder::new(buffered).map_err(
            |e| UnpackError::Read {
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            },
        )?),
    })
}

/// Marks the io error [`Hashing`] returns past the cap.
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("size cap exceeded")
    }
}

impl std::error::Error for TooLarge {}

fn read_err(source: io::Error, max: u64) -> UnpackError {
    if source.get_ref().is_some_and(|e| e.is::<TooLarge>()) {
        UnpackError::TooLarge { max }
    } else {
        UnpackError::Read { source }
    }
}

/// Hashes and counts the uncompressed stream as the tar reader consumes it.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    max: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if self.hasher.len() > self.max {
            return Err(io::Error::other(TooLarge));
        }
        Ok(n)
    }
}

/// The components of an entry path (`./a//b/` → `[a, b]`), or why it is refused.
pub fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains '..'"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// What a base name means to overlayfs.
#[derive(Debug, PartialEq, Eq)]
pub enum Name<'a> {
    /// An ordinary name.
    Plain,
    /// `.wh.<name>`: `<name>` is deleted in this layer.
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the directory hides everything below it in lower layers.
    Opaque,
    /// Another `.wh..wh.*` name: aufs bookkeeping with no meaning for overlayfs.
    AufsMeta,
}

/// Classifies a base name; a whiteout of nothing (`.wh.`, `.wh..`) is refused.
pub fn classify(name: &[u8]) -> Result<Name<'_>, &'static str> {
    if name == b".wh..wh..opq" {
        Ok(Name::Opaque)
    } else if name.starts_with(b".wh..wh.") {
        Ok(Name::AufsMeta)
    } else if let Some(target) = name.strip_prefix(b".wh.") {
        match target {
            b"" | b"." | b".." => Err("whiteout names no file"),
            t => Ok(Name::Whiteout(t)),
        }
    } else {
        Ok(Name::Plain)
    }
}

/// Checks an xattr key from `SCHILY.xattr.<key>`: user, security, trusted (except
/// `trusted.overlay.*`, which would steer overlayfs) and POSIX ACLs.
pub fn xattr_allowed(key: &[u8]) -> bool {
    if key.starts_with(b"trusted.overlay.") {
        return false;
    }
    ["user.", "security.", "trusted."]
        .iter()
        .any(|p| key.starts_with(p.as_bytes()) && key.len() > p.len())
        || key == b"system.posix_acl_access"
        || key == b"system.posix_acl_default"
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn paths_are_cleaned_or_refused() {
        let ok: &[(&[u8], &[&[u8]])] = &[
            (b"./a//b/", &[b"a", b"b"]),
            (b"a/./b", &[b"a", b"b"]),
            (b"./", &[]),
            (b"..a/b..", &[b"..a", b"b.."]),
        ];
        for (raw, want) in ok {
            assert_eq!(clean_path(raw).unwrap(), *want, "{raw:?}");
        }
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/..", b"a\0b"] {
            assert!(clean_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(classify(b"file").unwrap(), Name::Plain);
        assert_eq!(classify(b".whx").unwrap(), Name::Plain);
        assert_eq!(classify(b".wh.file").unwrap(), Name::Whiteout(b"file"));
        assert_eq!(classify(b".wh..wh..opq").unwrap(), Name::Opaque);
        assert_eq!(classify(b".wh..wh.plnk").unwrap(), Name::AufsMeta);
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(classify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xattr_namespaces() {
        assert!(xattr_allowed(b"security.capability"));
        assert!(xattr_allowed(b"user.x"));
        assert!(xattr_allowed(b"trusted.x"));
        assert!(xattr_allowed(b"system.posix_acl_access"));
        assert!(!xattr_allowed(b"trusted.overlay.redirect"));
        assert!(!xattr_allowed(b"trusted.overlay.opaque"));
        assert!(!xattr_allowed(b"system.other"));
        assert!(!xattr_allowed(b"user."));
    }

    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }
        fn add(mut self, path: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            // set_path refuses '..'; write hostile names into the raw header instead.
            let name = &mut h.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn unpack(bytes: &[u8], dest: &Path) -> Result<Unpacked, UnpackError> {
        let opts = UnpackOptions {
            privileged: false,
            max_bytes: 1 << 20,
        };
        unpack_layer(bytes, Compression::None, dest, &Digest::of(bytes), &opts)
    }

    #[test]
    fn unpacks_files_dirs_links_without_root() {
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let bytes = Tar::new()
            .add("./", T::Directory, "", b"")
            .add("a/b/c.txt", T::Regular, "", b"hello")
            .add("a/", T::Directory, "", b"")
            .add("a/link", T::Symlink, "b/c.txt", b"")
            .add("a/hard", T::Link, "a/b/c.txt", b"")
            .add("a/.wh..wh.plnk", T::Regular, "", b"")
            .bytes();
        let done = unpack(&bytes, d.path()).unwrap();
        assert_eq!(done.entries, 6);
        assert_eq!(done.bytes, bytes.len() as u64);
        let c = d.path().join("a/b/c.txt");
        assert_eq!(std::fs::read(&c).unwrap(), b"hello");
        let md = std::fs::metadata(&c).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.mtime(), md.nlink()),
            (0o644, 1_000_000, 2)
        );
        assert_eq!(std::fs::read(d.path().join("a/link")).unwrap(), b"hello");
        let a = std::fs::metadata(d.path().join("a")).unwrap();
        assert_eq!((a.mode() & 0o7777, a.mtime()), (0o755, 1_000_000));
        assert!(!d.path().join("a/.wh..wh.plnk").exists());
    }

    #[test]
    fn refuses_escapes_and_bad_digests() {
        use tar::EntryType as T;
        for (bytes, why) in [
            (Tar::new().add("../x", T::Regular, "", b"x").bytes(), ".."),
            (
                Tar::new().add("/x", T::Regular, "", b"x").bytes(),
                "absolute",
            ),
            (
                Tar::new().add("h", T::Link, "../x", b"").bytes(),
                "hard link",
            ),
            (Tar::new().add("h", T::Link, "a", b"").bytes(), "missing"),
            (Tar::new().add("d", T::Char, "", b"").bytes(), "needs root"),
            (
                Tar::new().add(".wh..", T::Regular, "", b"").bytes(),
                "whiteout",
            ),
        ] {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("dest");
            std::fs::create_dir(&dest).unwrap();
            let e = unpack(&bytes, &dest).unwrap_err();
            assert!(e.is_bad_layer(), "{why}: {e}");
            assert!(e.to_string().contains(why), "{why}: {e}");
            assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 1, "{why}");
        }
        let d = tempfile::tempdir().unwrap();
        let bytes = Tar::new().add("f", T::Regular, "", b"x").bytes();
        let opts = UnpackOptions {
            privileged: false,
            max_bytes: 1 << 20,
        };
        let e = unpack_layer(
            &bytes[..],
            Compression::None,
            d.path(),
            &Digest::of(b""),
            &opts,
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::DiffId { .. }), "{e}");
        let small = UnpackOptions {
            privileged: false,
            max_bytes: 1024,
        };
        let e = unpack_layer(
            &bytes[..],
            Compression::None,
            d.path(),
            &Digest::of(&bytes),
            &small,
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { max: 1024 }), "{e}");
    }

    #[test]
    fn gzip_layer_round_trip() {
        use tar::EntryType as T;
        let tar = Tar::new().add("f", T::Regular, "", b"gz").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            privileged: false,
            max_bytes: 1 << 20,
        };
        unpack_layer(
            &gz[..],
            Compression::Gzip,
            d.path(),
            &Digest::of(&tar),
            &opts,
        )
        .unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"gz");
        let e = unpack_layer(
            &tar[..],
            Compression::Gzip,
            d.path(),
            &Digest::of(&tar),
            &opts,
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::Read { .. }), "{e}");
    }
}
