//! The event loop: starting init, turning ptrace stops into syscalls and signals, retrying
//! parked calls, and waiting for the next event.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::syscalls::{self, Ctx, Sys};
use super::task::{Args, Blocked, Pid};
use super::{Exit, InitSpec, Kernel, SentryError};
use crate::platform::ptrace::{classify, INTERRUPT};
use crate::platform::{Event, Regs, Tracee};

/// Host signals the Sentry forwards to the sandbox's init (from `hull-sandbox kill`).
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

impl Kernel {
    /// Creates init from `spec` in a fresh address space; it is left stopped.
    pub fn spawn_init(&mut self, spec: &InitSpec) -> Result<(), SentryError> {
        let tracee = Tracee::new_address_space()?;
        let pid = self.new_process(tracee, 0, spec);
        let argv: Vec<Vec<u8>> = spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        let envp: Vec<Vec<u8>> = spec.env.iter().map(|a| a.as_bytes().to_vec()).collect();
        let path = self.resolve_argv0(pid, &spec.argv, &spec.env);
        let mut regs = tracee.regs()?;
        self.exec_image(pid, &path, argv, envp, &mut regs)
            .map_err(|(errno, _)| SentryError::Load {
                path: path.clone(),
                errno,
            })?;
        tracee.set_regs(&regs)?;
        Ok(())
    }

