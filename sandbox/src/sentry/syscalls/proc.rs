//! Processes and threads: clone, fork, vfork, execve, exit, wait, ids, arch_prctl.

use std::rc::Rc;

use nix::errno::Errno;

use super::{hpid, ok, Ctx, Sys};
use crate::platform::{mem, Regs};
use crate::sentry::loader::{self, Image};
use crate::sentry::signal::SIG_IGN;
use crate::sentry::task::{Exit, Pid, Process, Wait};
use crate::sentry::Kernel;

/// A pseudo syscall number: a vfork parent waiting for its child to exec or exit.
pub const VFORK_WAIT: i64 = -2;

const CLONE_THREADISH: u64 = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;

fn do_clone(
    k: &mut Kernel,
    ctx: &mut Ctx,
    flags: u64,
    sp: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> Result<Sys, Errno> {
    let supported = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID
        | libc::CLONE_CHILD_SETTID
        | libc::CLONE_VFORK
        | libc::CLONE_DETACHED) as u64
        | 0xff;
    if flags & !supported != 0 {
        return Err(Errno::EINVAL);
    }
    let thread = flags & libc::CLONE_THREAD as u64 != 0;
    if thread && flags & CLONE_THREADISH != CLONE_THREADISH {
        return Err(Errno::EINVAL);
    }
    let parent = k.tracee(ctx.tid)?;
    let host_flags = (libc::CLONE_PARENT | libc::SIGCHLD) as u64
        | if thread { libc::CLONE_VM as u64 } else { 0 };
    let (r, child) = parent
        .stub_call_forking(libc::SYS_clone, [host_flags, 0, 0, 0, 0, 0])
        .map_err(|_| Errno::EAGAIN)?;
    let Some(child) = child else {
        return Err(if r < 0 {
            Errno::from_raw(-r as i32)
        } else {
            Errno::EAGAIN
        });
    };
    let tid = k.alloc_pid();
    let tgid = k.task(ctx.tid)?.tgid;
    let mask = k.task(ctx.tid)?.mask;
    if thread {
        k.add_task(tid, tgid, child, mask);
        k.procs
            .get_mut(&tgid)
            .ok_or(Errno::ESRCH)?
            .threads
            .push(tid);
    } else {
        let mm = k.alloc_mm();
        let p = k.procs.get(&tgid).ok_or(Errno::ESRCH)?;
        let actions = Rc::new(std::cell::RefCell::new(*p.actions.borrow()));
        let np = Process {
            pid: tid,
            ppid: tgid,
            pgid: p.pgid,
            sid: p.sid,
            threads: vec![tid],
            fds: p.fds.clone(),
            cwd: p.cwd.clone(),
            umask: p.umask,
            actions,
            zombie: None,
            brk: p.brk,
            mm,
            exe: p.exe.clone(),
            name: p.name.clone(),
            argv: p.argv.clone(),
            vfork_parent: (flags & libc::CLONE_VFORK as u64 != 0).then_some(ctx.tid),
            uid: p.uid,
            gid: p.gid,
            children: Vec::new(),
        };
        k.procs.insert(tid, np);
        k.procs
            .get_mut(&tgid)
            .ok_or(Errno::ESRCH)?
            .children
            .push(tid);
        k.add_task(tid, tid, child, mask);
    }
    let mut cregs: Regs = ctx.regs;
    cregs.rax = 0;
    if sp != 0 {
        cregs.rsp = sp;
    }
    if flags & libc::CLONE_SETTLS as u64 != 0 {
        cregs.fs_base = tls;
    }
    child.set_regs(&cregs).map_err(|_| Errno::EAGAIN)?;
    let tid_bytes = tid.to_le_bytes();
    if flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
        let _ = mem::write(child.pid, ctid, &tid_bytes);
    }
    if flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
        let _ = mem::write(parent.pid, ptid, &tid_bytes);
    }
    if flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
        if let Some(t) = k.tasks.get_mut(&tid) {
            t.clear_tid = ctid;
        }
    }
    k.finish(tid).map_err(|_| Errno::EAGAIN)?;
    if flags & libc::CLONE_VFORK as u64 != 0 {
        ctx.args.nr = VFORK_WAIT;
        ctx.args.a[0] = tid as u64;
        return vfork_wait(k, ctx);
    }
    ok(tid)
}

