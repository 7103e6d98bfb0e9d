//! `hull-cri-pinns`: creates a pod's namespaces and pins them with bind mounts.
//!
//! hull-cri is a multi-threaded tokio process and never unshares or forks itself; it execs
//! this single-threaded helper instead (see [`crate::podns`]). The helper:
//!
//! 1. creates `<dir>` (or takes an existing empty one), bind-mounts it onto itself and makes
//!    that mount **shared** (see below);
//! 2. unshares the requested network, IPC and UTS namespaces, sets the hostname, writes the
//!    sysctls from inside them, and bind-mounts `/proc/self/ns/{net,ipc,uts}` onto
//!    `<dir>/{net,ipc,uts}`;
//! 3. for `--pid`, unshares the PID namespace and forks the holder, PID 1 of that namespace
//!    (see [`holder`]), and pins `/proc/<holder>/ns/pid` onto `<dir>/pid`;
//! 4. prints `{"holder_pid": N}` (or `null`) and exits 0.
//!
//! Any failure undoes every step already done, in reverse, and exits 1 with the step and errno
//! on stderr. Bringing `lo` up is left to the CNI loopback plugin.
//!
//! **Mount propagation.** The pins are made in the caller's (host) mount namespace. Every mount
//! namespace created later gets a copy of them; a container drops its copy when it pivots
//! away from the host root, but a long-lived namespace (a service with a private /tmp, say)
//! would keep a network namespace alive after hull-cri unmounted its pin if the copy were
//! private. So `<dir>` is a bind mount of itself with shared propagation, as iproute2 does for
//! `/run/netns` (`ip netns add`): copies of it are peers, and the unmounts done by
//! [`crate::podns::unpin`] propagate to them. This does not depend on the propagation of the
//! host's `/` (private on some hosts, shared under systemd).

pub mod holder;
pub mod sysctl;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, sethostname, ForkResult, Pid};

use self::sysctl::{SysctlNameError, SysctlNs};

/// Command line of `hull-cri-pinns`.
#[derive(Debug, Default, clap::Parser)]
#[command(name = "hull-cri-pinns", version)]
pub struct Args {
    /// Directory receiving the pins (`net`, `ipc`, `uts`, `pid`); created if missing, must be
    /// empty if present.
    #[arg(long)]
    pub dir: PathBuf,
    /// Create a network namespace.
    #[arg(long)]
    pub net: bool,
    /// Create an IPC namespace.
    #[arg(long)]
    pub ipc: bool,
    /// Create a UTS namespace.
    #[arg(long)]
    pub uts: bool,
    /// Create a PID namespace with a holder process as its PID 1.
    #[arg(long)]
    pub pid: bool,
    /// Hostname in the new UTS namespace (needs --uts).
    #[arg(long)]
    pub hostname: Option<String>,
    /// A namespaced sysctl, `name=value`; repeatable.
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    pub sysctls: Vec<String>,
}

