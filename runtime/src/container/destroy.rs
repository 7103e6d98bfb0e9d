//! Signalling and removing containers (`kill`, `delete`).

use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cgroups::{Cgroup, CgroupError};
use crate::state::{Container, StateError, Status};
use crate::{procinfo, sys};

/// Failures of kill and delete.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("cannot signal process {pid}")]
    Signal {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} did not exit within {secs}s of SIGKILL")]
    Timeout { id: String, secs: u64 },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Sends `sig` to the init, or with `all` to every process in the container's cgroup.
pub fn kill(c: &Container, sig: i32, all: bool) -> Result<(), DestroyError> {
    let r = &c.record;
    if matches!(c.status(), Status::Stopped | Status::Creating) {
        return Err(DestroyError::NotRunning { id: r.id.clone() });
    }
    if all {
        let cg = Cgroup::open(&r.cgroup, &r.id)?;
        for pid in cg.pids()? {
            // Processes may exit while we walk the list.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::try_from(sig).ok(),
            );
        }
        return Ok(());
    }
    let err = |source| DestroyError::Signal { pid: r.pid, source };
    let pidfd = sys::pidfd_open(r.pid).map_err(err)?;
    // The pidfd pins the process; re-check it is still the one we started.
    if !procinfo::alive(r.pid, r.pid_start) {
        return Err(DestroyError::NotRunning { id: r.id.clone() });
    }
    sys::pidfd_signal(pidfd.as_fd(), sig).map_err(err)
}

/// Detaches the rootfs bind mount that a container without a mount namespace made on
/// the host's tree; a lazy unmount takes everything mounted under it along. Only that one
/// mount: below it may be the caller's own rootfs mount (containerd's overlay), which is
/// not ours to remove. An already unmounted rootfs is fine.
pub(crate) fn unmount_rootfs(rootfs: &std::path::Path) {
    let _ = nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH);
}

/// Waits until the init has exited (it is not our child, so poll its pidfd).
fn wait_gone(c: &Container, secs: u64) -> Result<(), DestroyError> {
    let r = &c.record;
    let Ok(pidfd) = sys::pidfd_open(r.pid) else {
        return Ok(());
    };
    if !procinfo::alive(r.pid, r.pid_start) {
        return Ok(());
    }
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(secs * 1000).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => Err(DestroyError::Timeout {
            id: r.id.clone(),
            secs,
        }),
        _ => Ok(()),
    }
}

/// Stops whatever still runs (when `force` or the container never started) and removes
/// the cgroup and the state directory.
pub fn destroy(c: &Container, cgroup: Option<&Cgroup>) -> Result<(), DestroyError> {
    let opened;
    let cg = match cgroup {
        Some(cg) => cg,
        None => {
            opened = Cgroup::open(&c.record.cgroup, &c.record.id)?;
            &opened
        }
    };
    let status = c.status();
    if matches!(status, Status::Created | Status::Running | Status::Paused) {
        let all = !c.record.own_pid_ns || status == Status::Paused;
        kill(c, libc::SIGKILL, all)?;
        if status == Status::Paused {
            // A frozen task only dies once thawed; the SIGKILL is already pending.
            cg.freeze(false)?;
        }
        wait_gone(c, 10)?;
    }
    if c.record.host_mounts {
        unmount_rootfs(&c.record.rootfs);
    }
    cg.remove()?;
    c.remove_dir()?;
    Ok(())
}
