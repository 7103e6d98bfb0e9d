//! Signal calls: kill, sigaction, sigprocmask, sigreturn, sigsuspend, sigaltstack.

use nix::errno::Errno;

use super::{hpid, ok, Ctx, Sys};
use crate::platform::mem;
use crate::sentry::signal::{self, SigAction, SigInfo, NSIG, UNBLOCKABLE};
use crate::sentry::task::{Pid, Wait};
use crate::sentry::Kernel;

fn check_sig(sig: u64) -> Result<i32, Errno> {
    if sig == 0 || sig as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    Ok(sig as i32)
}

pub fn kill(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let pid = ctx.args.a[0] as i32;
    let sig = ctx.args.a[1];
    if sig as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    let me = k.task(ctx.tid)?.tgid;
    let my_pgid = k.procs.get(&me).map_or(0, |p| p.pgid);
    let targets: Vec<Pid> = k
        .procs
        .values()
        .filter(|p| p.zombie.is_none())
        .filter(|p| match pid {
            p0 if p0 > 0 => p.pid == p0,
            0 => p.pgid == my_pgid,
            -1 => p.pid != 1 && p.pid != me,
            g => p.pgid == -g,
        })
        .map(|p| p.pid)
        .collect();
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig == 0 {
        return ok(0);
    }
    for t in targets {
        if t == 1 && !k.init_accepts(sig as i32) {
            continue;
        }
        k.send_signal(t, SigInfo::user(sig as i32, me));
    }
    ok(0)
}

fn thread_kill(
    k: &mut Kernel,
    ctx: &Ctx,
    tgid: Option<Pid>,
    tid: Pid,
    sig: u64,
) -> Result<Sys, Errno> {
    if sig as usize >= NSIG {
        return Err(Errno::EINVAL);
    }
    let t = k.task(tid)?;
    if tgid.is_some_and(|g| g != t.tgid) {
        return Err(Errno::ESRCH);
    }
    if sig == 0 {
        return ok(0);
    }
    let me = k.task(ctx.tid)?.tgid;
    if sig as i32 == libc::SIGKILL {
        let g = t.tgid;
        k.send_signal(g, SigInfo::user(libc::SIGKILL, me));
    } else {
        k.send_to_task(tid, SigInfo::user(sig as i32, me));
    }
    ok(0)
}

pub fn tkill(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    thread_kill(k, ctx, None, ctx.args.a[0] as Pid, ctx.args.a[1])
}

pub fn tgkill(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    thread_kill(k, ctx, Some(a[0] as Pid), a[1] as Pid, a[2])
}

pub fn rt_sigaction(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [sig, act, old, size, ..] = ctx.args.a;
    let sig = check_sig(sig)?;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let h = hpid(k, ctx)?;
    let new = if act != 0 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 32];
        mem::read(h, act, &mut b)?;
        let mut a = SigAction::from_bytes(&b);
        a.mask &= !UNBLOCKABLE;
        Some(a)
    } else {
        None
    };
    let p = k.proc_of(ctx.tid)?;
    let prev = p.actions.borrow()[sig as usize];
    if old != 0 {
        mem::write(h, old, &prev.to_bytes())?;
    }
    if let Some(a) = new {
        p.actions.borrow_mut()[sig as usize] = a;
        if a.handler == signal::SIG_IGN
            || (a.handler == signal::SIG_DFL
                && signal::default_action(sig) != signal::Default_::Term)
        {
            let threads = p.threads.clone();
            for t in threads {
                if let Some(t) = k.tasks.get_mut(&t) {
                    t.pending.remove(&sig);
                }
            }
        }
    }
    ok(0)
}

