//! The attach socket: clients (hull-cri's Attach) get a copy of the container's output and
//! may write its stdin and resize its terminal, in the frames of [`super::frame`].
//!
//! Everything here is non-blocking and driven by the relay loop's `poll`: a slow client or
//! a container that does not read its stdin must never stall the output going to the log.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::frame::{Frame, MAX_PAYLOAD};
use super::MonitorError;

/// The socket's name in the container's directory (the monitor's working directory).
pub(super) const NAME: &str = "attach.sock";

/// Output queued for a client beyond which it is dropped: the log must not wait for it.
const MAX_BACKLOG: usize = 8 << 20;

/// Stdin queued for the container beyond which clients are no longer read from.
const MAX_PENDING: usize = 1 << 20;

/// How long the exit frame may take to reach the clients.
const EXIT_FLUSH: Duration = Duration::from_secs(1);

/// VEOF of a terminal in canonical mode: how a terminal's input is ended.
const EOT: u8 = 0x04;

struct Client {
    sock: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// It sent [`Frame::OpenStdin`] and has not yet ended its stdin.
    stdin_open: bool,
}

/// The container's stdin as the monitor holds it.
pub(crate) struct Stdin {
    /// The pipe's write end, or a duplicate of the terminal's master.
    pub fd: OwnedFd,
    /// `fd` is a terminal master: ending stdin sends EOT instead of closing it.
    pub tty: bool,
    /// Close stdin when the first client that attached with stdin detaches.
    pub once: bool,
}

/// The listener, its clients and the container's stdin.
pub(crate) struct Attach {
    listener: UnixListener,
    clients: Vec<Client>,
    stdin: Option<Stdin>,
    pending: Vec<u8>,
    /// End stdin once `pending` is written.
    closing: bool,
    /// A duplicate of the terminal's master, for resizes.
    master: Option<OwnedFd>,
}

/// Binds the attach socket, mode 0600, in the working directory.
pub(super) fn bind() -> Result<UnixListener, MonitorError> {
    let io = |op, source| MonitorError::Io {
        op,
        path: NAME.into(),
        source,
    };
    match std::fs::remove_file(NAME) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(io("removing stale attach socket", e))
        }
        _ => {}
    }
    // The umask makes the socket 0600 from the start: only root may attach.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(NAME);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| io("binding attach socket", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io("configuring attach socket", e))?;
    Ok(listener)
}

impl Attach {
    /// Serves `listener`; `stdin` is the container's, `master` its terminal.
    pub(super) fn new(
        listener: UnixListener,
        stdin: Option<Stdin>,
        master: Option<OwnedFd>,
    ) -> Self {
        Self {
            listener,
            clients: Vec::new(),
            stdin,
            pending: Vec::new(),
            closing: false,
            master,
        }
    }

