//! Unit tests of compiled filters, run through the BPF interpreter.

use serde_json::{json, Value};

use super::action::*;
use super::interp::{self, Call};
use super::*;

pub fn spec(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("valid seccomp JSON")
}

pub fn filter(v: Value) -> Filter {
    compile(&spec(v)).expect("compiles")
}

pub fn nr(abi: Abi, name: &str) -> u32 {
    abi.number(name)
        .unwrap_or_else(|| panic!("{name} on {abi:?}"))
}

/// The action for syscall `name` of `abi` with `args`.
pub fn act(f: &Filter, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
    f.eval(Call {
        arch: abi.audit_arch(),
        nr: nr(abi, name),
        args,
    })
}

pub fn act_nr(f: &Filter, arch: u32, nr: u32) -> u32 {
    f.eval(Call {
        arch,
        nr,
        args: [0; 6],
    })
}

const NOARGS: [u64; 6] = [0; 6];
const X86_64: Abi = Abi::X86_64;

#[test]
fn default_actions() {
    let cases = [
        (json!({"defaultAction": "SCMP_ACT_ALLOW"}), RET_ALLOW),
        (json!({"defaultAction": "SCMP_ACT_ERRNO"}), RET_ERRNO | 1),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}),
            RET_ERRNO | 38,
        ),
        (json!({"defaultAction": "SCMP_ACT_KILL"}), RET_KILL_THREAD),
        (
            json!({"defaultAction": "SCMP_ACT_KILL_THREAD"}),
            RET_KILL_THREAD,
        ),
        (
            json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}),
            RET_KILL_PROCESS,
        ),
        (json!({"defaultAction": "SCMP_ACT_TRAP"}), RET_TRAP),
        (
            json!({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 7}),
            RET_TRACE | 7,
        ),
        (json!({"defaultAction": "SCMP_ACT_LOG"}), RET_LOG),
    ];
    for (profile, want) in cases {
        let f = filter(profile.clone());
        assert_eq!(act(&f, X86_64, "getpid", NOARGS), want, "{profile}");
    }
}

#[test]
fn rule_actions_and_errno_ret() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getuid"], "action": "SCMP_ACT_KILL"},
            {"names": ["getgid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["geteuid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getegid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["gettid"], "action": "SCMP_ACT_TRACE"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE", "errnoRet": 99},
            {"names": ["getsid"], "action": "SCMP_ACT_LOG"},
            {"names": ["uname", "sysinfo"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0}
        ]
    }));
    let want = [
        ("getpid", RET_ERRNO | 1),
        ("getppid", RET_ERRNO | 13),
        ("getuid", RET_KILL_THREAD),
        ("getgid", RET_KILL_PROCESS),
        ("geteuid", RET_KILL_THREAD),
        ("getegid", RET_TRAP),
        ("gettid", RET_TRACE | 1),
        ("getpgrp", RET_TRACE | 99),
        ("getsid", RET_LOG),
        ("uname", RET_ERRNO),
        ("sysinfo", RET_ERRNO),
        ("read", RET_ALLOW),
    ];
    for (name, action) in want {
        assert_eq!(act(&f, X86_64, name, NOARGS), action, "{name}");
    }
    assert!(!f.uses_notify());
}

#[test]
fn notify_action_needs_listener_and_sets_flags() {
    let base = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]});
    assert!(matches!(
        compile(&spec(base.clone())),
        Err(SeccompError::NotifyWithoutListener)
    ));
    let mut with = base.clone();
    with["listenerPath"] = json!("/run/agent.sock");
    with["flags"] = json!([
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    ]);
    let f = compile(&spec(with)).unwrap();
    assert!(f.uses_notify());
    assert_eq!(act(&f, X86_64, "getpid", NOARGS), RET_USER_NOTIF);
    let want = FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH | FLAG_WAIT_KILLABLE_RECV;
    assert_eq!(f.flags(), want);
}

#[test]
fn flags_follow_runc() {
    let flags = |extra: Value| {
        let mut p = json!({"defaultAction": "SCMP_ACT_ALLOW"});
        if !extra.is_null() {
            p["flags"] = extra;
        }
        filter(p).flags()
    };
    // No `flags`: runc asks for SPEC_ALLOW; an explicit empty list asks for nothing.
    assert_eq!(flags(Value::Null), FLAG_SPEC_ALLOW);
    assert_eq!(flags(json!([])), 0);
    assert_eq!(flags(json!(["SECCOMP_FILTER_FLAG_LOG"])), FLAG_LOG);
    // The kernel refuses WAIT_KILLABLE_RECV without a listener; it only matters with one.
    assert_eq!(flags(json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])), 0);
    assert_eq!(flags(json!(["SECCOMP_FILTER_FLAG_TSYNC"])), FLAG_TSYNC);
}

