//! The tracer: runs a command and all its descendants under ptrace, puts a breakpoint on
//! every function entry of each process image of the traced binary, and records functions
//! in the order of their first call. Each breakpoint fires once per address space and is then removed, so a
//! run costs one stop per function called, not per call.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::procfs::{self, Mem, ProcError};
use crate::symbols::Symbols;

const INT3: u8 = 0xcc;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("starting {cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} on pid {pid}")]
    Ptrace {
        op: &'static str,
        pid: Pid,
        #[source]
        source: Errno,
    },
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("{cmd} exited with {status}")]
    Failed { cmd: String, status: i32 },
}

fn ptrace_err(op: &'static str, pid: Pid) -> impl FnOnce(Errno) -> TraceError {
    move |source| TraceError::Ptrace { op, pid, source }
}

/// Resumes `pid`; a tracee that has just died (ESRCH) is no error.
fn resume(pid: Pid, sig: Option<Signal>) -> Result<(), TraceError> {
    match ptrace::cont(pid, sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(TraceError::Ptrace {
            op: "PTRACE_CONT",
            pid,
            source,
        }),
    }
}

pub struct Tracer<'a> {
    symbols: &'a Symbols,
    binary: &'a [u8],
    /// Original first byte of each function, by address relative to the base.
    original: HashMap<u64, u8>,
    /// Load base of the traced binary in each tracee running it.
    bases: HashMap<Pid, u64>,
    seen: HashSet<u64>,
    pub order: Vec<String>,
}

impl<'a> Tracer<'a> {
    pub fn new(symbols: &'a Symbols, binary: &'a [u8]) -> Self {
        Tracer {
            symbols,
            binary,
            original: HashMap::new(),
            bases: HashMap::new(),
            seen: HashSet::new(),
            order: Vec::new(),
        }
    }

    /// Runs `cmd` to completion under the tracer; adds newly called functions to `order`.
    pub fn run(&mut self, cmd: &[String]) -> Result<(), TraceError> {
        let shown = cmd.join(" ");
        // The shell stops itself so the tracer can seize it before the command's exec.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("kill -STOP $$ && exec \"$0\" \"$@\"")
            .args(cmd)
            .spawn()
            .map_err(|source| TraceError::Spawn {
                cmd: shown.clone(),
                source,
            })?;
        let root = Pid::from_raw(child.id() as i32);
        waitpid(root, Some(WaitPidFlag::WUNTRACED)).map_err(ptrace_err("waitpid", root))?;
        let opts = Options::PTRACE_O_TRACEEXEC
            | Options::PTRACE_O_TRACECLONE
            | Options::PTRACE_O_TRACEFORK
            | Options::PTRACE_O_TRACEVFORK
            | Options::PTRACE_O_EXITKILL;
        ptrace::seize(root, opts).map_err(ptrace_err("PTRACE_SEIZE", root))?;
        kill(root, Signal::SIGCONT).map_err(ptrace_err("SIGCONT", root))?;
        let status = self.follow(root)?;
        if status != 0 {
            return Err(TraceError::Failed { cmd: shown, status });
        }
        Ok(())
    }

    /// Serves stops until no tracee is left; returns the root's exit status.
    fn follow(&mut self, root: Pid) -> Result<i32, TraceError> {
        let mut root_status = 0;
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(Errno::ECHILD) => return Ok(root_status),
                Err(Errno::EINTR) => continue,
                Err(source) => return Err(ptrace_err("waitpid", root)(source)),
            };
            match status {
                WaitStatus::Exited(pid, code) => {
                    self.bases.remove(&pid);
                    if pid == root {
                        root_status = code;
                    }
                }
                WaitStatus::Signaled(pid, sig, _) => {
                    self.bases.remove(&pid);
                    if pid == root {
                        root_status = 128 + sig as i32;
                    }
                }
                WaitStatus::PtraceEvent(pid, _, ev) => self.on_event(pid, ev)?,
                WaitStatus::Stopped(pid, Signal::SIGTRAP) => self.on_trap(pid)?,
                WaitStatus::Stopped(pid, sig) => resume(pid, Some(sig))?,
                _ => {}
            }
        }
    }

    fn on_event(&mut self, pid: Pid, ev: i32) -> Result<(), TraceError> {
        if ev == Event::PTRACE_EVENT_EXEC as i32 {
            self.bases.remove(&pid);
            // Other programs (a shell, the container's process) stay traced without
            // breakpoints: the binary may run again among their children.
            if procfs::runs(pid, self.binary)? {
                let base = procfs::load_base(pid)?;
                self.arm(pid, base)?;
                self.bases.insert(pid, base);
            }
        } else if [
            Event::PTRACE_EVENT_FORK,
            Event::PTRACE_EVENT_VFORK,
            Event::PTRACE_EVENT_CLONE,
        ]
        .iter()
        .any(|e| *e as i32 == ev)
        {
            let child = ptrace::getevent(pid).map_err(ptrace_err("PTRACE_GETEVENTMSG", pid))?;
            if let Some(&base) = self.bases.get(&pid) {
                self.bases.insert(Pid::from_raw(child as i32), base);
            }
        }
        // Also PTRACE_EVENT_STOP: a new child's first stop or a group stop.
        resume(pid, None)
    }

    /// Writes a breakpoint on every function not yet seen in this run.
    fn arm(&mut self, pid: Pid, base: u64) -> Result<(), TraceError> {
        let mem = Mem::open(pid)?;
        for addr in self.symbols.addrs() {
            if self.seen.contains(&addr) {
                continue;
            }
            let byte = mem.byte(base + addr)?;
            let orig = *self.original.entry(addr).or_insert(byte);
            if orig != INT3 {
                mem.set_byte(base + addr, INT3)?;
            }
        }
        Ok(())
    }

    fn on_trap(&mut self, pid: Pid) -> Result<(), TraceError> {
        let mut regs = ptrace::getregs(pid).map_err(ptrace_err("PTRACE_GETREGS", pid))?;
        let at = regs.rip.wrapping_sub(1);
        let hit = self
            .bases
            .get(&pid)
            .and_then(|base| at.checked_sub(*base))
            .and_then(|rel| Some((rel, *self.original.get(&rel)?)));
        let Some((rel, orig)) = hit else {
            return resume(pid, Some(Signal::SIGTRAP));
        };
        Mem::open(pid)?.set_byte(at, orig)?;
        regs.rip = at;
        ptrace::setregs(pid, regs).map_err(ptrace_err("PTRACE_SETREGS", pid))?;
        if self.seen.insert(rel) {
            if let Some(name) = self.symbols.name(rel) {
                self.order.push(name.to_string());
            }
        }
        resume(pid, None)
    }
}
