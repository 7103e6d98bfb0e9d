//! `run` in the foreground: forwarding signals to the container and collecting its exit.
//!
//! Signals are blocked before clone3, so a child that exits at once cannot lose its
//! SIGCHLD (the bug the environment notes describe in youki); they are then read from a
//! signalfd in a single-threaded loop.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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
/// reports it (code, or 128 + signal number).
pub fn wait_for_exit(pid: i32, pidfd: &OwnedFd) -> Result<i32, WaitError> {
    let sfd =
        SignalFd::with_flags(&forwarded(), SfdFlags::SFD_CLOEXEC).map_err(WaitError::SignalFd)?;
    loop {
        if let Some(code) = reap(pid)? {
            return Ok(code);
        }
        let Some(info) = sfd.read_signal().map_err(WaitError::SignalFd)? else {
            continue;
        };
        let signo = info.ssi_signo as i32;
        if signo != libc::SIGCHLD {
            // The container may already be gone; a failed forward changes nothing.
            let _ = sys::pidfd_signal(pidfd.as_fd(), signo);
        }
    }
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
