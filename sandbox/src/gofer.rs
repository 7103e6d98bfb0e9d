//! The gofer: a separate process that owns the container's rootfs and opens files in it
//! for the Sentry. The Sentry itself cannot open any host file (its seccomp allowlist has
//! no open call); it only receives descriptors over a socket.
//!
//! Paths are resolved by the host kernel with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, so symlinks and `..` cannot leave the rootfs. Everything is
//! opened read-only: writes go to the Sentry's in-memory upper layer.

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use crate::sys;

/// Errors starting the gofer.
#[derive(Debug, thiserror::Error)]
pub enum GoferError {
    /// The rootfs could not be opened.
    #[error("opening rootfs {path}")]
    Root {
        /// The rootfs path.
        path: String,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// The socket pair could not be made.
    #[error("gofer socket pair")]
    Socket(#[source] Errno),
}

/// Open the final component without following it (lstat, readlink).
pub const NOFOLLOW: u8 = 1;

/// The Sentry's end of the gofer channel.
pub struct Client {
    sock: OwnedFd,
}

/// The gofer's end, with the rootfs it serves.
pub struct Server {
    sock: OwnedFd,
    root: OwnedFd,
    /// The rootfs's host path as /proc shows it, read once: canonical paths are relative
    /// to it.
    root_path: std::path::PathBuf,
    binds: Vec<(String, std::path::PathBuf)>,
}

/// Opens `rootfs` and makes the channel; fork afterwards and give each side its end.
pub fn channel(
    rootfs: &Path,
    binds: &[(String, std::path::PathBuf)],
) -> Result<(Client, Server), GoferError> {
    let root = nix::fcntl::open(
        rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| GoferError::Root {
        path: rootfs.display().to_string(),
        source,
    })?;
    let root = owned(root);
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(GoferError::Socket)?;
    let mut binds = binds.to_vec();
    // Longest destination first, so nested binds win.
    binds.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
    let root_path = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
        .unwrap_or_else(|_| rootfs.to_path_buf());
    Ok((
        Client { sock: a },
        Server {
            sock: b,
            root,
            root_path,
            binds,
        },
    ))
}

fn owned(fd: RawFd) -> OwnedFd {
    crate::sys::own_fd(fd)
}

impl Client {
    /// Opens absolute `path` (inside the rootfs); returns the descriptor and the path the
    /// kernel resolved it to (symlinks followed), also absolute inside the rootfs.
    pub fn open(&self, path: &str, flags: u8) -> Result<(OwnedFd, String), Errno> {
        let mut req = vec![flags];
        req.extend_from_slice(path.as_bytes());
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&req)],
            &[],
            MsgFlags::empty(),
            None,
        )?;
        let mut buf = vec![0u8; 8192];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let n = msg.bytes;
        let mut fd = None;
        for c in msg.cmsgs().map_err(|_| Errno::EIO)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        if n < 4 {
            return Err(Errno::EIO);
        }
        let errno = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if errno != 0 {
            return Err(Errno::from_raw(errno));
        }
        let fd = fd.ok_or(Errno::EIO)?;
        let canon = String::from_utf8_lossy(&buf[4..n]).into_owned();
        Ok((owned(fd), canon))
    }
}

impl Server {
    /// Serves requests until the Sentry closes its end; never returns an error to it other
    /// than as an errno.
    pub fn serve(self) {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match nix::sys::socket::recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty())
            {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let reply = self.open(buf[0], &buf[1..n]);
            let sent = match &reply {
                Ok((fd, canon)) => {
                    let mut msg = 0i32.to_le_bytes().to_vec();
                    msg.extend_from_slice(canon.as_bytes());
                    let fds = [fd.as_raw_fd()];
                    sendmsg::<()>(
                        self.sock.as_raw_fd(),
                        &[IoSlice::new(&msg)],
                        &[ControlMessage::ScmRights(&fds)],
                        MsgFlags::empty(),
                        None,
                    )
                }
                Err(e) => sendmsg::<()>(
                    self.sock.as_raw_fd(),
                    &[IoSlice::new(&(*e as i32).to_le_bytes())],
                    &[],
                    MsgFlags::empty(),
                    None,
                ),
            };
            if sent.is_err() {
                return;
            }
        }
    }

    fn open(&self, flags: u8, path: &[u8]) -> Result<(OwnedFd, String), Errno> {
        let p = std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
        for (dest, src) in &self.binds {
            let rest = if p == dest {
                ""
            } else if let Some(r) = p
                .strip_prefix(dest.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                r
            } else {
                continue;
            };
            return self
                .open_bind(flags, src, rest)
                .map(|fd| (fd, p.to_string()));
        }
        let rel = path.strip_prefix(b"/").unwrap_or(path);
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        let c = CString::new(rel).map_err(|_| Errno::EINVAL)?;
        // openat2 refuses O_PATH with any flag but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        let oflags = if flags & NOFOLLOW != 0 {
            (libc::O_CLOEXEC | libc::O_PATH | libc::O_NOFOLLOW) as u64
        } else {
            (libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_RDONLY | libc::O_NONBLOCK) as u64
        };
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let raw = match sys::openat2(self.root.as_raw_fd(), &c, oflags, resolve) {
            Ok(fd) => fd,
            // Unreadable (mode 000, no CAP_DAC_OVERRIDE) still has a path and metadata.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                let o = (libc::O_CLOEXEC | libc::O_PATH) as u64;
                sys::openat2(self.root.as_raw_fd(), &c, o, resolve)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
            }
            Err(e) => return Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        };
        let fd = owned(raw);
        let canon = canonical(&fd, &self.root_path)
            .unwrap_or_else(|| String::from_utf8_lossy(path).into_owned());
        Ok((fd, canon))
    }
}

impl Server {
    /// Opens `rest` inside bind source `src` (a directory), or `src` itself.
    fn open_bind(&self, flags: u8, src: &Path, rest: &str) -> Result<OwnedFd, Errno> {
        let oflags = if flags & NOFOLLOW != 0 {
            libc::O_CLOEXEC | libc::O_PATH | libc::O_NOFOLLOW
        } else {
            libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_RDONLY | libc::O_NONBLOCK
        };
        if rest.is_empty() {
            let fd = nix::fcntl::open(
                src,
                nix::fcntl::OFlag::from_bits_truncate(oflags),
                nix::sys::stat::Mode::empty(),
            )?;
            return Ok(owned(fd));
        }
        let dir = nix::fcntl::open(
            src,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let dir = owned(dir);
        let c = CString::new(rest).map_err(|_| Errno::EINVAL)?;
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        sys::openat2(dir.as_raw_fd(), &c, oflags as u64, resolve)
            .map(owned)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

/// The path of `fd` relative to `root`, from /proc/self/fd (the gofer's own view).
fn canonical(fd: &OwnedFd, root: &Path) -> Option<String> {
    let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let rel = p.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.display()))
}
