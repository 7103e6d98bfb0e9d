//! `run`: create, start at once, and (unless detached) wait, forwarding signals.

use std::path::Path;

use super::CmdError;
use crate::container::{self, CreateError, CreateOpts, Mode};
use crate::hooks::{self, Phase};
use crate::state::Status;
use crate::sync::Msg;

pub fn run(root: &Path, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32, CmdError> {
    // Before the child exists, so its SIGCHLD cannot arrive unobserved.
    container::block_signals()?;
    let created = container::create(root, opts, Mode::Run)?;
    created
        .channel
        .send(&Msg::Start)
        .map_err(CreateError::from)?;
    // The init's end closes when it execs; an error arrives instead if exec failed.
    let failure = match created.channel.recv().map_err(CreateError::from)? {
        Some(Msg::Error { errno, message }) => Some(CreateError::Init { errno, message }),
        Some(Msg::HookFailed { message }) => Some(CreateError::InitHook { message }),
        _ => None,
    };
    if let Some(e) = failure {
        let _ = container::wait_for_exit(created.pid(), &created.pidfd, None);
        let _ = container::destroy(&created.container, Some(&created.cgroup));
        if e.is_hook_failure() {
            hooks::run_warning_only(Phase::Poststop, &created.container, Status::Stopped);
        }
        return Err(e.into());
    }
    hooks::run_warning_only(Phase::Poststart, &created.container, Status::Running);
    if detach {
        return Ok(0);
    }
    let mut relay = match &created.console {
        Some(sock) => {
            let master = container::tty::receive_master(sock).map_err(CmdError::Io)?;
            Some(container::tty::Relay::new(master).map_err(CmdError::Io)?)
        }
        None => None,
    };
    let code = container::wait_for_exit(created.pid(), &created.pidfd, relay.as_mut())?;
    drop(relay);
    if !keep {
        container::destroy(&created.container, Some(&created.cgroup))?;
        hooks::run_warning_only(Phase::Poststop, &created.container, Status::Stopped);
    }
    Ok(code)
}