    /// The descriptors to poll, in the order [`Attach::on_ready`] expects their events.
    pub(super) fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let stdin_events = match self.pending.is_empty() {
            false => PollFlags::POLLOUT,
            true => PollFlags::empty(),
        };
        if let Some(s) = &self.stdin {
            fds.push(PollFd::new(s.fd.as_fd(), stdin_events));
        }
        let read = self.pending.len() < MAX_PENDING;
        for c in &self.clients {
            let mut ev = PollFlags::empty();
            if read {
                ev |= PollFlags::POLLIN;
            }
            if !c.output.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), ev));
        }
        fds
    }

    /// Handles the events `poll` returned for [`Attach::poll_fds`]. Must come before any
    /// other call that may change the clients or the stdin, so the events still line up.
    pub(super) fn on_ready(&mut self, events: &[PollFlags]) {
        let mut ev = events.iter().copied();
        if ev.next().is_some_and(|e| !e.is_empty()) {
            self.accept();
        }
        if self.stdin.is_some() {
            let e = ev.next().unwrap_or(PollFlags::empty());
            if e.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
                // The container closed its stdin or exited: nobody reads what is queued.
                self.stdin = None;
                self.pending.clear();
            } else if e.contains(PollFlags::POLLOUT) {
                self.write_stdin();
            }
        }
        // Clients accepted just now have no events yet; `zip` stops at the polled ones.
        let events: Vec<PollFlags> = ev.collect();
        let mut gone = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.is_empty() {
                continue;
            }
            if !self.serve(i, *e) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let c = self.clients.remove(i);
            if c.stdin_open {
                self.client_stdin_ended();
            }
        }
    }

    /// Queues output for every client; a client too far behind is dropped.
    pub(super) fn broadcast(&mut self, frame: impl Fn(Vec<u8>) -> Frame, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(data.len() + 16);
        for chunk in data.chunks(MAX_PAYLOAD) {
            frame(chunk.to_vec()).encode(&mut bytes);
        }
        let mut dropped = false;
        self.clients.retain_mut(|c| {
            if c.output.len() > MAX_BACKLOG {
                dropped |= c.stdin_open;
                return false;
            }
            c.output.extend_from_slice(&bytes);
            true
        });
        if dropped {
            self.client_stdin_ended();
        }
    }

    /// Sends the exit frame to every client, waiting at most [`EXIT_FLUSH`] for them, and
    /// removes the socket.
    pub(super) fn finish(mut self, code: i32) {
        let _ = std::fs::remove_file(NAME);
        // Clients still in the backlog are accepted, so they see the exit too.
        self.accept();
        let mut bytes = Vec::new();
        Frame::Exit(code).encode(&mut bytes);
        for c in &mut self.clients {
            c.output.extend_from_slice(&bytes);
        }
        let deadline = Instant::now() + EXIT_FLUSH;
        while self.clients.iter().any(|c| !c.output.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
            if poll(&mut fds, timeout).is_err() {
                return;
            }
            drop(fds);
            self.clients
                .retain_mut(|c| flush(c) && !c.output.is_empty());
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            sock,
                            input: Vec::new(),
                            output: Vec::new(),
                            stdin_open: false,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads and writes client `i`; false when it is gone.
    fn serve(&mut self, i: usize, events: PollFlags) -> bool {
        if events.contains(PollFlags::POLLOUT) && !flush(&mut self.clients[i]) {
            return false;
        }
        if !events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return true;
        }
        let mut buf = [0u8; 32 * 1024];
        let n = match self.clients[i].sock.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return true
            }
            Err(_) => return false,
        };
        self.clients[i].input.extend_from_slice(&buf[..n]);
        loop {
            match Frame::decode(&self.clients[i].input) {
                Ok(Some((frame, used))) => {
                    self.clients[i].input.drain(..used);
                    self.on_frame(i, frame);
                }
                Ok(None) => return true,
                // A client that breaks the framing is not trusted with more input.
                Err(_) => return false,
            }
        }
    }

    fn on_frame(&mut self, i: usize, frame: Frame) {
        match frame {
            Frame::OpenStdin => self.clients[i].stdin_open = self.stdin.is_some(),
            Frame::Stdin(data) => {
                if self.stdin.is_some() && !self.closing {
                    self.pending.extend_from_slice(&data);
                }
            }
            Frame::StdinClose => {
                if std::mem::take(&mut self.clients[i].stdin_open) {
                    self.client_stdin_ended();
                }
            }
            Frame::Resize { width, height } => {
                if let Some(m) = &self.master {
                    // A terminal that cannot be resized keeps its size; nothing to report to.
                    let _ = crate::sys::set_winsize(m.as_fd(), width, height);
                }
            }
            // Output and exit frames flow the other way; a client sending them is ignored.
            Frame::Stdout(_) | Frame::Stderr(_) | Frame::Exit(_) => {}
        }
    }

    /// A client that attached with stdin ended it (or left): with `stdin_once` the
    /// container's stdin ends too, once what is queued has been written.
    fn client_stdin_ended(&mut self) {
        if self.stdin.as_ref().is_some_and(|s| s.once) {
            self.closing = true;
            if self.pending.is_empty() {
                self.end_stdin();
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(s) = &self.stdin else { return };
        match nix::unistd::write(s.fd.as_fd(), &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                if self.pending.is_empty() && self.closing {
                    self.end_stdin();
                }
            }
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
            // The container closed its stdin (or exited): nobody will read what is queued.
            Err(_) => {
                self.stdin = None;
                self.pending.clear();
            }
        }
    }

    fn end_stdin(&mut self) {
        if let Some(s) = self.stdin.take() {
            if s.tty {
                // Closing a duplicate of the master ends nothing; EOT is a terminal's EOF.
                let _ = nix::unistd::write(s.fd.as_fd(), &[EOT]);
            }
        }
    }
}

/// Writes what is queued for `c`; false when the client is gone.
fn flush(c: &mut Client) -> bool {
    while !c.output.is_empty() {
        match c.sock.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Sets `O_NONBLOCK` on `fd`, so writes to a container's stdin never block the monitor.
pub(super) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), MonitorError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let sys = |source| MonitorError::Sys {
        op: "fcntl(O_NONBLOCK) on the container's stdin",
        source,
    };
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(sys)?;
    Ok(())
}
