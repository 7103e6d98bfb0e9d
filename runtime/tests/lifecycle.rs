//! Lifecycle tests against the runc command-line contract.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p hull --test lifecycle`.

mod common;

use std::fs;
use std::time::Duration;

use common::{runtime, wait_pid_gone, Ctx, Out};
use serde_json::{json, Value};

const ANNOTATION_KEY: &str = "org.hull.test";

/// Asserts the state JSON has the runtime-spec shape and the expected values.
#[track_caller]
fn assert_state_shape(ctx: &Ctx, st: &Value, status: &str) {
    assert!(st["ociVersion"].is_string(), "ociVersion: {st}");
    assert_eq!(st["id"], ctx.id.as_str(), "id: {st}");
    assert_eq!(st["status"], status, "status: {st}");
    assert!(st["pid"].as_u64().is_some_and(|p| p > 0), "pid: {st}");
    assert_eq!(
        st["bundle"],
        ctx.bundle.to_string_lossy().as_ref(),
        "bundle: {st}"
    );
    assert_eq!(
        st["rootfs"],
        ctx.rootfs().to_string_lossy().as_ref(),
        "rootfs: {st}"
    );
    let created = st["created"].as_str().expect("created is a string");
    // RFC 3339, e.g. 2026-11-26T20:50:08.742561082Z
    let b = created.as_bytes();
    assert!(
        b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':',
        "created is not RFC 3339: {created}"
    );
    assert!(st["owner"].is_string(), "owner: {st}");
    // runc omits `annotations` when there are none; the tests always set one.
    assert_eq!(
        st["annotations"][ANNOTATION_KEY], "yes",
        "annotations: {st}"
    );
}

fn annotate(ctx: &mut Ctx) {
    ctx.config["annotations"] = json!({ ANNOTATION_KEY: "yes" });
}

#[test]
fn create_start_kill_delete() {
    let Some(mut ctx) = Ctx::new("lifecycle") else {
        return;
    };
    annotate(&mut ctx);
    ctx.checker(&["sleep", "600"]);
    ctx.create().assert_ok();
    let st = ctx.state();
    assert_state_shape(&ctx, &st, "created");
    let pid = st["pid"].as_u64().expect("pid");
    assert!(
        fs::metadata(format!("/proc/{pid}")).is_ok(),
        "init process {pid} not alive"
    );

    ctx.rt(&["start", &ctx.id]).assert_ok();
    let st = ctx.wait_status("running");
    assert_state_shape(&ctx, &st, "running");
    assert_eq!(st["pid"].as_u64(), Some(pid), "pid changed on start");

    let again = ctx.rt(&["start", &ctx.id]);
    again.assert_fail();

    ctx.rt(&["kill", &ctx.id, "KILL"]).assert_ok();
    let st = ctx.wait_status("stopped");
    assert_eq!(st["id"], ctx.id.as_str());
    assert!(wait_pid_gone(pid), "process {pid} survived SIGKILL");

    ctx.rt(&["delete", &ctx.id]).assert_ok();
    assert!(
        ctx.state_of(&ctx.id).is_none(),
        "state still answers after delete"
    );
    assert!(
        !ctx.root.join(&ctx.id).exists(),
        "state dir left after delete"
    );
}

#[test]
fn start_of_stopped_container_fails() {
    let Some(mut ctx) = Ctx::new("start-stopped") else {
        return;
    };
    ctx.checker(&["exit", "0"]);
    ctx.create().assert_ok();
    ctx.rt(&["start", &ctx.id]).assert_ok();
    ctx.wait_status("stopped");
    ctx.rt(&["start", &ctx.id]).assert_fail();
}

#[test]
fn delete_running_needs_force() {
    let Some(mut ctx) = Ctx::new("delete-force") else {
        return;
    };
    let id = ctx.id.clone();
    let pid = ctx.start_sleeper(&id)["pid"].as_u64().expect("pid");

    let out = ctx.rt(&["delete", &id]);
    out.assert_fail();
    assert_eq!(
        ctx.state()["status"],
        "running",
        "delete without --force changed state"
    );
    if runtime().is_hull {
        assert!(
            out.stderr.contains("running"),
            "error should say it is running:\n{out}"
        );
    }

    ctx.rt(&["delete", "--force", &id]).assert_ok();
    assert!(
        ctx.state_of(&id).is_none(),
        "state still answers after delete --force"
    );
    assert!(wait_pid_gone(pid), "process {pid} survived delete --force");
}

#[test]
fn run_returns_exit_code() {
    let Some(mut ctx) = Ctx::new("run-exit") else {
        return;
    };
    ctx.checker(&["exit", "42"]);
    let out = ctx.run();
    assert_eq!(
        out.code(),
        Some(42),
        "run must return the container's exit code:\n{out}"
    );
    assert!(
        ctx.state_of(&ctx.id).is_none(),
        "run must delete the container"
    );
}

