//! Tests of argument conditions, rule combination, long jumps, a randomised
//! comparison of compiled programs with a direct evaluation of the plan, and
//! loading a filter into the kernel (in a child process, no root needed).

use serde_json::{json, Value};

use super::action::*;
use super::interp::Call;
use super::plan::{plan, ArgCmp, CmpOp, Outcome, Plan};
use super::tests::{act, filter, spec};
use super::*;

const OPS: [&str; 6] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
];

/// Values around `v` that differ in the high word, the low word or both.
const PROBES: [u64; 12] = [
    0,
    5,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0004,
    0x1_0000_0005,
    0x1_0000_0006,
    0x1_ffff_ffff,
    0x2_0000_0000,
    0x2_0000_0005,
    0x8000_0000_0000_0005,
    u64::MAX,
];

fn holds(op: &str, x: u64, v: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => x != v,
        "SCMP_CMP_LT" => x < v,
        "SCMP_CMP_LE" => x <= v,
        "SCMP_CMP_EQ" => x == v,
        "SCMP_CMP_GE" => x >= v,
        _ => x > v,
    }
}

#[test]
fn every_operator_on_64_bit_and_32_bit_arguments() {
    let v: u64 = 0x1_0000_0005;
    for op in OPS {
        for index in [0usize, 3, 5] {
            let f = filter(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                              "args": [{"index": index, "value": v, "op": op}]}]
            }));
            for x in PROBES {
                let mut args = [0u64; 6];
                args[index] = x;
                let expect = |hit| if hit { RET_ERRNO | 77 } else { RET_ALLOW };
                let want64 = expect(holds(op, x, v));
                assert_eq!(
                    act(&f, Abi::X86_64, "getpid", args),
                    want64,
                    "{op} a{index}={x:#x}"
                );
                // i386 and x32 compare the low 32 bits of value and argument.
                let want32 = expect(holds(op, x & 0xffff_ffff, v & 0xffff_ffff));
                assert_eq!(
                    act(&f, Abi::X86, "getpid", args),
                    want32,
                    "i386 {op} {x:#x}"
                );
                assert_eq!(act(&f, Abi::X32, "getpid", args), want32, "x32 {op} {x:#x}");
            }
        }
    }
}

#[test]
fn masked_eq_compares_both_words() {
    let (mask, value) = (0xff00_0000_0000_00ffu64, 0x1200_0000_0000_0034u64);
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}]},
            // A mask with no low bits always holds on i386; libseccomp drops it there.
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
             "args": [{"index": 0, "value": 0xf_0000_0000u64, "valueTwo": 0x3_0000_0000u64, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    for x in [
        0x1200_0000_0000_0034u64,
        0x12ab_cdef_0123_4534,
        0x1300_0000_0000_0034,
        0x1200_0000_0000_0035,
        0x34,
    ] {
        let want = if x & mask == value & mask {
            RET_ERRNO | 1
        } else {
            RET_ALLOW
        };
        assert_eq!(
            act(&f, Abi::X86_64, "getpid", [0, x, 0, 0, 0, 0]),
            want,
            "{x:#x}"
        );
    }
    assert_eq!(
        act(&f, Abi::X86_64, "getppid", [0x3_1234_5678, 0, 0, 0, 0, 0]),
        RET_ERRNO | 2
    );
    assert_eq!(
        act(&f, Abi::X86_64, "getppid", [0x4_1234_5678, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        act(&f, Abi::X86, "getppid", [0x4_1234_5678, 0, 0, 0, 0, 0]),
        RET_ERRNO | 2
    );
}

#[test]
fn rules_combine_like_runc_and_libseccomp() {
    let arg = |i: usize, v: u64, op: &str| json!({"index": i, "value": v, "op": op});
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            // Several rules for one syscall are ORed; conditions in one rule are ANDed.
            {"names": ["getpriority"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, 1, "SCMP_CMP_EQ"), arg(1, 2, "SCMP_CMP_EQ")]},
            {"names": ["getpriority"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, 9, "SCMP_CMP_EQ")]},
            // runc: two conditions on one argument become two rules (ORed).
            {"names": ["setpriority"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, 1, "SCMP_CMP_EQ"), arg(0, 2, "SCMP_CMP_EQ")]},
            // libseccomp: an unconditional rule overrides conditional ones, before or after.
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "args": [arg(0, 1, "SCMP_CMP_EQ")]},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6},
            // runc drops rules with the default action: a0 == 1 is not an exception here.
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [arg(0, 1, "SCMP_CMP_EQ")]},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, 5, "SCMP_CMP_NE")]},
            // Overlapping rules with different actions: libseccomp tries EQ before GT.
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 10, "args": [arg(0, 5, "SCMP_CMP_GT")]},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11, "args": [arg(0, 7, "SCMP_CMP_EQ")]},
        ]
    }));
    let call = |name, a0, a1| act(&f, Abi::X86_64, name, [a0, a1, 0, 0, 0, 0]);
    let deny = RET_ERRNO | 1;
    assert_eq!(call("getpriority", 1, 2), RET_ALLOW);
    assert_eq!(call("getpriority", 1, 3), deny);
    assert_eq!(call("getpriority", 9, 3), RET_ALLOW);
    assert_eq!(call("setpriority", 1, 0), RET_ALLOW);
    assert_eq!(call("setpriority", 2, 0), RET_ALLOW);
    assert_eq!(call("setpriority", 3, 0), deny);
    assert_eq!(call("getpid", 1, 0), RET_ALLOW);
    assert_eq!(call("getppid", 1, 0), RET_ALLOW);
    assert_eq!(call("getppid", 5, 0), deny);
    assert_eq!(call("getuid", 7, 0), RET_ERRNO | 11);
    assert_eq!(call("getuid", 8, 0), RET_ERRNO | 10);
    assert_eq!(call("getuid", 3, 0), deny);
}

