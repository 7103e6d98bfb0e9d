//! Time, sleeping, uname, randomness and system information.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::time::ClockId;

use super::{hpid, ok, Ctx, Sys};
use crate::platform::mem;
use crate::sentry::synth;
use crate::sentry::task::Wait;
use crate::sentry::Kernel;

/// Reads a struct timespec as a duration; EINVAL for a negative or malformed one.
pub fn read_timespec(k: &Kernel, ctx: &Ctx, addr: u64) -> Result<Duration, Errno> {
    let b = mem::read_vec(hpid(k, ctx)?, addr, 16)?;
    let s = i64::from_le_bytes(b[..8].try_into().unwrap_or_default());
    let ns = i64::from_le_bytes(b[8..].try_into().unwrap_or_default());
    if s < 0 || !(0..1_000_000_000).contains(&ns) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(s as u64, ns as u32))
}

/// The current value of a host clock, as a duration since its epoch.
pub fn now_since(clock: libc::clockid_t) -> Duration {
    nix::time::clock_gettime(ClockId::from_raw(clock))
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default()
}

fn timespec_bytes(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
    b[8..].copy_from_slice(&(d.subsec_nanos() as i64).to_le_bytes());
    b
}

fn check_clock(c: u64) -> Result<libc::clockid_t, Errno> {
    match c as libc::clockid_t {
        c @ (libc::CLOCK_REALTIME
        | libc::CLOCK_MONOTONIC
        | libc::CLOCK_MONOTONIC_RAW
        | libc::CLOCK_REALTIME_COARSE
        | libc::CLOCK_MONOTONIC_COARSE
        | libc::CLOCK_BOOTTIME
        | libc::CLOCK_PROCESS_CPUTIME_ID
        | libc::CLOCK_THREAD_CPUTIME_ID) => Ok(c),
        _ => Err(Errno::EINVAL),
    }
}

fn sleep_until(ctx: &Ctx, d: Duration, rem: u64, k: &Kernel) -> Result<Sys, Errno> {
    let deadline = ctx.deadline.unwrap_or_else(|| Instant::now() + d);
    if Instant::now() >= deadline {
        if rem != 0 {
            let _ = mem::write(hpid(k, ctx)?, rem, &[0u8; 16]);
        }
        return ok(0);
    }
    Ok(Sys::Block(Wait {
        deadline: Some(deadline),
        ..Wait::default()
    }))
}

pub fn nanosleep(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let d = if ctx.deadline.is_some() {
        Duration::ZERO
    } else {
        read_timespec(k, ctx, ctx.args.a[0])?
    };
    sleep_until(ctx, d, ctx.args.a[1], k)
}

pub fn clock_nanosleep(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [clock, flags, req, rem, ..] = ctx.args.a;
    let clock = check_clock(clock)?;
    if ctx.deadline.is_some() {
        return sleep_until(ctx, Duration::ZERO, rem, k);
    }
    let d = read_timespec(k, ctx, req)?;
    let d = if flags as i32 & libc::TIMER_ABSTIME != 0 {
        d.saturating_sub(now_since(clock))
    } else {
        d
    };
    sleep_until(ctx, d, rem, k)
}

pub fn clock_gettime(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let clock = check_clock(ctx.args.a[0])?;
    mem::write(
        hpid(k, ctx)?,
        ctx.args.a[1],
        &timespec_bytes(now_since(clock)),
    )?;
    ok(0)
}

pub fn clock_getres(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    check_clock(ctx.args.a[0])?;
    if ctx.args.a[1] != 0 {
        mem::write(
            hpid(k, ctx)?,
            ctx.args.a[1],
            &timespec_bytes(Duration::from_nanos(1)),
        )?;
    }
    ok(0)
}

pub fn gettimeofday(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let now = now_since(libc::CLOCK_REALTIME);
    if ctx.args.a[0] != 0 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(now.as_secs() as i64).to_le_bytes());
        b[8..].copy_from_slice(&(now.subsec_micros() as i64).to_le_bytes());
        mem::write(hpid(k, ctx)?, ctx.args.a[0], &b)?;
    }
    if ctx.args.a[1] != 0 {
        mem::write(hpid(k, ctx)?, ctx.args.a[1], &[0u8; 8])?;
    }
    ok(0)
}

pub fn time(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let s = now_since(libc::CLOCK_REALTIME).as_secs() as i64;
    if ctx.args.a[0] != 0 {
        mem::write(hpid(k, ctx)?, ctx.args.a[0], &s.to_le_bytes())?;
    }
    ok(s)
}

pub fn uname(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let mut b = [0u8; 65 * 6];
    let fields = [
        synth::SYSNAME,
        &k.hostname,
        synth::RELEASE,
        synth::VERSION,
        "x86_64",
        "(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        b[i * 65..i * 65 + n].copy_from_slice(&f.as_bytes()[..n]);
    }
    mem::write(hpid(k, ctx)?, ctx.args.a[0], &b)?;
    ok(0)
}

pub fn sethostname(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let len = ctx.args.a[1] as usize;
    if len > 64 {
        return Err(Errno::EINVAL);
    }
    let name = mem::read_vec(hpid(k, ctx)?, ctx.args.a[0], len)?;
    k.hostname = String::from_utf8_lossy(&name).into_owned();
    ok(0)
}

pub fn getrandom(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let n = (ctx.args.a[1] as usize).min(1 << 20);
    let mut b = vec![0u8; n];
    crate::sys::fill_random(&mut b);
    mem::write(hpid(k, ctx)?, ctx.args.a[0], &b)?;
    ok(n)
}

pub fn sched_yield(_k: &mut Kernel, _ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(0)
}

pub fn sched_getaffinity(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let len = ctx.args.a[1] as usize;
    if len < 8 {
        return Err(Errno::EINVAL);
    }
    // Not available_parallelism: it reads /sys, which the confined Sentry cannot open.
    let set =
        nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(|_| Errno::EINVAL)?;
    let cpus = (0..64)
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .count()
        .max(1);
    let mask: u64 = if cpus == 64 {
        u64::MAX
    } else {
        (1 << cpus) - 1
    };
    mem::write(hpid(k, ctx)?, ctx.args.a[2], &mask.to_le_bytes())?;
    ok(8)
}

pub fn sysinfo(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let mut b = [0u8; 112];
    let up = k.boot.elapsed().as_secs() as i64;
    b[0..8].copy_from_slice(&up.to_le_bytes());
    let total: u64 = 2 << 30;
    b[32..40].copy_from_slice(&total.to_le_bytes());
    b[40..48].copy_from_slice(&total.to_le_bytes());
    b[80..82].copy_from_slice(&(k.procs.len() as u16).to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    mem::write(hpid(k, ctx)?, ctx.args.a[0], &b)?;
    ok(0)
}

pub fn getrusage(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    mem::write(hpid(k, ctx)?, ctx.args.a[1], &[0u8; 144])?;
    ok(0)
}

pub fn times(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    if ctx.args.a[0] != 0 {
        mem::write(hpid(k, ctx)?, ctx.args.a[0], &[0u8; 32])?;
    }
    ok((k.boot.elapsed().as_millis() / 10) as i64)
}

pub fn getcpu(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    for i in 0..2 {
        if ctx.args.a[i] != 0 {
            mem::write(hpid(k, ctx)?, ctx.args.a[i], &0u32.to_le_bytes())?;
        }
    }
    ok(0)
}