#[test]
fn refusals() {
    let err = |v: Value| compile(&spec(v)).unwrap_err();
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}));
    assert!(e.to_string().contains("SCMP_ARCH_AARCH64"), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
    assert!(matches!(e, SeccompError::NotifyDefault));
    let e = err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
        "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(matches!(e, SeccompError::NotifyWrite));
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
    assert!(
        matches!(e, SeccompError::RetData { value: 70000, .. }),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(matches!(e, SeccompError::ArgIndex { index: 6, .. }), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [""], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(matches!(e, SeccompError::EmptyName));
}

#[test]
fn foreign_and_unlisted_arches_are_killed() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
    assert_eq!(act_nr(&f, AUDIT_ARCH_AARCH64, 1), RET_KILL_THREAD);
    // i386 is not listed: libseccomp's bad-architecture action.
    assert_eq!(act_nr(&f, AUDIT_ARCH_I386, 20), RET_KILL_THREAD);
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 39), RET_ALLOW);
    // Native is implied even when only i386 is listed.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"]}));
    assert_eq!(act_nr(&f, AUDIT_ARCH_I386, 20), RET_ALLOW);
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 39), RET_ALLOW);
}

#[test]
fn x32_handling() {
    let rules = json!([{"names": ["readv"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]);
    // Without x32: x32 syscalls get KILL_THREAD, except nr -1 (default action).
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert_eq!(
        act_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT),
        RET_KILL_THREAD
    );
    assert_eq!(
        act_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 515),
        RET_KILL_THREAD
    );
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, u32::MAX), RET_ALLOW);
    assert_eq!(act(&f, X86_64, "readv", NOARGS), RET_ERRNO | 5);
    // With x32: x32 numbers (x32 table | bit 30) are filtered by the same rules.
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]}));
    assert_eq!(act(&f, Abi::X32, "readv", NOARGS), RET_ERRNO | 5);
    assert_eq!(nr(Abi::X32, "readv"), X32_SYSCALL_BIT | 515);
    // x32 read (bit | 0) is allowed; bit | 19 is not x32's readv (that is 515).
    assert_eq!(
        act_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 19),
        RET_ALLOW
    );
    assert_eq!(act(&f, X86_64, "readv", NOARGS), RET_ERRNO | 5);
}

#[test]
fn names_resolve_per_arch_and_unknown_ones_are_skipped() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["getpid", "no_such_syscall", "_llseek", "arch_prctl"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(act(&f, X86_64, "getpid", NOARGS), RET_ALLOW);
    assert_eq!(act(&f, Abi::X86, "getpid", NOARGS), RET_ALLOW);
    // _llseek exists on i386 only; on x86_64, 140 is getpriority.
    assert_eq!(act(&f, Abi::X86, "_llseek", NOARGS), RET_ALLOW);
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 140), RET_ERRNO | 1);
    assert_eq!(act(&f, X86_64, "arch_prctl", NOARGS), RET_ALLOW);
    assert_eq!(act(&f, Abi::X86, "arch_prctl", NOARGS), RET_ALLOW);
}

