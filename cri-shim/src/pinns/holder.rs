//! The holder: PID 1 of a pod's PID namespace.
//!
//! A PID namespace whose init has exited accepts no new process, so a bind mount alone cannot
//! keep it usable; this tiny process stays as its init. It runs in a child forked by
//! `hull-cri-pinns` (single-threaded, so forking is sound) and never execs.
//!
//! - Every signal is blocked (the mask is set by the parent before the fork, so there is no
//!   window); it waits for SIGCHLD and SIGTERM with `sigwait`. SIGTERM ends it, SIGKILL can
//!   always end it, every other signal stays pending and does nothing.
//! - It reaps every child reparented to it (processes of the pod whose parent died).
//! - stdio is `/dev/null` and every other inherited fd is closed: holding the write end of
//!   the pipe hull-cri reads pinns' output from would keep hull-cri waiting for EOF.
//! - No parent-death signal: the pod must outlive a restart of hull-cri. It calls `setsid` so
//!   that no terminal or process-group signal of its starter reaches it.

use std::ffi::CStr;
use std::fs::{self, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, close, dup2, setsid, write, Pid};

/// The holder's process name (`comm`, at most 15 bytes).
pub const HOLDER_NAME: &CStr = c"hull-pod-init";

/// The steps the holder reports on its readiness pipe; `Ready` means it is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Ready = 0,
    SetName = 1,
    Setsid = 2,
    Chdir = 3,
    DevNull = 4,
    CloseFds = 5,
}

impl Step {
    /// The step encoded as `byte`.
    pub fn from_byte(byte: u8) -> Option<Step> {
        [
            Step::Ready,
            Step::SetName,
            Step::Setsid,
            Step::Chdir,
            Step::DevNull,
            Step::CloseFds,
        ]
        .into_iter()
        .find(|s| *s as u8 == byte)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Ready => "ready",
            Step::SetName => "set its name",
            Step::Setsid => "setsid",
            Step::Chdir => "chdir to /",
            Step::DevNull => "redirect stdio to /dev/null",
            Step::CloseFds => "close inherited fds",
        }
    }
}

/// The signals the holder waits for; all others stay blocked. Set by the parent before the
/// fork so the child starts with them blocked.
pub fn blocked_set() -> SigSet {
    SigSet::all()
}

/// Runs the holder in the forked child; never returns. `ready` is the write end of the
/// readiness pipe: 5 bytes, the step (0 = ready) then the errno (little endian).
pub fn run(ready: OwnedFd) -> ! {
    let status = match setup(&ready) {
        Ok(()) => (Step::Ready, 0),
        Err((step, errno)) => (step, errno as i32),
    };
    let mut msg = [0u8; 5];
    msg[0] = status.0 as u8;
    msg[1..].copy_from_slice(&status.1.to_le_bytes());
    // If the parent is gone there is nobody to tell; the result is ignored on purpose.
    let _ = write(&ready, &msg);
    drop(ready);
    if status.0 != Step::Ready {
        std::process::exit(1);
    }
    wait_forever()
}

fn setup(ready: &OwnedFd) -> Result<(), (Step, Errno)> {
    nix::sys::prctl::set_name(HOLDER_NAME).map_err(|e| (Step::SetName, e))?;
    setsid().map_err(|e| (Step::Setsid, e))?;
    chdir("/").map_err(|e| (Step::Chdir, e))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| (Step::DevNull, io_errno(&e)))?;
    for fd in 0..3 {
        dup2(null.as_raw_fd(), fd).map_err(|e| (Step::DevNull, e))?;
    }
    drop(null);
    close_inherited(ready.as_raw_fd()).map_err(|e| (Step::CloseFds, e))
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

/// Closes every fd above 2 except `keep`. The list is read first, then the directory handle
/// is dropped, so the fd used for reading `/proc/self/fd` is not closed under its reader.
fn close_inherited(keep: i32) -> Result<(), Errno> {
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map_err(|e| io_errno(&e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|&fd| fd > 2 && fd != keep) {
        match close(fd) {
            // EBADF: the directory's own fd, already closed when the listing was dropped.
            Ok(()) | Err(Errno::EBADF) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits for signals forever: reaps on SIGCHLD, exits on SIGTERM.
fn wait_forever() -> ! {
    let mut wanted = SigSet::empty();
    wanted.add(Signal::SIGCHLD);
    wanted.add(Signal::SIGTERM);
    loop {
        match wanted.wait() {
            Ok(Signal::SIGTERM) => std::process::exit(0),
            Ok(_) => reap_all(),
            Err(_) => {} // EINTR cannot happen with every signal blocked; wait again.
        }
    }
}

/// Reaps every exited child without blocking (one SIGCHLD may stand for several).
fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