    pub(super) fn resolve_argv0(&mut self, pid: Pid, argv: &[String], env: &[String]) -> String {
        let a0 = argv.first().cloned().unwrap_or_default();
        if a0.contains('/') {
            return a0;
        }
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let cand = format!("{dir}/{a0}");
            if let Ok(p) = vfs_path(self, pid, cand.as_bytes()) {
                if self.vfs.stat(&p, false).map(|s| s.kind() == libc::S_IFREG) == Ok(true) {
                    return cand;
                }
            }
        }
        a0
    }

    /// Runs the sandbox until init exits; returns how it exited.
    pub fn run(&mut self) -> Result<Exit, SentryError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for s in FORWARDED {
            mask.add(s);
        }
        mask.thread_block().map_err(SentryError::Wait)?;
        let mut sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(SentryError::Wait)?;
        let init: Vec<Pid> = self.tasks.keys().copied().collect();
        for tid in init {
            self.finish(tid)?;
        }
        let spin = spin_budget();
        loop {
            let handled = self.drain_events()?;
            self.retry_blocked()?;
            if let Some(e) = self.init_exit {
                self.kill_all();
                return Ok(e);
            }
            if handled > 0 && self.spin_for_event(spin)? {
                continue;
            }
            self.wait_for_event(&mut sfd)?;
        }
    }

    /// Handles every stop already reported; returns how many.
    fn drain_events(&mut self) -> Result<usize, SentryError> {
        let mut n = 0;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(n),
                Ok(st) => {
                    self.host_event(st)?;
                    n += 1;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(SentryError::Wait(e)),
            }
        }
    }

    /// A task just resumed usually stops again within microseconds (its next syscall):
    /// polling for that stop briefly is much cheaper than sleeping and being woken by
    /// SIGCHLD. Returns whether a stop came (and was handled).
    fn spin_for_event(&mut self, budget: Duration) -> Result<bool, SentryError> {
        if budget.is_zero() {
            return Ok(false);
        }
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => std::hint::spin_loop(),
                Ok(st) => {
                    self.host_event(st)?;
                    return Ok(true);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => return Ok(false),
                Err(e) => return Err(SentryError::Wait(e)),
            }
        }
        Ok(false)
    }

    fn wait_for_event(&mut self, sfd: &mut SignalFd) -> Result<(), SentryError> {
        let now = Instant::now();
        let mut host_fds: Vec<i32> = Vec::new();
        let mut deadline: Option<Instant> = None;
        for t in self.tasks.values() {
            if let Some(b) = &t.blocked {
                if let Some(fd) = b.wait.host_fd {
                    host_fds.push(fd);
                }
                if let Some(d) = b.wait.deadline {
                    deadline = Some(deadline.map_or(d, |x: Instant| x.min(d)));
                }
            }
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let ms = d.saturating_duration_since(now).as_millis().min(60_000) as u16;
                PollTimeout::from(ms.max(if d > now { 1 } else { 0 }))
            }
        };
        let control = self.control_fds();
        let borrowed: Vec<BorrowedFd> = host_fds
            .iter()
            .chain(&control)
            .map(|&fd| borrow(fd))
            .collect();
        let mut pfds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        pfds.extend(
            borrowed
                .iter()
                .map(|fd| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        match poll(&mut pfds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SentryError::Wait(e)),
        }
        let ready: Vec<i32> = pfds[1 + host_fds.len()..]
            .iter()
            .zip(&control)
            .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, &fd)| fd)
            .collect();
        drop(pfds);
        if !ready.is_empty() {
            self.poll_control(&ready);
        }
        while let Ok(Some(si)) = sfd.read_signal() {
            let sig = si.ssi_signo as i32;
            if sig != libc::SIGCHLD && self.init_accepts(sig) {
                self.send_signal(1, super::signal::SigInfo::user(sig, 0));
            }
        }
        Ok(())
    }

    fn host_event(&mut self, st: WaitStatus) -> Result<(), SentryError> {
        let Some((hpid, ev)) = classify(st) else {
            return Ok(());
        };
        let Some(&tid) = self.host.get(&hpid.as_raw()) else {
            return Ok(());
        };
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.running = false;
        }
        match ev {
            Event::Syscall => self.syscall_stop(tid),
            Event::Signal(sig) if sig == INTERRUPT as i32 || sig == libc::SIGSTOP => {
                if let Some(t) = self.tasks.get_mut(&tid) {
                    t.interrupted = false;
                }
                self.finish(tid)
            }
            Event::Signal(sig) => {
                self.fault(tid, sig)?;
                self.finish(tid)
            }
            Event::Exited => {
                self.host.remove(&hpid.as_raw());
                if self.tasks.contains_key(&tid) {
                    let tgid = self.tasks[&tid].tgid;
                    self.exit_process(tgid, Exit::Signal(libc::SIGKILL));
                }
                Ok(())
            }
        }
    }

    /// A synchronous host signal (a fault) becomes the same signal for the task, forced:
    /// blocked or ignored, it kills the process, as Linux's force_sig does.
    fn fault(&mut self, tid: Pid, sig: i32) -> Result<(), SentryError> {
        let t = self
            .tracee(tid)
            .map_err(|_| SentryError::Wait(Errno::ESRCH))?;
        let regs = t.regs()?;
        let info = super::signal::SigInfo {
            signo: sig,
            code: 1,
            addr: regs.rip.max(1),
            ..Default::default()
        };
        let tgid = self.tasks[&tid].tgid;
        let act = self.procs[&tgid].actions.borrow()[sig as usize];
        let blocked = self.tasks[&tid].mask & super::signal::bit(sig) != 0;
        if blocked || act.handler == super::signal::SIG_IGN {
            self.exit_process(tgid, Exit::Signal(sig));
            return Ok(());
        }
        if let Some(task) = self.tasks.get_mut(&tid) {
            task.pending.insert(sig, info);
        }
        Ok(())
    }

    fn syscall_stop(&mut self, tid: Pid) -> Result<(), SentryError> {
        let t = self.tasks[&tid].tracee;
        let regs = t.regs()?;
        let args = Args {
            nr: regs.orig_rax as i64,
            a: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
        };
        let mut ctx = Ctx {
            tid,
            args,
            regs,
            deadline: None,
        };
        let r = syscalls::call(self, &mut ctx);
        if self.strace {
            self.trace(&ctx, &r);
        }
        self.complete(ctx, r)
    }

    fn trace(&mut self, ctx: &Ctx, r: &Result<Sys, Errno>) {
        let name = syscalls::name(ctx.args.nr);
        let res = match r {
            Ok(Sys::Ret(v)) => format!("{v:#x}"),
            Ok(Sys::Regs) => "(regs)".into(),
            Ok(Sys::Block(_)) => "(blocked)".into(),
            Ok(Sys::Gone) => "(gone)".into(),
            Err(e) => format!("-{e}"),
        };
        let a = ctx.args.a;
        let _ = writeln!(
            self.log,
            "[{}] {name}({:#x}, {:#x}, {:#x}, {:#x}) = {res}",
            ctx.tid, a[0], a[1], a[2], a[3]
        );
    }

    /// Applies a syscall's outcome: write the result and resume, park the task, or nothing
    /// if the task is gone.
    fn complete(&mut self, mut ctx: Ctx, r: Result<Sys, Errno>) -> Result<(), SentryError> {
        let tid = ctx.tid;
        let ret = match r {
            Ok(Sys::Ret(v)) => v,
            Err(e) => -(e as i64),
            Ok(Sys::Regs) => {
                self.tracee_set(tid, &ctx.regs)?;
                return self.finish(tid);
            }
            Ok(Sys::Block(b)) => {
                let b = Blocked {
                    args: ctx.args,
                    regs: ctx.regs,
                    wait: b,
                };
                if let Some(t) = self.tasks.get_mut(&tid) {
                    t.blocked = Some(b);
                }
                return Ok(());
            }
            Ok(Sys::Gone) => return Ok(()),
        };
        ctx.regs.rax = ret as u64;
        self.tracee_set(tid, &ctx.regs)?;
        self.finish(tid)
    }

    fn tracee_set(&mut self, tid: Pid, regs: &Regs) -> Result<(), SentryError> {
        if let Some(t) = self.tasks.get(&tid) {
            t.tracee.set_regs(regs)?;
        }
        Ok(())
    }

    /// Delivers pending signals to a stopped task, then resumes it.
    pub(super) fn finish(&mut self, tid: Pid) -> Result<(), SentryError> {
        if !self.tasks.contains_key(&tid) {
            return Ok(());
        }
        if !self.deliver(tid)? {
            return Ok(());
        }
        if let Some(t) = self.tasks.get_mut(&tid) {
            if t.blocked.is_none() && !t.running {
                t.running = true;
                let tr = t.tracee;
                tr.resume()?;
            }
        }
        Ok(())
    }

    /// Retries every parked call until none makes progress; interrupts those with a
    /// deliverable signal.
    fn retry_blocked(&mut self) -> Result<(), SentryError> {
        loop {
            let parked: Vec<Pid> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.blocked.is_some())
                .map(|(&k, _)| k)
                .collect();
            let mut progress = false;
            for tid in parked {
                let Some(b) = self.tasks.get_mut(&tid).and_then(|t| t.blocked.take()) else {
                    continue;
                };
                if self.has_deliverable(tid) && b.args.nr >= 0 {
                    self.interrupt_blocked(tid, b)?;
                    progress = true;
                    continue;
                }
                let mut ctx = Ctx {
                    tid,
                    args: b.args,
                    regs: b.regs,
                    deadline: b.wait.deadline,
                };
                let r = syscalls::call(self, &mut ctx);
                if matches!(r, Ok(Sys::Block(_))) {
                    if let Some(t) = self.tasks.get_mut(&tid) {
                        t.blocked = Some(b);
                    }
                    continue;
                }
                progress = true;
                self.complete(ctx, r)?;
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// A signal arrived for a parked task: the call fails with EINTR or, for a restartable
    /// call whose handler has SA_RESTART, is re-executed after the handler.
    fn interrupt_blocked(&mut self, tid: Pid, b: Blocked) -> Result<(), SentryError> {
        self.futex.retain(|w| w.tid != tid);
        let mut regs = b.regs;
        if b.wait.restartable && self.next_signal_restarts(tid) {
            regs.rax = b.args.nr as u64;
            regs.rip -= 2;
        } else {
            regs.rax = -(Errno::EINTR as i64) as u64;
        }
        self.tracee_set(tid, &regs)?;
        self.finish(tid)
    }

    /// Kills every host task (init has exited).
    pub(super) fn kill_all(&mut self) {
        let mut hosts: Vec<Tracee> = self.tasks.values().map(|t| t.tracee).collect();
        hosts.extend(self.zygote.take());
        for t in &hosts {
            t.kill();
        }
        // Reap them: the Sentry is their parent (every task is cloned with CLONE_PARENT).
        for t in &hosts {
            let _ = waitpid(t.pid, Some(WaitPidFlag::__WALL));
        }
        self.tasks.clear();
        if let Some(g) = self.gofer.take() {
            let _ = nix::sys::signal::kill(g, Signal::SIGKILL);
            let _ = waitpid(g, None);
        }
    }
}

/// How long the Sentry polls for the next stop before sleeping: only with a second CPU for
/// the task to run on meanwhile.
fn spin_budget() -> Duration {
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| (0..64).filter(|&c| set.is_set(c).unwrap_or(false)).count())
        .unwrap_or(1);
    // HULL_SANDBOX_SPIN_US overrides (0 disables), for measuring.
    let us = std::env::var("HULL_SANDBOX_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cpus > 1 { 50 } else { 0 });
    Duration::from_micros(us)
}

/// Turns a workload path into a normalized absolute one, against the caller's cwd.
pub fn vfs_path(k: &Kernel, pid: Pid, path: &[u8]) -> Result<String, Errno> {
    let cwd = k
        .procs
        .get(&pid)
        .map(|p| p.cwd.clone())
        .unwrap_or_else(|| "/".into());
    super::vfs::normalize(&cwd, path)
}

fn borrow(fd: i32) -> BorrowedFd<'static> {
    crate::sys::borrow_fd(fd)
}
