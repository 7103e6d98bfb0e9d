//! `tmpcopyup`: seed a new tmpfs with what the image had at the mount point, as runc and
//! crun do (podman asks for it on tmpfs volumes). The source tree is container content,
//! so it is walked by descriptor with `O_NOFOLLOW`: a symlink is copied as a symlink,
//! never followed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fstatat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, Gid, Uid};

use crate::sys;

/// Deepest directory nesting copied; deeper trees fail with ELOOP rather than exhaust the
/// stack.
const MAX_DEPTH: u32 = 64;

fn open_dir(parent: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    sys::openat2(
        parent,
        name,
        flags,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )
}

/// Copies the contents of directory `src` into directory `dst` (both open fds).
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    copy_dir(src, dst, 0)
}

fn copy_dir(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: u32) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let listing = open_dir(src, Path::new("."))?;
    let mut dir = Dir::from_fd(listing.into_raw_fd()).map_err(io::Error::from)?;
    for entry in dir.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        copy_entry(src, dst, Path::new(name), entry.file_type(), depth)?;
    }
    Ok(())
}

fn copy_entry(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &Path,
    _hint: Option<Type>,
    depth: u32,
) -> io::Result<()> {
    let st = fstatat(Some(src.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let (uid, gid) = (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    );
    if kind == SFlag::S_IFDIR {
        nix::sys::stat::mkdirat(Some(dst.as_raw_fd()), name, mode)?;
        let from = open_dir(src, name)?;
        let to = open_dir(dst, name)?;
        copy_dir(from.as_fd(), to.as_fd(), depth + 1)?;
        fchown(to.as_raw_fd(), uid, gid)?;
        return fchmod(to.as_raw_fd(), mode).map_err(io::Error::from);
    }
    if kind == SFlag::S_IFREG {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW;
        let from = sys::openat2(
            src,
            name,
            flags,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )?;
        let create = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let to = sys::openat2(
            dst,
            name,
            create,
            0o600,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )?;
        let (mut from, mut to) = (std::fs::File::from(from), std::fs::File::from(to));
        io::copy(&mut from, &mut to)?;
        fchown(to.as_raw_fd(), uid, gid)?;
        return fchmod(to.as_raw_fd(), mode).map_err(io::Error::from);
    }
    if kind == SFlag::S_IFLNK {
        let target = nix::fcntl::readlinkat(Some(src.as_raw_fd()), name)?;
        nix::unistd::symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name)?;
    } else {
        sys::mknod_at(dst, name, st.st_mode, st.st_rdev)?;
    }
    fchownat(
        Some(dst.as_raw_fd()),
        name,
        uid,
        gid,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Opens the directory at `fd` for reading (for an `O_PATH` fd from the resolver).
pub fn readable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_dir(fd, Path::new("."))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    #[test]
    fn copies_files_dirs_and_links_without_following() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("a/b/f"), "data").unwrap();
        std::fs::set_permissions(src.join("a/b/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        symlink("/etc/shadow", src.join("link")).unwrap();
        let s = sys::open_path(&src, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        let d = sys::open_path(&dst, libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        copy_tree(s.as_fd(), d.as_fd()).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("a/b/f")).unwrap(), "data");
        let mode = std::fs::metadata(dst.join("a/b/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
    }
}
