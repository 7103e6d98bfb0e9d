//! Receiving a file descriptor over a unix socket (SCM_RIGHTS).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Receives one message on `sock` and returns the first descriptor it carries; any further
/// descriptors are closed. The payload (runc's console protocol sends the terminal's name)
/// is read and ignored.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed `fd` in this process for this message
                // (SCM_RIGHTS); nothing else refers to it, so the OwnedFd is its only owner.
                received.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    received
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::other("the message carried no file descriptor"))
}
