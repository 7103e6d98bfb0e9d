//! The syscall table. Each entry states its support level; anything not in the table
//! returns ENOSYS and is logged once. Nothing is ever passed through to the host.

pub mod fs;
mod futex;
mod io;
mod misc;
mod mm;
mod proc;
mod sig;

use std::time::Instant;

use nix::errno::Errno;

use super::task::{Args, Pid, Wait};
use super::Kernel;
use crate::platform::Regs;

/// A call in progress.
pub struct Ctx {
    /// The calling task.
    pub tid: Pid,
    /// The call.
    pub args: Args,
    /// The caller's registers (a handler may change them and return [`Sys::Regs`]).
    pub regs: Regs,
    /// For a retried call, the deadline it set when it first blocked.
    pub deadline: Option<Instant>,
}

/// What a handler did.
pub enum Sys {
    /// Return this value in rax.
    Ret(i64),
    /// The handler set `ctx.regs` itself (execve, rt_sigreturn, clone's child).
    Regs,
    /// Park the task; the call is retried when something changes.
    Block(Wait),
    /// The task no longer exists (exit, a fatal signal).
    Gone,
}

/// How completely the Sentry implements a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// As Linux does, for everything a workload can ask.
    Full,
    /// Common cases; the rest fail with a stated errno.
    Partial(&'static str),
}

type Handler = fn(&mut Kernel, &mut Ctx) -> Result<Sys, Errno>;

/// One syscall the Sentry serves.
pub struct Entry {
    /// x86_64 number.
    pub nr: i64,
    /// Name.
    pub name: &'static str,
    /// Support level.
    pub support: Support,
    handler: Handler,
}

macro_rules! table {
    ($( $nr:ident => $h:path, $sup:expr; )*) => {
        /// The syscalls the Sentry serves.
        pub static TABLE: &[Entry] = &[
            $( Entry { nr: libc::$nr, name: stringify!($nr), support: $sup, handler: $h }, )*
        ];
    };
}

use Support::{Full, Partial};

