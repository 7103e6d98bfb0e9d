//! `exec` on the parent's side: a new process in a running container.
//!
//! The parent opens the init's namespace files (through /proc, then re-checks that the
//! init is still the process it recorded), clones a child that joins them, places the
//! child in the container's cgroup, and waits for its execve.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroups::{Cgroup, CgroupError};
use crate::init::exec::{self as child, ExecConfig};
use crate::state::{Container, StateError, Status};
use crate::sync::{self, Msg, SyncError};
use crate::{procinfo, sys};

/// Why an exec failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot exec in container {id}: it is {status}")]
    NotRunning { id: String, status: Status },
    #[error("cannot open namespace {path}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot join the pid namespace of container {id}")]
    PidNamespace {
        id: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot connect to console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot clone the exec process")]
    Clone(#[source] std::io::Error),
    #[error("cannot write pid file {path}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exec failed: {message}")]
    Child { errno: i32, message: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Restrictions(#[from] crate::init::RestrictionError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// The flags of `hull exec` that shape the parent's work.
pub struct ExecOpts {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a frozen container (the process runs on resume).
    pub ignore_paused: bool,
}

/// A started exec process.
pub struct Execed {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

fn ns_file(t: LinuxNamespaceType) -> (&'static str, CloneFlags) {
    match t {
        LinuxNamespaceType::User => ("user", CloneFlags::CLONE_NEWUSER),
        LinuxNamespaceType::Pid => ("pid", CloneFlags::CLONE_NEWPID),
        LinuxNamespaceType::Mount => ("mnt", CloneFlags::CLONE_NEWNS),
        LinuxNamespaceType::Network => ("net", CloneFlags::CLONE_NEWNET),
        LinuxNamespaceType::Ipc => ("ipc", CloneFlags::CLONE_NEWIPC),
        LinuxNamespaceType::Uts => ("uts", CloneFlags::CLONE_NEWUTS),
        LinuxNamespaceType::Cgroup => ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        LinuxNamespaceType::Time => ("time", CloneFlags::from_bits_retain(0x80)),
    }
}

/// Namespace files to join in the child, and the pid namespace for the parent.
type Namespaces = (Vec<(CloneFlags, File)>, Option<File>);

/// Opens the init's namespaces: user first, the pid namespace apart (joined by the
/// parent for its children), the mount namespace last so /proc lookups stay on the host.
fn open_namespaces(spec: &Spec, pid: i32) -> Result<Namespaces, ExecError> {
    let mut joins = Vec::new();
    let mut pidns = None;
    let mut mnt = None;
    let types = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in types {
        let (name, flag) = ns_file(ns.typ());
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let f = File::open(&path).map_err(|source| ExecError::Namespace { path, source })?;
        match ns.typ() {
            LinuxNamespaceType::User => joins.insert(0, (flag, f)),
            LinuxNamespaceType::Pid => pidns = Some(f),
            LinuxNamespaceType::Mount => mnt = Some((flag, f)),
            _ => joins.push((flag, f)),
        }
    }
    joins.extend(mnt);
    Ok((joins, pidns))
}

/// Starts `opts.process` inside container `c`.
pub fn exec(c: &Container, opts: &ExecOpts) -> Result<Execed, ExecError> {
    let r = &c.record;
    let status = c.status();
    let paused_ok = opts.ignore_paused && status == Status::Paused;
    if !matches!(status, Status::Running | Status::Created) && !paused_ok {
        return Err(ExecError::NotRunning {
            id: r.id.clone(),
            status,
        });
    }
    let spec = c.config()?;
    // The pidfd pins the init while its namespace files are opened.
    let init = sys::pidfd_open(r.pid).map_err(ExecError::Clone)?;
    let (joins, pidns) = open_namespaces(&spec, r.pid)?;
    if !procinfo::alive(r.pid, r.pid_start) {
        return Err(ExecError::NotRunning {
            id: r.id.clone(),
            status: Status::Stopped,
        });
    }
    drop(init);
    if let Some(f) = &pidns {
        nix::sched::setns(f, CloneFlags::CLONE_NEWPID).map_err(|source| {
            ExecError::PidNamespace {
                id: r.id.clone(),
                source,
            }
        })?;
    }
    let console = match &opts.console_socket {
        Some(path) => {
            let sock = UnixStream::connect(path).map_err(|source| ExecError::ConsoleSocket {
                path: path.clone(),
                source,
            })?;
            Some(OwnedFd::from(sock))
        }
        None => None,
    };
    let cgroup = Cgroup::open(&r.cgroup, &r.id)?;
    let restrictions = crate::init::Restrictions::of(&spec)?;
    let (parent_end, child_end) = sync::pair()?;
    let cfg = ExecConfig {
        process: &opts.process,
        namespaces: &joins,
        channel: &child_end,
        console: console.as_ref(),
        preserve_fds: opts.preserve_fds,
        confinement: restrictions.confinement(),
    };
    let (pid, pidfd) = match sys::clone_process(0, None).map_err(ExecError::Clone)? {
        sys::Forked::Child => {
            drop(parent_end);
            child::run(&cfg)
        }
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_end);
    if let Err(e) = cgroup.add(pid).map_err(ExecError::from).and_then(|()| {
        parent_end.send(&Msg::Go)?;
        await_exec(&parent_end, c, &spec, pid)
    }) {
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        return Err(e);
    }
    if let Some(path) = &opts.pid_file {
        super::create::write_pid_file(path, pid).map_err(|source| ExecError::PidFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Execed { pid, pidfd })
}

/// Waits for the child's execve (end of file on the channel), passing on a seccomp
/// listener on the way.
fn await_exec(
    channel: &sync::Channel,
    c: &Container,
    spec: &Spec,
    pid: i32,
) -> Result<(), ExecError> {
    loop {
        match channel.recv_with_fd()? {
            (Some(Msg::Error { errno, message }), _) => {
                return Err(ExecError::Child { errno, message })
            }
            (Some(Msg::SeccompFd), Some(fd)) => {
                let state = crate::hooks::state_json(c, Status::Running);
                super::create::forward_listener(spec, pid, &state, fd.as_fd())?;
            }
            _ => return Ok(()),
        }
    }
}
