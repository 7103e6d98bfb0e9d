//! A terminal for `run` and `exec` in the foreground when no `--console-socket` was
//! given: hull receives the pty master itself and relays between it and its own stdio,
//! with the local terminal in raw mode, as runc does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::termios::{self, SetArg, Termios};

/// The two ends of the console channel: ours receives the master, the init's sends it.
pub fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Receives the pty master sent by the init (SCM_RIGHTS).
pub fn receive_master(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let (_, fd) = crate::sys::recv_with_fd(sock.as_fd(), &mut buf)?;
    fd.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADMSG))
}

/// The relay's state: the master, and the local terminal's settings to restore.
pub struct Relay {
    pub master: OwnedFd,
    saved: Option<Termios>,
    pub stdin_open: bool,
    pub master_open: bool,
}

impl Relay {
    /// Puts the local terminal (if stdin is one) in raw mode and sizes the pty like it.
    pub fn new(master: OwnedFd) -> io::Result<Self> {
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(orig) = &saved {
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        }
        let relay = Self {
            master,
            saved,
            stdin_open: true,
            master_open: true,
        };
        relay.resize();
        Ok(relay)
    }

    /// Copies the local window size to the pty (at start and on SIGWINCH).
    pub fn resize(&self) {
        crate::sys::copy_winsize(io::stdin().as_fd(), self.master.as_fd());
    }

    /// Moves data from `from` to `to`: one read (poll said `from` is readable, and our
    /// stdin may be a blocking descriptor shared with others), or with `drain` every read
    /// until the non-blocking `from` is empty. Returns false once `from` is closed.
    pub fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>, drain: bool) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            match nix::unistd::read(from.as_raw_fd(), &mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if write_all(to, &buf[..n]).is_err() {
                        return false;
                    }
                    if !drain {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                // EIO: every holder of the pty's slave side has closed it.
                Err(_) => return false,
            }
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(orig) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}