table! {
    SYS_read => io::read, Full;
    SYS_write => io::write, Full;
    SYS_readv => io::readv, Full;
    SYS_writev => io::writev, Full;
    SYS_pread64 => io::pread, Full;
    SYS_pwrite64 => io::pwrite, Full;
    SYS_lseek => io::lseek, Full;
    SYS_sendfile => io::sendfile, Partial("pipes as the source consume what they read");
    SYS_open => fs::open, Full;
    SYS_openat => fs::openat, Partial("O_TMPFILE: EOPNOTSUPP");
    SYS_close => fs::close, Full;
    SYS_close_range => fs::close_range, Full;
    SYS_dup => fs::dup, Full;
    SYS_dup2 => fs::dup2, Full;
    SYS_dup3 => fs::dup3, Full;
    SYS_fcntl => fs::fcntl, Partial("locks: EINVAL");
    SYS_pipe => io::pipe, Full;
    SYS_pipe2 => io::pipe2, Full;
    SYS_stat => fs::stat, Full;
    SYS_lstat => fs::lstat, Full;
    SYS_fstat => fs::fstat, Full;
    SYS_newfstatat => fs::newfstatat, Full;
    SYS_statx => fs::statx, Partial("basic fields only");
    SYS_access => fs::access, Partial("permission bits not checked: root");
    SYS_faccessat => fs::faccessat, Partial("permission bits not checked: root");
    SYS_faccessat2 => fs::faccessat2, Partial("permission bits not checked: root");
    SYS_getdents64 => fs::getdents64, Full;
    SYS_getcwd => fs::getcwd, Full;
    SYS_chdir => fs::chdir, Full;
    SYS_fchdir => fs::fchdir, Full;
    SYS_mkdir => fs::mkdir, Full;
    SYS_mkdirat => fs::mkdirat, Full;
    SYS_unlink => fs::unlink, Full;
    SYS_unlinkat => fs::unlinkat, Full;
    SYS_rmdir => fs::rmdir, Full;
    SYS_rename => fs::rename, Partial("directories with lower-layer content: EXDEV");
    SYS_renameat => fs::renameat, Partial("as rename");
    SYS_renameat2 => fs::renameat2, Partial("flags: EINVAL");
    SYS_readlink => fs::readlink, Full;
    SYS_readlinkat => fs::readlinkat, Full;
    SYS_symlink => fs::symlink, Full;
    SYS_symlinkat => fs::symlinkat, Full;
    SYS_chmod => fs::chmod, Full;
    SYS_fchmod => fs::fchmod, Full;
    SYS_fchmodat => fs::fchmodat, Full;
    SYS_umask => fs::umask, Full;
    SYS_utimensat => fs::utimensat, Partial("mtime only; atime is not kept");
    SYS_ftruncate => io::ftruncate, Full;
    SYS_ioctl => io::ioctl, Partial("TCGETS/TIOCGWINSZ/FIONREAD/FIOCLEX; others ENOTTY");
    SYS_poll => io::poll, Partial("pipes, stdio, files");
    SYS_ppoll => io::ppoll, Partial("pipes, stdio, files");
    SYS_fsync => io::fsync, Full;
    SYS_fdatasync => io::fsync, Full;
    SYS_mmap => mm::mmap, Partial("MAP_SHARED file mappings with PROT_WRITE: ENODEV");
    SYS_munmap => mm::munmap, Full;
    SYS_mprotect => mm::mprotect, Full;
    SYS_madvise => mm::madvise, Full;
    SYS_mremap => mm::mremap, Full;
    SYS_brk => mm::brk, Full;
    SYS_clone => proc::clone, Partial("namespaces: EINVAL; CLONE_VM without CLONE_THREAD is a copy");
    SYS_fork => proc::fork, Full;
    SYS_vfork => proc::vfork, Partial("the child gets a copy of the memory");
    SYS_execve => proc::execve, Full;
    SYS_execveat => proc::execveat, Partial("AT_EMPTY_PATH: ENOENT");
    SYS_exit => proc::exit, Full;
    SYS_exit_group => proc::exit_group, Full;
    SYS_wait4 => proc::wait4, Partial("WUNTRACED/WCONTINUED never report");
    SYS_waitid => proc::waitid, Partial("as wait4");
    SYS_getpid => proc::getpid, Full;
    SYS_gettid => proc::gettid, Full;
    SYS_getppid => proc::getppid, Full;
    SYS_getuid => proc::getuid, Full;
    SYS_geteuid => proc::getuid, Full;
    SYS_getgid => proc::getgid, Full;
    SYS_getegid => proc::getgid, Full;
    SYS_getgroups => proc::getgroups, Full;
    SYS_getresuid => proc::getresuid, Full;
    SYS_getresgid => proc::getresgid, Full;
    SYS_setuid => proc::setid, Partial("accepted only for the current id");
    SYS_setgid => proc::setid, Partial("accepted only for the current id");
    SYS_getpgrp => proc::getpgrp, Full;
    SYS_getpgid => proc::getpgid, Full;
    SYS_setpgid => proc::setpgid, Full;
    SYS_getsid => proc::getsid, Full;
    SYS_setsid => proc::setsid, Full;
    SYS_set_tid_address => proc::set_tid_address, Full;
    SYS_arch_prctl => proc::arch_prctl, Partial("ARCH_SET_FS/GET_FS/SET_GS/GET_GS");
    SYS_prctl => proc::prctl, Partial("PR_SET_NAME/GET_NAME; others EINVAL");
    SYS_prlimit64 => proc::prlimit64, Partial("reports fixed limits; setting: EPERM");
    SYS_getrlimit => proc::getrlimit, Partial("fixed limits");
    SYS_kill => sig::kill, Full;
    SYS_tkill => sig::tkill, Full;
    SYS_tgkill => sig::tgkill, Full;
    SYS_rt_sigaction => sig::rt_sigaction, Full;
    SYS_rt_sigprocmask => sig::rt_sigprocmask, Full;
    SYS_rt_sigreturn => sig::rt_sigreturn, Full;
    SYS_rt_sigsuspend => sig::rt_sigsuspend, Full;
    SYS_rt_sigpending => sig::rt_sigpending, Full;
    SYS_sigaltstack => sig::sigaltstack, Full;
    SYS_pause => sig::pause, Full;
    SYS_rt_sigtimedwait => sig::rt_sigtimedwait, Full;
    SYS_futex => futex::futex, Partial("WAIT/WAKE/WAIT_BITSET/WAKE_BITSET/REQUEUE; PI: ENOSYS");
    SYS_set_robust_list => futex::set_robust_list, Partial("accepted; lists not walked at exit");
    SYS_nanosleep => misc::nanosleep, Full;
    SYS_clock_nanosleep => misc::clock_nanosleep, Full;
    SYS_clock_gettime => misc::clock_gettime, Full;
    SYS_clock_getres => misc::clock_getres, Full;
    SYS_gettimeofday => misc::gettimeofday, Full;
    SYS_time => misc::time, Full;
    SYS_uname => misc::uname, Full;
    SYS_sethostname => misc::sethostname, Full;
    SYS_getrandom => misc::getrandom, Full;
    SYS_sched_yield => misc::sched_yield, Full;
    SYS_sched_getaffinity => misc::sched_getaffinity, Full;
    SYS_sysinfo => misc::sysinfo, Partial("memory figures are the sandbox's");
    SYS_getrusage => misc::getrusage, Partial("zeros");
    SYS_times => misc::times, Partial("zeros");
    SYS_getcpu => misc::getcpu, Full;
}

