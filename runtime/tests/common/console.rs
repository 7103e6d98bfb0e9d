//! The receiving end of `--console-socket`: a unix socket on which the
//! runtime sends the pty master of a `process.terminal` container (one
//! SCM_RIGHTS message, as runc does).

use std::fs::File;
use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::COMMAND_TIMEOUT;

/// A listening console socket; a thread accepts one connection and receives
/// the pty master from it.
pub struct ConsoleSocket {
    pub path: PathBuf,
    receiver: JoinHandle<io::Result<OwnedFd>>,
}

impl ConsoleSocket {
    /// Listens on `dir/console.sock`.
    pub fn listen(dir: &Path) -> ConsoleSocket {
        let path = dir.join("console.sock");
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let receiver = thread::spawn(move || receive_master(&listener));
        ConsoleSocket { path, receiver }
    }

    /// The pty master the runtime sent; panics if none arrived in time.
    pub fn master(self) -> OwnedFd {
        match self.receiver.join() {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => panic!("no pty master on {}: {e}", self.path.display()),
            Err(_) => panic!("console socket thread panicked"),
        }
    }
}

/// Accepts one connection (polling, so a runtime that never connects makes
/// this fail instead of hanging) and receives one fd from it.
fn receive_master(listener: &UnixListener) -> io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    recv_fd(&stream)
}

/// Receives the first fd of one SCM_RIGHTS message; any further fds in it
/// are closed.
fn recv_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: SCM_RIGHTS just installed `fd` in this process; no
                // other object knows it, so this OwnedFd is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    fds.into_iter()
        .next()
        .ok_or_else(|| io::Error::other("message carried no SCM_RIGHTS fd"))
}

/// Reads the pty master until the last slave is closed (read fails with EIO
/// once the container's processes are gone); CRLF becomes LF. Panics if the
/// output does not end within [`COMMAND_TIMEOUT`].
///
/// Call before the container starts: the reader thread is then already
/// draining the pty when output arrives.
pub fn read_console(master: OwnedFd) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut file = File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: every slave is closed; the output is complete.
                Err(_) => break,
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&out).replace("\r\n", "\n"));
    });
    rx
}

/// Waits for the text of a [`read_console`] reader.
pub fn console_output(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or_else(|e| panic!("console output did not end: {e}"))
}
