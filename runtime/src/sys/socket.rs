//! Descriptor passing over unix sockets (SCM_RIGHTS).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// recvmsg(2) into `buf`, taking ownership of at most one passed descriptor (more are
/// closed). Returns the byte count (0 at end of stream) and the descriptor. EINTR is
/// retried.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(m) => m,
        };
        let mut first = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: SCM_RIGHTS has just installed `f` in our fd table and
                    // nothing else refers to it; wrapping it gives it exactly one owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if first.is_none() {
                        first = Some(owned);
                    }
                }
            }
        }
        return Ok((msg.bytes, first));
    }
}
