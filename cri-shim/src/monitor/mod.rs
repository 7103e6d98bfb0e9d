//! `hull-cri-monitor`: the process that watches over one container.
//!
//! hull-cri (a tokio process that never forks) starts it by exec, once per container. The
//! monitor detaches (fork, the first process exits at once, `setsid`), becomes a child
//! subreaper, runs `<runtime> create` with the container's stdout and stderr on pipes it
//! holds, and reports the outcome as one JSON line on its stdout, which is a pipe hull-cri
//! reads to EOF. It then writes the container's output to the CRI log, reaps the container's
//! init when it exits, and records the exit status and time in an exit file with an atomic
//! rename. Because it is in its own session and not hull-cri's child after the detach, the
//! container and its log outlive a hull-cri that is stopped or killed.

mod attach;
mod console;
pub mod frame;
mod relay;

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::crilog::LogWriter;
use crate::sys;

/// Errors of the monitor before the container runs.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A system call failed.
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    /// A file could not be opened, read or written.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CRI log could not be opened.
    #[error("opening the container log")]
    Log(#[source] crate::crilog::CriLogError),
    /// The runtime could not be started.
    #[error("starting {runtime}")]
    Spawn {
        runtime: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `<runtime> create` failed; the message is the runtime's own.
    #[error("{runtime} create failed: {message}")]
    Create { runtime: PathBuf, message: String },
    /// The pid file the runtime wrote is not a pid.
    #[error("pid file {path} holds no pid: {text:?}")]
    PidFile { path: PathBuf, text: String },
}

/// Command line of `hull-cri-monitor` (hull-cri builds it; not meant for people).
#[derive(Parser, Debug, Clone)]
#[command(version, about = "hull-cri's per-container monitor")]
pub struct Args {
    /// Container id.
    #[arg(long)]
    pub id: String,
    /// OCI bundle directory.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc-compatible CLI).
    #[arg(long)]
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    #[arg(long)]
    pub runtime_root: PathBuf,
    /// The CRI log file of the container.
    #[arg(long)]
    pub log: PathBuf,
    /// Where the exit status is written when the container's init exits.
    #[arg(long)]
    pub exit_file: PathBuf,
    /// Where the runtime writes the init's pid.
    #[arg(long)]
    pub pid_file: PathBuf,
    /// The runtime's own log (JSON lines); its last error becomes the create error.
    #[arg(long)]
    pub runtime_log: PathBuf,
    /// The container has a terminal (`process.terminal`): receive its master over a console
    /// socket in the exit file's directory and log what it prints as stdout.
    #[arg(long)]
    pub tty: bool,
    /// The container reads stdin (CRI `stdin`): a pipe (or the terminal) the monitor holds
    /// and feeds from the attach socket (`attach.sock` beside the exit file).
    #[arg(long)]
    pub stdin: bool,
    /// Close the container's stdin when the first client that attached with stdin
    /// detaches (CRI `stdin_once`).
    #[arg(long, requires = "stdin")]
    pub stdin_once: bool,
}

/// What the monitor reports on its stdout once `create` has finished.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The container is created; `pid` is its init, `monitor` the monitor's pid.
    Created { pid: i32, monitor: i32 },
    /// Creation failed, with the reason.
    Failed { message: String },
}

/// The exit file, written once the container's init has exited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code, or 128 + signal for an init killed by a signal.
    pub exit_code: i32,
    /// When the init was reaped, in nanoseconds since the epoch.
    pub finished_at_ns: i64,
}

/// Entry point of the `hull-cri-monitor` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match sys::fork_single_threaded() {
        // The first process exits at once, so hull-cri reaps it and the monitor is adopted
        // by the nearest subreaper (init), free of hull-cri's lifetime.
        Ok(ForkResult::Parent { .. }) => return ExitCode::SUCCESS,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&Report::Failed {
                message: format!("fork: {e}"),
            });
            return ExitCode::from(1);
        }
    }
    match prepare().and_then(|signals| create(&args).map(|c| (signals, c))) {
        Ok((signals, created)) => {
            report(&Report::Created {
                pid: created.init.as_raw(),
                monitor: std::process::id() as i32,
            });
            release_stdout();
            relay::run(&args, signals, created)
        }
        Err(e) => {
            report(&Report::Failed { message: chain(&e) });
            ExitCode::from(1)
        }
    }
}

/// The container's state handed to the relay loop.
pub(crate) struct Created {
    pub init: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub log: LogWriter,
    pub attach: attach::Attach,
}

/// Detaches from hull-cri's session, becomes the subreaper of the container's processes
/// and blocks the signals the relay loop reads from a signalfd.
fn prepare() -> Result<SigSet, MonitorError> {
    nix::unistd::setsid().map_err(|source| MonitorError::Sys {
        op: "setsid",
        source,
    })?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| MonitorError::Sys {
        op: "prctl(PR_SET_CHILD_SUBREAPER)",
        source,
    })?;
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set.thread_block().map_err(|source| MonitorError::Sys {
        op: "blocking signals",
        source,
    })?;
    Ok(set)
}