/// The vfork parent resumes once the child has exec'd or exited.
pub fn vfork_wait(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let child = ctx.args.a[0] as Pid;
    match k.procs.get(&child) {
        Some(p) if p.vfork_parent == Some(ctx.tid) && p.zombie.is_none() => {
            Ok(Sys::Block(Wait::default()))
        }
        _ => ok(child),
    }
}

pub fn clone(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [flags, sp, ptid, ctid, tls, _] = ctx.args.a;
    do_clone(k, ctx, flags, sp, ptid, ctid, tls)
}

pub fn fork(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_clone(k, ctx, libc::SIGCHLD as u64, 0, 0, 0, 0)
}

pub fn vfork(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    do_clone(
        k,
        ctx,
        (libc::CLONE_VFORK | libc::SIGCHLD) as u64,
        0,
        0,
        0,
        0,
    )
}

impl Kernel {
    /// Reads a whole file for execve; recently run executables come from a small cache
    /// keyed by their identity (device, inode, size, mtime).
    fn read_exec(&mut self, path: &str) -> Result<Rc<Vec<u8>>, Errno> {
        let st = self.vfs.stat(path, false)?;
        if st.kind() != libc::S_IFREG || st.mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        let key = (st.dev, st.ino, st.size, st.mtime);
        if let Some((k, data)) = self.exec_cache.get(path) {
            if *k == key {
                return Ok(data.clone());
            }
        }
        let f = Rc::new(std::cell::RefCell::new(self.vfs.open(
            path,
            libc::O_RDONLY,
            0,
        )?));
        let mut out = Vec::new();
        loop {
            match super::io::read_file(&f, 1 << 20, None)? {
                super::io::Io::Done(d) if d.is_empty() => break,
                super::io::Io::Done(d) => out.extend(d),
                super::io::Io::Block(_) => return Err(Errno::EIO),
            }
            if out.len() > 256 << 20 {
                return Err(Errno::E2BIG);
            }
        }
        let data = Rc::new(out);
        if self.exec_cache.len() >= 16 {
            self.exec_cache.clear();
        }
        self.exec_cache
            .insert(path.to_string(), (key, data.clone()));
        Ok(data)
    }

    /// Reads and parses what execve of `path` needs: (executable, loader, exe path, argv).
    fn exec_load(
        &mut self,
        pid: Pid,
        path: &str,
        mut argv: Vec<Vec<u8>>,
    ) -> Result<Loadable, Errno> {
        let abs = super::super::run::vfs_path(self, pid, path.as_bytes())?;
        let mut data = self.read_exec(&abs)?;
        let mut exe = abs;
        if let Some((interp, arg)) = loader::shebang(&data) {
            let ip = super::super::run::vfs_path(self, pid, &interp)?;
            let mut nargv = vec![interp.clone()];
            nargv.extend(arg);
            nargv.push(path.as_bytes().to_vec());
            nargv.extend(argv.into_iter().skip(1));
            argv = nargv;
            data = self.read_exec(&ip)?;
            exe = ip;
        }
        // /proc/<pid>/exe names the file itself, symlinks (even /proc/self/exe) resolved.
        if let Ok((_, real)) = self.vfs.lookup(&exe, false) {
            exe = real;
        }
        let elf = loader::Elf::parse(&data)?;
        elf.segments()?;
        let interp = match &elf.interp {
            Some(i) => {
                let ip = super::super::run::vfs_path(self, pid, i)?;
                Some(self.read_exec(&ip)?)
            }
            None => None,
        };
        Ok(Loadable {
            data,
            interp,
            exe,
            argv,
        })
    }

    /// Replaces process `pid`'s image with `path`. The error's flag says whether the old
    /// image was already gone (then the process must die, as Linux kills it).
    pub(crate) fn exec_image(
        &mut self,
        pid: Pid,
        path: &str,
        argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
        regs: &mut Regs,
    ) -> Result<(), (Errno, bool)> {
        let l = self.exec_load(pid, path, argv).map_err(|e| (e, false))?;
        self.exec_commit(pid, path, l, envp, regs)
            .map_err(|e| (e, true))
    }

