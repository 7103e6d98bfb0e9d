//! `create`, `start`, `state`, `kill` and `delete`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{print, CmdError};
use crate::container::{self, CreateOpts, Mode};
use crate::hooks::{self, Phase};
use crate::signal;
use crate::state::{Container, StateError, Status};

pub fn create(root: &Path, opts: &CreateOpts) -> Result<(), CmdError> {
    container::create(root, opts, Mode::Create)?;
    Ok(())
}

/// Releases the init by writing one byte into its exec fifo, then removes the fifo, which
/// is what marks the container as started.
pub fn start(root: &Path, id: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(CmdError::NotCreated {
            id: id.into(),
            status: status.to_string(),
        });
    }
    let fifo = c.fifo();
    let err = |source| CmdError::Start {
        id: id.into(),
        source,
    };
    // O_NONBLOCK: if the init died the open fails with ENXIO instead of hanging.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(err)?;
    let exec_done = exec_done_pipe(&c);
    std::fs::remove_file(&fifo).map_err(err)?;
    f.write_all(&[0]).map_err(err)?;
    if let Some(pipe) = exec_done {
        // End of file once the init has exec'd (or died): poststart comes after that.
        let mut buf = [0u8; 16];
        loop {
            match nix::unistd::read(pipe.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
    hooks::run_warning_only(Phase::Poststart, &c, Status::Running);
    Ok(())
}

/// A copy of the init's exec-done pipe, or `None` when it cannot be had (an init from
/// an older hull, or no ptrace access): then `start` does not wait for the execve.
fn exec_done_pipe(c: &Container) -> Option<std::os::fd::OwnedFd> {
    let fd = c.record.exec_done_fd?;
    let pidfd = crate::sys::pidfd_open(c.record.pid).ok()?;
    let pipe = crate::sys::pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), fd).ok()?;
    // The pidfd pinned the process: make sure it is still our init, not a reused pid.
    crate::procinfo::alive(c.record.pid, c.record.pid_start).then_some(pipe)
}

pub fn state(root: &Path, id: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    let report = c.report(c.status());
    let json = serde_json::to_string_pretty(&report).expect("state serialises");
    print(&(json + "\n"))
}

pub fn kill(root: &Path, id: &str, sig: &str, all: bool) -> Result<(), CmdError> {
    let signo = signal::parse(sig)?;
    let c = Container::load(root, id)?;
    container::kill(&c, signo, all)?;
    Ok(())
}

/// Deletes a stopped or created container; a running one only with `force`. Deleting a
/// container that does not exist succeeds with `force`, as in runc.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), CmdError> {
    let c = match Container::load(root, id) {
        Err(StateError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    let status = c.status();
    if matches!(status, Status::Running | Status::Paused | Status::Creating) && !force {
        return Err(CmdError::NotStopped {
            id: id.into(),
            status: status.to_string(),
        });
    }
    container::destroy(&c, None)?;
    hooks::run_warning_only(Phase::Poststop, &c, Status::Stopped);
    Ok(())
}

/// The ids a command acts on: `id` itself, or with `regex` every container whose id
/// the pattern matches (crun's unanchored POSIX-style search).
pub fn targets(root: &Path, id: &str, regex: bool) -> Result<Vec<String>, CmdError> {
    if !regex {
        return Ok(vec![id.to_owned()]);
    }
    let re = regex::Regex::new(id).map_err(|source| CmdError::Regex {
        pattern: id.into(),
        source,
    })?;
    Ok(crate::state::list_ids(root)?
        .into_iter()
        .filter(|i| re.is_match(i))
        .collect())
}
