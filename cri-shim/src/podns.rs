//! A pod's namespaces, as hull-cri sees them: [`pin`] runs `hull-cri-pinns` (hull-cri never
//! unshares or forks itself, see [`crate::pinns`]) and [`unpin`] tears the pins down.
//!
//! Order for a pod's teardown: CNI DEL first (it needs the network namespace), then [`unpin`].

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The pin files `hull-cri-pinns` may create in a pod's directory.
const PIN_NAMES: [&str; 4] = ["net", "ipc", "uts", "pid"];

/// How long [`pin`] lets the helper run (it normally takes a few milliseconds).
pub const PIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`unpin`] waits for a killed holder (and with it the whole PID namespace) to die.
const HOLDER_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Which namespaces a pod gets of its own; a `false` one is shared with the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRequest {
    /// A network namespace (false: host network).
    pub net: bool,
    /// An IPC namespace (false: host IPC).
    pub ipc: bool,
    /// A UTS namespace (false: host hostname).
    pub uts: bool,
    /// A PID namespace with a holder as its PID 1 (false: host PID, or one per container).
    pub pid: bool,
    /// Hostname set in the new UTS namespace (needs `uts`).
    pub hostname: Option<String>,
    /// Namespaced sysctls (`net.*` needs `net`; `kernel.shm*`, `kernel.msg*`, `kernel.sem`,
    /// `fs.mqueue.*` need `ipc`). Anything else is refused by the helper.
    pub sysctls: BTreeMap<String, String>,
}

/// A pinned pod: the directory and what is in it. Serializable, to be kept in the pod record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// The pod's pin directory.
    pub dir: PathBuf,
    /// Host pid of the PID namespace's holder, when a PID namespace was made.
    pub holder_pid: Option<i32>,
    /// What was asked (the pins present are those whose flag is set).
    pub request: PinRequest,
}

impl Pinned {
    /// The pin of a namespace (`"net"`, `"ipc"`, `"uts"`, `"pid"`), if the pod has its own.
    pub fn path(&self, ns: &str) -> Option<PathBuf> {
        let r = &self.request;
        let own = match ns {
            "net" => r.net,
            "ipc" => r.ipc,
            "uts" => r.uts,
            "pid" => r.pid,
            _ => false,
        };
        own.then(|| self.dir.join(ns))
    }
}

