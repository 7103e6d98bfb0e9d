//! hull's own RuntimeDefault seccomp profile: an allow-list, documented in
//! docs/seccomp-default.md.
//!
//! Everything not listed fails with EPERM; a syscall numbered above every one listed
//! fails with ENOSYS (hull's stub, as runc's), so libc falls back from calls newer than
//! this list. Which calls are safe follows the reasoning of Docker's and
//! containers-common's defaults (kernel interfaces that are not namespaced, or that
//! have a history of container escapes, are out); the grouping and the list are ours.
//! Names must exist in hull's syscall tables (x86_64, x32 or i386); a test checks it.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator as Op, LinuxSyscall, LinuxSyscallBuilder,
};

use super::security::Caps;
use super::{built, SpecError};

/// Processes, threads, signals and scheduling of one's own tasks.
#[rustfmt::skip]
const PROCESS: &[&str] = &[
    "arch_prctl", "brk", "capget", "capset", "execve", "execveat", "exit", "exit_group",
    "fork", "vfork", "wait4", "waitid", "getpid", "getppid", "gettid", "getpgid", "getpgrp",
    "getsid", "setsid", "setpgid", "set_tid_address", "set_robust_list", "get_robust_list",
    "futex", "futex_waitv", "rseq", "prctl", "membarrier", "kill", "tkill", "tgkill",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd",
    "signalfd4", "pause", "restart_syscall", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getparam", "sched_setparam", "sched_getscheduler",
    "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_getattr", "sched_setattr", "getpriority", "setpriority",
    "ioprio_get", "ioprio_set", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
    "uname", "sysinfo", "umask", "getcpu", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "process_mrelease", "set_thread_area", "get_thread_area", "seccomp", "getrandom",
    // Since Linux 4.8 ptrace can no longer be used to skip seccomp checks, and it only
    // reaches processes the tracer could already signal.
    "ptrace",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
];

/// User and group ids (the kernel checks CAP_SETUID/CAP_SETGID itself).
#[rustfmt::skip]
const CREDENTIALS: &[&str] = &[
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid",
    "setfsgid",
];

/// Memory of one's own address space.
#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "mmap", "munmap", "mremap", "mprotect", "madvise", "mlock", "mlock2", "munlock",
    "mlockall", "munlockall", "mincore", "msync", "remap_file_pages", "memfd_create",
    "pkey_alloc", "pkey_free", "pkey_mprotect",
];

/// Files, directories, descriptors, polling and asynchronous I/O (not io_uring, whose
/// record of kernel bugs led Docker and others to drop it from their defaults).
#[rustfmt::skip]
const FILES: &[&str] = &[
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2",
    "dup3", "lseek", "stat", "fstat", "lstat", "newfstatat", "statx", "access", "faccessat",
    "faccessat2", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
    "lchown", "fchownat", "truncate", "ftruncate", "rename", "renameat", "renameat2", "link",
    "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir",
    // Creating device nodes is allowed; using them is the device cgroup's decision.
    "mknod", "mknodat",
    "getdents", "getdents64", "getcwd", "chdir", "fchdir", "fcntl", "flock", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "fallocate", "fadvise64", "readahead",
    "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "utime", "utimes",
    "utimensat", "futimesat", "statfs", "fstatfs", "getxattr", "lgetxattr", "fgetxattr",
    "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr",
    "removexattr", "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "ioctl", "pipe", "pipe2", "eventfd", "eventfd2",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "poll", "ppoll", "select", "pselect6", "timerfd_create",
    "timerfd_settime", "timerfd_gettime", "io_setup", "io_destroy", "io_submit", "io_cancel",
    "io_getevents", "io_pgetevents",
];

/// Sockets (socket itself is below, with a condition).
#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown",
];

/// System V and POSIX IPC, both namespaced by the IPC namespace.
#[rustfmt::skip]
const IPC: &[&str] = &[
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
];

/// Reading clocks and timers. adjtimex and clock_adjtime only read without CAP_SYS_TIME.
#[rustfmt::skip]
const TIME: &[&str] = &[
    "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep",
    "alarm", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timer_delete", "adjtimex", "clock_adjtime",
];

