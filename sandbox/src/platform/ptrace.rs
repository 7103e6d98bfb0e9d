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
    /// The stub's seccomp filter could not be installed.
    #[error("installing the stub's seccomp filter")]
    Filter(#[source] Errno),
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
        t.install_stub_filter()?;
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

/// The classic-BPF filter every stub carries: only the six calls the Sentry runs on the
/// stub page, and only from that page (the instruction after its `syscall`). Workload calls
/// never reach it (PTRACE_SYSEMU stops them before seccomp runs), so it only matters if a
/// call ever escaped the tracer: then it kills the task.
pub fn stub_filter() -> Vec<libc::sock_filter> {
    const ARCH_X86_64: u32 = 0xc000_003e;
    let ip = STUB_ADDR + 2;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let allowed = [
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_mremap,
        libc::SYS_clone,
    ];
    let mut p = vec![
        stmt(ld, 4), // arch
        jeq(ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, 8), // instruction_pointer, low half
        jeq(ip as u32, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, 12), // high half
        jeq((ip >> 32) as u32, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(ld, 0), // nr
    ];
    let n = allowed.len() as u8;
    for (i, nr) in allowed.iter().enumerate() {
        // On a match jump to the final ALLOW, past the remaining tests and the KILL.
        p.push(jeq(*nr as u32, n - i as u8, 0));
    }
    p.push(stmt(ret, libc::SECCOMP_RET_KILL_PROCESS));
    p.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    p
}

impl Tracee {
    /// Installs [`stub_filter`] in this (stopped, empty) address space through stub calls.
    pub fn install_stub_filter(&self) -> Result<(), PlatformError> {
        let prog = stub_filter();
        let page = self.stub_call(
            libc::SYS_mmap,
            [
                0,
                4096,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if page < 0 {
            return Err(PlatformError::Filter(Errno::from_raw(-page as i32)));
        }
        let page = page as u64;
        let mut bytes = Vec::with_capacity(16 + prog.len() * 8);
        bytes.extend_from_slice(&(prog.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&(page + 16).to_le_bytes());
        for f in &prog {
            bytes.extend_from_slice(&f.code.to_le_bytes());
            bytes.push(f.jt);
            bytes.push(f.jf);
            bytes.extend_from_slice(&f.k.to_le_bytes());
        }
        super::mem::write(self.pid, page, &bytes).map_err(PlatformError::Filter)?;
        let r = self.stub_call(
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(PlatformError::Filter(Errno::from_raw(-r as i32)));
        }
        let r = self.stub_call(
            libc::SYS_seccomp,
            [libc::SECCOMP_SET_MODE_FILTER as u64, 0, page, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(PlatformError::Filter(Errno::from_raw(-r as i32)));
        }
        self.stub_call(libc::SYS_munmap, [page, 4096, 0, 0, 0, 0])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_filter_jumps_stay_inside_and_end_in_kill_then_allow() {
        let p = stub_filter();
        let last = p.len() - 1;
        assert_eq!(p[last].k, libc::SECCOMP_RET_ALLOW);
        assert_eq!(p[last - 1].k, libc::SECCOMP_RET_KILL_PROCESS);
        for (i, f) in p.iter().enumerate() {
            if f.code == (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16 {
                assert!(
                    i + 1 + (f.jt as usize) <= last,
                    "jt of {i} leaves the program"
                );
                assert!(
                    i + 1 + (f.jf as usize) <= last,
                    "jf of {i} leaves the program"
                );
            }
        }
        // Each allowed call jumps exactly to the ALLOW.
        let first_nr = p.len() - 2 - 6;
        for (i, f) in p.iter().enumerate().take(last - 1).skip(first_nr) {
            assert_eq!(i + 1 + f.jt as usize, last);
        }
    }
}
