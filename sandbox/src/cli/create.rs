//! `create`: reads the bundle, starts the sandbox (gofer + Sentry) and leaves it waiting
//! for `start`.
//!
//! Process model: the CLI forks an intermediate that joins or creates the namespaces and
//! the cgroup, then forks the Sentry (pid 1 of a new pid namespace) and exits. The Sentry
//! forks the gofer, confines itself (an empty root, then its seccomp allowlist), loads the
//! first program and reports over a pipe; `create` returns once it has.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::state::{self, Record, StateError};
use crate::sentry::InitSpec;

/// Errors of `create`.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// State directory trouble.
    #[error(transparent)]
    State(#[from] StateError),
    /// config.json is unreadable or invalid.
    #[error("reading {path}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The config asks for something hull-sandbox does not do.
    #[error("{0} is not supported by hull-sandbox")]
    Unsupported(String),
    /// The config is missing something required.
    #[error("config.json: {0}")]
    Invalid(String),
    /// A host call failed.
    #[error("{what}")]
    Sys {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: nix::errno::Errno,
    },
    /// The cgroup could not be set up.
    #[error("cgroup")]
    Cgroup(#[from] hull::cgroups::CgroupError),
    /// The sandbox failed to start: its own message.
    #[error("sandbox failed to start: {0}")]
    Sandbox(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> CreateError {
    let what = what.into();
    move |source| CreateError::Sys { what, source }
}

/// What `create` was asked.
pub struct CreateOpts<'a> {
    /// `--root`.
    pub root: &'a Path,
    /// The container id.
    pub id: &'a str,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// `--pid-file`.
    pub pid_file: Option<&'a Path>,
    /// `--console-socket`.
    pub console_socket: Option<&'a Path>,
}

/// Namespaces to join: (type, namespace file).
pub type Joins = Vec<(CloneFlags, std::sync::Arc<OwnedFd>)>;

/// Everything the sandbox process needs, prepared before forking.
#[derive(Clone)]
pub struct Plan {
    /// The first process.
    pub init: InitSpec,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// Namespaces to join: (type, file).
    pub join: Joins,
    /// Namespaces to create.
    pub unshare: CloneFlags,
    /// The state directory.
    pub dir: PathBuf,
}

/// Runs `create`; returns the Sentry's host pid.
pub fn create(o: &CreateOpts) -> Result<i32, CreateError> {
    // hull's own check of the id and creation of its state directory.
    let dir = hull::state::create_dir(o.root, o.id).map_err(StateError::Hull)?;
    let mut cgroup = None;
    let r = create_in(o, &dir, &mut cgroup);
    if r.is_err() {
        if let Some(cg) = cgroup {
            let _ = hull::cgroups::Cgroup::open(&cg, o.id).and_then(|c| c.remove());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

fn create_in(
    o: &CreateOpts,
    dir: &Path,
    cgroup: &mut Option<hull::state::CgroupRecord>,
) -> Result<i32, CreateError> {
    let bundle = std::fs::canonicalize(o.bundle).map_err(|source| StateError::Io {
        what: "resolving bundle",
        path: o.bundle.to_path_buf(),
        source,
    })?;
    let o = &CreateOpts {
        bundle: &bundle,
        ..*o
    };
    let cfg = o.bundle.join("config.json");
    let spec = Spec::load(&cfg).map_err(|source| CreateError::Spec {
        path: cfg.clone(),
        source,
    })?;
    let plan = plan(&spec, o.bundle, dir)?;
    if o.console_socket.is_some() {
        return Err(CreateError::Unsupported(
            "--console-socket (a terminal)".into(),
        ));
    }
    nix::unistd::mkfifo(
        &state::fifo(dir),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .map_err(sys(format!("creating {}", state::fifo(dir).display())))?;
    let linux = spec.linux().as_ref();
    let cg_path =
        hull::cgroups::default_path(linux.and_then(|l| l.cgroups_path().as_deref()), o.id, false);
    let rec = hull::state::CgroupRecord {
        path: cg_path,
        systemd: false,
        disabled: false,
    };
    let cg = hull::cgroups::Cgroup::open(&rec, o.id)?;
    *cgroup = Some(rec.clone());
    let mut record = Record {
        id: o.id.to_string(),
        pid: 0,
        bundle: o.bundle.to_path_buf(),
        rootfs: plan.rootfs.clone(),
        created: hull::timefmt::rfc3339_nano(std::time::SystemTime::now()),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: Some(rec),
    };
    state::save(o.root, &record)?;
    let pid = spawn(&plan, &cg)?;
    record.pid = pid;
    if let Err(e) = cg.setup(linux.and_then(|l| l.resources().as_ref()), pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(e.into());
    }
    state::save(o.root, &record)?;
    if let Some(p) = o.pid_file {
        std::fs::write(p, pid.to_string()).map_err(|source| StateError::Io {
            what: "writing",
            path: p.to_path_buf(),
            source,
        })?;
    }
    Ok(pid)
}

/// Checks the config and works out the sandbox's namespaces and first process.
pub fn plan(spec: &Spec, bundle: &Path, dir: &Path) -> Result<Plan, CreateError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| CreateError::Invalid("process is required".into()))?;
    if process.terminal().unwrap_or(false) {
        return Err(CreateError::Unsupported("process.terminal".into()));
    }
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(CreateError::Invalid(
            "process.args must not be empty".into(),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| CreateError::Invalid("root is required".into()))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(CreateError::Invalid(format!(
            "root.path {} is not a directory",
            rootfs.display()
        )));
    }
    let (join, unshare) = namespaces(spec)?;
    let binds = binds(spec)?;
    let user = process.user();
    Ok(Plan {
        init: InitSpec {
            argv: args,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().display().to_string(),
            uid: user.uid(),
            gid: user.gid(),
            hostname: spec.hostname().clone().unwrap_or_default(),
            binds,
        },
        rootfs,
        join,
        unshare,
        dir: dir.to_path_buf(),
    })
}

/// Mount types whose content the Sentry provides itself: /proc and /dev are synthesized,
/// and every writable path is in its in-memory upper layer, as tmpfs would be.
const SERVED: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm",
];

/// The bind mounts of the config, checked; other mount types must be ones the Sentry
/// serves itself.
fn binds(spec: &Spec) -> Result<Vec<(String, PathBuf)>, CreateError> {
    let mut out = Vec::new();
    for (i, m) in spec.mounts().clone().unwrap_or_default().iter().enumerate() {
        let opts = m.options().clone().unwrap_or_default();
        let bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        let dest = m.destination().display().to_string();
        if !dest.starts_with('/') {
            return Err(CreateError::Invalid(format!(
                "mounts[{i}].destination {dest:?} is not absolute"
            )));
        }
        if bind {
            let src = m.source().clone().ok_or_else(|| {
                CreateError::Invalid(format!("mounts[{i}] ({dest}): bind mount without source"))
            })?;
            if !src.exists() {
                return Err(CreateError::Invalid(format!(
                    "mounts[{i}] ({dest}): source {} does not exist",
                    src.display()
                )));
            }
            let dest = crate::sentry::vfs::normalize("/", dest.as_bytes())
                .map_err(|e| CreateError::Invalid(format!("mounts[{i}].destination: {e}")))?;
            out.push((dest, src));
            continue;
        }
        let typ = m.typ().clone().unwrap_or_default();
        if !SERVED.contains(&typ.as_str()) {
            return Err(CreateError::Unsupported(format!(
                "mounts[{i}] ({dest}) of type {typ:?}"
            )));
        }
    }
    Ok(out)
}

fn namespaces(spec: &Spec) -> Result<(Joins, CloneFlags), CreateError> {
    // The Sentry always gets its own mount, pid, uts and ipc namespaces: the workload never
    // sees them (it sees the Sentry's), so joining a pod's is only for the host's view.
    let mut unshare = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    let mut join = Vec::new();
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in list {
        let flag = match ns.typ() {
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Cgroup => continue,
            LinuxNamespaceType::User => {
                return Err(CreateError::Unsupported("linux.namespaces: user".into()))
            }
            LinuxNamespaceType::Time => {
                return Err(CreateError::Unsupported("linux.namespaces: time".into()))
            }
        };
        if let Some(p) = ns.path() {
            if flag == CloneFlags::CLONE_NEWNS {
                return Err(CreateError::Unsupported(
                    "joining a mount namespace by path".into(),
                ));
            }
            let fd = nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(sys(format!("opening namespace {}", p.display())))?;
            join.push((flag, std::sync::Arc::new(crate::sys::own_fd(fd))));
            unshare.remove(flag);
        }
    }
    Ok((join, unshare))
}

/// Forks the intermediate, which forks the Sentry; returns the Sentry's host pid once the
/// Sentry has reported that init is loaded.
fn spawn(plan: &Plan, cg: &hull::cgroups::Cgroup) -> Result<i32, CreateError> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("sync pipe"))?;
    match crate::sys::fork_process().map_err(sys("forking the sandbox"))? {
        ForkResult::Child => {
            drop(rd);
            let code = match intermediate(plan, cg, &wr) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(std::fs::File::from(wr), "err {}", chain(&e));
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut lines = BufReader::new(std::fs::File::from(rd)).lines();
            let _ = nix::sys::wait::waitpid(child, None);
            // The intermediate's "pid" and the Sentry's "ok" may come in either order.
            let (mut pid, mut ok) = (0, false);
            for line in lines.by_ref() {
                let line = line.unwrap_or_default();
                if let Some(p) = line.strip_prefix("pid ") {
                    pid = p.trim().parse().unwrap_or(0);
                } else if let Some(e) = line.strip_prefix("err ") {
                    return Err(CreateError::Sandbox(e.to_string()));
                } else if line == "ok" {
                    ok = true;
                }
                if ok && pid > 0 {
                    return Ok(pid);
                }
            }
            Err(CreateError::Sandbox(
                "the sandbox exited before reporting".into(),
            ))
        }
    }
}

/// The intermediate: namespaces and cgroup, then the Sentry.
fn intermediate(
    plan: &Plan,
    cg: &hull::cgroups::Cgroup,
    sync: &OwnedFd,
) -> Result<(), CreateError> {
    nix::unistd::setsid().map_err(sys("setsid"))?;
    cg.add(nix::unistd::getpid().as_raw())?;
    for (flag, fd) in &plan.join {
        nix::sched::setns(fd.as_ref(), *flag)
            .map_err(sys(format!("joining namespace {flag:?}")))?;
    }
    nix::sched::unshare(plan.unshare).map_err(sys("unsharing namespaces"))?;
    match crate::sys::fork_process().map_err(sys("forking the sentry"))? {
        ForkResult::Child => {
            let code = super::sentry_main::main(plan, sync);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            let mut f = std::fs::File::from(sync.try_clone().map_err(|e| CreateError::Sys {
                what: "sync pipe".into(),
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?);
            let _ = writeln!(f, "pid {child}");
            Ok(())
        }
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
