//! AppArmor: `process.apparmorProfile` and `exec --apparmor` confine the
//! container's program with a profile loaded by `apparmor_parser`; an unknown
//! profile fails before the program starts; `features` tells whether AppArmor is
//! enabled.
//!
//! The confinement tests need a kernel with AppArmor enabled and apparmor_parser
//! (Debian's apparmor package); elsewhere each prints "SKIPPED <test>: no
//! AppArmor" and returns. They run in the VM lane (`conformance/vm/run.sh
//! apparmor runc:apparmor`), against hull and, with
//! `HULL_TEST_RUNTIME=/usr/sbin/runc`, against runc. `features_reports_apparmor`
//! and `profile_without_apparmor_fails_cleanly` run everywhere.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{assert_no_leftovers, run_cmd, runtime, Ctx};
use serde_json::{json, Value};

const EACCES: i64 = 13;
const EINVAL: i64 = 22;
const PARSER: &str = "/usr/sbin/apparmor_parser";

/// True when AppArmor is enabled on this kernel (the test runc and hull use).
fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").is_dir()
        && fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y")
}

/// True (after saying why) when `test` must be skipped.
fn needs_apparmor(test: &str) -> bool {
    if !apparmor_enabled() {
        eprintln!(
            "SKIPPED {test}: no AppArmor (not enabled in this kernel, or securityfs not mounted)"
        );
        return true;
    }
    if !Path::new(PARSER).is_file() {
        eprintln!("SKIPPED {test}: no AppArmor parser ({PARSER}; apt-get install apparmor)");
        return true;
    }
    false
}

/// A profile loaded into the kernel for one test, removed on drop.
struct Profile {
    name: String,
    file: PathBuf,
}

impl Profile {
    /// Loads a profile that allows everything but writes below /tmp.
    fn deny_tmp_writes(ctx: &Ctx, tag: &str) -> Profile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hull-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // attach_disconnected: paths outside the container's mount namespace
        // root (the runtime's fds) still get a name, as in docker-default.
        let text = format!(
            "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n\
             \x20 file,\n  capability,\n  network,\n  signal,\n  ptrace,\n  unix,\n\
             \x20 deny /tmp/** w,\n\
             }}\n"
        );
        let file = ctx.tmp.join(format!("{name}.profile"));
        fs::write(&file, text).expect("write profile");
        let mut cmd = Command::new(PARSER);
        cmd.args(["--replace", "--skip-cache"]).arg(&file);
        run_cmd(cmd, &ctx.tmp).assert_ok();
        Profile { name, file }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = Command::new(PARSER)
            .arg("--remove")
            .arg(&self.file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A context whose container has a writable tmpfs at /tmp (the rootfs is read-only).
fn ctx_with_tmp(test: &str) -> Option<Ctx> {
    let mut ctx = Ctx::new(test)?;
    ctx.config["mounts"].as_array_mut().expect("mounts").push(
        json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "nodev", "mode=1777"] }),
    );
    Some(ctx)
}

/// The AppArmor label of the checker process, e.g. "p (enforce)" or "unconfined".
fn label(res: &Value) -> String {
    res["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no label: {res}"))
        .trim_end_matches(['\n', '\0'])
        .to_string()
}

const PROBES: [&[&str]; 3] = [
    &["write", "/tmp/denied"],
    &["write", "/dev/shm/allowed"],
    &["read", "/proc/self/attr/current"],
];

