//! One module per subcommand; `dispatch` maps the parsed command line onto them.

mod cgroup_ops;
mod checkpoint;
mod events;
mod exec;
mod features;
mod lifecycle;
mod list;
mod run;
mod spec;
mod update_flags;

use crate::cli::{CgroupManager, Cli, Command, CreateArgs};
use crate::container::{CreateError, CreateOpts, DestroyError, WaitError};
use crate::signal::BadSignal;
use crate::state::StateError;

/// Any failure of a subcommand. `main` prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Destroy(#[from] DestroyError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error(transparent)]
    Signal(#[from] BadSignal),
    #[error("cannot start container {id}: it is {status}, not created")]
    NotCreated { id: String, status: String },
    #[error("cannot start container {id}")]
    Start {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot delete container {id}: it is {status}; use --force")]
    NotStopped { id: String, status: String },
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists")]
    Exists { path: std::path::PathBuf },
    #[error(transparent)]
    Exec(#[from] crate::container::ExecError),
    #[error(transparent)]
    Config(Box<crate::config::ConfigError>),
    #[error("{what} is not supported by hull yet")]
    Unsupported { what: String },
    #[error("{what}")]
    Usage { what: String },
    #[error("cannot {verb}: {reason}")]
    Criu { verb: &'static str, reason: String },
    #[error("cannot {verb} container {id}: it is {status}")]
    WrongState {
        id: String,
        status: String,
        verb: String,
    },
    #[error("cannot run ps")]
    Ps {
        #[source]
        source: std::io::Error,
    },
    #[error("ps {args} failed: {stderr}")]
    PsFailed { args: String, stderr: String },
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("invalid id pattern {pattern:?}")]
    Regex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("i/o error")]
    Io(#[source] std::io::Error),
    #[error("cannot write to stdout")]
    Stdout(#[source] std::io::Error),
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32, CmdError> {
    let root = cli.root.as_path();
    let driver = Driver {
        systemd: cli.systemd_cgroup || cli.cgroup_manager == Some(CgroupManager::Systemd),
        disabled: cli.cgroup_manager == Some(CgroupManager::Disabled),
    };
    match cli.command {
        Command::Create(a) => lifecycle::create(root, &opts(a, &driver)).map(|()| 0),
        Command::Start { id } => lifecycle::start(root, &id).map(|()| 0),
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let mut o = opts(create, &driver);
            o.proxy_tty = !detach;
            run::run(root, &o, detach, keep)
        }
        Command::Exec(a) => exec::exec(root, *a),
        Command::Pause { id } => cgroup_ops::pause(root, &id).map(|()| 0),
        Command::Resume { id } => cgroup_ops::resume(root, &id).map(|()| 0),
        Command::Ps {
            format,
            id,
            ps_args,
        } => cgroup_ops::ps(root, &id, format, &ps_args).map(|()| 0),
        Command::Update(a) => cgroup_ops::update(root, &a).map(|()| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => events::events(root, &id, stats, &interval).map(|()| 0),
        Command::Checkpoint { id, .. } => checkpoint::checkpoint(root, &id).map(|()| 0),
        Command::Restore { id, .. } => checkpoint::restore(&id).map(|()| 0),
        Command::State { id } => lifecycle::state(root, &id).map(|()| 0),
        Command::Kill {
            id,
            signal,
            all,
            regex,
        } => {
            let sig = signal.as_deref().unwrap_or("SIGTERM");
            for id in lifecycle::targets(root, &id, regex)? {
                lifecycle::kill(root, &id, sig, all)?;
            }
            Ok(0)
        }
        Command::Delete { id, force, regex } => {
            for id in lifecycle::targets(root, &id, regex)? {
                lifecycle::delete(root, &id, force)?;
            }
            Ok(0)
        }
        Command::List { quiet, format } => list::list(root, quiet, format).map(|()| 0),
        Command::Spec { bundle, rootless } => spec::write(bundle.as_deref(), rootless).map(|()| 0),
        Command::Features => features::print_features().map(|()| 0),
    }
}

/// The cgroup driver the global flags select.
struct Driver {
    systemd: bool,
    disabled: bool,
}

fn opts(a: CreateArgs, driver: &Driver) -> CreateOpts {
    CreateOpts {
        id: a.id,
        bundle: a.bundle,
        config: a.config,
        cgroups_disabled: driver.disabled,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        systemd_cgroup: driver.systemd,
        proxy_tty: false,
    }
}

impl CmdError {
    fn from_nix(e: nix::Error) -> Self {
        CmdError::Io(e.into())
    }
}

/// Prints to stdout, turning a closed pipe into an error rather than a panic.
fn print(text: &str) -> Result<(), CmdError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CmdError::Stdout)
}
