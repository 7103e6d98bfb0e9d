//! Reading and writing open files, pipes and the container's stdio; poll; ioctl.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{fd, hpid, ok, Ctx, Sys};
use crate::platform::mem;
use crate::sentry::file::{FileKind, FileRef, OpenFile, Pipe, PipeEnd, PIPE_BUF, PIPE_CAP};
use crate::sentry::signal::SigInfo;
use crate::sentry::task::Wait;
use crate::sentry::Kernel;

/// The most one read or write moves (larger requests are served partially, as allowed).
const MAX_IO: usize = 1 << 20;

/// Outcome of an I/O attempt.
pub enum Io<T> {
    /// Done.
    Done(T),
    /// Would block: park with this wait.
    Block(Wait),
}

fn host_ready(fd: i32, events: PollFlags) -> PollFlags {
    let b: BorrowedFd = crate::sys::borrow_fd(fd);
    let mut p = [PollFd::new(b, events)];
    match nix::poll::poll(&mut p, PollTimeout::ZERO) {
        Ok(n) if n > 0 => p[0].revents().unwrap_or(PollFlags::empty()),
        _ => PollFlags::empty(),
    }
}

fn block_on(f: &OpenFile, host_fd: Option<i32>) -> Result<Io<Vec<u8>>, Errno> {
    if f.flags & libc::O_NONBLOCK != 0 {
        return Err(Errno::EAGAIN);
    }
    Ok(Io::Block(Wait {
        host_fd,
        restartable: true,
        deadline: None,
    }))
}

/// Reads up to `n` bytes at the file's offset (or at `at`).
pub fn read_file(file: &FileRef, n: usize, at: Option<u64>) -> Result<Io<Vec<u8>>, Errno> {
    let mut f = file.borrow_mut();
    if f.flags & libc::O_ACCMODE == libc::O_WRONLY {
        return Err(Errno::EBADF);
    }
    let off = at.unwrap_or(f.offset);
    let data = match &f.kind {
        FileKind::Host(h) => {
            let mut buf = vec![0u8; n];
            let got = crate::sentry::file::pread_host(h, &mut buf, off)?;
            buf.truncate(got);
            buf
        }
        FileKind::Upper(d) => slice_at(&d.borrow(), off, n),
        FileKind::Synthetic(d) => slice_at(d, off, n),
        FileKind::Dir(_) => return Err(Errno::EISDIR),
        FileKind::PathOnly => return Err(Errno::EBADF),
        FileKind::Null => Vec::new(),
        FileKind::Zero | FileKind::Full => vec![0u8; n],
        FileKind::Random => {
            let mut b = vec![0u8; n];
            crate::sys::fill_random(&mut b);
            b
        }
        FileKind::Pipe(end) => {
            if end.write {
                return Err(Errno::EBADF);
            }
            let mut p = end.pipe.borrow_mut();
            if p.buf.is_empty() {
                if p.writers == 0 {
                    return Ok(Io::Done(Vec::new()));
                }
                drop(p);
                return block_on(&f, None);
            }
            let k = n.min(p.buf.len());
            return Ok(Io::Done(p.buf.drain(..k).collect()));
        }
        FileKind::Stdio(fd) => {
            let h = fd.as_raw_fd();
            if host_ready(h, PollFlags::POLLIN).is_empty() {
                return block_on(&f, Some(h));
            }
            let mut buf = vec![0u8; n];
            let got = nix::unistd::read(h, &mut buf)?;
            buf.truncate(got);
            return Ok(Io::Done(buf));
        }
    };
    if at.is_none() {
        f.offset += data.len() as u64;
    }
    Ok(Io::Done(data))
}

fn slice_at(d: &[u8], off: u64, n: usize) -> Vec<u8> {
    let start = (off as usize).min(d.len());
    let end = start.saturating_add(n).min(d.len());
    d[start..end].to_vec()
}