/// Runs `<runtime> create` with the container's stdio on pipes held here.
fn create(args: &Args) -> Result<Created, MonitorError> {
    let log = LogWriter::open(&args.log).map_err(MonitorError::Log)?;
    // The sockets are bound by relative names in the container's directory: that keeps
    // clear of the 108-byte limit of unix socket paths whatever the state root is.
    let dir = args.exit_file.parent().unwrap_or(Path::new("/"));
    std::env::set_current_dir(dir).map_err(|source| MonitorError::Io {
        op: "entering",
        path: dir.to_path_buf(),
        source,
    })?;
    let listener = attach::bind()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_r, stdin_w) = match args.stdin && !args.tty {
        true => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        false => (None, None),
    };
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.runtime_root)
        .arg("--log")
        .arg(&args.runtime_log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&args.pid_file)
        .stdin(stdin_r.map_or_else(Stdio::null, Stdio::from))
        .stdout(out_w)
        .stderr(err_w);
    let console = match args.tty {
        true => {
            cmd.args(["--console-socket", console::ConsoleSocket::arg()]);
            Some(console::ConsoleSocket::bind(dir)?)
        }
        false => None,
    };
    let mut child = cmd
        .arg(&args.id)
        .spawn()
        .map_err(|source| MonitorError::Spawn {
            runtime: args.runtime.clone(),
            source,
        })?;
    // The read end of the stdin pipe is the container's alone now.
    drop(cmd);
    let (master, status) = match console {
        Some(c) => c.receive(&mut child)?,
        None => {
            let status = child.wait().map_err(|source| MonitorError::Spawn {
                runtime: args.runtime.clone(),
                source,
            })?;
            (None, status)
        }
    };
    if !status.success() {
        return Err(MonitorError::Create {
            runtime: args.runtime.clone(),
            message: runtime_error(&args.runtime_log)
                .unwrap_or_else(|| format!("exited with {status}")),
        });
    }
    if args.tty && master.is_none() {
        return Err(MonitorError::Create {
            runtime: args.runtime.clone(),
            message: "the runtime sent no terminal over the console socket".into(),
        });
    }
    let init = read_pid(&args.pid_file)?;
    let attach = attach_server(args, listener, stdin_w, master.as_ref())?;
    Ok(Created {
        init,
        // With a terminal the container writes to the pty; the pipes carry only what the
        // runtime itself printed.
        stdout: master.unwrap_or(out_r),
        stderr: err_r,
        log,
        attach,
    })
}

/// The attach server over the container's stdin (the pipe, or the terminal's master).
fn attach_server(
    args: &Args,
    listener: std::os::unix::net::UnixListener,
    stdin_pipe: Option<OwnedFd>,
    master: Option<&OwnedFd>,
) -> Result<attach::Attach, MonitorError> {
    let dup = |fd: &OwnedFd| {
        fd.try_clone().map_err(|source| MonitorError::Io {
            op: "duplicating the terminal of",
            path: args.bundle.clone(),
            source,
        })
    };
    let master_dup = master.map(dup).transpose()?;
    let stdin_fd = match (args.stdin, stdin_pipe, master) {
        (false, _, _) => None,
        (true, Some(w), _) => Some(w),
        (true, None, Some(m)) => Some(dup(m)?),
        (true, None, None) => None,
    };
    let stdin = match stdin_fd {
        Some(fd) => {
            attach::set_nonblocking(std::os::fd::AsFd::as_fd(&fd))?;
            Some(attach::Stdin {
                fd,
                tty: args.tty,
                once: args.stdin_once,
            })
        }
        None => None,
    };
    Ok(attach::Attach::new(listener, stdin, master_dup))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), MonitorError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| MonitorError::Sys {
        op: "pipe2",
        source,
    })
}

fn read_pid(path: &Path) -> Result<Pid, MonitorError> {
    let text = std::fs::read_to_string(path).map_err(|source| MonitorError::Io {
        op: "reading pid file",
        path: path.to_path_buf(),
        source,
    })?;
    match text.trim().parse::<i32>() {
        Ok(p) if p > 0 => Ok(Pid::from_raw(p)),
        _ => Err(MonitorError::PidFile {
            path: path.to_path_buf(),
            text,
        }),
    }
}

/// The last error message in a runc-style JSON log (`{"level":"error","msg":…}`).
pub fn runtime_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(str::to_owned))?
    })
}

fn report(r: &Report) {
    let mut line = serde_json::to_string(r).unwrap_or_else(|_| String::from("{}"));
    line.push('\n');
    // Nobody to tell if hull-cri has gone away; the container record then says why.
    let _ = std::io::stdout().write_all(line.as_bytes());
    let _ = std::io::stdout().flush();
}

/// Points stdout at /dev/null so hull-cri's read of the report pipe reaches EOF.
fn release_stdout() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // A failure leaves hull-cri waiting for EOF until the container exits; nothing
        // better can be done without a stdout to report on.
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// An error and its causes, joined by ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
