//! The PTRACE_SYSEMU backend.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::{self, FpRegs, STUB_ADDR, STUB_LEN, TASK_SIZE};

/// The tracee's general registers.
pub type Regs = libc::user_regs_struct;

/// Errors of the platform: a host call on a tracee failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A ptrace request failed.
    #[error("ptrace {op} on host task {pid}")]
    Ptrace {
        /// The request.
        op: &'static str,
        /// The host pid.
        pid: i32,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// The tracee died while the Sentry was driving it.
    #[error("host task {0} died while running a stub call")]
    Died(i32),
    /// Creating the first stub failed.
    #[error("forking the address-space stub")]
    Fork(#[source] std::io::Error),
    /// Reading or writing FP registers failed.
    #[error("fp registers of host task {pid}")]
    Fp {
        /// The host pid.
        pid: i32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a traced task stopped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It made a system call (not executed).
    Syscall,
    /// A host signal arrived: a fault of the workload, or the Sentry's interrupt.
    Signal(i32),
    /// The host task is gone.
    Exited,
}

/// A workload thread, as a traced host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tracee {
    /// Its host pid.
    pub pid: Pid,
}

const OPTIONS: ptrace::Options = ptrace::Options::PTRACE_O_TRACESYSGOOD
    .union(ptrace::Options::PTRACE_O_EXITKILL)
    .union(ptrace::Options::PTRACE_O_TRACECLONE)
    .union(ptrace::Options::PTRACE_O_TRACEFORK)
    .union(ptrace::Options::PTRACE_O_TRACEVFORK);

fn perr(op: &'static str, pid: Pid) -> impl FnOnce(Errno) -> PlatformError {
    move |source| PlatformError::Ptrace {
        op,
        pid: pid.as_raw(),
        source,
    }
}

/// Classifies a wait status into an [`Event`] for the pid it names.
pub fn classify(status: WaitStatus) -> Option<(Pid, Event)> {
    match status {
        WaitStatus::PtraceSyscall(pid) => Some((pid, Event::Syscall)),
        WaitStatus::Stopped(pid, sig) => Some((pid, Event::Signal(sig as i32))),
        WaitStatus::PtraceEvent(pid, sig, _) => Some((pid, Event::Signal(sig as i32))),
        WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => Some((pid, Event::Exited)),
        _ => None,
    }
}

impl Tracee {
    /// Creates an empty address space with one stopped task in it: the stub page only.
    pub fn new_address_space() -> Result<Tracee, PlatformError> {
        let pid = sys::fork_stub().map_err(PlatformError::Fork)?;
        let t = Tracee { pid };
        t.wait_signal(Signal::SIGSTOP as i32)?;
        ptrace::setoptions(pid, OPTIONS).map_err(perr("SETOPTIONS", pid))?;
        t.clear_address_space()?;
        Ok(t)
    }

    /// Unmaps everything but the stub page (a fresh process image, for execve).
    pub fn clear_address_space(&self) -> Result<(), PlatformError> {
        self.stub_call(libc::SYS_munmap, [0, STUB_ADDR, 0, 0, 0, 0])?;
        let above = STUB_ADDR + STUB_LEN;
        self.stub_call(libc::SYS_munmap, [above, TASK_SIZE - above, 0, 0, 0, 0])?;
        Ok(())
    }

    /// Waits for this task's next stop, which must be a stop for `sig` (others are
    /// swallowed: they can only be the Sentry's own interrupts).
    fn wait_signal(&self, sig: i32) -> Result<(), PlatformError> {
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, s)) if s as i32 == sig => return Ok(()),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    return Err(PlatformError::Died(self.pid.as_raw()))
                }
                Ok(_) => {
                    ptrace::cont(self.pid, None).map_err(perr("CONT", self.pid))?;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(perr("wait", self.pid)(e)),
            }
        }
    }

    /// Reads the general registers.
    pub fn regs(&self) -> Result<Regs, PlatformError> {
        ptrace::getregs(self.pid).map_err(perr("GETREGS", self.pid))
    }

    /// Writes the general registers.
    pub fn set_regs(&self, r: &Regs) -> Result<(), PlatformError> {
        ptrace::setregs(self.pid, *r).map_err(perr("SETREGS", self.pid))
    }

    /// Reads the FP/SSE state.
    pub fn fpregs(&self) -> Result<FpRegs, PlatformError> {
        sys::get_fpregs(self.pid).map_err(|source| PlatformError::Fp {
            pid: self.pid.as_raw(),
            source,
        })
    }

    /// Writes the FP/SSE state.
    pub fn set_fpregs(&self, fp: &FpRegs) -> Result<(), PlatformError> {
        sys::set_fpregs(self.pid, fp).map_err(|source| PlatformError::Fp {
            pid: self.pid.as_raw(),
            source,
        })
    }

    /// Lets the task run until its next system call or signal; a pending host signal is
    /// never forwarded (the Sentry delivers signals itself).
    pub fn resume(&self) -> Result<(), PlatformError> {
        ptrace::sysemu(self.pid, None).map_err(perr("SYSEMU", self.pid))
    }

    /// Runs host system call `nr` inside this task's address space on the stub page and
    /// returns its raw result. The task's registers are restored afterwards.
    pub fn stub_call(&self, nr: i64, args: [u64; 6]) -> Result<i64, PlatformError> {
        Ok(self.stub_call_forking(nr, args)?.0)
    }

    /// As [`Self::stub_call`], also returning the host task a clone created (already
    /// traced and stopped, with the stub's registers).
    pub fn stub_call_forking(
        &self,
        nr: i64,
        args: [u64; 6],
    ) -> Result<(i64, Option<Tracee>), PlatformError> {
        let saved = self.regs()?;
        let mut r = saved;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        r.rip = STUB_ADDR;
        self.set_regs(&r)?;
        // The stub runs `syscall; int3`: one stop, at the trap, ends the call. (PTRACE_CONT
        // clears SYSEMU, so the call the task may have been stopped in reports no exit.)
        let mut child = None;
        ptrace::cont(self.pid, None).map_err(perr("CONT", self.pid))?;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => break,
                Ok(WaitStatus::PtraceEvent(pid, _, _)) => {
                    let msg = ptrace::getevent(pid).map_err(perr("GETEVENTMSG", pid))?;
                    let c = Tracee {
                        pid: Pid::from_raw(msg as i32),
                    };
                    c.wait_signal(Signal::SIGSTOP as i32)?;
                    child = Some(c);
                    ptrace::cont(self.pid, None).map_err(perr("CONT", self.pid))?;
                }
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    return Err(PlatformError::Died(self.pid.as_raw()))
                }
                // The Sentry's own interrupt, sent while the task ran: swallowed, as the
                // Sentry looks for pending signals whenever it resumes a task.
                Ok(_) => ptrace::cont(self.pid, None).map_err(perr("CONT", self.pid))?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(perr("wait", self.pid)(e)),
            }
        }
        let ret = self.regs()?.rax as i64;
        self.set_regs(&saved)?;
        Ok((ret, child))
    }

    /// Kills the host task (its death is reaped by the event loop).
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }

    /// Interrupts a running task so the Sentry regains control (to deliver a signal).
    pub fn interrupt(&self) {
        let _ = nix::sys::signal::kill(self.pid, INTERRUPT);
    }
}

/// The host signal the Sentry sends a running task to stop it; never delivered.
pub const INTERRUPT: Signal = Signal::SIGSTKFLT;