/// Names only the i386 ABI has: 32-bit variants of the calls above, and the multiplexers
/// (socketcall, ipc) old i386 binaries go through.
#[rustfmt::skip]
const I386: &[&str] = &[
    "_llseek", "_newselect", "fcntl64", "fstat64", "fstatat64", "lstat64", "stat64",
    "statfs64", "fstatfs64", "truncate64", "ftruncate64", "fadvise64_64", "sendfile64",
    "mmap2", "sigreturn", "sigaction", "sigprocmask", "sigsuspend", "sigpending", "signal",
    "waitpid", "socketcall", "ipc", "ugetrlimit", "chown32", "fchown32", "lchown32",
    "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32",
    "getgroups32", "setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32",
    "setresgid32", "setgroups32", "setfsuid32", "setfsgid32", "clock_gettime64",
    "clock_getres_time64", "clock_nanosleep_time64", "clock_adjtime64",
    "timer_settime64", "timer_gettime64", "timerfd_settime64", "timerfd_gettime64",
    "utimensat_time64", "pselect6_time64", "ppoll_time64", "io_pgetevents_time64",
    "recvmmsg_time64", "mq_timedsend_time64", "mq_timedreceive_time64", "semtimedop_time64",
    "rt_sigtimedwait_time64", "futex_time64", "sched_rr_get_interval_time64",
];

/// Calls allowed only when the container holds the capability that makes them useful:
/// without it they would fail anyway, and the filter removes their attack surface.
#[rustfmt::skip]
const BY_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount", "umount", "umount2", "pivot_root", "unshare", "setns", "clone3", "fsopen",
            "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
            "sethostname", "setdomainname", "quotactl", "quotactl_fd", "swapon", "swapoff",
            "fanotify_init", "fanotify_mark", "name_to_handle_at", "lookup_dcookie", "bpf",
            "perf_event_open",
        ],
    ),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_PTRACE", &["process_vm_readv", "process_vm_writev", "kcmp"]),
    ("CAP_SYS_MODULE", &["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_BOOT", &["reboot", "kexec_load", "kexec_file_load"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node", "move_pages", "migrate_pages"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYSLOG", &["syslog"]),
];

/// The namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID, NEWNET. Without CAP_SYS_ADMIN clone may create threads and processes, not
/// namespaces (the kernel would allow an unprivileged user namespace, which opens much
/// of the kernel's attack surface to the container).
const CLONE_NAMESPACES: u64 = 0x7e02_0000;

/// personality(2) values allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
/// and the query 0xffffffff. Others (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) weaken
/// exploit mitigations.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// AF_VSOCK, which reaches the hypervisor or host rather than the pod's network.
const AF_VSOCK: u64 = 40;

/// ENOSYS, returned for clone3 without CAP_SYS_ADMIN so libc falls back to clone,
/// whose flags the filter can inspect (clone3's are behind a pointer).
const ENOSYS: u32 = 38;

fn rule(names: &[&str], action: Act, args: Vec<(Op, u64, u64)>) -> Result<LinuxSyscall, SpecError> {
    let mut list = Vec::new();
    for (op, value, two) in args {
        let mut a = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(value)
            .op(op);
        if op == Op::ScmpCmpMaskedEq {
            a = a.value_two(two);
        }
        list.push(built("linux.seccomp", a.build())?);
    }
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if !list.is_empty() {
        b = b.args(list);
    }
    built("linux.seccomp", b.build())
}

/// Every name the profile may allow, whatever the capabilities (for the table test).
#[cfg(test)]
pub fn all_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        PROCESS,
        CREDENTIALS,
        MEMORY,
        FILES,
        NETWORK,
        IPC,
        TIME,
        I386,
    ]
    .concat();
    v.extend(BY_CAP.iter().flat_map(|(_, n)| n.iter().copied()));
    v.extend(["clone", "personality", "socket"]);
    v
}

