//! A pty master as tokio streams: the output of an exec on a terminal, its input, and its
//! size. Non-blocking reads and writes on the reactor, so no thread waits on a terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::stream::TermSize;

/// VEOF of a terminal in canonical mode: ending a terminal's input means typing it.
const EOT: u8 = 0x04;

/// The master of a pty, shared by its reader, writer and resizer.
#[derive(Clone)]
pub(super) struct Master(Arc<AsyncFd<OwnedFd>>);

impl Master {
    /// Takes `fd` (a pty master) into the reactor, non-blocking.
    pub(super) fn new(fd: OwnedFd) -> io::Result<Self> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
        Ok(Self(Arc::new(crate::sys::register_fd(fd)?)))
    }

    /// Sets the terminal's size.
    pub(super) fn resize(&self, size: TermSize) -> io::Result<()> {
        crate::sys::set_winsize(self.0.get_ref().as_fd(), size.width, size.height)
    }

    /// A sender of sizes, applied by a task that lives as long as the sender.
    pub(super) fn resizer(&self) -> mpsc::UnboundedSender<TermSize> {
        let (tx, mut rx) = mpsc::unbounded_channel::<TermSize>();
        let master = self.clone();
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                // A terminal whose process has gone cannot be resized; nothing to tell.
                let _ = master.resize(size);
            }
        });
        tx
    }

    /// The terminal's output.
    pub(super) fn reader(&self) -> Reader {
        Reader(self.clone())
    }

    /// The terminal's input; shutting it down types EOT.
    pub(super) fn writer(&self) -> Writer {
        Writer {
            master: self.clone(),
            ended: false,
        }
    }
}

/// Reads a pty master; EIO (no slave left open) is the end of the output.
pub(super) struct Reader(Master);

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let fd = &self.0 .0;
        loop {
            let mut guard = ready!(fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let r = guard.try_io(|inner| {
                nix::unistd::read(inner.get_ref().as_raw_fd(), unfilled).map_err(io::Error::from)
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Writes a pty master.
pub(super) struct Writer {
    master: Master,
    ended: bool,
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let fd = &self.master.0;
        loop {
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            match guard
                .try_io(|inner| nix::unistd::write(inner.get_ref(), data).map_err(io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A terminal has no half-close: the client's end of input is typed as EOT, which a
    /// canonical-mode reader sees as end of file.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.as_mut().poll_write(cx, &[EOT])) {
            Ok(_) => {
                self.ended = true;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_writes_and_ends_with_the_slave() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let master = Master::new(pty.master).unwrap();
        let mut slave = std::fs::File::from(pty.slave);
        // Raw mode would be needed for exact bytes; canonical mode echoes and maps \n.
        slave.write_all(b"from slave\n").unwrap();
        let mut r = master.reader();
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("from slave"));
        let mut w = master.writer();
        w.write_all(b"to slave\n").await.unwrap();
        let mut got = [0u8; 64];
        let n = slave.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"to slave\n");
        master
            .resize(TermSize {
                width: 100,
                height: 30,
            })
            .unwrap();
        drop(slave);
        // The echo of "to slave" may come first; then EIO ends the stream.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_types_eot() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let master = Master::new(pty.master).unwrap();
        let mut slave = std::fs::File::from(pty.slave);
        let mut w = master.writer();
        w.shutdown().await.unwrap();
        // In canonical mode EOT at the start of a line is a read of 0 bytes: end of file.
        let mut buf = [0u8; 8];
        assert_eq!(slave.read(&mut buf).unwrap(), 0);
    }
}
