//! Path and descriptor calls: open, close, dup, fcntl, stat, getdents, directories,
//! links.

use std::cell::RefCell;
use std::rc::Rc;

use nix::errno::Errno;

use super::{fd, hpid, ok, Ctx, Sys};
use crate::platform::mem;
use crate::sentry::file::{FdTable, FileKind, OpenFile};
use crate::sentry::vfs::{self, Stat};
use crate::sentry::Kernel;

const AT_FDCWD: i32 = libc::AT_FDCWD;
const PATH_MAX: usize = 4096;

/// The initial descriptors 0, 1, 2: the container's stdio (copies of the Sentry's own).
pub fn stdio_table() -> FdTable {
    let fds = (0..3)
        .filter_map(|i| crate::sys::borrow_fd(i).try_clone_to_owned().ok())
        .collect();
    table_of(fds)
}

/// A table with `fds` (host descriptors) at 0, 1, 2.
pub fn table_of(fds: Vec<std::os::fd::OwnedFd>) -> FdTable {
    let mut t = FdTable::default();
    for (i, fd) in fds.into_iter().enumerate().take(3) {
        let i = i as i32;
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)).map(|s| Stat {
            mode: s.st_mode,
            ino: s.st_ino,
            dev: s.st_dev,
            rdev: s.st_rdev,
            nlink: 1,
            ..Stat::default()
        });
        let f = OpenFile {
            kind: FileKind::Stdio(Rc::new(fd)),
            path: format!("/dev/fd{i}"),
            offset: 0,
            flags: libc::O_RDWR,
            stat: st.unwrap_or_default(),
        };
        let _ = t.install_at(i, Rc::new(RefCell::new(f)), false);
    }
    t
}

/// The path open file `fd` was opened by (fchdir, fchmod, futimens).
fn fd_path(k: &Kernel, ctx: &Ctx, fd: i32) -> Result<String, Errno> {
    Ok(k.proc_of(ctx.tid)?.fds.file(fd)?.borrow().path.clone())
}

/// Resolves a path argument against `dirfd` (AT_FDCWD: the cwd) to a normalized path.
pub fn at_path(k: &mut Kernel, ctx: &Ctx, dirfd: i32, addr: u64) -> Result<String, Errno> {
    let raw = mem::read_cstr(hpid(k, ctx)?, addr, PATH_MAX)?;
    at_path_bytes(k, ctx, dirfd, &raw)
}

fn at_path_bytes(k: &mut Kernel, ctx: &Ctx, dirfd: i32, raw: &[u8]) -> Result<String, Errno> {
    if raw.is_empty() {
        return Err(Errno::ENOENT);
    }
    let p = k.proc_of(ctx.tid)?;
    let base = if raw.starts_with(b"/") || dirfd == AT_FDCWD {
        p.cwd.clone()
    } else {
        let f = p.fds.file(dirfd)?;
        let f = f.borrow();
        if f.stat.kind() != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        f.path.clone()
    };
    let path = vfs::normalize(&base, raw)?;
    k.refresh_proc(ctx.tid, &path);
    Ok(path)
}

fn do_open(
    k: &mut Kernel,
    ctx: &Ctx,
    dirfd: i32,
    addr: u64,
    flags: i32,
    mode: u32,
) -> Result<Sys, Errno> {
    if flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let path = at_path(k, ctx, dirfd, addr)?;
    let umask = k.proc_of(ctx.tid)?.umask;
    let f = k.vfs.open(&path, flags, mode & !umask)?;
    let kept = flags & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_PATH);
    let f = OpenFile { flags: kept, ..f };
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let n = k
        .proc_of_mut(ctx.tid)?
        .fds
        .install(Rc::new(RefCell::new(f)), cloexec, 0)?;
    ok(n)
}

pub fn open(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_open(k, ctx, AT_FDCWD, a[0], a[1] as i32, a[2] as u32)
}

pub fn openat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_open(k, ctx, a[0] as i32, a[1], a[2] as i32, a[3] as u32)
}

pub fn close(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    k.proc_of_mut(ctx.tid)?.fds.close(fd(ctx, 0))?;
    ok(0)
}

pub fn close_range(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    if a[2] != 0 {
        return Err(Errno::EINVAL);
    }
    let hi = a[1].min(i32::MAX as u64) as i32;
    k.proc_of_mut(ctx.tid)?.fds.close_range(a[0] as i32, hi);
    ok(0)
}

pub fn dup(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let p = k.proc_of_mut(ctx.tid)?;
    let f = p.fds.file(fd(ctx, 0))?;
    ok(p.fds.install(f, false, 0)?)
}