    fn exec_commit(
        &mut self,
        pid: Pid,
        path: &str,
        l: Loadable,
        envp: Vec<Vec<u8>>,
        regs: &mut Regs,
    ) -> Result<(), Errno> {
        let p = self.procs.get(&pid).ok_or(Errno::ESRCH)?;
        let leader = p.threads.first().copied().ok_or(Errno::ESRCH)?;
        let others: Vec<Pid> = p.threads.iter().copied().filter(|&t| t != leader).collect();
        let (uid, gid) = (p.uid, p.gid);
        for t in others {
            self.exit_thread(t, 0);
        }
        let t = self.tracee(leader)?;
        t.clear_address_space().map_err(|_| Errno::EFAULT)?;
        let mut random = [0u8; 16];
        crate::sys::fill_random(&mut random);
        let img = Image {
            exe: &l.data,
            interp: l.interp.as_ref().map(|v| v.as_slice()),
            argv: &l.argv,
            envp: &envp,
            execfn: path.as_bytes(),
            random,
            uid,
            gid,
        };
        let loaded = loader::load(&t, &img, regs)?;
        let p = self.procs.get_mut(&pid).ok_or(Errno::ESRCH)?;
        p.brk = crate::sentry::task::Brk {
            start: loaded.brk,
            cur: loaded.brk,
        };
        p.name = path.rsplit('/').next().unwrap_or(path).to_string();
        p.exe = l.exe;
        p.argv = l.argv;
        p.fds.close_on_exec();
        p.vfork_parent = None;
        let mut acts = *p.actions.borrow();
        for a in acts.iter_mut() {
            if a.handler != SIG_IGN {
                *a = Default::default();
            }
        }
        p.actions = Rc::new(std::cell::RefCell::new(acts));
        if let Some(task) = self.tasks.get_mut(&leader) {
            task.altstack = Default::default();
            task.altstack.disabled = true;
            task.clear_tid = 0;
        }
        Ok(())
    }
}

/// An executable read and parsed, ready to replace a process image.
struct Loadable {
    data: Rc<Vec<u8>>,
    interp: Option<Rc<Vec<u8>>>,
    exe: String,
    argv: Vec<Vec<u8>>,
}

fn do_execve(
    k: &mut Kernel,
    ctx: &mut Ctx,
    path: String,
    argv: u64,
    envp: u64,
) -> Result<Sys, Errno> {
    let pid = hpid(k, ctx)?;
    let argv = mem::read_strv(pid, argv)?;
    let envp = mem::read_strv(pid, envp)?;
    let tgid = k.task(ctx.tid)?.tgid;
    let leader = k.procs.get(&tgid).and_then(|p| p.threads.first().copied());
    if leader != Some(ctx.tid) {
        // Stage 1: execve from a non-leader thread would have to move the tid.
        return Err(Errno::EINVAL);
    }
    match k.exec_image(tgid, &path, argv, envp, &mut ctx.regs) {
        Ok(()) => Ok(Sys::Regs),
        Err((e, false)) => Err(e),
        Err((_, true)) => {
            k.exit_process(tgid, Exit::Signal(libc::SIGSEGV));
            Ok(Sys::Gone)
        }
    }
}

pub fn execve(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [p, argv, envp, ..] = ctx.args.a;
    let path = mem::read_cstr(hpid(k, ctx)?, p, 4096)?;
    let path = String::from_utf8(path).map_err(|_| Errno::ENOENT)?;
    do_execve(k, ctx, path, argv, envp)
}

pub fn execveat(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [dirfd, p, argv, envp, flags, _] = ctx.args.a;
    if flags != 0 {
        return Err(Errno::ENOENT);
    }
    let path = super::fs::at_path(k, ctx, dirfd as i32, p)?;
    do_execve(k, ctx, path, argv, envp)
}

pub fn exit(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    k.exit_thread(ctx.tid, ctx.args.a[0] as i32 & 0xff);
    Ok(Sys::Gone)
}

pub fn exit_group(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let tgid = k.task(ctx.tid)?.tgid;
    k.exit_process(tgid, Exit::Code(ctx.args.a[0] as i32 & 0xff));
    Ok(Sys::Gone)
}

