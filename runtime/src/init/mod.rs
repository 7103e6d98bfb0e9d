//! The container's init: everything that runs in the cloned child between clone3 and
//! execve. It is a straight line of steps; the first failure is sent to the parent over
//! the sync channel as (errno, message) and the child exits.

mod console;
mod credentials;
pub mod exec;
pub mod namespaces;
mod program;
mod rootfs;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::hooks::Phase;
use crate::report::chain;
use crate::state::Status;
use crate::sync::{Channel, Msg, SyncError};
use crate::sys;
use namespaces::NsPlan;

/// Everything the init needs, prepared by the parent before clone3.
pub struct InitConfig<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub ns: &'a NsPlan,
    pub joins: &'a [(LinuxNamespaceType, PathBuf, File)],
    pub channel: &'a Channel,
    pub console: Option<&'a OwnedFd>,
    /// The exec fifo (`create`); `None` when the parent sends Start itself (`run`).
    pub fifo: Option<&'a Path>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub id: &'a str,
    pub confinement: Confinement<'a>,
}

/// A config's Landlock ruleset and seccomp filter, parsed and compiled by the parent
/// before anything is cloned, so a bad one fails early with its own error.
pub struct Restrictions {
    pub landlock: Option<crate::landlock::Ruleset>,
    pub seccomp: Option<crate::seccomp::Filter>,
}

/// Why a config's restrictions could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RestrictionError {
    #[error(transparent)]
    Landlock(#[from] crate::landlock::LandlockError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

impl Restrictions {
    /// Parses `run.oci.hull.landlock` and compiles `linux.seccomp`.
    pub fn of(spec: &Spec) -> Result<Self, RestrictionError> {
        let landlock = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::landlock::ANNOTATION))
            .map(|text| crate::landlock::parse(text))
            .transpose()?;
        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(crate::seccomp::compile)
            .transpose()?;
        Ok(Self { landlock, seccomp })
    }

    /// The borrowed form the child works with.
    pub fn confinement(&self) -> Confinement<'_> {
        Confinement {
            landlock: self.landlock.as_ref(),
            seccomp: self.seccomp.as_ref(),
        }
    }
}

/// Restrictions every process entering the container gets, prepared by the parent.
#[derive(Clone, Copy, Default)]
pub struct Confinement<'a> {
    /// The parsed `run.oci.hull.landlock` annotation.
    pub landlock: Option<&'a crate::landlock::Ruleset>,
    /// The compiled `linux.seccomp` filter.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
}

