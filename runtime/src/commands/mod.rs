//! One module per subcommand; `dispatch` maps the parsed command line onto them.

mod exec;
mod features;
mod lifecycle;
mod list;
mod run;
mod spec;

use crate::cli::{Cli, Command, CreateArgs};
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
    #[error("cannot write to stdout")]
    Stdout(#[source] std::io::Error),
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32, CmdError> {
    let root = cli.root.as_path();
    match cli.command {
        Command::Create(a) => lifecycle::create(root, &opts(a, cli.systemd_cgroup)).map(|()| 0),
        Command::Start { id } => lifecycle::start(root, &id).map(|()| 0),
        Command::Run {
            create,
            detach,
            keep,
        } => run::run(root, &opts(create, cli.systemd_cgroup), detach, keep),
        Command::Exec(a) => exec::exec(root, *a),
        Command::State { id } => lifecycle::state(root, &id).map(|()| 0),
        Command::Kill { id, signal, all } => {
            lifecycle::kill(root, &id, signal.as_deref().unwrap_or("SIGTERM"), all).map(|()| 0)
        }
        Command::Delete { id, force } => lifecycle::delete(root, &id, force).map(|()| 0),
        Command::List { quiet, format } => list::list(root, quiet, format).map(|()| 0),
        Command::Spec { bundle, rootless } => spec::write(bundle.as_deref(), rootless).map(|()| 0),
        Command::Features => features::print_features().map(|()| 0),
    }
}

fn opts(a: CreateArgs, systemd_cgroup: bool) -> CreateOpts {
    CreateOpts {
        id: a.id,
        bundle: a.bundle,
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        systemd_cgroup,
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