/// Errors of pinning and unpinning.
#[derive(Debug, thiserror::Error)]
pub enum PodNsError {
    /// The helper could not be started.
    #[error("run pin helper {helper}")]
    Spawn {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The helper ran longer than [`PIN_TIMEOUT`]; it was killed and the pins removed.
    #[error("pin helper {helper}: no answer after {secs} s")]
    Timeout { helper: PathBuf, secs: u64 },
    /// The helper failed (it undid what it did); `stderr` names the step and errno.
    #[error("pin helper {helper} failed ({status}): {stderr}")]
    Helper {
        helper: PathBuf,
        status: ExitStatus,
        stderr: String,
    },
    /// The helper succeeded but its output is not the expected JSON line (the pins were removed).
    #[error("pin helper {helper}: unexpected output {output:?}")]
    Output {
        helper: PathBuf,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    /// Inspecting a pin or a process failed.
    #[error("inspect {path}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Killing the holder failed.
    #[error("kill pid namespace holder {pid}")]
    Kill {
        pid: i32,
        #[source]
        source: Errno,
    },
    /// Unmounting a pin failed.
    #[error("unmount {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    /// Removing a pin file or the directory failed.
    #[error("remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The helper's arguments for `req`.
fn helper_args(dir: &Path, req: &PinRequest) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--dir".into(), dir.into()];
    for (on, flag) in [
        (req.net, "--net"),
        (req.ipc, "--ipc"),
        (req.uts, "--uts"),
        (req.pid, "--pid"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    if let Some(h) = &req.hostname {
        args.extend(["--hostname".into(), h.into()]);
    }
    for (k, v) in &req.sysctls {
        args.extend(["--sysctl".into(), format!("{k}={v}").into()]);
    }
    args
}

/// Creates the namespaces `req` asks for and pins them under `dir` (created; must not exist
/// or be empty), by running the single-threaded helper `helper` (`hull-cri-pinns`).
///
/// On failure nothing is left behind: the helper undoes its own steps, and if it died without
/// doing so (killed by a signal, or after [`PIN_TIMEOUT`]) or printed something unexpected,
/// the pins (and a holder, found by its namespace) are removed here. Cancelling the returned
/// future kills the helper wherever it is: the caller must then [`unpin`] `dir` itself.
pub async fn pin(helper: &Path, dir: &Path, req: &PinRequest) -> Result<Pinned, PodNsError> {
    let run = tokio::process::Command::new(helper)
        .args(helper_args(dir, req))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let Ok(out) = tokio::time::timeout(PIN_TIMEOUT, run).await else {
        // The helper was killed (kill_on_drop) wherever it was; remove what it left.
        cleanup(dir).await;
        return Err(PodNsError::Timeout {
            helper: helper.to_path_buf(),
            secs: PIN_TIMEOUT.as_secs(),
        });
    };
    let out = out.map_err(|source| PodNsError::Spawn {
        helper: helper.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        if out.status.code().is_none() {
            // Killed mid-way: it could not roll back. The original failure is the error; a
            // cleanup failure here would only hide it, and a later unpin retries.
            cleanup(dir).await;
        }
        return Err(PodNsError::Helper {
            helper: helper.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    #[derive(Deserialize)]
    struct Line {
        holder_pid: Option<i32>,
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match serde_json::from_str::<Line>(text.trim()) {
        Ok(line) => Ok(Pinned {
            dir: dir.to_path_buf(),
            holder_pid: line.holder_pid,
            request: req.clone(),
        }),
        Err(source) => {
            cleanup(dir).await; // as above: the parse error is the one to report
            Err(PodNsError::Output {
                helper: helper.to_path_buf(),
                output: text,
                source,
            })
        }
    }
}

/// Best-effort [`unpin`] after a failed [`pin`], off the async threads (it may wait for the
/// holder). Its own failure is dropped: the pin failure is the error reported, and the
/// caller's later unpin (StopPodSandbox) retries.
async fn cleanup(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || unpin(&dir, None)).await;
}

/// Tears down what [`pin`] made in `dir`: kills the PID namespace's holder (which kills every
/// process of that namespace), unmounts the pins and the directory's own bind mount with
/// `MNT_DETACH`, and removes them. Idempotent: anything already gone is fine.
///
/// The holder is killed only if `/proc/<pid>/ns/pid` is the namespace pinned at `dir/pid`, so
/// a recycled pid is never signalled. With `holder_pid` unknown (`None`) or not matching, the
/// holder is found by that same namespace (as its PID 1) among the processes in `/proc`. Blocks up to 2 s waiting for the
/// holder to die; call it from `spawn_blocking`.
pub fn unpin(dir: &Path, holder_pid: Option<i32>) -> Result<(), PodNsError> {
    kill_holder(dir, holder_pid)?;
    for name in PIN_NAMES {
        let pin = dir.join(name);
        unmount_all(&pin)?;
        remove(&pin, fs::remove_file(&pin))?;
    }
    unmount_all(dir)?;
    remove(dir, fs::remove_dir(dir))
}

fn remove(path: &Path, r: io::Result<()>) -> Result<(), PodNsError> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PodNsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Unmounts every mount stacked on `path`; not a mount point (EINVAL) or missing is done.
fn unmount_all(path: &Path) -> Result<(), PodNsError> {
    loop {
        match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(PodNsError::Unmount {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// (device, inode) of the pin at `path`, or `None` if it does not exist.
fn ns_id(path: &Path) -> Result<Option<(u64, u64)>, PodNsError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PodNsError::Inspect {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// (device, inode) of `/proc/<pid>/ns/pid`, or `None` when the process is gone (ENOENT,
/// ESRCH) or not inspectable by us (EACCES: then it is not a holder we started as root).
fn proc_pid_ns(pid: i32) -> Option<(u64, u64)> {
    let m = fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?;
    Some((m.dev(), m.ino()))
}

/// The PID-1 process of the namespace pinned at `pin`, found by scanning `/proc`.
fn find_holder(pinned: (u64, u64)) -> Result<Option<i32>, PodNsError> {
    let proc_dir = Path::new("/proc");
    let entries = fs::read_dir(proc_dir).map_err(|source| PodNsError::Inspect {
        path: proc_dir.to_path_buf(),
        source,
    })?;
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if proc_pid_ns(pid) != Some(pinned) {
            continue;
        }
        // NSpid's last field is the pid inside the innermost namespace: 1 for its init.
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let init = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|f| f.split_whitespace().last())
            == Some("1");
        if init {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// Kills the holder of `dir/pid` if it is alive, and waits (bounded) for it to die.
fn kill_holder(dir: &Path, holder_pid: Option<i32>) -> Result<(), PodNsError> {
    let Some(pinned) = ns_id(&dir.join("pid"))? else {
        return Ok(());
    };
    let recorded = match holder_pid {
        Some(pid) if proc_pid_ns(pid) == Some(pinned) => Some(pid),
        // Unknown, or that pid is no longer our holder (recycled, or a wrong record): look
        // for the namespace's init itself rather than trust the number.
        _ => None,
    };
    let pid = match recorded {
        Some(pid) => pid,
        None => match find_holder(pinned)? {
            Some(pid) => pid,
            None => return Ok(()),
        },
    };
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(source) => return Err(PodNsError::Kill { pid, source }),
    }
    let deadline = Instant::now() + HOLDER_EXIT_WAIT;
    while Instant::now() < deadline && alive(pid) {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Whether `pid` exists and is not a zombie. A dying PID-namespace init becomes a zombie only
/// once every other process of its namespace is gone, so "zombie" means the namespace is dead.
fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised name, which may itself contain ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_for_request() {
        let req = PinRequest {
            net: true,
            pid: true,
            uts: true,
            hostname: Some("web-0".into()),
            sysctls: [("net.ipv4.ip_forward".to_owned(), "1".to_owned())].into(),
            ..PinRequest::default()
        };
        let args: Vec<String> = helper_args(Path::new("/run/p"), &req)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--dir",
                "/run/p",
                "--net",
                "--uts",
                "--pid",
                "--hostname",
                "web-0",
                "--sysctl",
                "net.ipv4.ip_forward=1"
            ]
        );
    }

    #[test]
    fn paths_only_for_own_namespaces() {
        let p = Pinned {
            dir: "/run/p".into(),
            holder_pid: None,
            request: PinRequest {
                net: true,
                ..PinRequest::default()
            },
        };
        assert_eq!(p.path("net"), Some(PathBuf::from("/run/p/net")));
        assert_eq!(p.path("pid"), None);
        assert_eq!(p.path("mnt"), None);
    }

    #[test]
    fn unpin_missing_dir_is_ok() {
        let d = tempfile::tempdir().unwrap();
        // Every path is missing, so no umount2 is attempted (it would need root).
        unpin(&d.path().join("gone"), Some(1)).unwrap();
    }

    fn fake_helper(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("helper");
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn helper_failure_and_bad_output_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let pod = d.path().join("pod");
        let req = PinRequest {
            net: true,
            ..PinRequest::default()
        };
        let failing = fake_helper(
            d.path(),
            "echo 'hull-cri-pinns: unshare: EPERM' >&2; exit 1",
        );
        let e = pin(&failing, &pod, &req).await.unwrap_err();
        assert!(
            matches!(&e, PodNsError::Helper { stderr, .. } if stderr == "hull-cri-pinns: unshare: EPERM"),
            "{e:?}"
        );
        let garbled = fake_helper(d.path(), "echo 'holder 12'");
        let e = pin(&garbled, &pod, &req).await.unwrap_err();
        assert!(matches!(e, PodNsError::Output { .. }), "{e:?}");
        let ok = fake_helper(d.path(), r#"echo '{"holder_pid": 42}'"#);
        let p = pin(&ok, &pod, &req).await.unwrap();
        assert_eq!(p.holder_pid, Some(42));
        assert_eq!(p.path("net"), Some(pod.join("net")));
        let e = pin(&d.path().join("missing"), &pod, &req)
            .await
            .unwrap_err();
        assert!(matches!(e, PodNsError::Spawn { .. }), "{e:?}");
    }

    #[test]
    fn own_process_is_alive() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
