//! Memory calls. The Sentry validates every argument (no host descriptor, nothing over the
//! stub page) and then changes the address space through a stub call with its own values.
//! File mappings are private copies: the file's bytes are written into anonymous memory.

use nix::errno::Errno;

use super::io::{read_file, Io};
use super::{ok, Ctx, Sys};
use crate::platform::{mem, Tracee};
use crate::sentry::file::FileKind;
use crate::sentry::Kernel;
use crate::sys::{STUB_ADDR, STUB_LEN, TASK_SIZE};

const PAGE: u64 = 4096;

fn stub_result(r: i64) -> Result<u64, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno::from_raw(-r as i32))
    } else {
        Ok(r as u64)
    }
}

fn stub(t: &Tracee, nr: i64, a: [u64; 6]) -> Result<u64, Errno> {
    stub_result(t.stub_call(nr, a).map_err(|_| Errno::EFAULT)?)
}

/// Rejects ranges that wrap, leave user space or touch the stub page.
fn check_range(addr: u64, len: u64) -> Result<u64, Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if end > TASK_SIZE || (addr < STUB_ADDR + STUB_LEN && end > STUB_ADDR) {
        return Err(Errno::EINVAL);
    }
    Ok(end)
}

fn check_prot(prot: u64) -> Result<u64, Errno> {
    let ok_bits = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    if prot & !(ok_bits | libc::PROT_GROWSDOWN as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(prot & ok_bits)
}

pub fn mmap(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [addr, len, prot, flags, fdn, off] = ctx.args.a;
    let prot = check_prot(prot)?;
    if len == 0 || off % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::ENOMEM)? & !(PAGE - 1);
    let flags = flags as i32;
    let allowed = libc::MAP_SHARED
        | libc::MAP_PRIVATE
        | libc::MAP_FIXED
        | libc::MAP_ANONYMOUS
        | libc::MAP_NORESERVE
        | libc::MAP_STACK
        | libc::MAP_GROWSDOWN
        | libc::MAP_POPULATE
        | libc::MAP_FIXED_NOREPLACE
        | libc::MAP_DENYWRITE
        | libc::MAP_EXECUTABLE;
    if flags & !allowed != 0 || (flags & (libc::MAP_SHARED | libc::MAP_PRIVATE)).count_ones() != 1 {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    if fixed {
        if addr % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        check_range(addr, len)?;
    }
    let anon = flags & libc::MAP_ANONYMOUS != 0;
    let file = if anon {
        None
    } else {
        let f = k.proc_of(ctx.tid)?.fds.file(fdn as i32)?;
        let fl = f.borrow();
        if !matches!(
            fl.kind,
            FileKind::Host(_) | FileKind::Upper(_) | FileKind::Zero
        ) {
            return Err(Errno::ENODEV);
        }
        if fl.flags & libc::O_ACCMODE == libc::O_WRONLY {
            return Err(Errno::EACCES);
        }
        if flags & libc::MAP_SHARED != 0 && prot & libc::PROT_WRITE as u64 != 0 {
            return Err(Errno::ENODEV);
        }
        drop(fl);
        Some(f)
    };
    let host_flags = (flags
        & (libc::MAP_SHARED
            | libc::MAP_PRIVATE
            | libc::MAP_FIXED
            | libc::MAP_NORESERVE
            | libc::MAP_STACK
            | libc::MAP_FIXED_NOREPLACE))
        | libc::MAP_ANONYMOUS;
    let host_flags = if file.is_some() {
        (host_flags & !libc::MAP_SHARED) | libc::MAP_PRIVATE
    } else {
        host_flags
    };
    let t = k.tracee(ctx.tid)?;
    let first_prot = if file.is_some() {
        prot | libc::PROT_WRITE as u64
    } else {
        prot
    };
    let hint = if fixed { addr } else { addr & !(PAGE - 1) };
    let got = stub(
        &t,
        libc::SYS_mmap,
        [hint, len, first_prot, host_flags as u64, u64::MAX, 0],
    )?;
    if check_range(got, len).is_err() {
        let _ = stub(&t, libc::SYS_munmap, [got, len, 0, 0, 0, 0]);
        return Err(Errno::ENOMEM);
    }
    if let Some(f) = file {
        if let Err(e) = fill_from_file(&t, &f, got, len, off, prot) {
            let _ = stub(&t, libc::SYS_munmap, [got, len, 0, 0, 0, 0]);
            return Err(e);
        }
    }
    ok(got as i64)
}

fn fill_from_file(
    t: &Tracee,
    f: &crate::sentry::file::FileRef,
    addr: u64,
    len: u64,
    off: u64,
    prot: u64,
) -> Result<(), Errno> {
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 20) as usize;
        let data = match read_file(f, want, Some(off + done))? {
            Io::Done(d) => d,
            Io::Block(_) => return Err(Errno::EAGAIN),
        };
        if data.is_empty() {
            break;
        }
        mem::write(t.pid, addr + done, &data)?;
        done += data.len() as u64;
    }
    if prot & libc::PROT_WRITE as u64 == 0 {
        stub(t, libc::SYS_mprotect, [addr, len, prot, 0, 0, 0])?;
    }
    Ok(())
}

