//! Tasks (threads) and processes (thread groups) as the Sentry keeps them. Pids are the
//! sandbox's own, starting at 1; host pids never reach the workload.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use super::file::FdTable;
use super::signal::{SigAction, SigInfo, NSIG};
use crate::platform::Tracee;

/// A sandbox pid or tid.
pub type Pid = i32;

/// A syscall's number and arguments, as the task made it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Args {
    /// The syscall number.
    pub nr: i64,
    /// rdi, rsi, rdx, r10, r8, r9.
    pub a: [u64; 6],
}

/// What a parked call waits for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wait {
    /// When it times out.
    pub deadline: Option<Instant>,
    /// A host descriptor whose readability may unblock it.
    pub host_fd: Option<i32>,
    /// Whether a SA_RESTART handler makes it restart instead of failing with EINTR.
    pub restartable: bool,
}

/// A task parked in the Sentry instead of running.
#[derive(Clone, Debug)]
pub struct Blocked {
    /// The syscall to retry.
    pub args: Args,
    /// The registers at the call.
    pub regs: crate::platform::Regs,
    /// What it waits for.
    pub wait: Wait,
}

/// The alternate signal stack (sigaltstack).
#[derive(Clone, Copy, Debug, Default)]
pub struct AltStack {
    /// ss_sp.
    pub sp: u64,
    /// ss_size.
    pub size: u64,
    /// SS_DISABLE set.
    pub disabled: bool,
}

/// One thread.
#[derive(Debug)]
pub struct Task {
    /// Its tid.
    pub tid: Pid,
    /// Its process (thread group) id.
    pub tgid: Pid,
    /// The host task that runs it.
    pub tracee: Tracee,
    /// Blocked signals.
    pub mask: u64,
    /// Signals sent to this thread and not yet delivered.
    pub pending: BTreeMap<i32, SigInfo>,
    /// CLONE_CHILD_CLEARTID / set_tid_address.
    pub clear_tid: u64,
    /// Set when the task is parked in a blocking call.
    pub blocked: Option<Blocked>,
    /// Set by FUTEX_WAKE for a task waiting in FUTEX_WAIT.
    pub futex_woken: bool,
    /// Mask to restore after a signal handler, for sigsuspend/ppoll.
    pub saved_mask: Option<u64>,
    /// sigaltstack.
    pub altstack: AltStack,
    /// Whether the host task is running (not in a ptrace stop the Sentry holds).
    pub running: bool,
    /// Whether the Sentry has asked the running host task to stop.
    pub interrupted: bool,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// The wait(2) status word.
    pub fn wstatus(self) -> i32 {
        match self {
            Exit::Code(c) => (c & 0xff) << 8,
            Exit::Signal(s) => s & 0x7f,
        }
    }

    /// The exit status a shell would report (128+signal for a signal).
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c & 0xff,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// A brk heap.
#[derive(Clone, Copy, Debug, Default)]
pub struct Brk {
    /// Where it starts (end of the loaded image).
    pub start: u64,
    /// Its current end.
    pub cur: u64,
}

/// One process: a thread group with its shared state.
#[derive(Debug)]
pub struct Process {
    /// pid (= tgid).
    pub pid: Pid,
    /// Parent pid (0 for the sandbox's init).
    pub ppid: Pid,
    /// Process group.
    pub pgid: Pid,
    /// Session.
    pub sid: Pid,
    /// Live threads, leader first.
    pub threads: Vec<Pid>,
    /// Descriptors.
    pub fds: FdTable,
    /// Working directory (normalized).
    pub cwd: String,
    /// umask.
    pub umask: u32,
    /// Signal dispositions, shared by all threads.
    pub actions: Rc<RefCell<[SigAction; NSIG]>>,
    /// Set once every thread has exited.
    pub zombie: Option<Exit>,
    /// The heap.
    pub brk: Brk,
    /// Identifies the address space (futex keys).
    pub mm: u64,
    /// Executable path.
    pub exe: String,
    /// comm: the base name of the path execve was given (as Linux's bprm->filename).
    pub name: String,
    /// argv of the last execve.
    pub argv: Vec<Vec<u8>>,
    /// A vfork parent's tid, released at execve or exit.
    pub vfork_parent: Option<Pid>,
    /// Real/effective uid and gid (the sandbox's own view).
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// When the process exited, its children go to init.
    pub children: Vec<Pid>,
}

impl Process {
    /// The executable's base name, as comm.
    pub fn comm(&self) -> String {
        self.name.chars().take(15).collect()
    }
}