/// Finds a child of the caller matching `sel` (wait4's pid argument); returns
/// (pid, exit) of a zombie, or whether any child matches at all.
fn find_child(k: &Kernel, tgid: Pid, sel: i64) -> (Option<(Pid, Exit)>, bool) {
    let Some(me) = k.procs.get(&tgid) else {
        return (None, false);
    };
    let mut any = false;
    for &c in &me.children {
        let Some(cp) = k.procs.get(&c) else { continue };
        let matches = match sel {
            -1 => true,
            0 => cp.pgid == me.pgid,
            s if s < -1 => cp.pgid == (-s) as Pid,
            s => c == s as Pid,
        };
        if !matches {
            continue;
        }
        any = true;
        if let Some(e) = cp.zombie {
            return (Some((c, e)), true);
        }
    }
    (None, any)
}

pub fn wait4(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [sel, status, options, rusage, ..] = ctx.args.a;
    let options = options as i32;
    if options
        & !(libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED | libc::__WALL | libc::__WCLONE)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    let tgid = k.task(ctx.tid)?.tgid;
    match find_child(k, tgid, sel as i32 as i64) {
        (Some((pid, exit)), _) => {
            let h = hpid(k, ctx)?;
            if status != 0 {
                mem::write(h, status, &exit.wstatus().to_le_bytes())?;
            }
            if rusage != 0 {
                mem::write(h, rusage, &[0u8; 144])?;
            }
            k.reap(pid);
            ok(pid)
        }
        (None, false) => Err(Errno::ECHILD),
        (None, true) if options & libc::WNOHANG != 0 => ok(0),
        (None, true) => Ok(Sys::Block(Wait {
            restartable: true,
            ..Wait::default()
        })),
    }
}

pub fn waitid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [idtype, id, infop, options, ..] = ctx.args.a;
    let options = options as i32;
    let sel = match idtype as libc::idtype_t {
        libc::P_ALL => -1,
        libc::P_PID => id as i64,
        libc::P_PGID => -(id as i64),
        _ => return Err(Errno::EINVAL),
    };
    let tgid = k.task(ctx.tid)?.tgid;
    match find_child(k, tgid, sel) {
        (Some((pid, exit)), _) => {
            let (code, status) = match exit {
                Exit::Code(c) => (1, c),
                Exit::Signal(s) => (2, s),
            };
            let info = crate::sentry::signal::SigInfo {
                signo: libc::SIGCHLD,
                code,
                pid,
                status,
                ..Default::default()
            };
            if infop != 0 {
                mem::write(hpid(k, ctx)?, infop, &info.to_bytes())?;
            }
            if options & libc::WNOWAIT == 0 {
                k.reap(pid);
            }
            ok(0)
        }
        (None, false) => Err(Errno::ECHILD),
        (None, true) if options & libc::WNOHANG != 0 => {
            if infop != 0 {
                mem::write(hpid(k, ctx)?, infop, &[0u8; 128])?;
            }
            ok(0)
        }
        (None, true) => Ok(Sys::Block(Wait {
            restartable: true,
            ..Wait::default()
        })),
    }
}

pub fn getpid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(k.task(ctx.tid)?.tgid)
}

pub fn gettid(_k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(ctx.tid)
}

pub fn getppid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(k.proc_of(ctx.tid)?.ppid)
}

pub fn getuid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(k.proc_of(ctx.tid)?.uid)
}

pub fn getgid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(k.proc_of(ctx.tid)?.gid)
}

pub fn getgroups(_k: &mut Kernel, _ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(0)
}

fn put3(k: &Kernel, ctx: &Ctx, v: u32) -> Result<Sys, Errno> {
    let h = hpid(k, ctx)?;
    for i in 0..3 {
        mem::write(h, ctx.args.a[i], &v.to_le_bytes())?;
    }
    ok(0)
}

pub fn getresuid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let v = k.proc_of(ctx.tid)?.uid;
    put3(k, ctx, v)
}

pub fn getresgid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let v = k.proc_of(ctx.tid)?.gid;
    put3(k, ctx, v)
}

pub fn setid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let p = k.proc_of(ctx.tid)?;
    let cur = if ctx.args.nr == libc::SYS_setuid {
        p.uid
    } else {
        p.gid
    };
    if ctx.args.a[0] as u32 == cur {
        ok(0)
    } else {
        Err(Errno::EPERM)
    }
}

pub fn getpgrp(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    ok(k.proc_of(ctx.tid)?.pgid)
}

fn target(k: &Kernel, ctx: &Ctx, pid: Pid) -> Result<Pid, Errno> {
    let me = k.task(ctx.tid)?.tgid;
    let p = if pid == 0 { me } else { pid };
    match k.procs.get(&p) {
        Some(pr) if pr.zombie.is_none() => Ok(p),
        _ => Err(Errno::ESRCH),
    }
}

