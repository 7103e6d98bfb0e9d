//! The Sentry's control socket: `hull-sandbox exec` connects, sends the process to start
//! (JSON) with its stdio descriptors, and gets `exit <code>` back when it ends. Closing the
//! connection early kills the process.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{accept4, recvmsg, ControlMessageOwned, MsgFlags, SockFlag};
use serde::{Deserialize, Serialize};

use super::task::{Exit, Pid};
use super::{InitSpec, Kernel};
use crate::platform::Tracee;

/// What `exec` asks the Sentry to start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv; argv[0] is looked up on PATH from `env` if it has no slash.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
}

impl Kernel {
    /// Serves the control socket `listener` (non-blocking, listening) from now on, starting
    /// processes in a fresh address space forked from `zygote`.
    pub fn set_control(&mut self, listener: OwnedFd, zygote: Tracee) {
        self.control = Some(listener);
        self.zygote = Some(zygote);
    }

    /// Descriptors the event loop must watch for the control socket.
    pub(super) fn control_fds(&self) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = self.control.iter().map(|f| f.as_raw_fd()).collect();
        v.extend(self.exec_clients.values().map(|f| f.as_raw_fd()));
        v
    }

    /// Accepts pending connections and notices clients that went away.
    pub(super) fn poll_control(&mut self, ready: &[RawFd]) {
        let gone: Vec<Pid> = self
            .exec_clients
            .iter()
            .filter(|(_, c)| ready.contains(&c.as_raw_fd()))
            .map(|(&p, _)| p)
            .collect();
        for pid in gone {
            // The client only ever reads; readability means it hung up.
            self.exec_clients.remove(&pid);
            self.exit_process(pid, Exit::Signal(libc::SIGKILL));
        }
        let Some(l) = self.control.as_ref().map(|l| l.as_raw_fd()) else {
            return;
        };
        if !ready.contains(&l) {
            return;
        }
        while let Ok(conn) = accept4(l, SockFlag::SOCK_CLOEXEC) {
            let conn = crate::sys::own_fd(conn);
            if let Err(msg) = self.serve_exec(&conn) {
                let _ = std::fs::File::from(conn).write_all(format!("err {msg}\n").as_bytes());
            }
        }
    }

    fn serve_exec(&mut self, conn: &OwnedFd) -> Result<(), String> {
        let (req, fds) = receive(conn).map_err(|e| format!("reading the exec request: {e}"))?;
        if req.args.is_empty() {
            return Err("exec: args must not be empty".into());
        }
        let zygote = self.zygote.ok_or("exec: no zygote address space")?;
        let (_, child) = zygote
            .stub_call_forking(
                libc::SYS_clone,
                [(libc::CLONE_PARENT | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0],
            )
            .map_err(|e| format!("exec: new address space: {e}"))?;
        let tracee = child.ok_or("exec: new address space: clone made no task")?;
        let init = self
            .procs
            .get(&1)
            .map(|p| (p.uid, p.gid))
            .unwrap_or_default();
        let spec = InitSpec {
            argv: req.args.clone(),
            env: req.env.clone(),
            cwd: if req.cwd.is_empty() {
                "/".into()
            } else {
                req.cwd.clone()
            },
            uid: init.0,
            gid: init.1,
            ..Default::default()
        };
        let pid = self.new_process(tracee, 0, &spec);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.fds = super::syscalls::fs::table_of(fds);
        }
        let path = self.resolve_argv0(pid, &spec.argv, &spec.env);
        let argv = spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        let envp = spec.env.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut regs = tracee.regs().map_err(|e| e.to_string())?;
        if let Err((e, _)) = self.exec_image(pid, &path, argv, envp, &mut regs) {
            self.exit_process(pid, Exit::Code(127));
            return Err(format!("exec {path}: {e}"));
        }
        tracee.set_regs(&regs).map_err(|e| e.to_string())?;
        let conn = conn.try_clone().map_err(|e| e.to_string())?;
        self.exec_clients.insert(pid, conn);
        self.finish(pid).map_err(|e| e.to_string())
    }

    /// Tells an exec client its process ended.
    pub(super) fn report_exec_exit(&mut self, pid: Pid, how: Exit) {
        if let Some(c) = self.exec_clients.remove(&pid) {
            let _ =
                std::fs::File::from(c).write_all(format!("exit {}\n", how.shell_code()).as_bytes());
        }
    }
}

/// Reads one request and its three stdio descriptors.
fn receive(conn: &OwnedFd) -> Result<(ExecRequest, Vec<OwnedFd>), Errno> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|_| Errno::EIO)? {
        if let ControlMessageOwned::ScmRights(v) = c {
            fds.extend(v.into_iter().map(crate::sys::own_fd));
        }
    }
    if fds.len() != 3 {
        return Err(Errno::EBADMSG);
    }
    let req = serde_json::from_slice(&buf[..n]).map_err(|_| Errno::EBADMSG)?;
    Ok((req, fds))
}