#[test]
fn run_prints_container_output() {
    let Some(mut ctx) = Ctx::new("run-output") else {
        return;
    };
    ctx.set_args(&["sh", "-c", "echo out-line; echo err-line >&2"]);
    let out = ctx.run();
    out.assert_ok();
    assert_eq!(out.stdout, "out-line\n");
    assert_eq!(out.stderr, "err-line\n");
}

/// A process killed by signal N makes `run` exit with 128+N (runc's rule).
/// PID 1 of a PID namespace cannot kill itself, so these run without one.
#[test]
fn run_returns_128_plus_signal() {
    let Some(mut ctx) = Ctx::new("run-signal") else {
        return;
    };
    let ns = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.retain(|n| n["type"] != "pid");
    for (sig, want) in [("15", 143), ("9", 137)] {
        ctx.checker(&["signal-self", sig]);
        let out = ctx.run();
        assert_eq!(out.code(), Some(want), "signal {sig}:\n{out}");
        assert!(
            ctx.state_of(&ctx.id).is_none(),
            "run must delete the container"
        );
    }
}

/// The same rule when the signal comes from `kill` while `run` waits.
#[test]
fn run_of_killed_container_returns_137() {
    let Some(mut ctx) = Ctx::new("run-killed") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    ctx.write_config();
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let pending = ctx.rt_bg(&["run", "--bundle", &bundle, &ctx.id]);
    ctx.wait_status("running");
    ctx.rt(&["kill", &ctx.id, "KILL"]).assert_ok();
    let out = pending.wait();
    assert_eq!(
        out.code(),
        Some(137),
        "run of a SIGKILLed container:\n{out}"
    );
}

#[test]
fn run_detached() {
    let Some(mut ctx) = Ctx::new("run-detach") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    ctx.run_with(&["-d"]).assert_ok();
    let st = ctx.state();
    assert_eq!(st["status"], "running", "run -d: {st}");
    ctx.rt(&["kill", &ctx.id, "KILL"]).assert_ok();
    ctx.wait_status("stopped");
    ctx.rt(&["delete", &ctx.id]).assert_ok();
}

#[test]
fn list_quiet_table_and_json() {
    let Some(mut ctx) = Ctx::new("list") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    let other = ctx.extra_id("list-b");
    ctx.create().assert_ok();
    ctx.create_id(&other).assert_ok();

    let quiet = ctx.rt(&["list", "-q"]);
    quiet.assert_ok();
    let mut ids: Vec<&str> = quiet.stdout.lines().collect();
    ids.sort_unstable();
    let mut want = vec![ctx.id.as_str(), other.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "list -q:\n{quiet}");

    let table = ctx.rt(&["list"]);
    table.assert_ok();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    assert_eq!(table.stdout.lines().count(), 3, "header + 2 rows:\n{table}");

    let js = ctx.rt(&["list", "-f", "json"]);
    js.assert_ok();
    let list: Value = serde_json::from_str(&js.stdout).expect("list -f json is JSON");
    let arr = list.as_array().expect("list -f json is an array");
    assert_eq!(arr.len(), 2, "{js}");
    for c in arr {
        assert_eq!(c["status"], "created", "{c}");
        assert!(c["pid"].as_u64().is_some_and(|p| p > 0), "{c}");
        assert_eq!(c["bundle"], ctx.bundle.to_string_lossy().as_ref(), "{c}");
        assert!(
            c["created"].is_string() && c["ociVersion"].is_string(),
            "{c}"
        );
    }
}

#[test]
fn list_of_empty_root_is_empty_json_array() {
    let Some(ctx) = Ctx::new("list-empty") else {
        return;
    };
    let js = ctx.rt(&["list", "-f", "json"]);
    js.assert_ok();
    // runc prints `null` for an empty list; accept that and `[]`.
    let v: Value = serde_json::from_str(&js.stdout).expect("JSON");
    assert!(
        v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "{js}"
    );
}

/// A shell that exits 7 on SIGTERM; only once its handler is in place is the
/// signal sent, since PID 1 ignores signals it has no handler for.
fn start_term_trapper(ctx: &mut Ctx, id: &str) -> u64 {
    ctx.set_args(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.05; done",
    ]);
    ctx.create_id(id).assert_ok();
    ctx.rt(&["start", id]).assert_ok();
    let pid = ctx.wait_status_of(id, "running")["pid"]
        .as_u64()
        .expect("pid");
    let caught = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (15 - 1)) != 0)
    };
    for _ in 0..500 {
        if fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| caught(&s)) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("container {id} never installed its SIGTERM handler");
}