fn do_dup3(k: &mut Kernel, ctx: &Ctx, from: i32, to: i32, flags: i32) -> Result<Sys, Errno> {
    let p = k.proc_of_mut(ctx.tid)?;
    let f = p.fds.file(from)?;
    p.fds.install_at(to, f, flags & libc::O_CLOEXEC != 0)?;
    ok(to)
}

pub fn dup2(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let (from, to) = (fd(ctx, 0), fd(ctx, 1));
    if from == to {
        k.proc_of(ctx.tid)?.fds.file(from)?;
        return ok(to);
    }
    do_dup3(k, ctx, from, to, 0)
}

pub fn dup3(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let (from, to, flags) = (fd(ctx, 0), fd(ctx, 1), ctx.args.a[2] as i32);
    if from == to || flags & !libc::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    do_dup3(k, ctx, from, to, flags)
}

pub fn fcntl(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let (n, cmd, arg) = (fd(ctx, 0), ctx.args.a[1] as i32, ctx.args.a[2]);
    let p = k.proc_of_mut(ctx.tid)?;
    match cmd {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let f = p.fds.file(n)?;
            ok(p.fds.install(f, cmd == libc::F_DUPFD_CLOEXEC, arg as i32)?)
        }
        libc::F_GETFD => ok(p.fds.get(n)?.cloexec as i32),
        libc::F_SETFD => {
            p.fds.get_mut(n)?.cloexec = arg & libc::FD_CLOEXEC as u64 != 0;
            ok(0)
        }
        libc::F_GETFL => ok(p.fds.file(n)?.borrow().flags),
        libc::F_SETFL => {
            let f = p.fds.file(n)?;
            let mut f = f.borrow_mut();
            let settable = libc::O_APPEND | libc::O_NONBLOCK;
            f.flags = (f.flags & !settable) | (arg as i32 & settable);
            ok(0)
        }
        libc::F_GETPIPE_SZ => ok(crate::sentry::file::PIPE_CAP),
        _ => Err(Errno::EINVAL),
    }
}

/// The live stat of an open file.
fn file_stat(f: &OpenFile) -> Stat {
    match &f.kind {
        FileKind::Upper(d) => Stat {
            size: d.borrow().len() as i64,
            ..f.stat
        },
        FileKind::Synthetic(d) => Stat {
            size: d.len() as i64,
            ..f.stat
        },
        _ => f.stat,
    }
}

fn put_stat(k: &Kernel, ctx: &Ctx, addr: u64, st: Stat) -> Result<Sys, Errno> {
    mem::write(hpid(k, ctx)?, addr, &st.to_bytes())?;
    ok(0)
}

fn stat_at(k: &mut Kernel, ctx: &Ctx, dirfd: i32, addr: u64, flags: i32) -> Result<Stat, Errno> {
    let raw = mem::read_cstr(hpid(k, ctx)?, addr, PATH_MAX)?;
    if raw.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        let f = k.proc_of(ctx.tid)?.fds.file(dirfd)?;
        let st = file_stat(&f.borrow());
        return Ok(st);
    }
    let path = at_path_bytes(k, ctx, dirfd, &raw)?;
    k.vfs.stat(&path, flags & libc::AT_SYMLINK_NOFOLLOW != 0)
}

pub fn stat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let st = stat_at(k, ctx, AT_FDCWD, ctx.args.a[0], 0)?;
    put_stat(k, ctx, ctx.args.a[1], st)
}

pub fn lstat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let st = stat_at(k, ctx, AT_FDCWD, ctx.args.a[0], libc::AT_SYMLINK_NOFOLLOW)?;
    put_stat(k, ctx, ctx.args.a[1], st)
}

pub fn fstat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let f = k.proc_of(ctx.tid)?.fds.file(fd(ctx, 0))?;
    let st = file_stat(&f.borrow());
    put_stat(k, ctx, ctx.args.a[1], st)
}

pub fn newfstatat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let st = stat_at(k, ctx, a[0] as i32, a[1], a[3] as i32)?;
    put_stat(k, ctx, a[2], st)
}

