//! runtime-spec hooks: programs the runtime runs at fixed points of a container's life.
//!
//! Each hook gets the container's state JSON on its stdin and inherits hull's stdout and
//! stderr. Hooks of one phase run in order; the first failure (spawn error, non-zero exit,
//! death by signal, timeout) stops the phase. A timeout is enforced with a pidfd and
//! `poll`, never with sleeps: the hook is killed with SIGKILL when it expires, and reaped.
//!
//! The state is fed through a non-blocking pipe inside the same `poll` loop, so a hook that
//! never reads its stdin cannot block hull (nor make it miss the timeout); EPIPE is ignored
//! (SIGPIPE is ignored meanwhile, whatever the caller's disposition).
//!
//! hull is single-threaded, so spawning with `std::process::Command` is sound.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};
use serde::Serialize;

use crate::state::{Container, Status};
use crate::sys;

/// The points of the lifecycle at which runtime-spec runs hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Deprecated by the spec, still run by runc: in the runtime namespace, after the
    /// container's namespaces exist, before `createRuntime`.
    Prestart,
    /// In the runtime namespace, during `create`, after the namespaces exist.
    CreateRuntime,
    /// In the container namespace, during `create`, before `pivot_root`.
    CreateContainer,
    /// In the container namespace, during `start`, just before the user program runs.
    StartContainer,
    /// In the runtime namespace, after the user program started.
    Poststart,
    /// In the runtime namespace, when the container is deleted.
    Poststop,
}

impl Phase {
    /// The spec's name for the phase, as it appears in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    /// The hooks of this phase in `hooks` (empty when the config has none).
    pub fn select(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Phase::Prestart => hooks.prestart(),
            Phase::CreateRuntime => hooks.create_runtime(),
            Phase::CreateContainer => hooks.create_container(),
            Phase::StartContainer => hooks.start_container(),
            Phase::Poststart => hooks.poststart(),
            Phase::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook that failed: which one, and how.
#[derive(Debug, thiserror::Error)]
#[error("{phase} hook #{index} ({path})")]
pub struct HookError {
    pub phase: Phase,
    /// Position of the hook within its phase, from 0 (as runc counts).
    pub index: usize,
    pub path: PathBuf,
    #[source]
    pub failure: HookFailure,
}

/// How a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookFailure {
    #[error("invalid timeout {0}: it must be a positive number of seconds")]
    BadTimeout(i64),
    #[error("cannot start the hook")]
    Spawn(#[source] io::Error),
    #[error("cannot wait for the hook")]
    Wait(#[source] io::Error),
    #[error("hook exited with status {0}")]
    Exit(i32),
    #[error("hook was killed by signal {0}")]
    Signal(i32),
    #[error("hook ran past its timeout of {0}s and was killed")]
    Timeout(i64),
}

/// Runs each hook of `phase` in order, with `state_json` on its stdin.
///
/// argv is the hook's `args` (`args[0]` is argv[0]; the path when `args` is empty), the
/// environment is exactly the hook's `env`, or hull's own when it has none (as runc,
/// whose Go exec inherits the environment for a nil `Env`). Returns the first
/// failure, naming the phase, the index and the path.
pub fn run(phase: Phase, hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, state_json).map_err(|failure| HookError {
            phase,
            index,
            path: hook.path().clone(),
            failure,
        })?;
    }
    Ok(())
}

/// Runs every hook of `phase`, logging each failure as a warning and going on with the
/// rest: runtime-spec's rule for poststart and poststop hooks.
pub fn run_all_warning_only(phase: Phase, hooks: &[Hook], state_json: &[u8]) {
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(failure) = run_one(hook, state_json) {
            let e = HookError {
                phase,
                index,
                path: hook.path().clone(),
                failure,
            };
            tracing::warn!("{}", crate::report::chain(&e));
        }
    }
}

