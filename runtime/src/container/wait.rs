//! `run` in the foreground: forwarding signals to the container and collecting its exit.
//!
//! Signals are blocked before clone3, so a child that exits at once cannot lose its
//! SIGCHLD (the bug the environment notes describe in youki); they are then read from a
//! signalfd in a single-threaded loop.

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::tty::Relay;
use crate::sys;

/// Failures while waiting for the container.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("cannot block signals")]
    Mask(#[source] nix::Error),
    #[error("cannot read signals")]
    SignalFd(#[source] nix::Error),
    #[error("cannot wait for the container init")]
    Wait(#[source] nix::Error),
}

/// Every signal hull forwards or waits for.
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
    ] {
        set.remove(s);
    }
    set
}

/// Blocks the forwarded signals and SIGCHLD. Call before the container exists.
pub fn block_signals() -> Result<(), WaitError> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded()), None)
        .map_err(WaitError::Mask)
}

/// Forwards signals to the init until it exits; returns its exit status the way a shell
/// reports it (code, or 128 + signal number). With a `relay`, also moves terminal data
/// between our stdio and the container's pty.
pub fn wait_for_exit(
    pid: i32,
    pidfd: &OwnedFd,
    mut relay: Option<&mut Relay>,
) -> Result<i32, WaitError> {
    let sfd =
        SignalFd::with_flags(&forwarded(), SfdFlags::SFD_CLOEXEC).map_err(WaitError::SignalFd)?;
    loop {
        if let Some(code) = reap(pid)? {
            if let Some(r) = relay {
                // What the container wrote just before exiting is still in the pty.
                Relay::pump(r.master.as_fd(), std::io::stdout().as_fd(), true);
            }
            return Ok(code);
        }
        let signal = match relay.as_deref_mut() {
            None => sfd.read_signal().map_err(WaitError::SignalFd)?,
            Some(r) => relay_until_signal(&sfd, r)?,
        };
        let Some(info) = signal else { continue };
        let signo = info.ssi_signo as i32;
        if signo == libc::SIGWINCH {
            if let Some(r) = relay.as_deref() {
                r.resize();
            }
        }
        if signo != libc::SIGCHLD {
            // The container may already be gone; a failed forward changes nothing.
            let _ = sys::pidfd_signal(pidfd.as_fd(), signo);
        }
    }
}

/// Relays terminal data until a signal is pending, then returns it.
fn relay_until_signal(
    sfd: &SignalFd,
    r: &mut Relay,
) -> Result<Option<nix::sys::signalfd::siginfo>, WaitError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
    let master_at = fds.len();
    if r.master_open {
        fds.push(PollFd::new(r.master.as_fd(), PollFlags::POLLIN));
    }
    let stdin_at = fds.len();
    if r.stdin_open {
        fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::NONE) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(WaitError::SignalFd(e)),
    }
    let ready = |i: usize| {
        fds.get(i)
            .and_then(|f| f.revents())
            .is_some_and(|e| !e.is_empty())
    };
    let (sig, master, input) = (
        ready(0),
        r.master_open && ready(master_at),
        r.stdin_open && ready(stdin_at),
    );
    drop(fds);
    if master {
        r.master_open = Relay::pump(r.master.as_fd(), stdout.as_fd(), true);
    }
    if input {
        r.stdin_open = Relay::pump(stdin.as_fd(), r.master.as_fd(), false);
    }
    if sig {
        return sfd.read_signal().map_err(WaitError::SignalFd);
    }
    Ok(None)
}

/// Reaps every exited child; returns the init's status if it was among them.
fn reap(init: i32) -> Result<Option<i32>, WaitError> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == init => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == init => {
                return Ok(Some(128 + sig as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(WaitError::Wait(e)),
        }
    }
}