/// Writes `data` at the file's offset (or at `at`); returns the count written.
pub fn write_file(file: &FileRef, data: &[u8], at: Option<u64>) -> Result<Io<usize>, Errno> {
    let mut f = file.borrow_mut();
    if f.flags & libc::O_ACCMODE == libc::O_RDONLY && !matches!(f.kind, FileKind::Stdio(_)) {
        return Err(Errno::EBADF);
    }
    let append = f.flags & libc::O_APPEND != 0;
    match &f.kind {
        FileKind::Upper(d) => {
            let mut d = d.borrow_mut();
            let off = if append {
                d.len()
            } else {
                at.unwrap_or(f.offset) as usize
            };
            if off > 1 << 34 {
                return Err(Errno::EFBIG);
            }
            if d.len() < off + data.len() {
                d.resize(off + data.len(), 0);
            }
            d[off..off + data.len()].copy_from_slice(data);
            drop(d);
            if at.is_none() {
                f.offset = (off + data.len()) as u64;
            }
            Ok(Io::Done(data.len()))
        }
        FileKind::Pipe(end) => {
            if !end.write {
                return Err(Errno::EBADF);
            }
            let mut p = end.pipe.borrow_mut();
            if p.readers == 0 {
                return Err(Errno::EPIPE);
            }
            let space = PIPE_CAP - p.buf.len();
            if space == 0 || (data.len() <= PIPE_BUF && space < data.len()) {
                drop(p);
                if f.flags & libc::O_NONBLOCK != 0 {
                    return Err(Errno::EAGAIN);
                }
                return Ok(Io::Block(Wait {
                    restartable: true,
                    ..Wait::default()
                }));
            }
            let k = space.min(data.len());
            p.buf.extend(&data[..k]);
            Ok(Io::Done(k))
        }
        FileKind::Stdio(fd) => {
            let b = fd.as_fd();
            let mut done = 0;
            while done < data.len() {
                match nix::unistd::write(b, &data[done..]) {
                    Ok(n) => done += n,
                    Err(Errno::EINTR) => {}
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(Io::Done(done))
        }
        FileKind::Null | FileKind::Zero | FileKind::Random => Ok(Io::Done(data.len())),
        FileKind::Full => Err(Errno::ENOSPC),
        FileKind::Dir(_) => Err(Errno::EISDIR),
        FileKind::Host(_) | FileKind::Synthetic(_) | FileKind::PathOnly => Err(Errno::EBADF),
    }
}

fn do_read(
    k: &mut Kernel,
    ctx: &Ctx,
    fdn: i32,
    buf: u64,
    n: usize,
    at: Option<u64>,
) -> Result<Sys, Errno> {
    let file = k.proc_of(ctx.tid)?.fds.file(fdn)?;
    match read_file(&file, n.min(MAX_IO), at)? {
        Io::Done(data) => {
            mem::write(hpid(k, ctx)?, buf, &data)?;
            ok(data.len())
        }
        Io::Block(w) => Ok(Sys::Block(w)),
    }
}

fn do_write(
    k: &mut Kernel,
    ctx: &Ctx,
    fdn: i32,
    data: &[u8],
    at: Option<u64>,
) -> Result<Sys, Errno> {
    let file = k.proc_of(ctx.tid)?.fds.file(fdn)?;
    match write_file(&file, data, at) {
        Ok(Io::Done(n)) => ok(n),
        Ok(Io::Block(w)) => Ok(Sys::Block(w)),
        Err(Errno::EPIPE) => {
            let tgid = k.task(ctx.tid)?.tgid;
            k.send_to_task(ctx.tid, SigInfo::user(libc::SIGPIPE, tgid));
            Err(Errno::EPIPE)
        }
        Err(e) => Err(e),
    }
}

pub fn read(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_read(k, ctx, fd(ctx, 0), a[1], a[2] as usize, None)
}

pub fn pread(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    do_read(k, ctx, fd(ctx, 0), a[1], a[2] as usize, Some(a[3]))
}

pub fn write(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let data = mem::read_vec(hpid(k, ctx)?, a[1], (a[2] as usize).min(MAX_IO))?;
    do_write(k, ctx, fd(ctx, 0), &data, None)
}

pub fn pwrite(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let data = mem::read_vec(hpid(k, ctx)?, a[1], (a[2] as usize).min(MAX_IO))?;
    do_write(k, ctx, fd(ctx, 0), &data, Some(a[3]))
}

fn iovecs(k: &Kernel, ctx: &Ctx, addr: u64, cnt: u64) -> Result<Vec<(u64, usize)>, Errno> {
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let raw = mem::read_vec(hpid(k, ctx)?, addr, cnt as usize * 16)?;
    Ok(raw
        .chunks(16)
        .map(|c| {
            let b = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
            let l = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
            (b, l as usize)
        })
        .collect())
}

pub fn readv(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let iov = iovecs(k, ctx, a[1], a[2])?;
    let total: usize = iov.iter().map(|v| v.1).sum();
    let file = k.proc_of(ctx.tid)?.fds.file(fd(ctx, 0))?;
    let data = match read_file(&file, total.min(MAX_IO), None)? {
        Io::Done(d) => d,
        Io::Block(w) => return Ok(Sys::Block(w)),
    };
    let pid = hpid(k, ctx)?;
    let mut off = 0;
    for (base, len) in iov {
        let n = len.min(data.len() - off);
        mem::write(pid, base, &data[off..off + n])?;
        off += n;
    }
    ok(data.len())
}

pub fn writev(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let pid = hpid(k, ctx)?;
    let mut data = Vec::new();
    for (base, len) in iovecs(k, ctx, a[1], a[2])? {
        data.extend(mem::read_vec(
            pid,
            base,
            len.min(MAX_IO - data.len().min(MAX_IO)),
        )?);
    }
    do_write(k, ctx, fd(ctx, 0), &data, None)
}

pub fn lseek(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let file = k.proc_of(ctx.tid)?.fds.file(fd(ctx, 0))?;
    let mut f = file.borrow_mut();
    let size = match &f.kind {
        FileKind::Upper(d) => d.borrow().len() as i64,
        FileKind::Synthetic(d) => d.len() as i64,
        FileKind::Host(_) => f.stat.size,
        FileKind::Dir(e) => e.len() as i64,
        FileKind::Pipe(_) | FileKind::Stdio(_) => return Err(Errno::ESPIPE),
        _ => 0,
    };
    let base = match a[2] as i32 {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => f.offset as i64,
        libc::SEEK_END => size,
        _ => return Err(Errno::EINVAL),
    };
    let new = base.checked_add(a[1] as i64).ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    f.offset = new as u64;
    ok(new)
}

fn make_pipe(k: &mut Kernel, ctx: &Ctx, addr: u64, flags: i32) -> Result<Sys, Errno> {
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let pipe = Rc::new(RefCell::new(Pipe::default()));
    let nb = flags & libc::O_NONBLOCK;
    let mk = |write: bool| {
        Rc::new(RefCell::new(OpenFile {
            kind: FileKind::Pipe(PipeEnd::new(&pipe, write)),
            path: format!("pipe:[{}]", Rc::as_ptr(&pipe) as usize % 100000),
            offset: 0,
            flags: nb
                | if write {
                    libc::O_WRONLY
                } else {
                    libc::O_RDONLY
                },
            stat: crate::sentry::vfs::Stat {
                mode: libc::S_IFIFO | 0o600,
                nlink: 1,
                ..Default::default()
            },
        }))
    };
    let (r, w) = (mk(false), mk(true));
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let p = k.proc_of_mut(ctx.tid)?;
    let rfd = p.fds.install(r, cloexec, 0)?;
    let wfd = match p.fds.install(w, cloexec, 0) {
        Ok(w) => w,
        Err(e) => {
            let _ = p.fds.close(rfd);
            return Err(e);
        }
    };
    let mut out = rfd.to_le_bytes().to_vec();
    out.extend_from_slice(&wfd.to_le_bytes());
    if let Err(e) = mem::write(hpid(k, ctx)?, addr, &out) {
        let p = k.proc_of_mut(ctx.tid)?;
        let _ = p.fds.close(rfd);
        let _ = p.fds.close(wfd);
        return Err(e);
    }
    ok(0)
}

pub fn pipe(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    make_pipe(k, ctx, ctx.args.a[0], 0)
}

pub fn pipe2(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    make_pipe(k, ctx, ctx.args.a[0], ctx.args.a[1] as i32)
}

pub fn ftruncate(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let file = k.proc_of(ctx.tid)?.fds.file(fd(ctx, 0))?;
    let f = file.borrow();
    let len = ctx.args.a[1] as i64;
    if !(0..=1 << 34).contains(&len) {
        return Err(Errno::EINVAL);
    }
    match &f.kind {
        FileKind::Upper(d) if f.flags & libc::O_ACCMODE != libc::O_RDONLY => {
            d.borrow_mut().resize(len as usize, 0);
            ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn fsync(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    k.proc_of(ctx.tid)?.fds.file(fd(ctx, 0))?;
    ok(0)
}

pub fn ioctl(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let fdn = fd(ctx, 0);
    let file = k.proc_of(ctx.tid)?.fds.file(fdn)?;
    match a[1] {
        libc::FIOCLEX | libc::FIONCLEX => {
            k.proc_of_mut(ctx.tid)?.fds.get_mut(fdn)?.cloexec = a[1] == libc::FIOCLEX;
            ok(0)
        }
        libc::FIONREAD => {
            let n = match &file.borrow().kind {
                FileKind::Pipe(p) => p.pipe.borrow().buf.len() as i32,
                _ => 0,
            };
            mem::write(hpid(k, ctx)?, a[2], &n.to_le_bytes())?;
            ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// Readiness of one open file for poll.
fn readiness(f: &OpenFile, want: i16) -> i16 {
    let all = (libc::POLLIN | libc::POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM) & want;
    match &f.kind {
        FileKind::Pipe(end) => {
            let p = end.pipe.borrow();
            if end.write {
                if p.readers == 0 {
                    libc::POLLERR
                } else if p.buf.len() < PIPE_CAP {
                    libc::POLLOUT & want
                } else {
                    0
                }
            } else if !p.buf.is_empty() {
                libc::POLLIN & want
            } else if p.writers == 0 {
                libc::POLLHUP
            } else {
                0
            }
        }
        FileKind::Stdio(fd) => {
            host_ready(fd.as_raw_fd(), PollFlags::from_bits_truncate(want)).bits()
        }
        _ => all,
    }
}

fn do_poll(
    k: &mut Kernel,
    ctx: &Ctx,
    addr: u64,
    n: u64,
    timeout: Option<Duration>,
) -> Result<Sys, Errno> {
    if n > 1024 {
        return Err(Errno::EINVAL);
    }
    let pid = hpid(k, ctx)?;
    let mut raw = mem::read_vec(pid, addr, n as usize * 8)?;
    let p = k.proc_of(ctx.tid)?;
    let mut ready = 0;
    let mut host_fd = None;
    for c in raw.chunks_mut(8) {
        let fdn = i32::from_le_bytes(c[..4].try_into().unwrap_or_default());
        let events = i16::from_le_bytes([c[4], c[5]]);
        let rev = if fdn < 0 {
            0
        } else {
            match p.fds.file(fdn) {
                Ok(f) => {
                    if let FileKind::Stdio(fd) = &f.borrow().kind {
                        host_fd.get_or_insert(fd.as_raw_fd());
                    }
                    readiness(&f.borrow(), events)
                }
                Err(_) => libc::POLLNVAL,
            }
        };
        c[6..8].copy_from_slice(&rev.to_le_bytes());
        ready += (rev != 0) as i64;
    }
    let deadline = ctx.deadline.or_else(|| timeout.map(|t| Instant::now() + t));
    let expired = deadline.is_some_and(|d| Instant::now() >= d);
    if ready == 0 && !expired {
        return Ok(Sys::Block(Wait {
            deadline,
            host_fd,
            restartable: false,
        }));
    }
    mem::write(pid, addr, &raw)?;
    ok(ready)
}

pub fn poll(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let ms = a[2] as i32;
    let t = (ms >= 0).then(|| Duration::from_millis(ms as u64));
    do_poll(k, ctx, a[0], a[1], t)
}

pub fn ppoll(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let a = ctx.args.a;
    let t = if a[2] == 0 {
        None
    } else {
        Some(super::misc::read_timespec(k, ctx, a[2])?)
    };
    do_poll(k, ctx, a[0], a[1], t)
}

pub fn sendfile(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [out_fd, in_fd, off_ptr, count, ..] = ctx.args.a;
    let p = k.proc_of(ctx.tid)?;
    let (src, dst) = (p.fds.file(in_fd as i32)?, p.fds.file(out_fd as i32)?);
    let h = hpid(k, ctx)?;
    let at = if off_ptr != 0 {
        Some(mem::read_u64(h, off_ptr)?)
    } else {
        None
    };
    let data = match read_file(&src, (count as usize).min(MAX_IO), at)? {
        Io::Done(d) => d,
        Io::Block(w) => return Ok(Sys::Block(w)),
    };
    if data.is_empty() {
        return ok(0);
    }
    // A partial write keeps the unsent bytes unread in the source, as Linux does.
    let n = match write_file(&dst, &data, None)? {
        Io::Done(n) => n,
        Io::Block(w) => {
            if at.is_none() {
                src.borrow_mut().offset -= data.len() as u64;
            }
            return Ok(Sys::Block(w));
        }
    };
    match at {
        Some(o) => mem::write(h, off_ptr, &(o + n as u64).to_le_bytes())?,
        None => src.borrow_mut().offset -= (data.len() - n) as u64,
    }
    ok(n)
}