/// The RuntimeDefault profile for a container with capabilities `caps`.
pub fn default_profile(caps: &Caps) -> Result<LinuxSeccomp, SpecError> {
    let plain: Vec<&str> = [
        PROCESS,
        CREDENTIALS,
        MEMORY,
        FILES,
        NETWORK,
        IPC,
        TIME,
        I386,
    ]
    .concat();
    let mut rules = vec![rule(&plain, Act::ScmpActAllow, Vec::new())?];
    let mut granted: Vec<&str> = Vec::new();
    for (cap, names) in BY_CAP {
        if caps.has(cap) {
            for n in names.iter() {
                if !granted.contains(n) {
                    granted.push(n);
                }
            }
        }
    }
    if !granted.is_empty() {
        rules.push(rule(&granted, Act::ScmpActAllow, Vec::new())?);
    }
    if caps.has("CAP_SYS_ADMIN") {
        rules.push(rule(&["clone"], Act::ScmpActAllow, Vec::new())?);
    } else {
        let no_ns = vec![(Op::ScmpCmpMaskedEq, CLONE_NAMESPACES, 0)];
        rules.push(rule(&["clone"], Act::ScmpActAllow, no_ns)?);
        let mut enosys = rule(&["clone3"], Act::ScmpActErrno, Vec::new())?;
        enosys.set_errno_ret(Some(ENOSYS));
        rules.push(enosys);
    }
    for p in PERSONALITIES {
        rules.push(rule(
            &["personality"],
            Act::ScmpActAllow,
            vec![(Op::ScmpCmpEq, p, 0)],
        )?);
    }
    rules.push(rule(
        &["socket"],
        Act::ScmpActAllow,
        vec![(Op::ScmpCmpNe, AF_VSOCK, 0)],
    )?);
    let b = LinuxSeccompBuilder::default()
        .default_action(Act::ScmpActErrno)
        .default_errno_ret(1u32)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(rules);
    built("linux.seccomp", b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api;
    use crate::spec::security::capabilities;
    use crate::spec::testutil::host;

    fn allowed(p: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .cloned()
            .collect()
    }

    fn caps(add: &[&str]) -> Caps {
        let sc = api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        capabilities(&sc, &host()).unwrap()
    }

    #[test]
    fn dangerous_calls_are_not_allowed_by_default() {
        let p = default_profile(&caps(&[])).unwrap();
        for name in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "open_by_handle_at",
            "init_module",
            "kexec_load",
            "io_uring_setup",
            "userfaultfd",
            "reboot",
            "swapon",
            "modify_ldt",
        ] {
            assert!(allowed(&p, name).is_empty(), "{name} is allowed");
        }
        assert_eq!(p.default_action(), Act::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        // chroot comes with the default CAP_SYS_CHROOT.
        assert_eq!(allowed(&p, "chroot").len(), 1);
        let clone = allowed(&p, "clone");
        assert_eq!(
            clone[0].args().as_ref().unwrap()[0].value(),
            CLONE_NAMESPACES
        );
        assert_eq!(allowed(&p, "clone3")[0].errno_ret(), Some(ENOSYS));
        assert_eq!(allowed(&p, "personality").len(), 5);
    }

    #[test]
    fn capabilities_open_their_calls() {
        let p = default_profile(&caps(&["SYS_ADMIN", "SYS_PTRACE"])).unwrap();
        for name in ["mount", "unshare", "setns", "bpf", "kcmp", "clone3"] {
            let r = allowed(&p, name);
            assert!(r.iter().any(|s| s.action() == Act::ScmpActAllow), "{name}");
        }
        assert!(allowed(&p, "clone")[0].args().is_none());
    }

    /// Every name must be one hull knows, or the rule would silently do nothing.
    #[test]
    fn every_name_is_in_hulls_syscall_tables() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime/src/seccomp/tables");
        let mut tables = String::new();
        for f in ["x86_64.rs", "x86.rs", "x32.rs"] {
            tables.push_str(&std::fs::read_to_string(format!("{dir}/{f}")).unwrap());
        }
        let mut seen = std::collections::HashSet::new();
        for name in all_names() {
            assert!(
                tables.contains(&format!("(\"{name}\", ")),
                "{name} is in no table"
            );
            // "bpf" and "perf_event_open" are listed under two capabilities on purpose.
            if !["bpf", "perf_event_open"].contains(&name) {
                assert!(seen.insert(name), "{name} is listed twice");
            }
        }
    }
}