pub fn getpgid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let p = target(k, ctx, ctx.args.a[0] as Pid)?;
    ok(k.procs[&p].pgid)
}

pub fn getsid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let p = target(k, ctx, ctx.args.a[0] as Pid)?;
    ok(k.procs[&p].sid)
}

pub fn setpgid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let me = k.task(ctx.tid)?.tgid;
    let p = target(k, ctx, ctx.args.a[0] as Pid)?;
    if p != me && k.procs[&p].ppid != me {
        return Err(Errno::ESRCH);
    }
    let pg = match ctx.args.a[1] as Pid {
        0 => p,
        g if g < 0 => return Err(Errno::EINVAL),
        g => g,
    };
    let pr = k.procs.get_mut(&p).ok_or(Errno::ESRCH)?;
    if pr.sid == pr.pid {
        return Err(Errno::EPERM);
    }
    pr.pgid = pg;
    ok(0)
}

pub fn setsid(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let me = k.task(ctx.tid)?.tgid;
    if k.procs.values().any(|p| p.pgid == me && p.pid != me)
        || k.procs[&me].pgid == me && k.procs[&me].sid == me
    {
        return Err(Errno::EPERM);
    }
    let p = k.procs.get_mut(&me).ok_or(Errno::ESRCH)?;
    p.sid = me;
    p.pgid = me;
    ok(me)
}

pub fn set_tid_address(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    k.task_mut(ctx.tid)?.clear_tid = ctx.args.a[0];
    ok(ctx.tid)
}

pub fn arch_prctl(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    const SET_GS: u64 = 0x1001;
    const SET_FS: u64 = 0x1002;
    const GET_FS: u64 = 0x1003;
    const GET_GS: u64 = 0x1004;
    let [code, addr, ..] = ctx.args.a;
    match code {
        SET_FS | SET_GS => {
            if addr >= crate::sys::TASK_SIZE {
                return Err(Errno::EPERM);
            }
            if code == SET_FS {
                ctx.regs.fs_base = addr;
            } else {
                ctx.regs.gs_base = addr;
            }
            ctx.regs.rax = 0;
            Ok(Sys::Regs)
        }
        GET_FS | GET_GS => {
            let v = if code == GET_FS {
                ctx.regs.fs_base
            } else {
                ctx.regs.gs_base
            };
            mem::write(hpid(k, ctx)?, addr, &v.to_le_bytes())?;
            ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn prctl(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    match ctx.args.a[0] as i32 {
        libc::PR_SET_NAME => ok(0),
        libc::PR_GET_NAME => {
            let mut name = k.proc_of(ctx.tid)?.comm().into_bytes();
            name.resize(16, 0);
            mem::write(hpid(k, ctx)?, ctx.args.a[1], &name)?;
            ok(0)
        }
        libc::PR_SET_PDEATHSIG | libc::PR_SET_NO_NEW_PRIVS => ok(0),
        _ => Err(Errno::EINVAL),
    }
}

/// The limits the sandbox reports (it enforces its own: 1024 fds, 8 MiB stack).
fn limit(res: u32) -> (u64, u64) {
    match res {
        libc::RLIMIT_NOFILE => (1024, 1024),
        libc::RLIMIT_STACK => (8 << 20, u64::MAX),
        libc::RLIMIT_CORE => (0, 0),
        _ => (u64::MAX, u64::MAX),
    }
}

pub fn prlimit64(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [pid, res, new, old, ..] = ctx.args.a;
    target(k, ctx, pid as Pid)?;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    if new != 0 {
        return Err(Errno::EPERM);
    }
    if old != 0 {
        let (c, m) = limit(res as u32);
        let mut b = c.to_le_bytes().to_vec();
        b.extend_from_slice(&m.to_le_bytes());
        mem::write(hpid(k, ctx)?, old, &b)?;
    }
    ok(0)
}

pub fn getrlimit(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    let [res, addr, ..] = ctx.args.a;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    let (c, m) = limit(res as u32);
    let mut b = c.to_le_bytes().to_vec();
    b.extend_from_slice(&m.to_le_bytes());
    mem::write(hpid(k, ctx)?, addr, &b)?;
    ok(0)
}
