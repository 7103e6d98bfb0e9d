//! The hull-sandbox command line: a runc-style OCI runtime on the Sentry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hull_sandbox::cli::{create, ops};
use hull_sandbox::sentry::InitSpec;

#[derive(Parser)]
#[command(
    name = "hull-sandbox",
    version,
    about = "OCI runtime running containers on a user-space kernel (the Sentry)"
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/hull-sandbox")]
    root: PathBuf,
    /// Write errors to this file as well as stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Accepted for compatibility; cgroups are always managed as cgroupfs paths.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates a sandbox from a bundle; its process waits for `start`.
    Create {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
    /// Starts a created sandbox.
    Start { id: String },
    /// Creates, starts and waits for a sandbox, then deletes it.
    Run {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long, short)]
        detach: bool,
        id: String,
    },
    /// Runs a new process in a running sandbox (on the Sentry, like init).
    Exec {
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long, short)]
        env: Vec<String>,
        #[arg(long, short)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long, short)]
        detach: bool,
        /// A runtime-spec process JSON instead of ARGS.
        #[arg(long, short)]
        process: Option<PathBuf>,
        id: String,
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Prints a sandbox's state as JSON.
    State { id: String },
    /// Sends a signal to the sandbox's init (SIGKILL ends the sandbox).
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(long, short)]
        all: bool,
    },
    /// Deletes a sandbox.
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Lists sandboxes.
    List {
        #[arg(long, short, default_value = "table")]
        format: String,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Prints supported features as JSON.
    Features,
    /// Prints the Sentry's host-syscall allowlist and its size.
    Allowlist,
    /// Runs a command on a rootfs directory in a sandbox, in the foreground.
    Do {
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(trailing_var_arg = true, required = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = create::chain(e.as_ref());
            report(&cli, &msg);
            ExitCode::from(1)
        }
    }
}

fn report(cli: &Cli, msg: &str) {
    eprintln!("hull-sandbox: {msg}");
    if let Some(path) = &cli.log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let line = if cli.log_format == "json" {
                serde_json::json!({"level": "error", "msg": msg}).to_string()
            } else {
                format!("error: {msg}")
            };
            let _ = writeln!(f, "{line}");
        }
    }
}

type Res = Result<u8, Box<dyn std::error::Error>>;

fn dispatch(cli: &Cli) -> Res {
    let root = cli.root.as_path();
    match &cli.cmd {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            id,
        } => {
            let o = create::CreateOpts {
                root,
                id,
                bundle,
                pid_file: pid_file.as_deref(),
                console_socket: console_socket.as_deref(),
            };
            create::create(&o)?;
        }
        Cmd::Start { id } => ops::start(root, id)?,
        Cmd::Run {
            bundle,
            pid_file,
            detach,
            id,
        } => return run(root, bundle, pid_file.as_deref(), *detach, id),
        Cmd::Exec {
            cwd,
            env,
            tty,
            console_socket,
            pid_file,
            detach,
            process,
            id,
            args,
        } => {
            if *tty || console_socket.is_some() {
                return Err(
                    "exec: a terminal (--tty, --console-socket) is not supported by hull-sandbox"
                        .into(),
                );
            }
            if *detach {
                return Err("exec: --detach is not supported by hull-sandbox".into());
            }
            let req = exec_request(root, id, cwd.as_deref(), env, process.as_deref(), args)?;
            return Ok(ops::exec(root, id, &req, pid_file.as_deref())? as u8);
        }
        Cmd::State { id } => println!(
            "{}",
            serde_json::to_string_pretty(&ops::state_json(root, id)?)?
        ),
        Cmd::Kill { id, signal, .. } => ops::kill(root, id, signal)?,
        Cmd::Delete { force, id } => ops::delete(root, id, *force)?,
        Cmd::List { format, quiet } => list(root, format, *quiet)?,
        Cmd::Features => println!("{}", serde_json::to_string_pretty(&ops::features())?),
        Cmd::Allowlist => {
            let names = hull_sandbox::confine::allowlist();
            for n in &names {
                println!("{n}");
            }
            eprintln!("{} host syscalls", names.len());
        }
        Cmd::Do { rootfs, args } => return run_do(rootfs, args),
    }
    Ok(0)
}

fn run(root: &Path, bundle: &Path, pid_file: Option<&Path>, detach: bool, id: &str) -> Res {
    if !detach {
        // The Sentry's parent exits during create; as subreaper we still get its status.
        nix::sys::prctl::set_child_subreaper(true)?;
    }
    let o = create::CreateOpts {
        root,
        id,
        bundle,
        pid_file,
        console_socket: None,
    };
    let pid = create::create(&o)?;
    if let Err(e) = ops::start(root, id) {
        let _ = ops::delete(root, id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = ops::wait_exit(pid);
    ops::delete(root, id, true)?;
    Ok(code as u8)
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<(), Box<dyn std::error::Error>> {
    let all = ops::list(root);
    if quiet {
        for s in &all {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
    } else if format == "json" {
        println!("{}", serde_json::to_string(&all)?);
    } else {
        println!(
            "{:<20} {:<8} {:<10} {:<40} CREATED",
            "ID", "PID", "STATUS", "BUNDLE"
        );
        for s in &all {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {}",
                s["id"].as_str().unwrap_or_default(),
                s["pid"],
                s["status"].as_str().unwrap_or_default(),
                s["bundle"].as_str().unwrap_or_default(),
                s["created"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn run_do(rootfs: &Path, args: &[String]) -> Res {
    let spec = InitSpec {
        argv: args.to_vec(),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cwd: "/".into(),
        hostname: "sandbox".into(),
        ..Default::default()
    };
    let exit = hull_sandbox::boot::run(rootfs, &spec, Box::new(std::io::stderr()))?;
    Ok(exit.shell_code() as u8)
}

/// The process `exec` starts: from `--process` or the arguments, with the container's
/// environment (from its config) plus `--env`.
fn exec_request(
    root: &Path,
    id: &str,
    cwd: Option<&str>,
    env: &[String],
    process: Option<&Path>,
    args: &[String],
) -> Result<hull_sandbox::sentry::ExecRequest, Box<dyn std::error::Error>> {
    if let Some(p) = process {
        let data = std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        let proc: oci_spec::runtime::Process =
            serde_json::from_slice(&data).map_err(|e| format!("parsing {}: {e}", p.display()))?;
        if proc.terminal().unwrap_or(false) {
            return Err("exec: process.terminal is not supported by hull-sandbox".into());
        }
        return Ok(hull_sandbox::sentry::ExecRequest {
            args: proc.args().clone().unwrap_or_default(),
            env: proc.env().clone().unwrap_or_default(),
            cwd: proc.cwd().display().to_string(),
        });
    }
    if args.is_empty() {
        return Err("exec: no command given".into());
    }
    let rec = hull_sandbox::cli::state::load(root, id)?;
    let spec = oci_spec::runtime::Spec::load(rec.bundle.join("config.json"))?;
    let sp = spec.process().clone().unwrap_or_default();
    let mut all = sp.env().clone().unwrap_or_default();
    all.extend(env.iter().cloned());
    Ok(hull_sandbox::sentry::ExecRequest {
        args: args.to_vec(),
        env: all,
        cwd: cwd
            .map(str::to_string)
            .unwrap_or_else(|| sp.cwd().display().to_string()),
    })
}