pub fn munmap(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [addr, len, ..] = ctx.args.a;
    if addr % PAGE != 0 || len == 0 {
        return Err(Errno::EINVAL);
    }
    check_range(addr, len)?;
    let t = k.tracee(ctx.tid)?;
    ok(stub(&t, libc::SYS_munmap, [addr, len, 0, 0, 0, 0])? as i64)
}

pub fn mprotect(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [addr, len, prot, ..] = ctx.args.a;
    let prot = check_prot(prot)?;
    if addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    check_range(addr, len)?;
    let t = k.tracee(ctx.tid)?;
    ok(stub(&t, libc::SYS_mprotect, [addr, len, prot, 0, 0, 0])? as i64)
}

pub fn madvise(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [addr, len, advice, ..] = ctx.args.a;
    if addr % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    check_range(addr, len)?;
    match advice as i32 {
        // These change what the workload reads back, so they must really happen.
        libc::MADV_DONTNEED | libc::MADV_FREE => {
            let t = k.tracee(ctx.tid)?;
            let a = if advice as i32 == libc::MADV_FREE {
                libc::MADV_DONTNEED
            } else {
                advice as i32
            };
            ok(stub(&t, libc::SYS_madvise, [addr, len, a as u64, 0, 0, 0])? as i64)
        }
        libc::MADV_NORMAL
        | libc::MADV_RANDOM
        | libc::MADV_SEQUENTIAL
        | libc::MADV_WILLNEED
        | libc::MADV_HUGEPAGE
        | libc::MADV_NOHUGEPAGE
        | libc::MADV_DONTDUMP
        | libc::MADV_DODUMP => ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn mremap(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [old, old_len, new_len, flags, new_addr, _] = ctx.args.a;
    if flags & !(libc::MREMAP_MAYMOVE as u64 | libc::MREMAP_FIXED as u64) != 0 || old % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    check_range(old, old_len)?;
    if flags & libc::MREMAP_FIXED as u64 != 0 {
        check_range(new_addr, new_len)?;
    }
    let t = k.tracee(ctx.tid)?;
    let got = stub(
        &t,
        libc::SYS_mremap,
        [old, old_len, new_len, flags, new_addr, 0],
    )?;
    if check_range(got, new_len).is_err() {
        return Err(Errno::ENOMEM);
    }
    ok(got as i64)
}

pub fn brk(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let want = ctx.args.a[0];
    let t = k.tracee(ctx.tid)?;
    let b = k.proc_of(ctx.tid)?.brk;
    if want < b.start || check_range(b.start, want.saturating_sub(b.start)).is_err() {
        return ok(b.cur as i64);
    }
    let old_top = (b.cur + PAGE - 1) & !(PAGE - 1);
    let new_top = (want + PAGE - 1) & !(PAGE - 1);
    if new_top > old_top {
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let r = stub(
            &t,
            libc::SYS_mmap,
            [old_top, new_top - old_top, prot, flags, u64::MAX, 0],
        );
        if r.is_err() {
            return ok(b.cur as i64);
        }
    } else if new_top < old_top {
        stub(
            &t,
            libc::SYS_munmap,
            [new_top, old_top - new_top, 0, 0, 0, 0],
        )?;
    }
    k.proc_of_mut(ctx.tid)?.brk.cur = want;
    ok(want as i64)
}
