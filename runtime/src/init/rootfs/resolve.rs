//! Path resolution confined to the container's rootfs.
//!
//! Every lookup goes through openat2(RESOLVE_IN_ROOT) on a descriptor of the rootfs, so
//! `..` and absolute symlinks are clamped at the rootfs as if it were `/`. Creation of
//! missing directories follows dangling symlinks by hand, still inside the rootfs, instead
//! of letting the kernel or a path string leave it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::Mode;

use crate::sys::{
    self, RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
};

/// Symlinks followed by hand before giving up, as the kernel's MAXSYMLINKS.
const MAX_LINKS: u32 = 40;

/// Lexically normalises `path` to components relative to the root: `.` dropped, `..`
/// clamped at the root, as RESOLVE_IN_ROOT does.
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A handle on the rootfs directory.
pub struct Root {
    fd: OwnedFd,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl Root {
    /// Opens the rootfs directory at host path `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = sys::open_path(path, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(Self { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resolves `path` inside the root (following symlinks there) to an fd with `flags`.
    pub fn open_in(&self, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        let rel = clean(path);
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        sys::openat2(
            self.fd(),
            &rel,
            flags,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
    }

    /// Like [`Root::open_in`] with `O_PATH`.
    pub fn lookup(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_in(path, libc::O_PATH)
    }

    /// Returns the directory at `path`, creating it and its parents (mode 0755) as needed.
    pub fn mkdir_all(&self, path: &Path) -> io::Result<OwnedFd> {
        self.mkdir_all_inner(clean(path), 0)
    }

    fn mkdir_all_inner(&self, mut rel: PathBuf, mut links: u32) -> io::Result<OwnedFd> {
        loop {
            match self.open_in(&rel, libc::O_PATH | libc::O_DIRECTORY) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                other => return other,
            }
            let name = rel
                .file_name()
                .ok_or_else(|| errno(libc::ENOENT))?
                .to_owned();
            let parent_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            let parent = self.mkdir_all_inner(parent_rel.clone(), links)?;
            match nix::sys::stat::mkdirat(
                Some(parent.as_raw_fd()),
                name.as_os_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let only_here = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
            match sys::openat2(
                parent.as_fd(),
                Path::new(&name),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                only_here,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    rel = follow(&parent, &name, &parent_rel, &mut links)?;
                }
                other => return other,
            }
        }
    }

    /// Returns a non-directory at `path`, creating an empty regular file if nothing is
    /// there (used as a bind mount target for file sources).
    pub fn create_file(&self, path: &Path) -> io::Result<OwnedFd> {
        let mut rel = clean(path);
        let mut links = 0;
        loop {
            match self.lookup(&rel) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                other => return other,
            }
            let name = rel
                .file_name()
                .ok_or_else(|| errno(libc::ENOENT))?
                .to_owned();
            let parent_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            let parent = self.mkdir_all_inner(parent_rel.clone(), links)?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            match sys::openat2(
                parent.as_fd(),
                Path::new(&name),
                flags,
                0o644,
                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    rel = follow(&parent, &name, &parent_rel, &mut links)?;
                }
                other => return other,
            }
        }
    }
}

/// Reads the symlink `name` in `parent` (at `parent_rel`) and returns where it points,
/// as a root-relative path.
fn follow(
    parent: &OwnedFd,
    name: &std::ffi::OsStr,
    parent_rel: &Path,
    links: &mut u32,
) -> io::Result<PathBuf> {
    *links += 1;
    if *links > MAX_LINKS {
        return Err(errno(libc::ELOOP));
    }
    let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name).map_err(io::Error::from)?;
    let target = Path::new(&target);
    Ok(if target.is_absolute() {
        clean(target)
    } else {
        clean(&parent_rel.join(target))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn clean_clamps_at_root() {
        assert_eq!(clean(Path::new("/a/../../b/./c")), PathBuf::from("b/c"));
        assert_eq!(clean(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn mkdir_follows_dangling_links_inside_root() {
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim");
        let root = host.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&victim, root.join("evil")).unwrap();
        symlink("../../../../victim2", root.join("rel")).unwrap();
        let r = Root::open(&root).unwrap();
        r.mkdir_all(Path::new("/evil/sub")).unwrap();
        r.mkdir_all(Path::new("/rel/x")).unwrap();
        assert!(!victim.exists(), "escaped the root");
        assert!(root
            .join(victim.strip_prefix("/").unwrap())
            .join("sub")
            .is_dir());
        assert!(root.join("victim2/x").is_dir());
    }

    #[test]
    fn create_file_stays_inside_root() {
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim-file");
        let root = host.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&victim, root.join("f")).unwrap();
        let r = Root::open(&root).unwrap();
        r.create_file(Path::new("/f")).unwrap();
        assert!(!victim.exists(), "created a host file");
        assert!(root.join(victim.strip_prefix("/").unwrap()).is_file());
    }
}
