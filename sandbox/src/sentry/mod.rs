//! The Sentry: hull-sandbox's user-space kernel. It owns every task of the sandbox, serves
//! their system calls from its own tables (processes, fds, pipes, futexes, the VFS), and
//! uses the platform only to run code and change address spaces.
//!
//! It is single-threaded: one event loop waits for ptrace stops, signals to the sandbox
//! and host-fd readiness, and parks tasks whose calls block until something changes.

pub mod file;
pub mod loader;
pub mod signal;
pub mod synth;
pub mod syscalls;
pub mod task;
pub mod vfs;

mod control;
mod deliver;
mod exit;
mod run;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::Instant;

use nix::errno::Errno;

use crate::platform::{PlatformError, Tracee};
use task::{Pid, Process, Task};

pub use control::ExecRequest;
pub use run::FORWARDED;
pub use task::Exit;

/// Errors that stop the Sentry (the workload's own errors are errnos).
#[derive(Debug, thiserror::Error)]
pub enum SentryError {
    /// The platform failed on a task.
    #[error("platform")]
    Platform(#[from] PlatformError),
    /// The first program could not be loaded.
    #[error("loading {path}: {errno}")]
    Load {
        /// The program.
        path: String,
        /// Why.
        errno: Errno,
    },
    /// Waiting for events failed.
    #[error("sentry event wait")]
    Wait(#[source] Errno),
}

/// A file's identity for caches: device, inode, size, mtime.
type FileId = (u64, u64, i64, i64);

/// What the first process runs.
#[derive(Clone, Debug, Default)]
pub struct InitSpec {
    /// argv (argv[0] is resolved on PATH if it has no slash).
    pub argv: Vec<String>,
    /// The environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// The UTS hostname.
    pub hostname: String,
    /// Bind mounts: (destination in the sandbox, host source), served read-only by the
    /// gofer.
    pub binds: Vec<(String, std::path::PathBuf)>,
}

/// A FUTEX_WAIT in progress.
#[derive(Clone, Copy, Debug)]
struct FutexWaiter {
    mm: u64,
    addr: u64,
    tid: Pid,
    bitset: u32,
}

/// The Sentry's state.
pub struct Kernel {
    tasks: HashMap<Pid, Task>,
    host: HashMap<i32, Pid>,
    procs: BTreeMap<Pid, Process>,
    next_pid: Pid,
    next_mm: u64,
    vfs: vfs::Vfs,
    futex: Vec<FutexWaiter>,
    log: Box<dyn Write>,
    logged: HashSet<i64>,
    init_exit: Option<Exit>,
    hostname: String,
    boot: Instant,
    /// Executables read recently: path → (identity, bytes).
    exec_cache: HashMap<String, (FileId, std::rc::Rc<Vec<u8>>)>,
    /// The gofer process, killed and reaped when the sandbox ends.
    pub gofer: Option<nix::unistd::Pid>,
    /// The control socket (exec), listening.
    control: Option<std::os::fd::OwnedFd>,
    /// An empty address space kept stopped, to fork exec'd processes from.
    zygote: Option<Tracee>,
    /// Exec'd processes and their clients' connections.
    exec_clients: HashMap<Pid, std::os::fd::OwnedFd>,
    /// Log every syscall and its result (like `strace`), for debugging workloads.
    pub strace: bool,
}

impl Kernel {
    /// A kernel over `vfs`, logging to `log`.
    pub fn new(vfs: vfs::Vfs, log: Box<dyn Write>, hostname: String) -> Self {
        Kernel {
            tasks: HashMap::new(),
            host: HashMap::new(),
            procs: BTreeMap::new(),
            next_pid: 1,
            next_mm: 1,
            vfs,
            futex: Vec::new(),
            log,
            logged: HashSet::new(),
            init_exit: None,
            hostname,
            boot: Instant::now(),
            exec_cache: HashMap::new(),
            gofer: None,
            control: None,
            zygote: None,
            exec_clients: HashMap::new(),
            strace: std::env::var_os("HULL_SANDBOX_STRACE").is_some(),
        }
    }

    /// Records a fatal error in the Sentry's log.
    pub fn log_error(&mut self, msg: &str) {
        let _ = writeln!(self.log, "sentry: {msg}");
    }

    fn alloc_pid(&mut self) -> Pid {
        while self.procs.contains_key(&self.next_pid) || self.tasks.contains_key(&self.next_pid) {
            self.next_pid += 1;
        }
        let p = self.next_pid;
        self.next_pid += 1;
        p
    }

    fn alloc_mm(&mut self) -> u64 {
        self.next_mm += 1;
        self.next_mm
    }

    /// Logs once per key (e.g. per unimplemented syscall).
    fn log_once(&mut self, key: i64, msg: std::fmt::Arguments) {
        if self.logged.insert(key) {
            let _ = writeln!(self.log, "{msg}");
        }
    }

    fn task(&self, tid: Pid) -> Result<&Task, Errno> {
        self.tasks.get(&tid).ok_or(Errno::ESRCH)
    }

    fn task_mut(&mut self, tid: Pid) -> Result<&mut Task, Errno> {
        self.tasks.get_mut(&tid).ok_or(Errno::ESRCH)
    }

    /// The process of task `tid`.
    fn proc_of(&self, tid: Pid) -> Result<&Process, Errno> {
        let tgid = self.task(tid)?.tgid;
        self.procs.get(&tgid).ok_or(Errno::ESRCH)
    }

    fn proc_of_mut(&mut self, tid: Pid) -> Result<&mut Process, Errno> {
        let tgid = self.task(tid)?.tgid;
        self.procs.get_mut(&tgid).ok_or(Errno::ESRCH)
    }

    fn tracee(&self, tid: Pid) -> Result<Tracee, Errno> {
        Ok(self.task(tid)?.tracee)
    }

    /// Refreshes what /proc shows for a lookup by `tid`.
    fn refresh_proc(&mut self, tid: Pid, path: &str) {
        if !path.starts_with("/proc") && !path.starts_with("/dev/std") && path != "/dev/fd" {
            return;
        }
        let self_pid = self.task(tid).map(|t| t.tgid).unwrap_or(0);
        let procs = self
            .procs
            .values()
            .map(|p| synth::ProcInfo {
                pid: p.pid,
                ppid: p.ppid,
                pgid: p.pgid,
                sid: p.sid,
                argv: p.argv.clone(),
                comm: p.comm(),
                exe: p.exe.clone(),
                fds: p
                    .fds
                    .fds()
                    .map(|(fd, e)| (fd, e.file.borrow().path.clone()))
                    .collect(),
                cwd: p.cwd.clone(),
                state: if p.zombie.is_some() { 'Z' } else { 'S' },
                threads: p.threads.len(),
            })
            .collect();
        self.vfs.proc = synth::ProcView {
            self_pid,
            procs,
            uptime: self.boot.elapsed().as_secs_f64(),
        };
    }
}