/// The table as a dense array by number, built once.
fn lookup(nr: i64) -> Option<&'static Entry> {
    use std::sync::OnceLock;
    static DENSE: OnceLock<Vec<Option<usize>>> = OnceLock::new();
    let dense = DENSE.get_or_init(|| {
        let mut v = vec![None; 512];
        for (i, e) in TABLE.iter().enumerate() {
            v[e.nr as usize] = Some(i);
        }
        v
    });
    let i = (*dense.get(usize::try_from(nr).ok()?)?)?;
    Some(&TABLE[i])
}

/// The name of syscall `nr`, for logs.
pub fn name(nr: i64) -> String {
    lookup(nr).map_or_else(
        || format!("syscall_{nr}"),
        |e| e.name.trim_start_matches("SYS_").to_string(),
    )
}

/// Serves one syscall.
pub fn call(k: &mut Kernel, ctx: &mut Ctx) -> Result<Sys, Errno> {
    if ctx.args.nr == proc::VFORK_WAIT {
        return proc::vfork_wait(k, ctx);
    }
    match lookup(ctx.args.nr) {
        Some(e) => (e.handler)(k, ctx),
        None => {
            let nr = ctx.args.nr;
            k.log_once(nr, format_args!("unimplemented syscall {nr}: ENOSYS"));
            Err(Errno::ENOSYS)
        }
    }
}

/// A successful return of a count or fd.
fn ok<T: TryInto<i64>>(v: T) -> Result<Sys, Errno> {
    Ok(Sys::Ret(v.try_into().map_err(|_| Errno::EOVERFLOW)?))
}

/// Argument `i` as an fd.
fn fd(ctx: &Ctx, i: usize) -> i32 {
    ctx.args.a[i] as i32
}

/// The caller's host pid, for memory access.
fn hpid(k: &Kernel, ctx: &Ctx) -> Result<nix::unistd::Pid, Errno> {
    Ok(k.task(ctx.tid)?.tracee.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_no_duplicates_and_fits() {
        let mut seen = std::collections::HashSet::new();
        for e in TABLE {
            assert!(seen.insert(e.nr), "{} listed twice", e.name);
            assert!((0..512).contains(&e.nr));
        }
        assert!(lookup(libc::SYS_getpid).is_some());
        assert!(lookup(libc::SYS_socket).is_none());
        assert!(lookup(-1).is_none());
    }
}
