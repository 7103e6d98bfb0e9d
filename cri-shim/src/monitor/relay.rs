//! The monitor's loop: container output into the CRI log, reaping, the exit file.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::attach::Attach;
use super::frame::Frame;
use super::{Args, Created, ExitRecord};
use crate::crilog::{LogWriter, Stream};

/// How long output is still read after the init exited. Processes that outlive the init
/// (possible when the pod shares one PID namespace) may hold the pipes open forever.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

struct Loop {
    init: Pid,
    status: Option<i32>,
    exited_at: Option<Instant>,
    outputs: [Option<OwnedFd>; 2],
    log: LogWriter,
    attach: Attach,
}

/// Runs until the init has exited and its output is drained, then writes the exit file.
pub(super) fn run(args: &Args, signals: SigSet, created: Created) -> ExitCode {
    let Ok(sfd) = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC) else {
        // Without a signalfd the exit cannot be seen; record it as unknown at once rather
        // than leave hull-cri waiting for an exit file that never comes.
        return finish(args, None, created.attach);
    };
    let mut l = Loop {
        init: created.init,
        status: None,
        exited_at: None,
        outputs: [Some(created.stdout), Some(created.stderr)],
        log: created.log,
        attach: created.attach,
    };
    // The init may have exited before the signalfd existed: its SIGCHLD is pending and
    // blocked, so the signalfd still reports it.
    while !l.done() {
        l.step(&sfd);
    }
    for stream in [Stream::Stdout, Stream::Stderr] {
        let _ = l.log.flush_partial(stream);
    }
    finish(args, l.status, l.attach)
}

impl Loop {
    fn done(&self) -> bool {
        match self.exited_at {
            None => false,
            Some(t) => self.outputs.iter().all(Option::is_none) || t.elapsed() >= DRAIN_GRACE,
        }
    }

    fn step(&mut self, sfd: &SignalFd) {
        let timeout = match self.exited_at {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(DRAIN_GRACE.saturating_sub(t.elapsed()))
                .unwrap_or(PollTimeout::ZERO),
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, fd) in self.outputs.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let first_attach = fds.len();
        fds.extend(self.attach.poll_fds());
        if poll(&mut fds, timeout).is_err() {
            return;
        }
        let events: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        // First, while the attach events still line up with its clients.
        self.attach.on_ready(&events[first_attach..]);
        for (k, &i) in which.iter().enumerate() {
            if !events[k + 1].is_empty() {
                self.read_output(i);
            }
        }
        if !events[0].is_empty() {
            self.on_signal(sfd);
        }
    }

    fn read_output(&mut self, i: usize) {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let Some(fd) = &self.outputs[i] else { return };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => self.outputs[i] = None,
            Ok(n) => {
                // A full disk must not stop the container; the output is dropped instead.
                let _ = self.log.write(stream, &buf[..n]);
                let frame = match stream {
                    Stream::Stdout => Frame::Stdout,
                    Stream::Stderr => Frame::Stderr,
                };
                self.attach.broadcast(frame, &buf[..n]);
            }
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
            Err(_) => self.outputs[i] = None,
        }
    }

    fn on_signal(&mut self, sfd: &SignalFd) {
        let Ok(Some(info)) = sfd.read_signal() else {
            return;
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => self.reap(),
            Ok(Signal::SIGUSR1) => {
                let _ = self.log.reopen();
            }
            // Termination signals are ignored: the monitor lives exactly as long as the
            // container it watches.
            _ => {}
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.init => self.exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.init => {
                    self.exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn exit(&mut self, code: i32) {
        self.status = Some(code);
        self.exited_at = Some(Instant::now());
    }
}

/// Writes the exit file, then tells the attached clients: a client that sees the exit
/// frame finds the exit recorded.
fn finish(args: &Args, status: Option<i32>, attach: Attach) -> ExitCode {
    let record = ExitRecord {
        // 255, as the exit of an init the monitor could not observe.
        exit_code: status.unwrap_or(255),
        finished_at_ns: super::now_ns(),
    };
    let bytes = serde_json::to_vec(&record).unwrap_or_default();
    let written = crate::fsutil::write_atomic(&args.exit_file, &bytes);
    attach.finish(record.exit_code);
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
