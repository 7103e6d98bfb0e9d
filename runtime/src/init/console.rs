//! `process.terminal`: a pty from the container's own devpts, whose master is sent to the
//! `--console-socket` (SCM_RIGHTS, as runc does) and whose slave becomes the process's
//! stdio, controlling terminal and /dev/console.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::rootfs::Root;
use crate::sys;

/// Failures of terminal setup.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open a pty master from the container's /dev/ptmx")]
    Open(#[source] io::Error),
    #[error("cannot send the pty master to the console socket")]
    Send(#[source] io::Error),
    #[error("cannot bind the pty to /dev/console")]
    DevConsole(#[source] io::Error),
    #[error("cannot make the pty the controlling terminal and stdio")]
    Stdio(#[source] io::Error),
}

/// Creates the pty, hands the master over `socket` and installs the slave.
/// `dev_console` binds the slave over /dev/console (the init's terminal, not `exec`'s).
pub fn setup(socket: &OwnedFd, dev_console: bool) -> Result<(), ConsoleError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| ConsoleError::Open(e.into()))?;
    sys::pty_unlock(master.as_fd()).map_err(ConsoleError::Open)?;
    let slave = sys::pty_peer(master.as_fd()).map_err(ConsoleError::Open)?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| ConsoleError::Send(e.into()))?;
    drop(master);
    if dev_console {
        bind_dev_console(&slave).map_err(ConsoleError::DevConsole)?;
    }
    nix::unistd::setsid().map_err(|e| ConsoleError::Stdio(e.into()))?;
    sys::set_controlling_tty(slave.as_fd()).map_err(ConsoleError::Stdio)?;
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target).map_err(ConsoleError::Stdio)?;
    }
    Ok(())
}

fn bind_dev_console(slave: &OwnedFd) -> io::Result<()> {
    let root = Root::open(Path::new("/"))?;
    let target = root.create_file(Path::new("/dev/console"))?;
    let tree = sys::clone_tree(slave.as_fd(), Path::new(""), false)?;
    sys::move_mount_fd(tree.as_fd(), target.as_fd())
}
