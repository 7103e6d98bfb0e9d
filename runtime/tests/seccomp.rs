//! Differential seccomp tests: the same profile and the same probes run in a
//! container of the runtime under test and in one of runc (`/usr/sbin/runc`,
//! runc 1.1.5 with libseccomp 2.5.4 here); the errno of every probe must match.
//!
//! - `containers_common_profile_matches_runc`: the Debian containers-common
//!   profile, and `hull-checker syscalls` for every number 0..=547 of the
//!   x86_64, x32 and i386 (int 0x80) ABIs, every argument -1.
//! - `argument_rules_match_runc`: a profile with every operator on 64-bit
//!   values, ORed rules, runc's same-argument split and i386 socketcall(2)
//!   multiplexing, probed with `hull-checker call`.
//! - `notify_listener_gets_state_and_fd`: SCMP_ACT_NOTIFY hands the agent
//!   runc's container process state JSON and the listener fd.
//!
//! For hull these run as soon as `hull features` reports seccomp enabled and
//! fail (they do not skip) before. `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test
//! -p hull --test seccomp` validates the tests against runc itself.
//!
//! The `*_bpf_*` variants need no runtime support: they compile the profile
//! with `hull::seccomp::compile` on the host and run the probes in a runc
//! container without a filter, under `hull-checker load-filter`, which loads
//! hull's program before it execs the probes. They test hull's BPF in the
//! kernel against runc's in the same environment.

mod common;

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;

use common::{run_cmd, runtime, Ctx, Out};
use hull::seccomp::{profile, Abi};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use serde_json::{json, Value};

const RUNC: &str = "/usr/sbin/runc";

/// Fails unless the runtime under test filters syscalls: for hull, what
/// `hull features` says; runc always does.
fn require_seccomp() {
    if !runtime().is_hull {
        return;
    }
    let out = Command::new(&runtime().path)
        .arg("features")
        .output()
        .expect("run features");
    let f: Value = serde_json::from_slice(&out.stdout).expect("features prints JSON");
    assert_eq!(
        f["linux"]["seccomp"]["enabled"], true,
        "`hull features` reports seccomp disabled: hull::seccomp is not wired into the \
         init yet, so hull would run these containers unfiltered (test refuses to skip)"
    );
}

/// A context for the reference run, or None (after saying why) without runc.
fn reference_ctx(test: &str) -> Option<Ctx> {
    if !Path::new(RUNC).exists() {
        eprintln!("SKIPPED {test}: {RUNC} is absent (scripts/deps.sh installs it)");
        return None;
    }
    Ctx::new(&format!("{test}-runc"))
}

/// Runs the container of `ctx` with runc.
fn runc_run(ctx: &Ctx) -> Out {
    ctx.write_config();
    let mut cmd = Command::new(RUNC);
    cmd.arg("--root")
        .arg(&ctx.root)
        .arg("run")
        .arg("--bundle")
        .arg(&ctx.bundle)
        .arg(&ctx.id);
    run_cmd(cmd, &ctx.tmp)
}

/// Who installs "our" filter.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The runtime under test, from `linux.seccomp`.
    Runtime,
    /// `hull-checker load-filter`, with the program hull compiled on the host,
    /// in a runc container without `linux.seccomp`.
    HostCompiled,
}

/// Makes `ctx`'s process run under hull's compiled `seccomp` via `load-filter`.
fn load_host_compiled(ctx: &mut Ctx, seccomp: &Value) {
    let spec = serde_json::from_value(seccomp.clone()).expect("seccomp JSON");
    let filter = hull::seccomp::compile(&spec).expect("hull compiles the profile");
    let bytes: Vec<u8> = filter
        .instructions()
        .iter()
        .flat_map(|i| [&i.code.to_ne_bytes()[..], &[i.jt, i.jf], &i.k.to_ne_bytes()].concat())
        .collect();
    std::fs::write(ctx.rootfs().join("hull-filter.bpf"), bytes).expect("write the program");
    let args = ctx.config["process"]["args"]
        .as_array()
        .cloned()
        .expect("args");
    let mut all = vec![
        json!(common::CHECKER),
        json!("load-filter"),
        json!("/hull-filter.bpf"),
    ];
    all.push(json!(filter.flags().to_string()));
    all.extend(args);
    ctx.config["process"]["args"] = json!(all);
}

