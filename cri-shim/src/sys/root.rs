//! Opening files inside an untrusted root (openat2 with RESOLVE_IN_ROOT).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Opens `path` read-only below the directory `root`, resolving it as if `root` were `/`.
///
/// `openat2(RESOLVE_IN_ROOT)` keeps `..`, absolute paths and absolute symlinks inside
/// `root`, so a planted `etc/passwd -> /etc/shadow` or `-> ../../../etc/passwd` of an
/// untrusted rootfs resolves to a file of the rootfs, never of the host.
/// `RESOLVE_NO_MAGICLINKS` refuses `/proc/*/fd`-style links. `O_NONBLOCK` keeps a FIFO
/// planted at `path` from blocking the open; callers check the file type afterwards.
pub fn open_in_root(root: &File, path: &Path) -> io::Result<File> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let fd = super::fs::openat2(
        root.as_fd(),
        &cpath,
        libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host secret").unwrap();
        let root = host.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("secret"), "rootfs file").unwrap();
        // Both an absolute and a climbing relative link name the host's file from outside.
        symlink(host.path().join("secret"), root.join("etc/abs")).unwrap();
        symlink("../../secret", root.join("etc/rel")).unwrap();
        let dir = File::open(&root).unwrap();
        for link in ["etc/abs", "etc/rel", "/etc/rel", "../secret"] {
            let mut text = String::new();
            match open_in_root(&dir, Path::new(link)) {
                Ok(mut f) => {
                    f.read_to_string(&mut text).unwrap();
                    assert_ne!(text, "host secret", "{link} escaped the root");
                }
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{link}: {e}"),
            }
        }
        // `../../secret` from /etc clamps at the root: it names the rootfs's own /secret.
        let mut text = String::new();
        open_in_root(&dir, Path::new("etc/rel"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "rootfs file");
    }
}
