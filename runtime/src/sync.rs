//! The channel between `hull create` (the parent) and the container's init.
//!
//! One `SOCK_SEQPACKET` socketpair, close-on-exec on both ends: each message is one
//! datagram, and the init's end closes by itself when it execs, which the parent sees as
//! end-of-file. An error in the init crosses as `(errno, message)`, crun's contract, and
//! the parent turns it back into an error naming the failed step.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{
    recv, send, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

/// A message on the sync channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Parent → init: ids are mapped and the cgroup joined; go on with setup.
    Go,
    /// Init → parent: setup finished; waiting to be started.
    Ready,
    /// Parent → init: start now (used by `run`, which needs no exec fifo).
    Start,
    /// Init → parent: mounts are done; run the prestart and createRuntime hooks, then
    /// answer `Go`.
    Hooks,
    /// Init → parent: the seccomp notify listener fd rides along (SCM_RIGHTS), for the
    /// parent to hand to `linux.seccomp.listenerPath`.
    SeccompFd,
    /// Init → parent: a createContainer or startContainer hook failed; the lifecycle
    /// goes on to deletion, poststop hooks included.
    HookFailed { message: String },
    /// Init → parent: a step failed.
    Error { errno: i32, message: String },
}

/// Failures of the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot create the init sync socket")]
    Socket(#[source] io::Error),
    #[error("sync socket send failed")]
    Send(#[source] io::Error),
    #[error("sync socket receive failed")]
    Recv(#[source] io::Error),
    #[error("malformed message on the sync socket")]
    Malformed,
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Creates the pair: (parent end, init end).
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| SyncError::Socket(e.into()))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

fn encode(msg: &Msg) -> Vec<u8> {
    match msg {
        Msg::Go => vec![b'G'],
        Msg::Ready => vec![b'R'],
        Msg::Start => vec![b'S'],
        Msg::Hooks => vec![b'H'],
        Msg::SeccompFd => vec![b'F'],
        Msg::HookFailed { message } => {
            let mut v = vec![b'K'];
            v.extend_from_slice(message.as_bytes());
            v
        }
        Msg::Error { errno, message } => {
            let mut v = vec![b'E'];
            v.extend_from_slice(&errno.to_le_bytes());
            v.extend_from_slice(message.as_bytes());
            v
        }
    }
}

fn decode(buf: &[u8]) -> Result<Msg, SyncError> {
    match buf {
        [b'G'] => Ok(Msg::Go),
        [b'R'] => Ok(Msg::Ready),
        [b'S'] => Ok(Msg::Start),
        [b'H'] => Ok(Msg::Hooks),
        [b'F'] => Ok(Msg::SeccompFd),
        [b'K', rest @ ..] => Ok(Msg::HookFailed {
            message: String::from_utf8_lossy(rest).into_owned(),
        }),
        [b'E', a, b, c, d, rest @ ..] => Ok(Msg::Error {
            errno: i32::from_le_bytes([*a, *b, *c, *d]),
            message: String::from_utf8_lossy(rest).into_owned(),
        }),
        _ => Err(SyncError::Malformed),
    }
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let mut bytes = encode(msg);
        bytes.truncate(60_000);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(|e| SyncError::Send(e.into()))
    }

    /// Sends one message with a file descriptor attached.
    pub fn send_fd(&self, msg: &Msg, fd: BorrowedFd<'_>) -> Result<(), SyncError> {
        let bytes = encode(msg);
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[std::io::IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(|e| SyncError::Send(e.into()))
    }

    /// Receives one message and the descriptor attached to it, if any.
    pub fn recv_with_fd(&self) -> Result<(Option<Msg>, Option<OwnedFd>), SyncError> {
        let mut buf = vec![0u8; 65_536];
        let (n, fd) =
            crate::sys::recv_with_fd(self.fd.as_fd(), &mut buf).map_err(SyncError::Recv)?;
        if n == 0 {
            return Ok((None, fd));
        }
        Ok((Some(decode(&buf[..n])?), fd))
    }

    /// Receives one message; `None` means the other end is closed (exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>, SyncError> {
        let mut buf = vec![0u8; 65_536];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => return decode(&buf[..n]).map(Some),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SyncError::Recv(e.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = pair().unwrap();
        for m in [
            Msg::Go,
            Msg::Ready,
            Msg::Start,
            Msg::Hooks,
            Msg::Error {
                errno: 2,
                message: "chdir to `/nope`".into(),
            },
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"").is_err());
        assert!(decode(b"E12").is_err());
        assert!(decode(b"X").is_err());
    }
}
