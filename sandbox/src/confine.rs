//! Confining the Sentry itself: a mount namespace whose root is an empty read-only tmpfs,
//! then a seccomp allowlist of the host calls the Sentry makes, filtered on arguments
//! where the call is dangerous. A call outside the list kills the Sentry.

use std::collections::BTreeMap;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};

/// Errors confining the Sentry.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A mount-namespace step failed.
    #[error("{0}")]
    Mount(&'static str, #[source] Errno),
    /// The filter could not be built.
    #[error("building the sentry's seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    /// The filter could not be compiled or installed.
    #[error("installing the sentry's seccomp filter")]
    Install(#[source] seccompiler::Error),
}

/// Makes every mount private, so nothing the sandbox mounts reaches the host.
pub fn private_mounts() -> Result<(), ConfineError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| ConfineError::Mount("making / private", e))
}

/// Gives the Sentry its own mount namespace whose root is an empty read-only tmpfs: from
/// here on, host files reach it only as descriptors from the gofer.
pub fn empty_root() -> Result<(), ConfineError> {
    let m = |what: &'static str| move |e| ConfineError::Mount(what, e);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(m("unsharing the mount namespace"))?;
    private_mounts()?;
    let dir = Path::new("/tmp");
    let dir = if dir.is_dir() { dir } else { Path::new("/") };
    mount(
        Some("none"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=0555"),
    )
    .map_err(m("mounting the empty root"))?;
    nix::unistd::chdir(dir).map_err(m("entering the empty root"))?;
    nix::unistd::pivot_root(".", ".").map_err(m("pivot_root to the empty root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(m("detaching the host root"))?;
    nix::unistd::chdir("/").map_err(m("entering /"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(m("making the empty root read-only"))?;
    Ok(())
}

fn eq(arg: u8, v: u64) -> Result<Cond, seccompiler::BackendError> {
    Cond::new(arg, Len::Qword, Op::Eq, v)
}

fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values
        .iter()
        .map(|&v| SeccompRule::new(vec![eq(arg, v)?]))
        .collect()
}

/// Host calls the Sentry makes with any arguments.
const PLAIN: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_wait4,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_pread64,
    libc::SYS_lseek,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_signalfd4,
    libc::SYS_accept4,
];

/// The Sentry's filter: the allowlist as rules per syscall number.
fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut r: BTreeMap<i64, Vec<SeccompRule>> = PLAIN.iter().map(|&n| (n, Vec::new())).collect();
    let ptrace_ops = [
        libc::PTRACE_GETREGS,
        libc::PTRACE_SETREGS,
        libc::PTRACE_GETFPREGS,
        libc::PTRACE_SETFPREGS,
        libc::PTRACE_SYSEMU,
        libc::PTRACE_SYSCALL,
        libc::PTRACE_CONT,
        libc::PTRACE_GETEVENTMSG,
    ];
    r.insert(libc::SYS_ptrace, one_of(0, &ptrace_ops.map(|o| o as u64))?);
    // Only the Sentry's own interrupt and SIGKILL, to its tasks.
    let sigs = [
        libc::SIGKILL as u64,
        crate::platform::ptrace::INTERRUPT as u64,
    ];
    r.insert(libc::SYS_kill, one_of(1, &sigs)?);
    // abort(): SIGABRT to itself.
    r.insert(libc::SYS_tgkill, one_of(2, &[libc::SIGABRT as u64])?);
    r.insert(libc::SYS_rt_sigaction, one_of(0, &[libc::SIGABRT as u64])?);
    // Memory for itself, never executable.
    let no_exec = |arg| Cond::new(arg, Len::Qword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    r.insert(libc::SYS_mmap, vec![SeccompRule::new(vec![no_exec(2)?])?]);
    r.insert(
        libc::SYS_mprotect,
        vec![SeccompRule::new(vec![no_exec(2)?])?],
    );
    let fcntl_ops = [
        libc::F_DUPFD_CLOEXEC,
        libc::F_GETFD,
        libc::F_SETFD,
        libc::F_GETFL,
        libc::F_SETFL,
    ];
    r.insert(libc::SYS_fcntl, one_of(1, &fcntl_ops.map(|o| o as u64))?);
    Ok(r)
}

/// The number of host syscalls the Sentry may make.
pub fn allowlist_len() -> usize {
    rules().map(|r| r.len()).unwrap_or(0)
}

/// The allowlisted syscall numbers, ascending.
pub fn allowlist() -> Vec<i64> {
    rules()
        .map(|r| r.keys().copied().collect())
        .unwrap_or_default()
}

/// The compiled filter.
pub fn program() -> Result<BpfProgram, ConfineError> {
    let f = SeccompFilter::new(
        rules().map_err(ConfineError::Build)?,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(ConfineError::Build)?;
    f.try_into()
        .map_err(|e| ConfineError::Install(seccompiler::Error::Backend(e)))
}

/// Installs the allowlist on the Sentry.
pub fn apply_allowlist() -> Result<(), ConfineError> {
    seccompiler::apply_filter(&program()?).map_err(ConfineError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_is_small_and_compiles() {
        let n = allowlist_len();
        assert!(n > 20 && n < 50, "{n} syscalls");
        assert!(!allowlist().contains(&libc::SYS_openat));
        assert!(!allowlist().contains(&libc::SYS_execve));
        assert!(program().expect("compiles").len() > n);
    }
}