/// The container runs under the profile: the write it denies fails, others
/// succeed. The same container without the profile writes there.
#[test]
fn profile_denies_a_write_and_its_absence_allows_it() {
    if needs_apparmor("profile_denies_a_write_and_its_absence_allows_it") {
        return;
    }
    let Some(mut ctx) = ctx_with_tmp("aa-profile") else {
        return;
    };
    let profile = Profile::deny_tmp_writes(&ctx, "deny");
    ctx.config["process"]["apparmorProfile"] = json!(profile.name);
    let res = ctx.probe(&PROBES);
    assert_eq!(res[0]["errno"], EACCES, "write under /tmp: {}", res[0]);
    assert_eq!(res[1]["ok"], true, "write to /dev/shm: {}", res[1]);
    assert_eq!(label(&res[2]), format!("{} (enforce)", profile.name));

    ctx.config["process"]
        .as_object_mut()
        .expect("process")
        .remove("apparmorProfile");
    let res = ctx.probe(&PROBES);
    assert_eq!(
        res[0]["ok"], true,
        "write under /tmp without the profile: {}",
        res[0]
    );
    assert_eq!(res[1]["ok"], true, "{}", res[1]);
    assert_eq!(label(&res[2]), "unconfined");
}

/// hull's default profile (runtime/apparmor/hull-default, what hull-cri's
/// RuntimeDefault uses) loads and confines: with CAP_SYS_ADMIN and without the
/// masked and read-only paths, so that only AppArmor stands in the way, a
/// container under it can neither mount nor write a host-global sysctl, while
/// the same container without it can do both (the sysctl write then fails on
/// its content, EINVAL, having been let through).
#[test]
fn default_profile_confines() {
    if needs_apparmor("default_profile_confines") {
        return;
    }
    let Some(mut ctx) = ctx_with_tmp("aa-default") else {
        return;
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("apparmor/hull-default");
    let mut cmd = Command::new(PARSER);
    cmd.args(["--replace", "--skip-cache"]).arg(&file);
    run_cmd(cmd, &ctx.tmp).assert_ok();
    let _loaded = Profile {
        name: "hull-default".into(),
        file,
    };
    ctx.grant_cap("CAP_SYS_ADMIN");
    for key in ["maskedPaths", "readonlyPaths"] {
        ctx.config["linux"]
            .as_object_mut()
            .expect("linux")
            .remove(key);
    }
    ctx.set_args(&[
        "/bin/sh",
        "-c",
        "if mount -t tmpfs none /tmp 2>/dev/null; then echo mount=ok; else echo mount=denied; fi; \
         /checker write /proc/sys/vm/overcommit_ratio; /checker write /dev/shm/x; \
         /checker read /proc/self/attr/current",
    ]);
    let run = |ctx: &Ctx| {
        let out = ctx.run();
        out.assert_ok();
        let res = out.json_lines();
        assert_eq!(res.len(), 3, "one JSON line per probe:\n{out}");
        (
            out.stdout.lines().next().unwrap_or_default().to_owned(),
            res,
        )
    };
    ctx.config["process"]["apparmorProfile"] = json!("hull-default");
    let (mount, res) = run(&ctx);
    assert_eq!(mount, "mount=denied");
    assert_eq!(res[0]["errno"], EACCES, "sysctl write: {}", res[0]);
    assert_eq!(res[1]["ok"], true, "write to /dev/shm: {}", res[1]);
    assert_eq!(label(&res[2]), "hull-default (enforce)");

    ctx.config["process"]
        .as_object_mut()
        .expect("process")
        .remove("apparmorProfile");
    let (mount, res) = run(&ctx);
    assert_eq!(mount, "mount=ok");
    assert_eq!(
        res[0]["errno"], EINVAL,
        "sysctl write unconfined: {}",
        res[0]
    );
    assert_eq!(label(&res[2]), "unconfined");
    assert_no_leftovers(&ctx);
}

/// `exec --apparmor <profile>` confines the exec'd process only.
#[test]
fn exec_apparmor_applies_a_profile() {
    if needs_apparmor("exec_apparmor_applies_a_profile") {
        return;
    }
    let Some(mut ctx) = ctx_with_tmp("aa-exec") else {
        return;
    };
    let profile = Profile::deny_tmp_writes(&ctx, "exec");
    let id = ctx.id.clone();
    ctx.start_sleeper(&id);
    let exec = |extra: &[&str], probe: &[&str]| -> Value {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.push(&id);
        args.push("/checker");
        args.extend_from_slice(probe);
        let out = ctx.rt(&args);
        out.assert_ok();
        let mut lines = out.json_lines();
        assert_eq!(lines.len(), 1, "one JSON line:\n{out}");
        lines.remove(0)
    };
    let confined = ["--apparmor", profile.name.as_str()];
    let res = exec(&confined, &["write", "/tmp/denied"]);
    assert_eq!(res["errno"], EACCES, "exec --apparmor write: {res}");
    let res = exec(&confined, &["read", "/proc/self/attr/current"]);
    assert_eq!(label(&res), format!("{} (enforce)", profile.name));

    let res = exec(&[], &["write", "/tmp/allowed"]);
    assert_eq!(res["ok"], true, "exec without --apparmor: {res}");
    let res = exec(&[], &["read", "/proc/self/attr/current"]);
    assert_eq!(label(&res), "unconfined");

    // An unknown profile fails the exec; the container keeps running.
    let out = ctx.rt(&[
        "exec",
        "--apparmor",
        "hull-test-no-such-profile",
        &id,
        "/checker",
        "exit",
        "0",
    ]);
    out.assert_fail();
    assert_eq!(ctx.state()["status"], "running");
}

/// An unknown profile fails the create, before the user program runs, says
/// which profile, and leaves nothing behind.
#[test]
fn unknown_profile_fails_before_the_program_starts() {
    if needs_apparmor("unknown_profile_fails_before_the_program_starts") {
        return;
    }
    let Some(mut ctx) = ctx_with_tmp("aa-unknown") else {
        return;
    };
    let out_dir = ctx.tmp.join("out");
    fs::create_dir(&out_dir).expect("create out dir");
    ctx.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({ "destination": "/out", "type": "bind",
                      "source": out_dir.to_string_lossy(), "options": ["rbind", "rw"] }));
    let profile = format!("hull-test-no-such-profile-{}", std::process::id());
    ctx.config["process"]["apparmorProfile"] = json!(profile);
    ctx.set_args(&["/bin/sh", "-c", "echo ran > /out/ran"]);
    let out = ctx.run();
    out.assert_fail();
    assert!(
        !out_dir.join("ran").exists(),
        "the program ran despite the unknown profile:\n{out}"
    );
    if runtime().is_hull {
        assert!(
            out.stderr.contains(&profile),
            "the error should name the profile:\n{out}"
        );
    }
    assert_no_leftovers(&ctx);
}