/// Runs the checker commands `cmds` in both containers; one JSON per command each.
fn both(
    mode: Mode,
    ctx: &mut Ctx,
    reference: &mut Ctx,
    seccomp: &Value,
    cmds: &[Vec<String>],
) -> (Vec<Value>, Vec<Value>) {
    let cmds: Vec<Vec<&str>> = cmds
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let cmds: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    for c in [&mut *ctx, &mut *reference] {
        c.config["linux"]["seccomp"] = seccomp.clone();
        c.checker_script(&cmds);
    }
    let ours = match mode {
        Mode::Runtime => ctx.run(),
        Mode::HostCompiled => {
            ctx.config["linux"]
                .as_object_mut()
                .expect("linux")
                .remove("seccomp");
            load_host_compiled(ctx, seccomp);
            runc_run(ctx)
        }
    };
    let theirs = runc_run(reference);
    for out in [&ours, &theirs] {
        out.assert_ok();
        assert_eq!(
            out.json_lines().len(),
            cmds.len(),
            "one JSON line per probe:\n{out}"
        );
    }
    (ours.json_lines(), theirs.json_lines())
}

fn caps_of(ctx: &Ctx) -> Vec<String> {
    let bounding = ctx.config["process"]["capabilities"]["bounding"].as_array();
    bounding
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}

fn abi_named(name: &str) -> Abi {
    match name {
        "x86_64" => Abi::X86_64,
        "x32" => Abi::X32,
        _ => Abi::X86,
    }
}

/// Every probe whose errno differs, by syscall name.
fn sweep_differences(ours: &Value, theirs: &Value) -> Vec<String> {
    let abi = abi_named(ours["abi"].as_str().expect("abi"));
    let map = |v: &Value| -> BTreeMap<u32, i64> {
        let obj = v["errno"].as_object().expect("errno map");
        obj.iter()
            .map(|(k, e)| (k.parse().expect("nr"), e.as_i64().expect("errno")))
            .collect()
    };
    let (a, b) = (map(ours), map(theirs));
    assert_eq!(a.len(), b.len(), "both sweeps cover the same numbers");
    a.iter()
        .filter(|(nr, e)| b.get(nr) != Some(e))
        .map(|(nr, e)| {
            let name = abi.name(*nr).unwrap_or("?");
            format!("{abi:?} {nr} ({name}): ours {e}, runc {:?}", b.get(nr))
        })
        .collect()
}

#[test]
fn containers_common_profile_matches_runc() {
    containers_common(Mode::Runtime, "seccomp-cc");
}

#[test]
fn containers_common_bpf_matches_runc() {
    containers_common(Mode::HostCompiled, "seccomp-cc-bpf");
}