pub fn statx(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let st = stat_at(k, ctx, a[0] as i32, a[1], a[2] as i32)?;
    let mut b = [0u8; 256];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    put(4, &4096u32.to_le_bytes());
    put(16, &(st.nlink as u32).to_le_bytes());
    put(20, &st.uid.to_le_bytes());
    put(24, &st.gid.to_le_bytes());
    put(28, &(st.mode as u16).to_le_bytes());
    put(32, &st.ino.to_le_bytes());
    put(40, &(st.size as u64).to_le_bytes());
    put(48, &(((st.size + 511) / 512) as u64).to_le_bytes());
    for t in [64, 80, 96, 112] {
        put(t, &st.mtime.to_le_bytes());
    }
    put(128, &((st.rdev >> 8) as u32 & 0xfff).to_le_bytes());
    put(132, &(st.rdev as u32 & 0xff).to_le_bytes());
    put(136, &((st.dev >> 8) as u32 & 0xfff).to_le_bytes());
    put(140, &(st.dev as u32 & 0xff).to_le_bytes());
    mem::write(hpid(k, ctx)?, a[4], &b)?;
    ok(0)
}

fn do_access(k: &mut Kernel, ctx: &Ctx, dirfd: i32, addr: u64, flags: i32) -> Result<Sys, Errno> {
    let st = stat_at(k, ctx, dirfd, addr, flags & libc::AT_SYMLINK_NOFOLLOW)?;
    let mode = ctx.args.a[if dirfd == AT_FDCWD && ctx.args.nr == libc::SYS_access {
        1
    } else {
        2
    }];
    if mode & libc::X_OK as u64 != 0 && st.kind() == libc::S_IFREG && st.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    ok(0)
}

pub fn access(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_access(k, ctx, AT_FDCWD, ctx.args.a[0], 0)
}

pub fn faccessat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_access(k, ctx, ctx.args.a[0] as i32, ctx.args.a[1], 0)
}

pub fn faccessat2(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_access(
        k,
        ctx,
        ctx.args.a[0] as i32,
        ctx.args.a[1],
        ctx.args.a[3] as i32,
    )
}

pub fn getdents64(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let (n, addr, count) = (fd(ctx, 0), ctx.args.a[1], ctx.args.a[2] as usize);
    let f = k.proc_of(ctx.tid)?.fds.file(n)?;
    let mut f = f.borrow_mut();
    let FileKind::Dir(entries) = &f.kind else {
        return Err(Errno::ENOTDIR);
    };
    let mut out = Vec::new();
    let mut idx = f.offset as usize;
    while let Some(e) = entries.get(idx) {
        let reclen = (19 + e.name.len() + 1 + 7) & !7;
        if out.len() + reclen > count.min(1 << 20) {
            if out.is_empty() {
                return Err(Errno::EINVAL);
            }
            break;
        }
        let start = out.len();
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&((idx + 1) as i64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(e.kind);
        out.extend_from_slice(&e.name);
        out.resize(start + reclen, 0);
        idx += 1;
    }
    f.offset = idx as u64;
    drop(f);
    mem::write(hpid(k, ctx)?, addr, &out)?;
    ok(out.len())
}

pub fn getcwd(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let mut cwd = k.proc_of(ctx.tid)?.cwd.clone().into_bytes();
    cwd.push(0);
    if cwd.len() > ctx.args.a[1] as usize {
        return Err(Errno::ERANGE);
    }
    mem::write(hpid(k, ctx)?, ctx.args.a[0], &cwd)?;
    ok(cwd.len())
}

fn set_cwd(k: &mut Kernel, ctx: &Ctx, path: String) -> Result<Sys, Errno> {
    let (_, real) = k.vfs.lookup(&path, false)?;
    k.vfs.is_dir(&real)?;
    k.proc_of_mut(ctx.tid)?.cwd = real;
    ok(0)
}

pub fn chdir(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, AT_FDCWD, ctx.args.a[0])?;
    set_cwd(k, ctx, path)
}

pub fn fchdir(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let path = fd_path(k, ctx, fd(ctx, 0))?;
    set_cwd(k, ctx, path)
}

fn do_mkdir(k: &mut Kernel, ctx: &Ctx, dirfd: i32, addr: u64, mode: u32) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, dirfd, addr)?;
    let umask = k.proc_of(ctx.tid)?.umask;
    k.vfs.mkdir(&path, mode & !umask)?;
    ok(0)
}

pub fn mkdir(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_mkdir(k, ctx, AT_FDCWD, ctx.args.a[0], ctx.args.a[1] as u32)
}

pub fn mkdirat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_mkdir(
        k,
        ctx,
        ctx.args.a[0] as i32,
        ctx.args.a[1],
        ctx.args.a[2] as u32,
    )
}

fn do_remove(k: &mut Kernel, ctx: &Ctx, dirfd: i32, addr: u64, dir: bool) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, dirfd, addr)?;
    k.vfs.remove(&path, dir)?;
    ok(0)
}

