//! Sending signals to processes and delivering them to tasks.

use super::signal::{self, bit, default_action, Default_, SigInfo, SIG_DFL, SIG_IGN};
use super::task::{Exit, Pid};
use super::{Kernel, SentryError};

impl Kernel {
    /// Whether process `pid` ignores `sig` (explicitly, or by default).
    fn ignores(&self, pid: Pid, sig: i32) -> bool {
        let Some(p) = self.procs.get(&pid) else {
            return true;
        };
        let act = p.actions.borrow()[sig as usize];
        act.handler == SIG_IGN || (act.handler == SIG_DFL && default_action(sig) != Default_::Term)
    }

    /// Whether the sandbox's init takes `sig` from a process of the sandbox or from the host:
    /// as for a pid-namespace init, only signals it has a handler for, and never SIGKILL.
    pub(super) fn init_accepts(&self, sig: i32) -> bool {
        let Some(p) = self.procs.get(&1) else {
            return false;
        };
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return false;
        }
        // A blocked signal is queued whatever its disposition, as Linux's sig_ignored.
        let blocked = p
            .threads
            .iter()
            .any(|t| self.tasks.get(t).is_some_and(|t| t.mask & bit(sig) != 0));
        let h = p.actions.borrow()[sig as usize].handler;
        blocked || (h != SIG_DFL && h != SIG_IGN)
    }

    /// Sends `info` to process `pid` (kill(2) semantics): SIGKILL kills at once; an
    /// ignored signal is discarded; otherwise a thread not blocking it gets it.
    pub(super) fn send_signal(&mut self, pid: Pid, info: SigInfo) {
        let sig = info.signo;
        let Some(p) = self.procs.get(&pid) else {
            return;
        };
        if p.zombie.is_some() || p.threads.is_empty() {
            return;
        }
        if sig == libc::SIGKILL {
            self.exit_process(pid, Exit::Signal(sig));
            return;
        }
        let threads = p.threads.clone();
        let target = threads
            .iter()
            .copied()
            .find(|t| self.tasks.get(t).is_some_and(|t| t.mask & bit(sig) == 0))
            .unwrap_or(threads[0]);
        if self.ignores(pid, sig) && self.tasks[&target].mask & bit(sig) == 0 {
            return;
        }
        self.send_to_task(target, info);
    }

    /// Queues `info` on task `tid` and makes sure the task notices.
    pub(super) fn send_to_task(&mut self, tid: Pid, info: SigInfo) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        t.pending.entry(info.signo).or_insert(info);
        if t.mask & bit(info.signo) != 0 {
            return;
        }
        if t.running && !t.interrupted {
            t.interrupted = true;
            t.tracee.interrupt();
        }
    }

    /// Whether `tid` has a pending signal it does not block.
    pub(super) fn has_deliverable(&self, tid: Pid) -> bool {
        let Some(t) = self.tasks.get(&tid) else {
            return false;
        };
        t.pending.keys().any(|&s| t.mask & bit(s) == 0)
    }

    /// Whether the signal about to be delivered to `tid` has SA_RESTART.
    pub(super) fn next_signal_restarts(&self, tid: Pid) -> bool {
        let Some(t) = self.tasks.get(&tid) else {
            return false;
        };
        let Some(&sig) = t.pending.keys().find(|&&s| t.mask & bit(s) == 0) else {
            return false;
        };
        let Ok(p) = self.proc_of(tid) else {
            return false;
        };
        let act = p.actions.borrow()[sig as usize];
        act.flags & signal::SA_RESTART != 0
    }

    /// Delivers pending unblocked signals to stopped task `tid`: runs default actions and
    /// sets up a handler frame. Returns false if the task is gone.
    pub(super) fn deliver(&mut self, tid: Pid) -> Result<bool, SentryError> {
        loop {
            let Some(t) = self.tasks.get_mut(&tid) else {
                return Ok(false);
            };
            let mask = t.mask;
            let Some(&sig) = t.pending.keys().find(|&&s| mask & bit(s) == 0) else {
                if let Some(m) = t.saved_mask.take() {
                    t.mask = m;
                }
                return Ok(true);
            };
            let info = t.pending.remove(&sig).unwrap_or_default();
            let tgid = t.tgid;
            let act = self.procs[&tgid].actions.borrow()[sig as usize];
            match act.handler {
                SIG_IGN => continue,
                SIG_DFL => match default_action(sig) {
                    Default_::Ignore | Default_::Stop => continue,
                    Default_::Term => {
                        self.exit_process(tgid, Exit::Signal(sig));
                        return Ok(false);
                    }
                },
                _ => {}
            }
            let t = self
                .tasks
                .get_mut(&tid)
                .ok_or(SentryError::Wait(nix::errno::Errno::ESRCH))?;
            let old_mask = t.saved_mask.take().unwrap_or(t.mask);
            let alt = if act.flags & signal::SA_ONSTACK != 0
                && !t.altstack.disabled
                && t.altstack.size > 0
            {
                Some((t.altstack.sp, t.altstack.size))
            } else {
                None
            };
            let tracee = t.tracee;
            let mut regs = tracee.regs()?;
            if signal::setup_frame(&tracee, &mut regs, &act, &info, old_mask, alt).is_err() {
                self.exit_process(tgid, Exit::Signal(libc::SIGSEGV));
                return Ok(false);
            }
            tracee.set_regs(&regs)?;
            let t = self
                .tasks
                .get_mut(&tid)
                .ok_or(SentryError::Wait(nix::errno::Errno::ESRCH))?;
            t.mask |= act.mask;
            if act.flags & signal::SA_NODEFER == 0 {
                t.mask |= bit(sig);
            }
            t.mask &= !signal::UNBLOCKABLE;
            if act.flags & signal::SA_RESETHAND != 0 {
                self.procs[&tgid].actions.borrow_mut()[sig as usize] = Default::default();
            }
            return Ok(true);
        }
    }
}