/// `features` reports AppArmor as enabled exactly when the kernel has it.
#[test]
fn features_reports_apparmor() {
    if !runtime().is_hull {
        // runc 1.1.5 reports AppArmor support compiled in, whatever the host runs.
        eprintln!("SKIPPED features_reports_apparmor: runc reports build support, not the host");
        return;
    }
    let logs = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&runtime().path);
    cmd.arg("features");
    let out = run_cmd(cmd, logs.path());
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("features is not JSON ({e}):\n{out}"));
    assert_eq!(
        v["linux"]["apparmor"]["enabled"],
        apparmor_enabled(),
        "features on a host where AppArmor is {}:\n{out}",
        if apparmor_enabled() {
            "enabled"
        } else {
            "not enabled"
        }
    );
}

/// On a host without AppArmor a profile is refused with a clear error and
/// nothing is left behind.
#[test]
fn profile_without_apparmor_fails_cleanly() {
    if apparmor_enabled() {
        eprintln!("SKIPPED profile_without_apparmor_fails_cleanly: AppArmor is enabled here");
        return;
    }
    let Some(mut ctx) = Ctx::new("aa-none") else {
        return;
    };
    ctx.config["process"]["apparmorProfile"] = json!("hull-test-profile");
    ctx.checker(&["exit", "0"]);
    let out = ctx.create();
    out.assert_fail();
    if runtime().is_hull {
        assert!(
            out.stderr.contains("AppArmor is not enabled"),
            "the error should say why:\n{out}"
        );
    }
    assert_no_leftovers(&ctx);
}