#[test]
fn i386_socket_calls_match_through_socketcall() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 98}
        ]
    }));
    let sock = |args| act(&f, Abi::X86, "socket", args);
    assert_eq!(sock([40, 2, 0, 0, 0, 0]), RET_ERRNO | 97);
    assert_eq!(sock([40, 1, 0, 0, 0, 0]), RET_ALLOW);
    // socketcall(SYS_SOCKET=1, ...): argument 0 became the call number, argument 1 kept.
    let call = |args| {
        f.eval(Call {
            arch: AUDIT_ARCH_I386,
            nr: 102,
            args,
        })
    };
    assert_eq!(call([1, 2, 0, 0, 0, 0]), RET_ERRNO | 97);
    assert_eq!(call([1, 3, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(call([2, 2, 0, 0, 0, 0]), RET_ALLOW);
    // ipc(SHMGET=23, ...) and the direct shmget.
    assert_eq!(
        f.eval(Call {
            arch: AUDIT_ARCH_I386,
            nr: 117,
            args: [23, 0, 0, 0, 0, 0]
        }),
        RET_ERRNO | 98
    );
    assert_eq!(
        f.eval(Call {
            arch: AUDIT_ARCH_I386,
            nr: 117,
            args: [21, 0, 0, 0, 0, 0]
        }),
        RET_ALLOW
    );
    assert_eq!(act(&f, Abi::X86, "shmget", NOARGS), RET_ERRNO | 98);
    // x86_64 has no multiplexer: its socket rule is the plain one.
    assert_eq!(
        act(&f, X86_64, "socket", [40, 2, 0, 0, 0, 0]),
        RET_ERRNO | 97
    );
}

#[test]
fn enosys_stub_follows_runc() {
    let profile = |default: &str| {
        filter(json!({
            "defaultAction": default,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            // getpid is 39 on x86_64 and 20 on i386; kexec_load (246 / 283 / x32 528) is
            // named with the default action, which still counts for the maximum.
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kexec_load"], "action": default}
            ]
        }))
    };
    let f = profile("SCMP_ACT_ERRNO");
    let x64 = |nr| act_nr(&f, AUDIT_ARCH_X86_64, nr);
    assert_eq!(x64(39), RET_ALLOW);
    assert_eq!(
        x64(100),
        RET_ERRNO | 1,
        "known to the profile's range: default"
    );
    assert_eq!(x64(246), RET_ERRNO | 1);
    assert_eq!(x64(247), RET_ENOSYS, "newer than the profile: ENOSYS");
    assert_eq!(x64(u32::MAX), RET_ENOSYS);
    assert_eq!(x64(0x8000_0005), RET_ENOSYS);
    let x32max = nr(Abi::X32, "kexec_load");
    assert_eq!(x64(x32max), RET_ERRNO | 1);
    assert_eq!(x64(x32max + 1), RET_ENOSYS);
    let i386 = |nr| act_nr(&f, AUDIT_ARCH_I386, nr);
    assert_eq!(i386(20), RET_ALLOW);
    assert_eq!(i386(283), RET_ERRNO | 1);
    assert_eq!(i386(284), RET_ENOSYS);
    // Allow-ish defaults get no stub.
    for default in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"] {
        let f = profile(default);
        let default_action = act_nr(&f, AUDIT_ARCH_X86_64, 100);
        assert_eq!(
            act_nr(&f, AUDIT_ARCH_X86_64, 400),
            default_action,
            "{default}"
        );
        assert_ne!(default_action, RET_ENOSYS);
    }
    // Kill defaults do get it.
    let f = profile("SCMP_ACT_KILL_PROCESS");
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 247), RET_ENOSYS);
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 246), RET_KILL_PROCESS);
}

#[test]
fn enosys_stub_without_x32_leaves_x32_to_the_arch_check() {
    let f = filter(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}));
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 40), RET_ENOSYS);
    assert_eq!(
        act_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 1),
        RET_KILL_THREAD
    );
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, u32::MAX), RET_ERRNO | 1);
    // Bit 30 clear but above it: the stub's jgt catches it first.
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 0x8000_0001), RET_ENOSYS);
}

#[test]
fn containers_common_profile_fits() {
    let Ok(text) = std::fs::read(profile::CONTAINERS_COMMON_PROFILE) else {
        eprintln!(
            "SKIPPED containers_common_profile_fits: {} is absent \
             (apt-get install golang-github-containers-common)",
            profile::CONTAINERS_COMMON_PROFILE
        );
        return;
    };
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let spec = profile::from_docker_profile(&text, &caps).unwrap();
    let f = compile(&spec).unwrap();
    let len = f.instructions().len();
    let steps = |arch, nrs: std::ops::Range<u32>| {
        let runs = nrs.map(|nr| {
            interp::run(
                f.instructions(),
                &Call {
                    arch,
                    nr,
                    args: [0; 6],
                },
            )
            .1
        });
        runs.fold((0, 0, 0), |(n, sum, max), s| (n + 1, sum + s, max.max(s)))
    };
    let (n, sum, max) = steps(AUDIT_ARCH_X86_64, 0..600);
    eprintln!(
        "containers-common profile: {len} instructions; x86_64 syscalls 0..600 run {:.1} on average, {max} at most",
        sum as f64 / f64::from(n)
    );
    assert!(len <= MAX_INSNS);
    let x = |name| act(&f, X86_64, name, [u64::MAX; 6]);
    assert_eq!(x("read"), RET_ALLOW);
    assert_eq!(x("kexec_load"), RET_ERRNO | 1);
    assert_eq!(x("chroot"), RET_ERRNO | 1, "no CAP_SYS_CHROOT");
    assert_eq!(
        act(&f, X86_64, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(x("personality"), RET_ERRNO | 38, "hi word differs");
    assert_eq!(
        act(&f, Abi::X86, "personality", [u64::MAX; 6]),
        RET_ALLOW,
        "i386 compares low words"
    );
    assert_eq!(act(&f, Abi::X32, "read", NOARGS), RET_ALLOW);
    assert_eq!(act_nr(&f, AUDIT_ARCH_X86_64, 451), RET_ENOSYS);
}
