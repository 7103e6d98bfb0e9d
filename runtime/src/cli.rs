//! The command line, shaped like runc's so that containerd, podman and scripts can call
//! `hull` where they would call `runc`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hull: a runc-compatible OCI container runtime.
#[derive(Debug, Parser)]
#[command(name = "hull", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory for container state (use tmpfs).
    #[arg(long, global = true, default_value = "/run/hull")]
    pub root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (cgroupsPath is slice:prefix:name).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// crun's cgroup driver choice; `systemd` equals --systemd-cgroup, `disabled`
    /// creates and joins no cgroup.
    #[arg(long = "cgroup-manager", global = true, value_enum)]
    pub cgroup_manager: Option<CgroupManager>,
    /// Accepted for runc compatibility: "true", "false" or "auto".
    #[arg(long = "rootless", id = "global_rootless", hide = true)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupManager {
    Cgroupfs,
    Systemd,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags shared by `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Read the config from this file instead of <bundle>/config.json (crun).
    #[arg(short = 'f', long = "config")]
    pub config: Option<PathBuf>,
    /// Unix socket that receives the pty master of a terminal container.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Use chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from 3 up) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless detached.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process inside a running container.
    Exec(Box<ExecArgs>),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List a container's processes (extra arguments go to ps).
    Ps {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a container's resource limits.
    Update(Box<UpdateArgs>),
    /// Print resource statistics and OOM events as JSON.
    Events {
        /// Print one statistics event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between statistics events.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Checkpoint a running container with CRIU (not available yet: says why).
    Checkpoint {
        /// Directory for the images (accepted for runc compatibility).
        #[arg(long = "image-path")]
        image_path: Option<PathBuf>,
        #[arg(long = "leave-running")]
        leave_running: bool,
        id: String,
    },
    /// Restore a container from a CRIU checkpoint (not available yet: says why).
    Restore {
        #[arg(long = "image-path")]
        image_path: Option<PathBuf>,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM).
    Kill {
        id: String,
        signal: Option<String>,
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
        /// Treat ID as a regular expression matching container ids (crun).
        #[arg(short, long)]
        regex: bool,
    },
    /// Delete a container and what it holds.
    Delete {
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
        /// Treat ID as a regular expression matching container ids (crun).
        #[arg(short, long)]
        regex: bool,
    },
    /// List containers.
    List {
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Write a default config.json.
    Spec {
        /// Write it to this bundle instead of the current directory.
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// A config for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Flags of `exec`, as runc spells them.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master when --tty is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory of the new process.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (NAME=value); repeatable.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// User as uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gid; repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json (runtime-spec Process) to run instead of the command line.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// SELinux label of the process.
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile of the process.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability; repeatable.
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,
    /// Pass this many extra descriptors (from 3 up) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec into a sub-cgroup of the container (crun and runc 1.2).
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Allow exec into a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Flags of `update`, as runc spells them.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A runtime-spec LinuxResources JSON file, or - for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "kernel-memory")]
    pub kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp")]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Container id.
    pub id: String,
}

/// Subcommand names of the commands [`Command::enters_container`] accepts.
const ENTERING: [&str; 3] = ["create", "run", "exec"];

/// Whether raw arguments (without the program name) may select a command that enters a
/// container, decided before parsing so the sealed re-exec happens before any other work.
/// Any argument equal to such a name counts: a container called "run" costs a needless
/// re-exec, never a missing one.
pub fn may_enter_container<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    args.into_iter().any(|a| ENTERING.iter().any(|n| a == *n))
}

impl Command {
    /// Commands whose processes run hull code inside a container's namespaces; they run
    /// from a sealed copy of the binary (see `sys::exe`).
    pub fn enters_container(&self) -> bool {
        matches!(
            self,
            Command::Create(_) | Command::Run { .. } | Command::Exec(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw scan that decides the sealed re-exec agrees with the parsed command.
    #[test]
    fn raw_scan_covers_every_command_that_enters_a_container() {
        for argv in [
            &["hull", "create", "c1"][..],
            &["hull", "--root", "/tmp/r", "run", "-b", "/b", "c1"],
            &["hull", "exec", "c1", "/bin/true"],
            &["hull", "state", "c1"],
            &["hull", "delete", "--force", "c1"],
            &["hull", "kill", "c1", "KILL"],
        ] {
            let cli = Cli::try_parse_from(argv).expect("valid command line");
            let scanned = may_enter_container(argv[1..].iter().map(Into::into));
            assert_eq!(cli.command.enters_container(), scanned, "{argv:?}");
        }
        // A container named like an entering command only costs a needless re-exec.
        assert!(may_enter_container(["state", "run"].map(Into::into)));
    }
}
