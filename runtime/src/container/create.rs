//! `create` on the parent's side.
//!
//! One clone3 puts the init straight into its new namespaces (no intermediate process).
//! The parent then writes the id maps, places the init in its cgroup, applies limits,
//! releases it with `Go` and waits for `Ready` or an error. Any failure unwinds through
//! [`Rollback`], which kills the init and removes the cgroup and state directory, so a
//! failed create leaves nothing behind.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::stat::Mode as FileMode;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::cgroups::{self, Cgroup, CgroupError};
use crate::config::{self, ConfigError};
use crate::hooks::Phase;
use crate::init::{self, namespaces, namespaces::NsError, InitConfig};
use crate::state::{self, CgroupRecord, Container, Record, StateError, Status};
use crate::sync::{self, Channel, Msg, SyncError};
use crate::{procinfo, sys, timefmt};

/// What a create was asked to do (the flags of `hull create`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    /// A config file other than `<bundle>/config.json` (crun's `--config`).
    pub config: Option<PathBuf>,
    /// crun's `--cgroup-manager=disabled`.
    pub cgroups_disabled: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// `run` in the foreground: with `process.terminal` and no console socket, hull
    /// receives the pty master itself and relays it.
    pub proxy_tty: bool,
}

/// `create` leaves the init waiting on the exec fifo; `run` keeps the channel and sends
/// Start itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Run,
}