/// A failed init step.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("lost the parent before setup")]
    Aborted,
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Ns(#[from] namespaces::NsError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Cred(#[from] credentials::CredError),
    #[error(transparent)]
    Program(#[from] program::ProgramError),
    #[error("cannot become root in the user namespace")]
    UserRoot(#[source] io::Error),
    #[error("cannot write linux.timeOffsets")]
    TimeOffsets(#[source] io::Error),
    #[error("cannot set the hostname or domainname")]
    Hostname(#[source] io::Error),
    #[error("cannot open the exec fifo {path}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    AppArmor(#[from] crate::apparmor::AppArmorError),
    #[error(transparent)]
    Landlock(#[from] crate::landlock::LandlockError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("cannot open /proc")]
    Proc(#[source] io::Error),
    #[error("process.terminal is true but no --console-socket was given")]
    NoConsoleSocket,
    #[error("cannot join a new session keyring")]
    Keyring(#[source] io::Error),
}

impl InitError {
    /// The errno at the root of the error, or EINVAL.
    fn errno(&self) -> i32 {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if let Some(n) = io.raw_os_error() {
                    return n;
                }
            }
            cur = e.source();
        }
        libc::EINVAL
    }
}

/// Runs the init to its execve. Never returns.
pub fn run(cfg: &InitConfig) -> ! {
    let err = match setup(cfg) {
        Ok(ready) => match exec(cfg, ready) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        Err(e) => e,
    };
    let msg = match &err {
        InitError::Hook(_) => Msg::HookFailed {
            message: chain(&err),
        },
        _ => Msg::Error {
            errno: err.errno(),
            message: chain(&err),
        },
    };
    if cfg.channel.send(&msg).is_err() {
        // The parent is gone (a `create` whose `start` came later): stderr is all we have.
        eprintln!("hull init: {}", chain(&err));
    }
    sys::exit_now(
        if matches!(err, InitError::Program(program::ProgramError::Exec { .. })) {
            127
        } else {
            1
        },
    )
}

/// What `setup` leaves for the final step.
struct Ready {
    fifo: Option<File>,
    program: program::Program,
    /// The seccomp filter still has to be installed, right before execve.
    seccomp_late: bool,
}

fn setup(cfg: &InitConfig) -> Result<Ready, InitError> {
    // Until the parent has our pid in its records, dying with it is the only clean exit.
    sys::set_parent_death_signal(libc::SIGKILL).map_err(InitError::UserRoot)?;
    sys::set_umask(0);
    program::prepare_fds(cfg.preserve_fds)?;
    // Opened while our fsuid is still the host's root, which owns the state directory;
    // in a new user namespace we are about to become the container's root instead.
    let fifo = match cfg.fifo {
        Some(path) => Some(open_fifo(path)?),
        None => None,
    };
    match cfg.channel.recv()? {
        Some(Msg::Go) => {}
        _ => return Err(InitError::Aborted),
    }
    let in_user_ns = enter_namespaces(cfg)?;
    let process = cfg
        .spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    let plan = rootfs::RootfsPlan {
        rootfs: cfg.rootfs,
        bundle: cfg.bundle,
        no_pivot: cfg.no_pivot,
        in_user_ns,
        new_cgroup_ns: cfg.ns.new_cgroup,
        cwd: process.cwd(),
        host_mount_ns: cfg.ns.host_mount,
        terminal: process.terminal().unwrap_or(false),
    };
    let root = rootfs::prepare(cfg.spec, &plan)?;
    creation_hooks(cfg)?;
    rootfs::enter(cfg.spec, &plan, root)?;
    if process.terminal().unwrap_or(false) {
        console::setup(cfg.console.ok_or(InitError::NoConsoleSocket)?, true)?;
    }
    let (program, seccomp_late) = confine(process, cfg.confinement, cfg.channel)?;
    Ok(Ready {
        fifo,
        program,
        seccomp_late,
    })
}

/// Joins and creates the namespaces the parent could not, and names the container.
/// Returns whether the init is in a user namespace.
fn enter_namespaces(cfg: &InitConfig) -> Result<bool, InitError> {
    namespaces::join(cfg.joins)?;
    let joined_user = cfg
        .joins
        .iter()
        .any(|(t, _, _)| *t == LinuxNamespaceType::User);
    if cfg.ns.new_user || joined_user {
        let root = 0.into();
        nix::unistd::setresgid(root, root, root).map_err(|e| InitError::UserRoot(e.into()))?;
        let root = 0.into();
        nix::unistd::setresuid(root, root, root).map_err(|e| InitError::UserRoot(e.into()))?;
    }
    namespaces::unshare_late(cfg.ns)?;
    if cfg.ns.new_time {
        write_time_offsets(cfg.spec)?;
    }
    if !cfg.no_new_keyring {
        sys::join_session_keyring(cfg.id).map_err(InitError::Keyring)?;
    }
    set_names(cfg.spec)?;
    Ok(cfg.ns.new_user || joined_user)
}

/// prestart and createRuntime hooks run in the parent (asked for with `Hooks`), then
/// createContainer hooks here, in the container's namespaces but before pivot_root, as
/// runtime-spec orders them.
fn creation_hooks(cfg: &InitConfig) -> Result<(), InitError> {
    let Some(h) = cfg.spec.hooks() else {
        return Ok(());
    };
    let parent_side = [Phase::Prestart, Phase::CreateRuntime];
    if parent_side.iter().any(|p| !p.select(h).is_empty()) {
        cfg.channel.send(&Msg::Hooks)?;
        match cfg.channel.recv()? {
            Some(Msg::Go) => {}
            _ => return Err(InitError::Aborted),
        }
    }
    run_own_hooks(cfg, Phase::CreateContainer, Status::Creating)
}

/// Runs hooks of `phase` from the init itself, with our own (namespaced) pid.
fn run_own_hooks(cfg: &InitConfig, phase: Phase, status: Status) -> Result<(), InitError> {
    let Some(h) = cfg.spec.hooks() else {
        return Ok(());
    };
    let list = phase.select(h);
    if list.is_empty() {
        return Ok(());
    }
    let empty = std::collections::HashMap::new();
    let state = crate::hooks::State {
        oci_version: cfg.spec.version(),
        id: cfg.id,
        status,
        pid: std::process::id() as i32,
        bundle: cfg.bundle,
        annotations: cfg.spec.annotations().as_ref().unwrap_or(&empty),
    };
    Ok(crate::hooks::run(phase, list, &state.to_json())?)
}

/// Limits, AppArmor, Landlock, seccomp, identity and capabilities, in runc's order.
/// Returns the resolved program, and whether the seccomp filter is left to install right
/// before execve (the latest point, as runc does when no_new_privs is set).
fn confine(
    process: &oci_spec::runtime::Process,
    conf: Confinement,
    channel: &Channel,
) -> Result<(program::Program, bool), InitError> {
    credentials::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let proc_dir = sys::open_path(Path::new("/proc"), libc::O_PATH | libc::O_DIRECTORY)
            .map_err(InitError::Proc)?;
        crate::apparmor::apply_exec_profile(std::os::fd::AsFd::as_fd(&proc_dir), profile, true)?;
    }
    // Landlock needs CAP_SYS_ADMIN or no_new_privs; enforced while we still hold the
    // former, it works whatever noNewPrivileges says.
    if let Some(ruleset) = conf.landlock {
        ruleset.enforce()?;
    }
    // The cwd and the executable are looked up before any seccomp filter exists: a
    // profile may deny the calls that takes (openat2, statx).
    let cwd_retry = program::change_cwd(process)?;
    let program = program::Program::resolve(process)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let Some(filter) = conf.seccomp.filter(|_| !nnp) {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we
        // still have it, as runc does.
        install_filter(filter, channel)?;
    }
    let caps = process.capabilities().as_ref();
    credentials::drop_bounding(caps)?;
    credentials::set_user(process)?;
    if cwd_retry {
        program::change_cwd_again(process)?;
    }
    credentials::set_caps(caps)?;
    credentials::finish(process)?;
    let mut late = false;
    if let Some(filter) = conf.seccomp.filter(|_| nnp) {
        // A notify listener must reach the parent before Ready; otherwise wait until
        // the very end.
        if filter.uses_notify() {
            install_filter(filter, channel)?;
        } else {
            late = true;
        }
    }
    Ok((program, late))
}

/// Loads the filter; a notify listener fd goes to the parent, which passes it on to
/// `linux.seccomp.listenerPath`.
fn install_filter(filter: &crate::seccomp::Filter, channel: &Channel) -> Result<(), InitError> {
    if let Some(fd) = filter.install()? {
        channel.send_fd(&Msg::SeccompFd, std::os::fd::AsFd::as_fd(&fd))?;
    }
    Ok(())
}

fn exec(cfg: &InitConfig, ready: Ready) -> Result<std::convert::Infallible, InitError> {
    // From here on the parent may exit (`create` returns); we must not die with it.
    sys::set_parent_death_signal(0).map_err(InitError::UserRoot)?;
    cfg.channel.send(&Msg::Ready)?;
    match ready.fifo {
        Some(mut fifo) => {
            let mut byte = [0u8; 1];
            fifo.read_exact(&mut byte)
                .map_err(|source| InitError::Fifo {
                    path: cfg.fifo.unwrap_or(Path::new("")).to_owned(),
                    source,
                })?;
        }
        None => match cfg.channel.recv()? {
            Some(Msg::Start) => {}
            _ => return Err(InitError::Aborted),
        },
    }
    run_own_hooks(cfg, Phase::StartContainer, Status::Created)?;
    if ready.seccomp_late {
        if let Some(f) = cfg.confinement.seccomp {
            f.install()?;
        }
    }
    Ok(ready.program.exec()?)
}

/// The exec fifo is opened read-write so the open never blocks; `hull start` writes one
/// byte into it, which ends our read.
fn open_fifo(path: &Path) -> Result<File, InitError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| InitError::Fifo {
            path: path.to_owned(),
            source,
        })
}

fn set_names(spec: &Spec) -> Result<(), InitError> {
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(|e| InitError::Hostname(e.into()))?;
    }
    if let Some(d) = spec.domainname() {
        sys::set_domainname(d).map_err(InitError::Hostname)?;
    }
    Ok(())
}

fn write_time_offsets(spec: &Spec) -> Result<(), InitError> {
    let Some(offsets) = spec.linux().as_ref().and_then(|l| l.time_offsets().clone()) else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        let secs = off.secs().unwrap_or(0);
        let nanos = off.nanosecs().unwrap_or(0);
        text.push_str(&format!("{clock} {secs} {nanos}\n"));
    }
    std::fs::write("/proc/self/timens_offsets", text).map_err(InitError::TimeOffsets)
}
