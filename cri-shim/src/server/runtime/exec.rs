//! ExecSync, UpdateContainerResources, ReopenContainerLog.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tonic::{Code, Status};

use super::ctrs::wait_for;
use super::{internal, status, Runtime};
use crate::api::{ExecSyncResponse, LinuxContainerResources};
use crate::records::CtrState;

/// kubelet's gRPC message limit bounds what ExecSync may return; output beyond it is cut.
const MAX_OUTPUT: u64 = 8 << 20;

/// How long a timed-out ExecSync waits for the runtime to reap the killed process.
const REAP_WAIT: Duration = Duration::from_secs(5);

impl Runtime {
    pub(super) fn running(&self, given: &str, rpc: &str) -> Result<crate::records::Ctr, Status> {
        let id = self.ctr_id(given)?;
        let c = self.refreshed(&id)?;
        if c.rec.state != CtrState::Running {
            return Err(Status::failed_precondition(format!(
                "{rpc}: container {id} is not running"
            )));
        }
        Ok(c)
    }

    /// ExecSync: runs `cmd` in the container, with a timeout in seconds (0 = none).
    pub(super) async fn exec_sync(
        &self,
        given: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecSyncResponse, Status> {
        if cmd.is_empty() {
            return Err(Status::invalid_argument("ExecSync: cmd is required"));
        }
        let c = self.running(given, "ExecSync")?;
        let handler = self
            .handlers
            .get(&c.rec.handler)
            .map_err(|e| status(Code::FailedPrecondition, "ExecSync", &e))?;
        let tmp = tempdir_in(&self.paths.ctr_dir(&c.rec.id))?;
        let pid_file = tmp.join("exec.pid");
        let mut child = handler
            .command()
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&c.rec.id)
            .args(&cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| internal(format_args!("starting {}", handler.path.display()), &e))?;
        let out = read_capped(child.stdout.take());
        let err = read_capped(child.stderr.take());
        let wait = async {
            let (o, e, st) = tokio::join!(out, err, child.wait());
            (o, e, st)
        };
        let result = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout as u64), wait).await {
                Ok(r) => Ok(r),
                Err(_) => Err(()),
            }
        } else {
            Ok(wait.await)
        };
        let (stdout, stderr, st) = match result {
            Ok(r) => r,
            Err(()) => {
                kill_exec(&pid_file, child.id());
                // The runtime reaps the killed process and exits. Waiting for that means the
                // caller's next look into the container finds neither the process nor its
                // zombie (critest runs pgrep right after the timeout).
                let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(Status::deadline_exceeded(format!(
                    "ExecSync in container {}: command {cmd:?} timed out after {timeout}s",
                    c.rec.id
                )));
            }
        };
        let _ = std::fs::remove_dir_all(&tmp);
        let st = st.map_err(|e| internal("waiting for exec", &e))?;
        let exit_code = exit_code(st);
        Ok(ExecSyncResponse {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// UpdateContainerResources.
    pub(super) async fn update_resources(
        &self,
        given: &str,
        r: Option<LinuxContainerResources>,
    ) -> Result<(), Status> {
        let id = self.ctr_id(given)?;
        let mut c = self.refreshed(&id)?;
        let Some(r) = r else {
            return Ok(());
        };
        let handler = self
            .handlers
            .get(&c.rec.handler)
            .map_err(|e| status(Code::FailedPrecondition, "UpdateContainerResources", &e))?;
        let oci = crate::spec::update_resources(&r, &self.host)
            .map_err(|e| status(Code::InvalidArgument, "UpdateContainerResources", &e))?;
        let path = self.paths.ctr_dir(&id).join("update.json");
        let bytes = serde_json::to_vec(&oci).map_err(|e| internal("serialising resources", &e))?;
        std::fs::write(&path, bytes)
            .map_err(|e| internal(format_args!("writing {}", path.display()), &e))?;
        let result = handler.update(&id, &path).await;
        let _ = std::fs::remove_file(&path);
        result.map_err(|e| internal(format_args!("updating container {id}"), &e))?;
        if let Some(l) = c.config.linux.as_mut() {
            l.resources = Some(r);
            crate::records::write_config(&self.paths.ctr_dir(&id), &c.config)
                .map_err(|e| internal("container config", &e))?;
        }
        self.tables().ctrs.insert(id, c);
        Ok(())
    }

    /// ReopenContainerLog: tells the monitor to reopen the log file (after rotation), and
    /// returns once the new file is there: kubelet and critest look for it right after the
    /// call, and the monitor reopens it from its own event loop.
    pub(super) async fn reopen_log(&self, given: &str) -> Result<(), Status> {
        let c = self.running(given, "ReopenContainerLog")?;
        if !monitor_alive(c.rec.monitor_pid, &c.rec.id) {
            return Err(Status::failed_precondition(format!(
                "ReopenContainerLog: the monitor of container {} is gone",
                c.rec.id
            )));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.rec.monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| internal("signalling the monitor", &e))?;
        match c.rec.log_path {
            Some(log) if !wait_for(&log, REOPEN_WAIT).await => Err(Status::deadline_exceeded(format!(
                "ReopenContainerLog: the monitor of container {} did not create {} within {REOPEN_WAIT:?}",
                c.rec.id,
                log.display()
            ))),
            _ => Ok(()),
        }
    }
}

/// How long ReopenContainerLog waits for the monitor to create the new log file.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// True when `pid` is still the monitor of container `id` (not a recycled pid).
pub(super) fn monitor_alive(pid: i32, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
    })
}

/// The exit code of a runtime's `exec`, which exits with its process's: 128 + the signal
/// when the runtime itself was killed.
pub(super) fn exit_code(st: std::process::ExitStatus) -> i32 {
    match (
        st.code(),
        std::os::unix::process::ExitStatusExt::signal(&st),
    ) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 255,
    }
}

/// Kills the exec'd process named by the runtime's pid file, if it is still the child of
/// the runtime process `runtime_pid` (which the caller has not reaped, so its pid is not
/// recycled): a process that exited and whose pid was reused is never signalled.
pub(super) fn kill_exec(pid_file: &std::path::Path, runtime_pid: Option<u32>) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return;
    };
    if let Some(parent) = runtime_pid {
        if parent_of(pid) != Some(parent) {
            return;
        }
    }
    // The exec'd process, not the runtime: SIGKILL cannot be forwarded, so the runtime
    // would otherwise outlive the process's deadline.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The parent pid of `pid`, from `/proc/<pid>/stat` (the field after the parenthesised
/// command name, which may itself hold spaces and parentheses).
fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reads `r` to its end, keeping at most `MAX_OUTPUT` bytes.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(r: Option<R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let mut limited = r.take(MAX_OUTPUT);
        let _ = limited.read_to_end(&mut buf).await;
        // Drain the rest so the process never blocks on a full pipe.
        let _ = tokio::io::copy(&mut limited.into_inner(), &mut tokio::io::sink()).await;
    }
    buf
}

/// A fresh `exec-<random>` directory in `dir`, for an exec's pid file and sockets.
pub(super) fn tempdir_in(dir: &std::path::Path) -> Result<std::path::PathBuf, Status> {
    let id = crate::records::new_id().map_err(|e| internal("exec id", &e))?;
    let p = dir.join(format!("exec-{}", &id[..12]));
    std::fs::create_dir_all(&p)
        .map_err(|e| internal(format_args!("creating {}", p.display()), &e))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_reads_the_ppid_even_past_odd_command_names() {
        let me = std::process::id() as i32;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw() as u32));
        assert_eq!(parent_of(i32::MAX), None);
    }

    #[test]
    fn exit_codes_of_signals_are_128_plus() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