pub fn rt_sigprocmask(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [how, set, old, size, ..] = ctx.args.a;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let h = hpid(k, ctx)?;
    let cur = k.task(ctx.tid)?.mask;
    let new = if set != 0 {
        let s = mem::read_u64(h, set)?;
        Some(match how as i32 {
            libc::SIG_BLOCK => cur | s,
            libc::SIG_UNBLOCK => cur & !s,
            libc::SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        })
    } else {
        None
    };
    if old != 0 {
        mem::write(h, old, &cur.to_le_bytes())?;
    }
    if let Some(m) = new {
        k.task_mut(ctx.tid)?.mask = m & !UNBLOCKABLE;
    }
    ok(0)
}

pub fn rt_sigreturn(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let t = k.tracee(ctx.tid)?;
    match signal::restore_frame(&t, &mut ctx.regs) {
        Ok(mask) => {
            k.task_mut(ctx.tid)?.mask = mask;
            Ok(Sys::Regs)
        }
        Err(_) => {
            let tgid = k.task(ctx.tid)?.tgid;
            k.exit_process(tgid, crate::sentry::task::Exit::Signal(libc::SIGSEGV));
            Ok(Sys::Gone)
        }
    }
}

pub fn rt_sigsuspend(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [set, size, ..] = ctx.args.a;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let m = mem::read_u64(hpid(k, ctx)?, set)?;
    let t = k.task_mut(ctx.tid)?;
    if t.saved_mask.is_none() {
        t.saved_mask = Some(t.mask);
    }
    t.mask = m & !UNBLOCKABLE;
    Ok(Sys::Block(Wait::default()))
}

pub fn rt_sigpending(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let t = k.task(ctx.tid)?;
    let set = t.pending.keys().fold(0u64, |m, &s| m | signal::bit(s)) & t.mask;
    mem::write(hpid(k, ctx)?, ctx.args.a[0], &set.to_le_bytes())?;
    ok(0)
}

pub fn pause(_k: &mut Kernel, _ctx: &mut Ctx) -> Result<Sys, Errno> {
    Ok(Sys::Block(Wait::default()))
}

pub fn sigaltstack(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [new, old, ..] = ctx.args.a;
    let h = hpid(k, ctx)?;
    let cur = k.task(ctx.tid)?.altstack;
    if old != 0 {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&cur.sp.to_le_bytes());
        let flags: i32 = if cur.disabled { libc::SS_DISABLE } else { 0 };
        b[8..12].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&cur.size.to_le_bytes());
        mem::write(h, old, &b)?;
    }
    if new != 0 {
        let b = mem::read_vec(h, new, 24)?;
        let sp = u64::from_le_bytes(b[0..8].try_into().unwrap_or_default());
        let flags = i32::from_le_bytes(b[8..12].try_into().unwrap_or_default());
        let size = u64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
        if flags & !libc::SS_DISABLE != 0 {
            return Err(Errno::EINVAL);
        }
        let disabled = flags & libc::SS_DISABLE != 0;
        if !disabled && size < libc::MINSIGSTKSZ as u64 {
            return Err(Errno::ENOMEM);
        }
        let t = k.task_mut(ctx.tid)?;
        t.altstack = crate::sentry::task::AltStack { sp, size, disabled };
    }
    ok(0)
}

pub fn rt_sigtimedwait(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [set, info, timeout, size, ..] = ctx.args.a;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let h = hpid(k, ctx)?;
    let want = mem::read_u64(h, set)? & !UNBLOCKABLE;
    let t = k.task_mut(ctx.tid)?;
    if let Some(&sig) = t.pending.keys().find(|&&s| want & signal::bit(s) != 0) {
        let si = t.pending.remove(&sig).unwrap_or_default();
        if info != 0 {
            mem::write(h, info, &si.to_bytes())?;
        }
        return ok(sig);
    }
    let deadline = match (ctx.deadline, timeout) {
        (Some(d), _) => Some(d),
        (None, 0) => None,
        (None, t) => Some(std::time::Instant::now() + super::misc::read_timespec(k, ctx, t)?),
    };
    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
        return Err(Errno::EAGAIN);
    }
    Ok(Sys::Block(Wait {
        deadline,
        ..Wait::default()
    }))
}
