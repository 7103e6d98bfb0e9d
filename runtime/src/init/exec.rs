//! The child of `hull exec`: it joins the namespaces of a running container, takes on the
//! process's identity and limits, and execs. Unlike the init it builds nothing: the
//! container's rootfs is already its mount namespace's root.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use super::{console, program, InitError};
use crate::report::chain;
use crate::sync::{Channel, Msg};
use crate::sys;

/// What the exec child needs, prepared by the parent before the clone.
pub struct ExecConfig<'a> {
    pub process: &'a Process,
    /// Namespaces of the container's init to join, user namespace first.
    pub namespaces: &'a [(CloneFlags, File)],
    pub channel: &'a Channel,
    pub console: Option<&'a OwnedFd>,
    pub preserve_fds: u32,
    /// The container's Landlock ruleset and seccomp filter, which bind exec'd processes too.
    pub confinement: super::Confinement<'a>,
}

/// Runs the exec child to its execve. Never returns.
pub fn run(cfg: &ExecConfig) -> ! {
    let err = match setup(cfg) {
        Ok(program) => match program.exec() {
            Ok(never) => match never {},
            Err(e) => InitError::from(e),
        },
        Err(e) => e,
    };
    let msg = Msg::Error {
        errno: err.errno(),
        message: chain(&err),
    };
    let _ = cfg.channel.send(&msg);
    sys::exit_now(1)
}

fn setup(cfg: &ExecConfig) -> Result<program::Program, InitError> {
    sys::set_parent_death_signal(libc::SIGKILL).map_err(InitError::UserRoot)?;
    program::prepare_fds(cfg.preserve_fds)?;
    match cfg.channel.recv()? {
        Some(Msg::Go) => {}
        _ => return Err(InitError::Aborted),
    }
    for (flag, file) in cfg.namespaces {
        nix::sched::setns(file, *flag).map_err(|e| {
            InitError::Ns(super::namespaces::NsError::Join {
                kind: format!("{flag:?}"),
                path: "/proc/<init>/ns".into(),
                source: io::Error::from(e),
            })
        })?;
    }
    let p = cfg.process;
    if p.terminal().unwrap_or(false) {
        console::setup(cfg.console.ok_or(InitError::NoConsoleSocket)?, false)?;
    }
    let (program, seccomp_late) = super::confine(p, cfg.confinement, cfg.channel)?;
    sys::set_parent_death_signal(0).map_err(InitError::UserRoot)?;
    if seccomp_late {
        if let Some(f) = cfg.confinement.seccomp {
            f.install()?;
        }
    }
    Ok(program)
}