/// Why a create failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot use bundle {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Namespaces(#[from] NsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("cannot connect to console socket {path}")]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the exec fifo {path}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot clone the container init")]
    Clone(#[source] std::io::Error),
    #[error("cannot write {path}")]
    ProcWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write pid file {path}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The init reported a failed step; the message carries the step and its cause.
    #[error("--preserve-fds {count}: file descriptor {fd} is not open")]
    PreservedFd { count: u32, fd: i32 },
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Restrictions(#[from] init::RestrictionError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("container init failed: {message}")]
    InitHook { message: String },
    #[error("container init failed: {message}")]
    Init { errno: i32, message: String },
    #[error("container init exited during setup without a report")]
    InitVanished,
}

/// A created container, as the parent holds it.
pub struct Created {
    pub container: Container,
    /// The open cgroup, so `run` can remove it without opening it again.
    pub cgroup: Cgroup,
    pub pidfd: OwnedFd,
    pub channel: Channel,
    /// Our end of the console channel when hull relays the terminal itself.
    pub console: Option<OwnedFd>,
    pub spec: Spec,
}

/// Undoes a partial create unless disarmed.
struct Rollback {
    /// The rootfs, when the init mounts on the host's tree (no mount namespace).
    host_rootfs: Option<PathBuf>,
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    pidfd: Option<OwnedFd>,
    pid: i32,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some(pidfd) = self.pidfd.take() {
            let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
        if let Some(rootfs) = self.host_rootfs.take() {
            super::destroy::unmount_rootfs(&rootfs);
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.remove() {
                tracing::warn!("rollback: {}", crate::report::chain(&e));
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The state's `owner`: the effective user's name from /etc/passwd, or `#<uid>`.
fn owner() -> String {
    let uid = nix::unistd::geteuid().as_raw();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    crate::passwd::field(&passwd, uid, 0).map_or_else(|| format!("#{uid}"), str::to_owned)
}

/// A bundle read and checked, before anything is created.
struct Loaded {
    bundle: PathBuf,
    rootfs: PathBuf,
    spec: Spec,
    plan: namespaces::NsPlan,
    restrictions: init::Restrictions,
}

fn load(opts: &CreateOpts) -> Result<Loaded, CreateError> {
    check_preserved_fds(opts.preserve_fds)?;
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|source| CreateError::Bundle {
        path: opts.bundle.clone(),
        source,
    })?;
    let spec = match &opts.config {
        Some(path) => config::load_file(path)?,
        None => config::load(&bundle)?,
    };
    let plan = namespaces::plan(&spec)?;
    let root_path = bundle.join(spec.root().as_ref().expect("validated").path());
    let rootfs = std::fs::canonicalize(&root_path).map_err(|source| CreateError::Bundle {
        path: root_path.clone(),
        source,
    })?;
    let restrictions = init::Restrictions::of(&spec)?;
    Ok(Loaded {
        bundle,
        rootfs,
        spec,
        plan,
        restrictions,
    })
}

fn new_record(opts: &CreateOpts, l: &Loaded) -> Record {
    let linux = l.spec.linux().as_ref();
    let cgroup_path = cgroups::default_path(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        &opts.id,
        opts.systemd_cgroup,
    );
    Record {
        oci_version: l.spec.version().clone(),
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: l.bundle.clone(),
        rootfs: l.rootfs.clone(),
        created: timefmt::rfc3339_nano(SystemTime::now()),
        annotations: l.spec.annotations().clone().unwrap_or_default(),
        owner: owner(),
        cgroup: CgroupRecord {
            path: cgroup_path,
            systemd: opts.systemd_cgroup,
            disabled: opts.cgroups_disabled,
        },
        own_pid_ns: l.plan.new_pid,
        creating: true,
        hooks: l.spec.hooks().clone(),
        host_mounts: l.plan.host_mount,
        exec_done_fd: None,
    }
}

/// Creates container `opts.id` under `root`.
pub fn create(root: &Path, opts: &CreateOpts, mode: Mode) -> Result<Created, CreateError> {
    let l = load(opts)?;
    let hooks = l.spec.hooks().clone();
    let (version, bundle) = (l.spec.version().clone(), l.bundle.clone());
    let annotations = l.spec.annotations().clone().unwrap_or_default();
    match create_loaded(root, opts, mode, l) {
        // runtime-spec: a failed creation hook stops the container and the lifecycle
        // continues with deletion, poststop hooks included.
        Err(e) if e.is_hook_failure() => {
            let state = crate::hooks::State {
                oci_version: &version,
                id: &opts.id,
                status: Status::Stopped,
                pid: 0,
                bundle: &bundle,
                annotations: &annotations,
            };
            let list = hooks
                .as_ref()
                .map(|h| Phase::Poststop.select(h))
                .unwrap_or_default();
            crate::hooks::run_all_warning_only(Phase::Poststop, list, &state.to_json());
            Err(e)
        }
        other => other,
    }
}

fn create_loaded(
    root: &Path,
    opts: &CreateOpts,
    mode: Mode,
    l: Loaded,
) -> Result<Created, CreateError> {
    let dir = state::create_dir(root, &opts.id)?;
    let mut rollback = Rollback {
        host_rootfs: l.plan.host_mount.then(|| l.rootfs.clone()),
        dir: Some(dir.clone()),
        cgroup: None,
        pidfd: None,
        pid: 0,
    };
    let mut container = Container {
        dir,
        record: new_record(opts, &l),
    };
    container.save()?;
    container.save_config(&l.spec)?;
    rollback.cgroup = Some(Cgroup::open(&container.record.cgroup, &opts.id)?);
    let fifo = (mode == Mode::Create).then(|| container.fifo());
    if let Some(path) = &fifo {
        nix::unistd::mkfifo(path, FileMode::from_bits_truncate(0o622)).map_err(|e| {
            CreateError::Fifo {
                path: path.clone(),
                source: e.into(),
            }
        })?;
    }
    // Held by the init until its execve; `start` waits on it (see Record::exec_done_fd).
    let exec_done = match mode {
        Mode::Create => Some(sys::cloexec_pipe().map_err(CreateError::Clone)?),
        Mode::Run => None,
    };
    container.record.exec_done_fd = exec_done.as_ref().map(|(r, _)| r.as_raw_fd());
    let (pid, channel, console) = spawn(opts, &l, fifo.as_deref(), &mut rollback)?;
    drop(exec_done);
    let cgroup = rollback.cgroup.as_ref().expect("set above");
    prepare_init(pid, &l.spec, l.plan.new_user, cgroup)?;
    channel.send(&Msg::Go)?;
    await_ready(&channel, &container, pid, &l.spec)?;
    let (start, _) = procinfo::stat(pid).ok_or(CreateError::InitVanished)?;
    container.record.pid = pid;
    container.record.pid_start = start;
    container.record.creating = false;
    container.save()?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid).map_err(|source| CreateError::PidFile {
            path: path.clone(),
            source,
        })?;
    }
    let pidfd = rollback.pidfd.take().expect("set above");
    rollback.dir = None;
    rollback.host_rootfs = None;
    let cgroup = rollback.cgroup.take().expect("set above");
    Ok(Created {
        container,
        cgroup,
        pidfd,
        channel,
        console,
        spec: l.spec,
    })
}

/// Clones the init; returns its pid, the parent's end of the sync channel, and our end of
/// the console channel when hull relays the terminal.
fn spawn(
    opts: &CreateOpts,
    l: &Loaded,
    fifo: Option<&Path>,
    rollback: &mut Rollback,
) -> Result<(i32, Channel, Option<OwnedFd>), CreateError> {
    let terminal = l
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let (console, relay_end) = match &opts.console_socket {
        Some(path) => {
            let sock = UnixStream::connect(path).map_err(|source| CreateError::ConsoleSocket {
                path: path.clone(),
                source,
            })?;
            (Some(OwnedFd::from(sock)), None)
        }
        None if terminal && opts.proxy_tty => {
            let (ours, theirs) =
                super::tty::channel().map_err(|source| CreateError::ConsoleSocket {
                    path: "<relay>".into(),
                    source,
                })?;
            (Some(theirs), Some(ours))
        }
        None => (None, None),
    };
    let joins = namespaces::open_joins(&l.plan)?;
    if let Some(pidns) = &l.plan.join_pid {
        namespaces::join_pid_for_children(pidns)?;
    }
    let (parent_end, init_end) = sync::pair()?;
    let cfg = InitConfig {
        spec: &l.spec,
        bundle: &l.bundle,
        rootfs: &l.rootfs,
        ns: &l.plan,
        joins: &joins,
        channel: &init_end,
        console: console.as_ref(),
        fifo,
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        preserve_fds: opts.preserve_fds,
        id: &opts.id,
        confinement: l.restrictions.confinement(),
    };
    match sys::clone_process(l.plan.clone_flags, None).map_err(CreateError::Clone)? {
        sys::Forked::Child => {
            // The parent's end must not survive into the container.
            drop(parent_end);
            init::run(&cfg)
        }
        sys::Forked::Parent { pid, pidfd } => {
            rollback.pid = pid;
            rollback.pidfd = Some(pidfd);
            Ok((pid, parent_end, relay_end))
        }
    }
}

/// Waits for the init's `Ready`, running the prestart and createRuntime hooks and passing
/// on a seccomp listener when it asks.
fn await_ready(channel: &Channel, c: &Container, pid: i32, spec: &Spec) -> Result<(), CreateError> {
    loop {
        match channel.recv_with_fd()? {
            (Some(Msg::Ready), _) => return Ok(()),
            (Some(Msg::Hooks), _) => {
                let hooks = c
                    .record
                    .hooks
                    .as_ref()
                    .expect("init asks only when hooks exist");
                // prestart sees "created", as crun gives it and runtime-tools expects;
                // createRuntime runs while the container is still being created.
                let created = state_json(c, pid, Status::Created);
                crate::hooks::run(Phase::Prestart, Phase::Prestart.select(hooks), &created)?;
                let creating = state_json(c, pid, Status::Creating);
                let create_runtime = Phase::CreateRuntime.select(hooks);
                crate::hooks::run(Phase::CreateRuntime, create_runtime, &creating)?;
                channel.send(&Msg::Go)?;
            }
            (Some(Msg::SeccompFd), Some(fd)) => {
                let state = state_json(c, pid, Status::Creating);
                forward_listener(spec, pid, &state, fd.as_fd())?;
            }
            (Some(Msg::Error { errno, message }), _) => {
                return Err(CreateError::Init { errno, message })
            }
            (Some(Msg::HookFailed { message }), _) => {
                return Err(CreateError::InitHook { message })
            }
            _ => return Err(CreateError::InitVanished),
        }
    }
}

/// The runtime-spec state of `c` with `pid` and `status`, as JSON.
fn state_json(c: &Container, pid: i32, status: Status) -> Vec<u8> {
    let mut state = crate::hooks::State::of(c, status);
    state.pid = pid;
    state.to_json()
}

/// Sends a seccomp notify fd to `linux.seccomp.listenerPath` with the container state,
/// in runc's protocol.
pub(crate) fn forward_listener(
    spec: &Spec,
    pid: i32,
    state: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<(), crate::seccomp::SeccompError> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = seccomp.and_then(|s| s.listener_path().as_ref()) else {
        return Ok(());
    };
    let metadata = seccomp
        .and_then(|s| s.listener_metadata().clone())
        .unwrap_or_default();
    let state: serde_json::Value = serde_json::from_slice(state).expect("state JSON is valid");
    let json = crate::seccomp::process_state_json(pid, &metadata, &state);
    crate::seccomp::send_to_listener(path, fd, &json)
}

/// Every fd `--preserve-fds` promises must be open before hull opens anything, or one of
/// hull's own descriptors (the sync socket, say) would take its number and be handed to
/// the container.
fn check_preserved_fds(count: u32) -> Result<(), CreateError> {
    for fd in 3..3 + count as i32 {
        if !sys::fd_is_open(fd) {
            return Err(CreateError::PreservedFd { count, fd });
        }
    }
    Ok(())
}

/// The parent's part of setup, while the init waits for `Go`.
fn prepare_init(pid: i32, spec: &Spec, new_user: bool, cgroup: &Cgroup) -> Result<(), CreateError> {
    let linux = spec.linux().as_ref();
    if new_user {
        let l = linux.expect("validated: mappings exist");
        write_proc(
            pid,
            "uid_map",
            &id_map(l.uid_mappings().as_deref().unwrap_or_default()),
        )?;
        write_proc(
            pid,
            "gid_map",
            &id_map(l.gid_mappings().as_deref().unwrap_or_default()),
        )?;
    }
    cgroup.add(pid)?;
    cgroup.setup(linux.and_then(|l| l.resources().as_ref()), pid)?;
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        write_proc(pid, "oom_score_adj", &adj.to_string())?;
    }
    Ok(())
}

fn id_map(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_proc(pid: i32, file: &str, text: &str) -> Result<(), CreateError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    std::fs::write(&path, text).map_err(|source| CreateError::ProcWrite { path, source })
}

/// Writes the pid file atomically, as containerd expects to read it whole.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path)
}

impl CreateError {
    /// True for failures of hooks that run during creation.
    pub fn is_hook_failure(&self) -> bool {
        matches!(self, CreateError::Hook(_) | CreateError::InitHook { .. })
    }
}

impl Created {
    /// The init's pid.
    pub fn pid(&self) -> i32 {
        self.container.record.pid
    }
}