fn containers_common(mode: Mode, test: &str) {
    let Some(mut ctx) = Ctx::new(test) else {
        return;
    };
    if mode == Mode::Runtime {
        require_seccomp();
    }
    let Some(mut reference) = reference_ctx(test) else {
        return;
    };
    let Ok(text) = std::fs::read(profile::CONTAINERS_COMMON_PROFILE) else {
        panic!(
            "{} is absent: scripts/deps.sh installs golang-github-containers-common",
            profile::CONTAINERS_COMMON_PROFILE
        );
    };
    let caps = caps_of(&ctx);
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let spec = profile::from_docker_profile(&text, &caps).expect("profile converts");
    let seccomp = serde_json::to_value(&spec).expect("spec serialises");
    let cmds: Vec<Vec<String>> = ["x86_64", "x32", "x86"]
        .iter()
        .map(|abi| vec!["syscalls".into(), abi.to_string()])
        .collect();
    let (ours, theirs) = both(mode, &mut ctx, &mut reference, &seccomp, &cmds);
    let mut diffs = Vec::new();
    for (o, t) in ours.iter().zip(&theirs) {
        diffs.extend(sweep_differences(o, t));
    }
    assert!(
        diffs.is_empty(),
        "{} syscalls differ from runc:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // The profile did filter: kexec_load is EPERM, a number past the profile ENOSYS.
    assert_eq!(
        ours[0]["errno"]["246"], 1,
        "kexec_load: {}",
        ours[0]["errno"]
    );
    assert_eq!(ours[0]["errno"]["460"], 38);
}

/// Values around 0x1_0000_0005 that differ in the high word, the low word or both.
const VALUES: [u64; 16] = [
    0,
    1,
    2,
    5,
    7,
    9,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0004,
    0x1_0000_0005,
    0x1_0000_0006,
    0x1_0000_0009,
    0x2_0000_0000,
    0x5_0000_0005,
    0x8000_0000_0000_0005,
    u64::MAX,
];

/// Rules on syscalls that are harmless with any argument (they only query,
/// or set the umask, or dup an fd), each answering its own errno.
fn argument_profile() -> Value {
    let a = |i: u32, v: u64, op: &str| json!({"index": i, "value": v, "op": op});
    let rule = |name: &str, errno: u32, args: Vec<Value>| json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args});
    let masked = json!({"index": 0, "value": 0xff_0000_00ffu64, "valueTwo": 0x05_0000_0005u64,
        "op": "SCMP_CMP_MASKED_EQ"});
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            rule("getpriority", 101, vec![masked, a(1, 10, "SCMP_CMP_LT")]),
            rule("sched_get_priority_max", 102, vec![a(0, 0x1_0000_0005, "SCMP_CMP_EQ")]),
            rule("sched_get_priority_min", 103, vec![a(0, 0x1_0000_0005, "SCMP_CMP_NE")]),
            // Two conditions on one argument: runc makes them two ORed rules.
            rule("getitimer", 104, vec![a(0, 7, "SCMP_CMP_EQ"), a(0, 0x1_0000_0009, "SCMP_CMP_EQ")]),
            rule("getrlimit", 105, vec![a(0, 0x1_0000_0005, "SCMP_CMP_LE")]),
            rule("umask", 106, vec![a(0, 0x1_0000_0005, "SCMP_CMP_GT")]),
            rule("umask", 107, vec![a(0, 0x2_0000_0000, "SCMP_CMP_EQ")]),
            rule("ioprio_get", 108, vec![a(0, 0x1_0000_0005, "SCMP_CMP_GE")]),
            rule("dup", 110, vec![a(0, 0x1_0000_0000, "SCMP_CMP_LT")]),
            // On i386 also socketcall(SYS_SOCKET, ...), whatever its argument 0.
            rule("socket", 109, vec![a(0, 9999, "SCMP_CMP_EQ")]),
        ]
    })
}

fn argument_probes() -> Vec<Vec<String>> {
    let lists = |second: &[u64]| -> Vec<String> {
        let firsts = VALUES.iter();
        firsts
            .flat_map(|v| second.iter().map(move |s| format!("{v:#x},{s:#x}")))
            .collect()
    };
    let mut cmds = Vec::new();
    for abi in [Abi::X86_64, Abi::X86] {
        let abi_name = if abi == Abi::X86 { "x86" } else { "x86_64" };
        let calls: [(&str, Vec<String>); 10] = [
            ("getpriority", lists(&[0, 10, 0x7fff_ffff])),
            ("sched_get_priority_max", lists(&[0])),
            ("sched_get_priority_min", lists(&[0])),
            ("getitimer", lists(&[0])),
            ("getrlimit", lists(&[0])),
            ("umask", lists(&[0])),
            ("ioprio_get", lists(&[0])),
            ("dup", lists(&[0])),
            ("socket", vec!["9999,1".into(), "2,9999".into()]),
            ("socketcall", vec!["1,0".into(), "3,0".into()]),
        ];
        for (name, args) in calls {
            let Some(nr) = abi.number(name) else { continue };
            let mut cmd = vec!["call".to_string(), abi_name.to_string(), nr.to_string()];
            cmd.extend(args);
            cmds.push(cmd);
        }
    }
    cmds
}

#[test]
fn argument_rules_match_runc() {
    argument_rules(Mode::Runtime, "seccomp-args");
}

