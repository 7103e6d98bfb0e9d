//! Connecting a TCP socket inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only, and every socket
//! it creates afterwards belongs to that namespace for good. hull-cri's tokio threads must
//! never switch (a worker would carry the pod's namespace into unrelated tasks), so the
//! switch happens on a thread started for the one connection, which exits right after.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CloneFlags;

/// Connects to `addr` from inside the network namespace pinned at `ns`, waiting at most
/// `timeout`. Blocks the caller until a dedicated thread has entered the namespace,
/// connected and exited; the returned socket stays in that namespace.
pub fn connect_in_netns(ns: PathBuf, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let worker = std::thread::Builder::new()
        .name("hull-cri-netns".into())
        .spawn(move || -> io::Result<TcpStream> {
            let file = File::open(&ns)?;
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
            TcpStream::connect_timeout(&addr, timeout)
        })?;
    worker
        .join()
        .map_err(|_| io::Error::other("the network namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_namespace_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let addr = "127.0.0.1:9".parse().unwrap();
        let e = connect_in_netns(f.path().to_path_buf(), addr, Duration::from_secs(1)).unwrap_err();
        // EINVAL (not a namespace) as root, EPERM otherwise: never a connection.
        assert!(
            matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)),
            "{e}"
        );
    }

    #[test]
    fn a_missing_namespace_is_not_found() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let e = connect_in_netns("/nonexistent/ns/net".into(), addr, Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
