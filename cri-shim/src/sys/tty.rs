//! Terminals for containers and execs that run on a pty: sizes (TIOCSWINSZ), and a
//! master's descriptor on tokio's reactor.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// Registers `fd` (e.g. a pty master, which tokio has no type for) with the current tokio
/// reactor. Must be called within a runtime; the descriptor should be non-blocking.
pub fn register_fd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `register` requires the descriptor to stay open and the same for the
    // AsyncFd's whole life. The OwnedFd moves into the AsyncFd, which alone can close it
    // (on drop or into_inner), and `OwnedFd::as_raw_fd` always returns that one descriptor.
    let registered = unsafe { AsyncFd::register(fd) };
    registered.map_err(io::Error::from)
}

/// Sets the size of the terminal behind `fd` (a pty master or slave) to `width` columns
/// and `height` rows; the foreground process group gets SIGWINCH.
pub fn set_winsize(fd: BorrowedFd<'_>, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ only reads one `winsize` through the third argument, which points
    // at `ws`, a live local of exactly that type; `fd` is borrowed, so it stays open for the
    // call; a descriptor that is not a terminal makes the call fail with ENOTTY, nothing else.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_is_not_a_terminal() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let e = set_winsize(r.as_fd(), 80, 24).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn a_pty_takes_the_size() {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_winsize(pty.master.as_fd(), 132, 43).unwrap();
        let mut ws = std::mem::MaybeUninit::<libc::winsize>::zeroed();
        // SAFETY: TIOCGWINSZ writes one `winsize` into `ws`, which has room for exactly
        // that; the slave descriptor is open for the call.
        let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, ws.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: the ioctl succeeded, so it filled `ws` (and it was zeroed before anyway).
        let ws = unsafe { ws.assume_init() };
        assert_eq!((ws.ws_col, ws.ws_row), (132, 43));
    }
}
