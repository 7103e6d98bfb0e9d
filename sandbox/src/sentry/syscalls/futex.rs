//! Futexes, kept in the Sentry: waiters are keyed by (address space, address). Host futexes
//! are never used, so a workload cannot wake anything outside the sandbox.

use std::time::Instant;

use nix::errno::Errno;

use super::{hpid, ok, Ctx, Sys};
use crate::platform::mem;
use crate::sentry::task::Wait;
use crate::sentry::{FutexWaiter, Kernel};

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

impl Kernel {
    /// Wakes up to `n` waiters on (mm, addr) whose bitset intersects `bits`.
    pub(crate) fn futex_wake(&mut self, mm: u64, addr: u64, n: usize, bits: u32) -> usize {
        let mut woken = Vec::new();
        self.futex.retain(|w| {
            if woken.len() < n && w.mm == mm && w.addr == addr && w.bitset & bits != 0 {
                woken.push(w.tid);
                false
            } else {
                true
            }
        });
        for &t in &woken {
            if let Some(t) = self.tasks.get_mut(&t) {
                t.futex_woken = true;
            }
        }
        woken.len()
    }
}

fn wait(
    k: &mut Kernel,
    ctx: &Ctx,
    addr: u64,
    val: u32,
    bits: u32,
    abs: bool,
) -> Result<Sys, Errno> {
    let mm = k.proc_of(ctx.tid)?.mm;
    let tid = ctx.tid;
    let queued = k.futex.iter().any(|w| w.tid == tid);
    if queued || ctx.deadline.is_some() {
        // A retry: woken, timed out, or still waiting.
        let t = k.task_mut(tid)?;
        if std::mem::take(&mut t.futex_woken) {
            return ok(0);
        }
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            k.futex.retain(|w| w.tid != tid);
            return Err(Errno::ETIMEDOUT);
        }
        if queued {
            return Ok(Sys::Block(Wait {
                deadline: ctx.deadline,
                ..Wait::default()
            }));
        }
    }
    if k.task(tid)?.futex_woken {
        k.task_mut(tid)?.futex_woken = false;
        return ok(0);
    }
    if bits == 0 {
        return Err(Errno::EINVAL);
    }
    let cur = mem::read_u32(hpid(k, ctx)?, addr)?;
    if cur != val {
        return Err(Errno::EAGAIN);
    }
    let timeout = ctx.args.a[3];
    let deadline = if timeout == 0 {
        None
    } else {
        let d = super::misc::read_timespec(k, ctx, timeout)?;
        Some(if abs {
            let now = super::misc::now_since(if ctx.args.a[1] & FUTEX_CLOCK_REALTIME != 0 {
                libc::CLOCK_REALTIME
            } else {
                libc::CLOCK_MONOTONIC
            });
            Instant::now() + d.saturating_sub(now)
        } else {
            Instant::now() + d
        })
    };
    k.futex.push(FutexWaiter {
        mm,
        addr,
        tid,
        bitset: bits,
    });
    Ok(Sys::Block(Wait {
        deadline,
        restartable: true,
        ..Wait::default()
    }))
}

pub fn futex(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [addr, op, val, _timeout, addr2, val3] = ctx.args.a;
    if addr % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    let cmd = op & !(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME);
    let mm = k.proc_of(ctx.tid)?.mm;
    match cmd {
        FUTEX_WAIT => wait(k, ctx, addr, val as u32, u32::MAX, false),
        FUTEX_WAIT_BITSET => wait(k, ctx, addr, val as u32, val3 as u32, true),
        FUTEX_WAKE => ok(k.futex_wake(mm, addr, val as usize, u32::MAX)),
        FUTEX_WAKE_BITSET => {
            if val3 as u32 == 0 {
                return Err(Errno::EINVAL);
            }
            ok(k.futex_wake(mm, addr, val as usize, val3 as u32))
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            if cmd == FUTEX_CMP_REQUEUE && mem::read_u32(hpid(k, ctx)?, addr)? != val3 as u32 {
                return Err(Errno::EAGAIN);
            }
            let woken = k.futex_wake(mm, addr, val as usize, u32::MAX);
            let limit = ctx.args.a[3] as usize;
            let mut moved = 0;
            for w in k.futex.iter_mut() {
                if moved < limit && w.mm == mm && w.addr == addr {
                    w.addr = addr2;
                    moved += 1;
                }
            }
            ok(woken + moved)
        }
        FUTEX_WAKE_OP => {
            let woken = k.futex_wake(mm, addr, val as usize, u32::MAX);
            ok(woken + wake_op(k, ctx, mm, addr2, val3)?)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// FUTEX_WAKE_OP's second half: apply the encoded operation to *addr2, then wake waiters
/// on addr2 if the encoded comparison of the old value holds.
fn wake_op(k: &mut Kernel, ctx: &Ctx, mm: u64, addr2: u64, enc: u64) -> Result<usize, Errno> {
    let h = hpid(k, ctx)?;
    let enc = enc as u32;
    let (op, cmp) = ((enc >> 28) & 0xf, (enc >> 24) & 0xf);
    let mut oparg = (enc >> 12) & 0xfff;
    let cmparg = enc & 0xfff;
    if op & 8 != 0 {
        oparg = 1 << (oparg & 31);
    }
    let old = mem::read_u32(h, addr2)?;
    let new = match op & 7 {
        0 => oparg,
        1 => old.wrapping_add(oparg),
        2 => old | oparg,
        3 => old & !oparg,
        4 => old ^ oparg,
        _ => return Err(Errno::ENOSYS),
    };
    mem::write(h, addr2, &new.to_le_bytes())?;
    let hit = match cmp {
        0 => old == cmparg,
        1 => old != cmparg,
        2 => (old as i32) < cmparg as i32,
        3 => (old as i32) <= cmparg as i32,
        4 => (old as i32) > cmparg as i32,
        5 => (old as i32) >= cmparg as i32,
        _ => return Err(Errno::ENOSYS),
    };
    Ok(if hit {
        k.futex_wake(mm, addr2, ctx.args.a[3] as usize, u32::MAX)
    } else {
        0
    })
}

pub fn set_robust_list(_k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    if ctx.args.a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    ok(0)
}