/// Errors of `hull-cri-pinns`; each names the step and keeps the errno as its source.
#[derive(Debug, thiserror::Error)]
pub enum PinnsError {
    /// The request is inconsistent; nothing was done.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A sysctl name is refused; nothing was done.
    #[error("invalid request")]
    SysctlName(#[source] SysctlNameError),
    /// `<dir>` exists and is not empty: pinning twice into one directory is refused.
    #[error("pin directory {0} exists and is not empty")]
    DirNotEmpty(PathBuf),
    /// A filesystem step failed.
    #[error("{step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{step}")]
    Sys {
        step: String,
        #[source]
        source: Errno,
    },
    /// Writing a sysctl in the new namespace failed.
    #[error("sysctl {name}: write {path}")]
    Sysctl {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The holder failed while setting itself up.
    #[error("pid namespace holder: {step}")]
    Holder {
        step: &'static str,
        #[source]
        source: Errno,
    },
}

fn sys(step: impl Into<String>) -> impl FnOnce(Errno) -> PinnsError {
    let step = step.into();
    move |source| PinnsError::Sys { step, source }
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PinnsError + 'a {
    move |source| PinnsError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// A sysctl to write: name, file and value.
struct Sysctl {
    name: String,
    path: PathBuf,
    value: String,
}

/// Checks the request before anything is changed.
fn validate(args: &Args) -> Result<Vec<Sysctl>, PinnsError> {
    if !(args.net || args.ipc || args.uts || args.pid) {
        return Err(PinnsError::Invalid(
            "no namespace requested (--net, --ipc, --uts, --pid)".into(),
        ));
    }
    if let Some(h) = &args.hostname {
        if !args.uts {
            return Err(PinnsError::Invalid("--hostname needs --uts".into()));
        }
        if h.is_empty() || h.len() > 64 || h.contains('\0') {
            return Err(PinnsError::Invalid(format!(
                "hostname {h:?}: must be 1 to 64 bytes without NUL"
            )));
        }
    }
    let mut out = Vec::new();
    for kv in &args.sysctls {
        let (name, value) = kv
            .split_once('=')
            .ok_or_else(|| PinnsError::Invalid(format!("sysctl {kv:?}: expected name=value")))?;
        let (ns, path) = sysctl::classify(name).map_err(PinnsError::SysctlName)?;
        let created = match ns {
            SysctlNs::Net => args.net,
            SysctlNs::Ipc => args.ipc,
        };
        if !created {
            return Err(PinnsError::Invalid(format!(
                "sysctl {name}: its namespace is not being created (needs {})",
                ns.flag()
            )));
        }
        out.push(Sysctl {
            name: name.to_owned(),
            path,
            value: value.to_owned(),
        });
    }
    Ok(out)
}

/// One step to undo if a later one fails.
enum Undo {
    RemoveDir(PathBuf),
    RemoveFile(PathBuf),
    Unmount(PathBuf),
    KillHolder(Pid),
}

/// Undoes `undo` in reverse. Errors are ignored: this runs only after a failure, which is the
/// error reported, and each step is independent of the others' success.
fn rollback(undo: Vec<Undo>) {
    for step in undo.into_iter().rev() {
        let _ = match step {
            Undo::Unmount(p) => umount2(&p, MntFlags::MNT_DETACH).map_err(drop),
            Undo::RemoveFile(p) => fs::remove_file(p).map_err(drop),
            Undo::RemoveDir(p) => fs::remove_dir(p).map_err(drop),
            Undo::KillHolder(pid) => kill(pid, Signal::SIGKILL)
                .and_then(|()| waitpid(pid, None).map(drop))
                .map_err(drop),
        };
    }
}

/// Runs the helper: returns the holder's pid (host view) when `--pid` was asked.
pub fn run(args: &Args) -> Result<Option<i32>, PinnsError> {
    let sysctls = validate(args)?;
    let mut undo = Vec::new();
    let result = pin_all(args, &sysctls, &mut undo);
    if result.is_err() {
        rollback(undo);
    }
    result
}

fn pin_all(
    args: &Args,
    sysctls: &[Sysctl],
    undo: &mut Vec<Undo>,
) -> Result<Option<i32>, PinnsError> {
    prepare_dir(&args.dir, undo)?;
    let wanted = [
        (args.net, CloneFlags::CLONE_NEWNET, "net"),
        (args.ipc, CloneFlags::CLONE_NEWIPC, "ipc"),
        (args.uts, CloneFlags::CLONE_NEWUTS, "uts"),
    ];
    let mut flags = CloneFlags::empty();
    for (_, flag, name) in wanted.iter().filter(|w| w.0) {
        flags |= *flag;
        create_pin_file(&args.dir.join(name), undo)?;
    }
    if !flags.is_empty() {
        unshare(flags).map_err(sys("unshare net/ipc/uts namespaces"))?;
    }
    if let Some(h) = &args.hostname {
        sethostname(h).map_err(sys(format!("sethostname {h}")))?;
    }
    for s in sysctls {
        sysctl::write(&s.path, &s.value).map_err(|source| PinnsError::Sysctl {
            name: s.name.clone(),
            path: s.path.clone(),
            source,
        })?;
    }
    for (_, _, name) in wanted.iter().filter(|w| w.0) {
        bind_pin(
            &PathBuf::from(format!("/proc/self/ns/{name}")),
            &args.dir.join(name),
            undo,
        )?;
    }
    if !args.pid {
        return Ok(None);
    }
    let pin = args.dir.join("pid");
    create_pin_file(&pin, undo)?;
    let holder = start_holder(undo)?;
    bind_pin(&PathBuf::from(format!("/proc/{holder}/ns/pid")), &pin, undo)?;
    Ok(Some(holder.as_raw()))
}

/// Creates `dir` (or checks an existing one is empty) and makes it a shared bind mount of
/// itself (see the module documentation).
fn prepare_dir(dir: &Path, undo: &mut Vec<Undo>) -> Result<(), PinnsError> {
    match fs::create_dir(dir) {
        Ok(()) => undo.push(Undo::RemoveDir(dir.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mut entries = fs::read_dir(dir).map_err(io_err("read", dir))?;
            if entries.next().is_some() {
                return Err(PinnsError::DirNotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) => return Err(io_err("create directory", dir)(e)),
    }
    let none: Option<&str> = None;
    mount(Some(dir), dir, none, MsFlags::MS_BIND, none)
        .map_err(sys(format!("bind-mount {} onto itself", dir.display())))?;
    undo.push(Undo::Unmount(dir.to_path_buf()));
    mount(none, dir, none, MsFlags::MS_SHARED, none)
        .map_err(sys(format!("make {} shared", dir.display())))
}

fn create_pin_file(path: &Path, undo: &mut Vec<Undo>) -> Result<(), PinnsError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create pin file", path))?;
    undo.push(Undo::RemoveFile(path.to_path_buf()));
    Ok(())
}

fn bind_pin(ns: &Path, pin: &Path, undo: &mut Vec<Undo>) -> Result<(), PinnsError> {
    let none: Option<&str> = None;
    mount(Some(ns), pin, none, MsFlags::MS_BIND, none).map_err(sys(format!(
        "bind-mount {} onto {}",
        ns.display(),
        pin.display()
    )))?;
    undo.push(Undo::Unmount(pin.to_path_buf()));
    Ok(())
}

/// Unshares the PID namespace and forks the holder into it; returns once the holder reports
/// that it is set up.
fn start_holder(undo: &mut Vec<Undo>) -> Result<Pid, PinnsError> {
    unshare(CloneFlags::CLONE_NEWPID).map_err(sys("unshare pid namespace"))?;
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // Blocked before the fork so the holder never runs with SIGTERM at its default action.
    let old = holder::blocked_set()
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(sys("block signals"))?;
    let forked = crate::sys::fork_single_threaded();
    if let Ok(ForkResult::Child) = forked {
        drop(rd);
        holder::run(wr);
    }
    old.thread_set_mask().map_err(sys("restore signal mask"))?;
    let child = match forked {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => unreachable!("the child never returns from holder::run"),
        Err(e) => {
            return Err(PinnsError::Sys {
                step: "fork the pid namespace holder".into(),
                source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })
        }
    };
    undo.push(Undo::KillHolder(child));
    drop(wr);
    wait_ready(rd)?;
    Ok(child)
}

/// Reads the holder's 5-byte status from the readiness pipe.
fn wait_ready(rd: OwnedFd) -> Result<(), PinnsError> {
    let mut buf = Vec::with_capacity(5);
    File::from(rd)
        .read_to_end(&mut buf)
        .map_err(|e| PinnsError::Holder {
            step: "report readiness",
            source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
    let [step, e0, e1, e2, e3] = buf[..] else {
        return Err(PinnsError::Holder {
            step: "report readiness (it exited)",
            source: Errno::UnknownErrno,
        });
    };
    match holder::Step::from_byte(step) {
        Some(holder::Step::Ready) => Ok(()),
        s => Err(PinnsError::Holder {
            step: s.map_or("unknown step", holder::Step::describe),
            source: Errno::from_raw(i32::from_le_bytes([e0, e1, e2, e3])),
        }),
    }
}

/// The JSON line printed on success.
pub fn success_line(holder_pid: Option<i32>) -> String {
    serde_json::json!({ "holder_pid": holder_pid }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut Args)) -> Args {
        let mut a = Args {
            dir: "/nonexistent/pins".into(),
            ..Args::default()
        };
        f(&mut a);
        a
    }

    #[test]
    fn validation_refuses_before_any_change() {
        let msg = |a: &Args| validate(a).err().map(|e| format!("{e}: {:?}", e)).unwrap();
        assert!(msg(&args(|_| {})).contains("no namespace"));
        assert!(msg(&args(|a| {
            a.net = true;
            a.hostname = Some("x".into());
        }))
        .contains("--hostname needs --uts"));
        let m = msg(&args(|a| {
            a.ipc = true;
            a.sysctls = vec!["net.ipv4.ip_forward=1".into()];
        }));
        assert!(
            m.contains("net.ipv4.ip_forward") && m.contains("needs --net"),
            "{m}"
        );
        let m = msg(&args(|a| {
            a.net = true;
            a.sysctls = vec!["vm.swappiness=1".into()];
        }));
        assert!(m.contains("NotNamespaced"), "{m}");
        assert!(msg(&args(|a| {
            a.net = true;
            a.sysctls = vec!["net.ipv4.ip_forward".into()];
        }))
        .contains("name=value"));
    }

    #[test]
    fn valid_request() {
        let s = validate(&args(|a| {
            a.net = true;
            a.ipc = true;
            a.sysctls = vec![
                "kernel.shmmni=100".into(),
                "net.ipv4.ping_group_range=0 1".into(),
            ];
        }))
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].value, "0 1");
    }

    #[test]
    fn success_json() {
        assert_eq!(success_line(Some(7)), r#"{"holder_pid":7}"#);
        assert_eq!(success_line(None), r#"{"holder_pid":null}"#);
    }
}