fn run_one(hook: &Hook, state_json: &[u8]) -> Result<(), HookFailure> {
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => return Err(HookFailure::BadTimeout(t)),
        t => t,
    };
    let mut child = command(hook).spawn().map_err(HookFailure::Spawn)?;
    // A deadline too far away to represent is no deadline.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(Duration::from_secs(t as u64)));
    let stdin = child.stdin.take();
    // The hook is our unreaped child: its pid cannot have been reused yet.
    let pidfd = match sys::pidfd_open(child.id() as i32) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = wait(&mut child);
            return Err(HookFailure::Wait(e));
        }
    };
    let outcome = feed_and_wait(&pidfd, stdin, state_json, deadline);
    if !matches!(outcome, Ok(true)) {
        // Timed out, or poll failed: the hook may still run. It is gone after SIGKILL,
        // which cannot be caught, so the wait below returns promptly.
        let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
    }
    let status = wait(&mut child)?;
    match outcome {
        Ok(true) => check_status(status),
        Ok(false) => Err(HookFailure::Timeout(timeout.unwrap_or_default())),
        Err(e) => Err(HookFailure::Wait(e)),
    }
}

/// The command for `hook`: its path, argv, exactly its environment, piped stdin.
fn command(hook: &Hook) -> Command {
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = hook.args().as_deref().and_then(<[String]>::split_first) {
        cmd.arg0(arg0).args(rest);
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for entry in env {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            cmd.env(key, value);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    cmd
}

/// Writes `data` to the hook's stdin while waiting for it to exit.
///
/// Returns `Ok(true)` once the process behind `pidfd` has exited (not yet reaped), and
/// `Ok(false)` when `deadline` passed first. Stdin is closed once everything is written,
/// or as soon as the hook closes its end (EPIPE).
fn feed_and_wait(
    pidfd: &OwnedFd,
    mut stdin: Option<ChildStdin>,
    mut data: &[u8],
    deadline: Option<Instant>,
) -> io::Result<bool> {
    if let Some(pipe) = &stdin {
        fcntl(pipe.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    if data.is_empty() {
        stdin = None;
    }
    // In the container init SIGPIPE may be back to its default action, which would kill
    // us when a hook exits without reading; with it ignored, the write fails with EPIPE.
    let _sigpipe = sys::ignore_sigpipe()?;
    loop {
        let Some(timeout) = poll_timeout(deadline) else {
            return Ok(false);
        };
        let (exited, writable) = {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if let Some(pipe) = &stdin {
                fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLOUT));
            }
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if exited {
            return Ok(true);
        }
        if writable {
            if let Some(pipe) = &mut stdin {
                match pipe.write(data) {
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EPIPE: the hook closed its stdin without reading it all.
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => data = &[],
                    Err(e) => return Err(e),
                }
            }
            if data.is_empty() {
                stdin = None;
            }
        }
    }
}

/// The poll timeout until `deadline` (milliseconds, rounded up so we never wake early);
/// `None` once the deadline has passed.
fn poll_timeout(deadline: Option<Instant>) -> Option<PollTimeout> {
    let Some(deadline) = deadline else {
        return Some(PollTimeout::NONE);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    let ms = left.as_micros().div_ceil(1000);
    Some(PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX))
}

fn wait(child: &mut Child) -> Result<ExitStatus, HookFailure> {
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(HookFailure::Wait),
        }
    }
}

fn check_status(status: ExitStatus) -> Result<(), HookFailure> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(HookFailure::Exit(code)),
        (None, Some(sig)) => Err(HookFailure::Signal(sig)),
        (None, None) => Err(HookFailure::Exit(-1)),
    }
}

/// The runtime-spec state object given to hooks on stdin (`specs.State` of the Go
/// bindings: `pid` and `annotations` are left out when zero or empty).
#[derive(Debug, Serialize)]
pub struct State<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i32,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

fn is_zero(pid: &i32) -> bool {
    *pid == 0
}

impl<'a> State<'a> {
    /// The state of `container` with `status`. The pid is the recorded init pid, except
    /// when stopped (as runc reports it). Callers may override `pid`, e.g. with the pid
    /// inside the container for `createContainer` and `startContainer` hooks.
    pub fn of(container: &'a Container, status: Status) -> Self {
        let r = &container.record;
        State {
            oci_version: &r.oci_version,
            id: &r.id,
            status,
            pid: if status == Status::Stopped { 0 } else { r.pid },
            bundle: &r.bundle,
            annotations: &r.annotations,
        }
    }

    /// The JSON bytes to feed to hooks.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state of plain strings and numbers serialises")
    }
}