#[test]
fn long_programs_resolve_far_jumps() {
    // 300 syscalls with conditions each: blocks far beyond 8-bit jump reach.
    let names: Vec<&str> = Abi::X86_64.names().take(300).collect();
    let rules: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1,
            "args": [{"index": i % 6, "value": i as u64 | 0x7_0000_0000, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let f = filter(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert!(f.instructions().len() > 1000, "{}", f.instructions().len());
    for (i, name) in names.iter().enumerate() {
        let mut args = [0u64; 6];
        args[i % 6] = i as u64 | 0x7_0000_0000;
        assert_eq!(
            act(&f, Abi::X86_64, name, args),
            RET_ERRNO | (i as u32 + 1),
            "{name}"
        );
        args[i % 6] = i as u64;
        assert_eq!(act(&f, Abi::X86_64, name, args), RET_ALLOW, "{name}");
    }
}

/// Evaluates the plan directly, without BPF: the reference the compiled
/// programs are compared with.
fn reference(p: &Plan, c: Call) -> u32 {
    let x32 = p.abis.contains(&Abi::X32);
    let abi = match c.arch {
        AUDIT_ARCH_X86_64 if x32 && c.nr & X32_SYSCALL_BIT != 0 => Abi::X32,
        AUDIT_ARCH_X86_64 => Abi::X86_64,
        AUDIT_ARCH_I386 if p.abis.contains(&Abi::X86) => Abi::X86,
        _ => return RET_KILL_THREAD,
    };
    if let Some(s) = p.stub {
        let max = match (c.arch, c.nr & X32_SYSCALL_BIT != 0) {
            (AUDIT_ARCH_I386, _) => s.x86,
            (_, true) => s.x32,
            (_, false) => s.x86_64,
        };
        if max.is_some_and(|m| c.nr > m) {
            return RET_ENOSYS;
        }
    }
    if abi == Abi::X86_64 && !x32 && c.nr >= X32_SYSCALL_BIT {
        return if c.nr == u32::MAX {
            p.default
        } else {
            RET_KILL_THREAD
        };
    }
    let wide = abi.args_are_64bit();
    let holds = |k: &ArgCmp| {
        let a = c.args[usize::from(k.index)];
        let x = if wide { a } else { a & 0xffff_ffff } & k.mask;
        match k.op {
            CmpOp::Eq | CmpOp::MaskedEq => x == k.datum,
            CmpOp::Ne => x != k.datum,
            CmpOp::Lt => x < k.datum,
            CmpOp::Le => x <= k.datum,
            CmpOp::Ge => x >= k.datum,
            CmpOp::Gt => x > k.datum,
        }
    };
    match p.syscalls[&abi].get(&c.nr) {
        None => p.default,
        Some(Outcome::Action(a)) => *a,
        Some(Outcome::Rules(rules)) => rules
            .iter()
            .find(|r| r.conds.iter().all(holds))
            .map_or(p.default, |r| r.action),
    }
}

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const NAMES: [&str; 14] = [
    "read",
    "getpid",
    "socket",
    "personality",
    "_llseek",
    "readv",
    "shmget",
    "kexec_load",
    "getpriority",
    "socketcall",
    "arch_prctl",
    "no_such_call",
    "futex_waitv",
    "clone3",
];
const ACTIONS: [(&str, Option<u32>); 7] = [
    ("SCMP_ACT_ALLOW", None),
    ("SCMP_ACT_ERRNO", None),
    ("SCMP_ACT_ERRNO", Some(38)),
    ("SCMP_ACT_ERRNO", Some(13)),
    ("SCMP_ACT_KILL_PROCESS", None),
    ("SCMP_ACT_TRAP", None),
    ("SCMP_ACT_LOG", None),
];

fn random_profile(rng: &mut Rng) -> Value {
    let action = |rng: &mut Rng, key: &str| {
        let (a, ret) = *rng.pick(&ACTIONS);
        let mut v = json!({ key: a });
        if let Some(r) = ret {
            v[if key == "action" {
                "errnoRet"
            } else {
                "defaultErrnoRet"
            }] = json!(r);
        }
        v
    };
    let mut p = action(rng, "defaultAction");
    let archs: Vec<&str> = [("SCMP_ARCH_X86", 1), ("SCMP_ARCH_X32", 2)]
        .into_iter()
        .filter(|(_, bit)| rng.next() & bit != 0)
        .map(|(a, _)| a)
        .collect();
    p["architectures"] = json!(archs);
    let rules: Vec<Value> = (0..rng.next() % 12)
        .map(|_| {
            let mut r = action(rng, "action");
            r["names"] = json!((0..1 + rng.next() % 3)
                .map(|_| *rng.pick(&NAMES))
                .collect::<Vec<_>>());
            let args: Vec<Value> = (0..rng.next() % 3)
                .map(|_| {
                    let ops = [
                        "SCMP_CMP_NE",
                        "SCMP_CMP_LT",
                        "SCMP_CMP_LE",
                        "SCMP_CMP_EQ",
                        "SCMP_CMP_GE",
                        "SCMP_CMP_GT",
                        "SCMP_CMP_MASKED_EQ",
                    ];
                    json!({"index": rng.next() % 3, "value": *rng.pick(&PROBES),
                           "valueTwo": *rng.pick(&PROBES), "op": *rng.pick(&ops)})
                })
                .collect();
            r["args"] = json!(args);
            r
        })
        .collect();
    p["syscalls"] = json!(rules);
    p
}

#[test]
fn compiled_programs_agree_with_the_plan() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut nrs: Vec<(u32, u32)> = Vec::new();
    for abi in Abi::ALL {
        nrs.extend(
            NAMES
                .iter()
                .filter_map(|n| abi.number(n))
                .map(|nr| (abi.audit_arch(), nr)),
        );
    }
    for nr in [
        0,
        1,
        102,
        117,
        246,
        247,
        450,
        451,
        0x8000_0005,
        u32::MAX,
        X32_SYSCALL_BIT | 1,
        X32_SYSCALL_BIT | 600,
    ] {
        nrs.extend([
            (AUDIT_ARCH_X86_64, nr),
            (AUDIT_ARCH_I386, nr),
            (0xc000_00b7, nr),
        ]);
    }
    for round in 0..300 {
        let profile = random_profile(&mut rng);
        let s = spec(profile.clone());
        let (Ok(p), Ok(f)) = (plan(&s), compile(&s)) else {
            continue;
        };
        for _ in 0..200 {
            let (arch, nr) = *rng.pick(&nrs);
            let args = [0; 6].map(|_: u64| *rng.pick(&PROBES));
            let c = Call { arch, nr, args };
            assert_eq!(
                f.eval(c),
                reference(&p, c),
                "round {round}: {c:?}\n{profile}"
            );
        }
    }
}

/// Runs `test` of this binary in a child process with `HULL_SECCOMP_CHILD`
/// set, so a filter can be loaded without affecting the other tests.
fn in_child(test: &str) {
    if std::env::var_os("HULL_SECCOMP_CHILD").is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env("HULL_SECCOMP_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed:\n{text}"
    );
}

#[test]
fn install_loads_into_the_kernel() {
    in_child("seccomp::tests_args::install_loads_into_the_kernel");
    if std::env::var_os("HULL_SECCOMP_CHILD").is_none() {
        return;
    }
    nix::sys::prctl::set_no_new_privs().unwrap();
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/unused",
        "syscalls": [
            {"names": ["fchdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
             "args": [{"index": 0, "value": 12345, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}
        ]
    }));
    let listener = f.install().expect("seccomp(2) takes the filter");
    assert!(listener.is_some(), "NOTIFY returns the listener fd");
    // With the listener closed, notifying syscalls fail with ENOSYS.
    drop(listener);
    let err = std::env::current_dir().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSYS), "{err}");
    // Conditions see the real arguments.
    assert_eq!(nix::unistd::fchdir(12345), Err(nix::errno::Errno::EXDEV));
    assert_eq!(nix::unistd::fchdir(12346), Err(nix::errno::Errno::EBADF));
}