#[test]
fn kill_by_name_and_number() {
    let Some(mut ctx) = Ctx::new("kill") else {
        return;
    };
    let by_sigterm = ctx.id.clone();
    start_term_trapper(&mut ctx, &by_sigterm);
    ctx.rt(&["kill", &by_sigterm, "SIGTERM"]).assert_ok();
    ctx.wait_status_of(&by_sigterm, "stopped");

    let by_term = ctx.extra_id("kill-term");
    start_term_trapper(&mut ctx, &by_term);
    ctx.rt(&["kill", &by_term, "TERM"]).assert_ok();
    ctx.wait_status_of(&by_term, "stopped");

    let by_15 = ctx.extra_id("kill-15");
    start_term_trapper(&mut ctx, &by_15);
    ctx.rt(&["kill", &by_15, "15"]).assert_ok();
    ctx.wait_status_of(&by_15, "stopped");

    let by_9 = ctx.extra_id("kill-9");
    ctx.start_sleeper(&by_9);
    ctx.rt(&["kill", &by_9, "9"]).assert_ok();
    ctx.wait_status_of(&by_9, "stopped");

    let by_kill = ctx.extra_id("kill-name");
    ctx.start_sleeper(&by_kill);
    ctx.rt(&["kill", &by_kill, "KILL"]).assert_ok();
    ctx.wait_status_of(&by_kill, "stopped");

    let bad = ctx.rt(&["kill", &by_kill, "NOSUCHSIGNAL"]);
    bad.assert_fail();
}

#[test]
fn kill_default_signal_is_sigterm() {
    let Some(mut ctx) = Ctx::new("kill-default") else {
        return;
    };
    let id = ctx.id.clone();
    start_term_trapper(&mut ctx, &id);
    ctx.rt(&["kill", &id]).assert_ok();
    ctx.wait_status("stopped");
}

#[test]
fn pid_file_holds_init_pid() {
    let Some(mut ctx) = Ctx::new("pid-file") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    ctx.write_config();
    let pid_file = ctx.tmp.join("container.pid");
    let (bundle, pf) = (ctx.bundle.to_string_lossy(), pid_file.to_string_lossy());
    let out = ctx.rt(&["create", "--bundle", &bundle, "--pid-file", &pf, &ctx.id]);
    out.assert_ok();
    let text = fs::read_to_string(&pid_file).expect("pid file written");
    let pid: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {text:?}: {e}"));
    assert_eq!(ctx.state()["pid"].as_u64(), Some(pid));
}

fn plain(args: &[&str], dir: &std::path::Path) -> Out {
    let mut cmd = std::process::Command::new(&runtime().path);
    cmd.args(args).current_dir(dir);
    common::run_cmd(cmd, dir)
}

#[test]
fn spec_writes_config_and_refuses_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    plain(&["spec"], dir.path()).assert_ok();
    let path = dir.path().join("config.json");
    let text = fs::read_to_string(&path).expect("spec wrote config.json");
    let cfg: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(cfg["ociVersion"].is_string(), "{cfg}");
    assert!(cfg["process"]["args"].is_array(), "{cfg}");
    assert!(cfg["root"]["path"].is_string(), "{cfg}");
    assert!(cfg["linux"]["namespaces"].is_array(), "{cfg}");

    fs::write(&path, "sentinel").expect("overwrite");
    let again = plain(&["spec"], dir.path());
    again.assert_fail();
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "sentinel",
        "spec overwrote"
    );
    assert!(
        again.stderr.contains("exists"),
        "should say the file exists:\n{again}"
    );

    let other = dir.path().join("b");
    fs::create_dir(&other).expect("mkdir");
    let b = other.to_string_lossy();
    plain(&["spec", "--bundle", &b], dir.path()).assert_ok();
    assert!(other.join("config.json").is_file(), "spec --bundle ignored");
}

#[test]
fn features_prints_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = plain(&["features"], dir.path());
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("features is JSON");
    let min = v["ociVersionMin"].as_str().expect("ociVersionMin");
    let max = v["ociVersionMax"].as_str().expect("ociVersionMax");
    assert!(min.starts_with("1.") && max.starts_with("1."), "{v}");
}

#[test]
fn json_log_on_failed_create() {
    let Some(mut ctx) = Ctx::new("log-json") else {
        return;
    };
    ctx.checker(&["exit", "0"]);
    ctx.config["process"]["cwd"] = json!("/bin/busybox");
    ctx.write_config();
    let log = ctx.tmp.join("runtime.log");
    let (log_s, bundle) = (log.to_string_lossy(), ctx.bundle.to_string_lossy());
    let global = ["--log", &*log_s, "--log-format", "json"];
    let out = ctx.rt_global(&global, &["create", "--bundle", &bundle, &ctx.id]);
    out.assert_fail();
    let text = fs::read_to_string(&log).expect("log file written");
    let entries: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect();
    assert!(!entries.is_empty(), "empty log");
    for e in &entries {
        for key in ["level", "msg", "time"] {
            assert!(e[key].is_string(), "log entry lacks {key}: {e}");
        }
    }
    assert!(
        entries.iter().any(|e| e["level"] == "error"),
        "no error entry: {text}"
    );
}