/// The runtime-spec state JSON of `container` with `status`, for hooks' stdin.
pub fn state_json(container: &Container, status: Status) -> Vec<u8> {
    State::of(container, status).to_json()
}

/// Runs the `phase` hooks recorded for `c` (poststart, poststop), whose failures
/// runtime-spec makes warnings: the lifecycle goes on, and the failure is logged.
pub fn run_warning_only(phase: Phase, c: &Container, status: Status) {
    let Some(hooks) = &c.record.hooks else { return };
    let list = phase.select(hooks);
    if list.is_empty() {
        return;
    }
    run_all_warning_only(phase, list, &state_json(c, status));
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::report::chain;
    use crate::state::{CgroupRecord, Record};

    const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

    fn sh(script: &str, env: &[&str], timeout: Option<i64>) -> Hook {
        let mut v = serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", script],
            "env": env,
        });
        if let Some(t) = timeout {
            v["timeout"] = t.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn failure(r: Result<(), HookError>) -> HookError {
        r.expect_err("the hook should fail")
    }

    #[test]
    fn state_arrives_on_stdin() {
        let state = br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42}"#;
        let expect = format!("EXPECT={}", std::str::from_utf8(state).unwrap());
        let h = sh(
            r#"IFS= read -r s; [ "$s" = "$EXPECT" ] || exit 3"#,
            &[&expect],
            None,
        );
        run(Phase::CreateRuntime, &[h], state).unwrap();
    }

    #[test]
    fn env_is_exactly_the_hooks() {
        // The test runner's HOME, PATH, ... must not leak. dash itself exports PWD, and
        // finds `env` and `grep` through its built-in default PATH.
        let h = sh(
            r#"[ "$(env | grep -v '^PWD=')" = "FOO=a=b" ]"#,
            &["FOO=a=b"],
            None,
        );
        run(Phase::Prestart, &[h], b"{}").unwrap();
        // Without `env` the hook inherits ours, as with runc.
        let no_env: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", r#"[ -n "${PATH+x}" ] || exit 4"#],
        }))
        .unwrap();
        run(Phase::Prestart, &[no_env], b"{}").unwrap();
    }

    #[test]
    fn args_and_argv0_are_the_hooks() {
        let h: Hook = serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["hull-argv0", "-c",
                r#"[ "$0" = zero ] && [ "$1" = "a b" ] && [ $# -eq 1 ] || exit 5
                   case "$(cat /proc/$$/cmdline)" in hull-argv0*) ;; *) exit 6;; esac"#,
                "zero", "a b"],
            "env": [PATH],
        }))
        .unwrap();
        run(Phase::Poststart, &[h], b"{}").unwrap();
    }

    #[test]
    fn first_failure_stops_the_phase() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let hooks = [
            sh("exit 0", &[], None),
            sh("exit 3", &[], None),
            sh(&format!("echo > {}", marker.display()), &[], None),
        ];
        let e = failure(run(Phase::Poststop, &hooks, b"{}"));
        assert_eq!((e.phase, e.index), (Phase::Poststop, 1));
        assert!(matches!(e.failure, HookFailure::Exit(3)), "{e:?}");
        assert_eq!(
            chain(&e),
            "poststop hook #1 (/bin/sh): hook exited with status 3"
        );
        assert!(!marker.exists());
    }

    #[test]
    fn death_by_signal_is_a_failure() {
        let e = failure(run(
            Phase::StartContainer,
            &[sh("kill -9 $$", &[], None)],
            b"",
        ));
        assert!(matches!(e.failure, HookFailure::Signal(9)), "{e:?}");
    }

    #[test]
    fn spawn_failure_names_the_path() {
        let h: Hook =
            serde_json::from_value(serde_json::json!({"path": "/nonexistent/hook"})).unwrap();
        let e = failure(run(Phase::CreateContainer, &[h], b"{}"));
        assert!(matches!(e.failure, HookFailure::Spawn(_)), "{e:?}");
        assert!(chain(&e).starts_with("createContainer hook #0 (/nonexistent/hook): cannot start"));
    }

    #[test]
    fn timeout_kills_the_hook() {
        let start = Instant::now();
        let e = failure(run(
            Phase::Prestart,
            &[sh("exec sleep 5", &[PATH], Some(1))],
            b"{}",
        ));
        let took = start.elapsed();
        assert!(matches!(e.failure, HookFailure::Timeout(1)), "{e:?}");
        assert!(took >= Duration::from_millis(990), "{took:?}");
        assert!(took < Duration::from_millis(1900), "{took:?}");
    }

    #[test]
    fn non_positive_timeouts_are_refused() {
        let e = failure(run(Phase::Prestart, &[sh("exit 0", &[], Some(0))], b"{}"));
        assert!(matches!(e.failure, HookFailure::BadTimeout(0)), "{e:?}");
    }

    #[test]
    fn a_hook_that_ignores_a_big_state_does_not_block_us() {
        let big = vec![b'x'; 4 << 20];
        run(Phase::Poststart, &[sh("exit 0", &[], None)], &big).unwrap();
        // Still running, but never reading: the timeout must still fire.
        let start = Instant::now();
        let e = failure(run(
            Phase::Poststart,
            &[sh("exec sleep 5", &[PATH], Some(1))],
            &big,
        ));
        assert!(matches!(e.failure, HookFailure::Timeout(1)), "{e:?}");
        assert!(start.elapsed() < Duration::from_millis(1900));
    }

    #[test]
    fn a_big_state_is_written_in_full() {
        let big = vec![b'x'; 3 << 20];
        let h = sh(
            &format!("[ $(wc -c) -eq {} ] || exit 7", big.len()),
            &[PATH],
            Some(30),
        );
        run(Phase::Prestart, &[h], &big).unwrap();
    }

    /// Set for the re-executed test binary, whose signal dispositions are then reset.
    const SIGPIPE_CHILD_ENV: &str = "HULL_HOOKS_SIGPIPE_CHILD";

    /// Runs only inside the child of `epipe_is_harmless_with_default_sigpipe`: like the
    /// container init after it reset its signals, SIGPIPE has its default action there.
    #[test]
    fn sigpipe_child() {
        if std::env::var_os(SIGPIPE_CHILD_ENV).is_none() {
            return;
        }
        sys::reset_signals().unwrap();
        let big = vec![b'x'; 4 << 20];
        // The hook closes its stdin at once and lingers: our writes must fail with EPIPE.
        let h = sh("exec 0<&-; sleep 0.2", &[PATH], Some(10));
        run(Phase::StartContainer, &[h], &big).unwrap();
    }

    #[test]
    fn epipe_is_harmless_with_default_sigpipe() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "hooks::tests::sigpipe_child", "--test-threads=1"])
            .env(SIGPIPE_CHILD_ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{:?} {text}", out.status);
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
    }

    fn container(pid: i32, annotations: HashMap<String, String>) -> Container {
        Container {
            dir: "/run/hull/c1".into(),
            record: Record {
                oci_version: "1.2.0".into(),
                id: "c1".into(),
                pid,
                pid_start: 7,
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                created: "x".into(),
                annotations,
                owner: "root".into(),
                cgroup: CgroupRecord::default(),
                own_pid_ns: true,
                creating: false,
                hooks: None,
                host_mounts: false,
                exec_done_fd: None,
            },
        }
    }

    #[test]
    fn state_json_has_the_spec_fields_in_order() {
        let c = container(42, HashMap::from([("k".into(), "v".into())]));
        assert_eq!(
            String::from_utf8(state_json(&c, Status::Created)).unwrap(),
            r#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b","annotations":{"k":"v"}}"#
        );
        let c = container(42, HashMap::new());
        assert_eq!(
            String::from_utf8(state_json(&c, Status::Stopped)).unwrap(),
            r#"{"ociVersion":"1.2.0","id":"c1","status":"stopped","bundle":"/b"}"#
        );
    }

    #[test]
    fn phases_select_their_hooks() {
        let hooks: Hooks = serde_json::from_value(serde_json::json!({
            "createRuntime": [{"path": "/a"}, {"path": "/b"}],
            "poststop": [{"path": "/c"}],
        }))
        .unwrap();
        assert_eq!(Phase::CreateRuntime.select(&hooks).len(), 2);
        assert_eq!(Phase::Poststop.select(&hooks)[0].path(), Path::new("/c"));
        assert!(Phase::Prestart.select(&hooks).is_empty());
    }
}