pub fn unlink(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_remove(k, ctx, AT_FDCWD, ctx.args.a[0], false)
}

pub fn rmdir(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_remove(k, ctx, AT_FDCWD, ctx.args.a[0], true)
}

pub fn unlinkat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let dir = ctx.args.a[2] as i32 & libc::AT_REMOVEDIR != 0;
    do_remove(k, ctx, ctx.args.a[0] as i32, ctx.args.a[1], dir)
}

fn do_rename(
    k: &mut Kernel,
    ctx: &Ctx,
    fd1: i32,
    p1: u64,
    fd2: i32,
    p2: u64,
) -> Result<Sys, Errno> {
    let from = at_path(k, ctx, fd1, p1)?;
    let to = at_path(k, ctx, fd2, p2)?;
    if from != to {
        k.vfs.rename(&from, &to)?;
    }
    ok(0)
}

pub fn rename(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_rename(k, ctx, AT_FDCWD, ctx.args.a[0], AT_FDCWD, ctx.args.a[1])
}

pub fn renameat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_rename(k, ctx, a[0] as i32, a[1], a[2] as i32, a[3])
}

pub fn renameat2(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    if a[4] != 0 {
        return Err(Errno::EINVAL);
    }
    do_rename(k, ctx, a[0] as i32, a[1], a[2] as i32, a[3])
}

fn do_readlink(
    k: &mut Kernel,
    ctx: &Ctx,
    dirfd: i32,
    addr: u64,
    buf: u64,
    len: u64,
) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, dirfd, addr)?;
    let t = k.vfs.readlink(&path)?;
    let n = t.len().min(len as usize);
    mem::write(hpid(k, ctx)?, buf, &t[..n])?;
    ok(n)
}

pub fn readlink(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_readlink(k, ctx, AT_FDCWD, a[0], a[1], a[2])
}

pub fn readlinkat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_readlink(k, ctx, a[0] as i32, a[1], a[2], a[3])
}

fn do_symlink(k: &mut Kernel, ctx: &Ctx, target: u64, dirfd: i32, addr: u64) -> Result<Sys, Errno> {
    let t = mem::read_cstr(hpid(k, ctx)?, target, PATH_MAX)?;
    let path = at_path(k, ctx, dirfd, addr)?;
    k.vfs.symlink(&t, &path)?;
    ok(0)
}

pub fn symlink(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_symlink(k, ctx, ctx.args.a[0], AT_FDCWD, ctx.args.a[1])
}

pub fn symlinkat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_symlink(k, ctx, a[0], a[1] as i32, a[2])
}

pub fn chmod(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, AT_FDCWD, ctx.args.a[0])?;
    k.vfs.chmod(&path, ctx.args.a[1] as u32)?;
    ok(0)
}

pub fn fchmodat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let path = at_path(k, ctx, ctx.args.a[0] as i32, ctx.args.a[1])?;
    k.vfs.chmod(&path, ctx.args.a[2] as u32)?;
    ok(0)
}

pub fn fchmod(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let path = fd_path(k, ctx, fd(ctx, 0))?;
    k.vfs.chmod(&path, ctx.args.a[1] as u32)?;
    ok(0)
}

pub fn umask(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let p = k.proc_of_mut(ctx.tid)?;
    let old = p.umask;
    p.umask = ctx.args.a[0] as u32 & 0o777;
    ok(old)
}

pub fn utimensat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [dirfd, path, times, flags, ..] = ctx.args.a;
    let flags = flags as i32;
    if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = if path == 0 {
        fd_path(k, ctx, dirfd as i32)?
    } else {
        at_path(k, ctx, dirfd as i32, path)?
    };
    let now = super::misc::now_since(libc::CLOCK_REALTIME).as_secs() as i64;
    let mtime = if times == 0 {
        Some(now)
    } else {
        let b = mem::read_vec(hpid(k, ctx)?, times, 32)?;
        let sec = i64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
        match i64::from_le_bytes(b[24..32].try_into().unwrap_or_default()) {
            libc::UTIME_OMIT => None,
            libc::UTIME_NOW => Some(now),
            ns if (0..1_000_000_000).contains(&ns) => Some(sec),
            _ => return Err(Errno::EINVAL),
        }
    };
    match mtime {
        Some(t) => k
            .vfs
            .set_mtime(&target, flags & libc::AT_SYMLINK_NOFOLLOW != 0, t)?,
        None => {
            k.vfs
                .stat(&target, flags & libc::AT_SYMLINK_NOFOLLOW != 0)?;
        }
    }
    ok(0)
}