#[test]
fn argument_rules_bpf_matches_runc() {
    argument_rules(Mode::HostCompiled, "seccomp-args-bpf");
}

fn argument_rules(mode: Mode, test: &str) {
    let Some(mut ctx) = Ctx::new(test) else {
        return;
    };
    if mode == Mode::Runtime {
        require_seccomp();
    }
    let Some(mut reference) = reference_ctx(test) else {
        return;
    };
    let cmds = argument_probes();
    let (ours, theirs) = both(mode, &mut ctx, &mut reference, &argument_profile(), &cmds);
    let mut diffs = Vec::new();
    for ((o, t), cmd) in ours.iter().zip(&theirs).zip(&cmds) {
        if o != t {
            diffs.push(format!(
                "{}:\n  ours {}\n  runc {}",
                cmd.join(" "),
                o["errno"],
                t["errno"]
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "probes differ from runc:\n{}",
        diffs.join("\n")
    );
    // The rules did apply: sched_get_priority_max(0x1_0000_0005) is the only 102 on x86_64.
    let max = &ours[1]["errno"];
    let hits: Vec<usize> = (0..VALUES.len()).filter(|i| max[i] == 102).collect();
    assert_eq!(hits, [9], "x86_64 compares both words: {max}");
}

/// The agent side: accepts one connection, returns the JSON and whether an
/// fd came with it (the fd is closed, so notifying syscalls get ENOSYS).
fn agent(listener: UnixListener) -> std::thread::JoinHandle<(Value, bool)> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let mut got_fd = false;
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    got_fd = true;
                    nix::unistd::close(fd).expect("close the listener fd");
                }
            }
        }
        let len = msg.bytes;
        let json = serde_json::from_slice(&buf[..len]).expect("the agent gets JSON");
        (json, got_fd)
    })
}

fn notify_run(ctx: &mut Ctx, use_runc: bool) -> (Value, bool, Value) {
    let sock = ctx.tmp.join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind agent socket");
    let nr = Abi::X86_64.number("sched_get_priority_max").expect("nr");
    ctx.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "hull-test",
        "syscalls": [{"names": ["sched_get_priority_max"], "action": "SCMP_ACT_NOTIFY"}]
    });
    ctx.checker(&["call", "x86_64", &nr.to_string(), "0"]);
    let handle = agent(listener);
    let out = if use_runc { runc_run(ctx) } else { ctx.run() };
    out.assert_ok();
    let (state, got_fd) = handle.join().expect("agent thread");
    let line = out
        .json_lines()
        .pop()
        .unwrap_or_else(|| panic!("no probe output:\n{out}"));
    (state, got_fd, line)
}

#[test]
fn notify_listener_gets_state_and_fd() {
    let Some(mut ctx) = Ctx::new("seccomp-notify") else {
        return;
    };
    require_seccomp();
    let Some(mut reference) = reference_ctx("seccomp-notify") else {
        return;
    };
    let (ours, our_fd, our_probe) = notify_run(&mut ctx, false);
    let (theirs, their_fd, their_probe) = notify_run(&mut reference, true);
    assert!(our_fd && their_fd, "the listener fd comes as SCM_RIGHTS");
    // With the listener closed by the agent, the notifying syscall gets ENOSYS.
    assert_eq!(our_probe["errno"], json!([38]), "{our_probe}");
    assert_eq!(our_probe, their_probe);
    for v in [&ours, &theirs] {
        assert_eq!(v["fds"], json!(["seccompFd"]), "{v}");
        assert_eq!(v["metadata"], "hull-test", "{v}");
        assert!(v["pid"].as_i64().is_some_and(|p| p > 0), "{v}");
        assert!(
            v["ociVersion"].is_string() && v["state"]["ociVersion"].is_string(),
            "{v}"
        );
        assert!(v["state"]["bundle"].is_string(), "{v}");
    }
    assert_eq!(ours["state"]["id"], ctx.id.as_str());
    assert_eq!(theirs["state"]["id"], reference.id.as_str());
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&ours), keys(&theirs), "same fields as runc");
}
