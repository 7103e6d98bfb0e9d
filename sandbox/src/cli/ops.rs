//! start, state, kill, delete, list, features and run.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::state::{self, Status};

/// Errors of the lifecycle operations.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// State trouble.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The operation does not fit the container's status.
    #[error("container {id} is {status}: {why}")]
    Status {
        /// The id.
        id: String,
        /// Its status.
        status: &'static str,
        /// What was refused.
        why: &'static str,
    },
    /// A bad signal name or number.
    #[error("invalid signal {0:?}")]
    Signal(String),
    /// A host call failed.
    #[error("{what}")]
    Sys {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: nix::errno::Errno,
    },
    /// The Sentry refused the exec.
    #[error("exec: {0}")]
    Exec(String),
    /// Removing the cgroup failed.
    #[error("removing the cgroup")]
    Cgroup(#[from] hull::cgroups::CgroupError),
}

/// `start`: lets a created sandbox's init run.
pub fn start(root: &Path, id: &str) -> Result<(), OpError> {
    let rec = state::load(root, id)?;
    let st = state::status(root, &rec);
    if st != Status::Created {
        return Err(OpError::Status {
            id: id.into(),
            status: st.as_str(),
            why: "only a created container can be started",
        });
    }
    let fifo = state::fifo(&root.join(id));
    let fd = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| OpError::Sys {
        what: format!("opening {}", fifo.display()),
        source,
    })?;
    let fd = crate::sys::own_fd(fd);
    nix::unistd::write(&fd, b"1").map_err(|source| OpError::Sys {
        what: "signalling start".into(),
        source,
    })?;
    let _ = std::fs::remove_file(&fifo);
    Ok(())
}

/// `state`: the runtime-spec state JSON.
pub fn state_json(root: &Path, id: &str) -> Result<serde_json::Value, OpError> {
    let rec = state::load(root, id)?;
    let st = state::status(root, &rec);
    Ok(serde_json::json!({
        "ociVersion": "1.2.0",
        "id": rec.id,
        "status": st.as_str(),
        "pid": if st == Status::Stopped { 0 } else { rec.pid },
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
        "annotations": rec.annotations,
    }))
}

/// `kill`: sends `sig` to the sandbox; the Sentry delivers it to the container's init
/// (SIGKILL ends the whole sandbox at once).
pub fn kill(root: &Path, id: &str, sig: &str) -> Result<(), OpError> {
    let rec = state::load(root, id)?;
    let n = hull::signal::parse(sig).map_err(|_| OpError::Signal(sig.into()))?;
    let sig = Signal::try_from(n).map_err(|_| OpError::Signal(n.to_string()))?;
    if state::status(root, &rec) == Status::Stopped {
        return Err(OpError::Status {
            id: id.into(),
            status: "stopped",
            why: "cannot be signalled",
        });
    }
    nix::sys::signal::kill(Pid::from_raw(rec.pid), sig).map_err(|source| OpError::Sys {
        what: format!("signalling sentry {}", rec.pid),
        source,
    })
}

/// `delete`: removes a stopped (or, with `force`, any) sandbox and its cgroup.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), OpError> {
    let rec = match state::load(root, id) {
        Ok(r) => r,
        Err(state::StateError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let st = state::status(root, &rec);
    if st == Status::Running && !force {
        return Err(OpError::Status {
            id: id.into(),
            status: "running",
            why: "stop it first or use --force",
        });
    }
    if st != Status::Stopped {
        let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
        let t0 = Instant::now();
        while state::pid_alive(rec.pid) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Some(cg) = &rec.cgroup {
        let c = hull::cgroups::Cgroup::open(cg, id)?;
        c.remove()?;
    }
    let dir = state::dir(root, id)?;
    std::fs::remove_dir_all(&dir).map_err(|e| OpError::Sys {
        what: format!("removing {}", dir.display()),
        source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

/// `list`: the sandboxes under `root`.
pub fn list(root: &Path) -> Vec<serde_json::Value> {
    state::list(root)
        .iter()
        .filter_map(|id| state_json(root, id).ok())
        .collect()
}

/// `features`: what this runtime supports, in the runtime-spec features format.
pub fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [],
        "mountOptions": [],
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount", "cgroup"],
            "capabilities": [],
            "cgroup": { "v1": true, "v2": true, "systemd": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": {
            "org.hull.sandbox.platform": "ptrace",
            "org.hull.sandbox.kernel": crate::sentry::synth::RELEASE,
            "org.hull.sandbox.host-syscalls": crate::confine::allowlist_len().to_string()
        }
    })
}

/// Waits for the Sentry (our child via the subreaper bit) and returns its exit code.
pub fn wait_exit(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

/// `exec`: starts `req` in a running sandbox through the Sentry's control socket, with
/// this process's stdio; returns its exit code.
pub fn exec(
    root: &Path,
    id: &str,
    req: &crate::sentry::ExecRequest,
    pid_file: Option<&Path>,
) -> Result<i32, OpError> {
    use nix::sys::socket::{
        connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
        UnixAddr,
    };
    use std::io::{BufRead, IoSlice};
    let rec = state::load(root, id)?;
    let st = state::status(root, &rec);
    if st != Status::Running {
        return Err(OpError::Status {
            id: id.into(),
            status: st.as_str(),
            why: "exec needs a running container",
        });
    }
    let dir = state::dir(root, id)?;
    let sys = |what: &str| {
        let what = format!("{what} {}", state::control(&dir).display());
        move |source| OpError::Sys { what, source }
    };
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys("socket for"))?;
    // Relative to the directory: the full path may not fit a socket address.
    nix::unistd::chdir(&dir).map_err(sys("entering the directory of"))?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &UnixAddr::new("control.sock").map_err(sys("naming"))?,
    )
    .map_err(sys("connecting to"))?;
    if let Some(p) = pid_file {
        std::fs::write(p, std::process::id().to_string()).map_err(|e| OpError::Sys {
            what: format!("writing {}", p.display()),
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    }
    let body = serde_json::to_vec(req).unwrap_or_default();
    let fds = [0, 1, 2];
    sendmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &[IoSlice::new(&body)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(sys("sending the request to"))?;
    let mut line = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(fd)).read_line(&mut line);
    let line = line.trim();
    if let Some(code) = line.strip_prefix("exit ") {
        return Ok(code.parse().unwrap_or(255));
    }
    let msg = line
        .strip_prefix("err ")
        .unwrap_or("the sandbox closed the connection");
    Err(OpError::Exec(msg.to_string()))
}
