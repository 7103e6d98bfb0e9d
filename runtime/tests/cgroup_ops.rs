//! Commands that act on a running container through its cgroup: `pause` and
//! `resume` (v1 freezer), `ps`, `update` and `events`, checked on the host's
//! cgroup files.
//!
//! Every test also runs against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc
//! cargo test -p hull --test cgroup_ops`. The tests need cgroup v1 controllers
//! (this host is hybrid) and skip with a reason elsewhere.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_no_leftovers, run_cmd, runtime, wait_pid_gone, Ctx, Out};
use serde_json::{json, Value};

/// Where the counter of [`COUNTER_SCRIPT`] lives inside the container.
const COUNTER: &str = "dev/shm/counter";
/// Increments a counter file every 20 ms for as long as it runs.
const COUNTER_SCRIPT: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/counter; sleep 0.02; done";

/// The directory of the container's cgroup in v1 hierarchy `controller`, or
/// None (after saying why) when the host has no such hierarchy.
fn v1_dir(ctx: &Ctx, controller: &str) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup").join(controller);
    if !root.join("cgroup.procs").is_file() {
        eprintln!("SKIPPED: no cgroup v1 {controller} hierarchy on this host");
        return None;
    }
    Some(root.join(ctx.cgroup_path().trim_start_matches('/')))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A context whose container has its own cgroup.
fn ctx_with_cgroup(test: &str) -> Option<Ctx> {
    let mut ctx = Ctx::new(test)?;
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    Some(ctx)
}

/// Creates and starts the container with its current args; returns the init's pid.
fn start(ctx: &Ctx) -> u64 {
    ctx.create().assert_ok();
    ctx.rt(&["start", &ctx.id]).assert_ok();
    ctx.wait_status("running")["pid"]
        .as_u64()
        .expect("init pid")
}

/// The counter of [`COUNTER_SCRIPT`], read from the host through the init's root.
fn counter(pid: u64) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/root/{COUNTER}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Waits up to 10 s for the counter to exist and move; returns its value.
fn counter_moving(pid: u64) -> u64 {
    let first = wait_for(|| counter(pid), "counter to appear");
    wait_for(|| counter(pid).filter(|n| *n > first), "counter to move")
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>, what: &str) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// pause / resume
// ---------------------------------------------------------------------------

#[test]
fn pause_and_resume() {
    let Some(mut ctx) = ctx_with_cgroup("pause") else {
        return;
    };
    let Some(freezer) = v1_dir(&ctx, "freezer") else {
        return;
    };
    ctx.set_args(&["/bin/sh", "-c", COUNTER_SCRIPT]);
    let pid = start(&ctx);
    counter_moving(pid);

    ctx.rt(&["pause", &ctx.id]).assert_ok();
    assert_eq!(ctx.state()["status"], "paused");
    assert_eq!(read_trimmed(&freezer.join("freezer.state")), "FROZEN");
    let frozen = counter(pid).expect("counter");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counter(pid),
        Some(frozen),
        "a paused container kept running"
    );
    // Pausing again may succeed or fail; the container stays paused.
    let _ = ctx.rt(&["pause", &ctx.id]);
    assert_eq!(ctx.state()["status"], "paused");

    ctx.rt(&["resume", &ctx.id]).assert_ok();
    assert_eq!(ctx.state()["status"], "running");
    assert_eq!(read_trimmed(&freezer.join("freezer.state")), "THAWED");
    wait_for(
        || counter(pid).filter(|n| *n > frozen),
        "counter to move again",
    );
    // Resuming a running container is an error.
    ctx.rt(&["resume", &ctx.id]).assert_fail();
}

/// `delete --force` of a paused container thaws and kills it: nothing is left.
#[test]
fn delete_force_of_paused_container() {
    let Some(mut ctx) = ctx_with_cgroup("pause-delete") else {
        return;
    };
    if v1_dir(&ctx, "freezer").is_none() {
        return;
    }
    ctx.set_args(&["/bin/sh", "-c", COUNTER_SCRIPT]);
    let pid = start(&ctx);
    ctx.rt(&["pause", &ctx.id]).assert_ok();
    ctx.wait_status("paused");
    // A plain delete refuses a paused container.
    ctx.rt(&["delete", &ctx.id]).assert_fail();
    ctx.rt(&["delete", "--force", &ctx.id]).assert_ok();
    assert!(wait_pid_gone(pid), "init {pid} survived delete --force");
    assert!(ctx.state_of(&ctx.id).is_none(), "state survived");
    assert_no_leftovers(&ctx);
}

// ---------------------------------------------------------------------------
// ps
// ---------------------------------------------------------------------------

#[test]
fn ps_table_json_and_ps_args() {
    let Some(mut ctx) = ctx_with_cgroup("ps") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    let pid = start(&ctx);
    let id = ctx.id.clone();

    let out = ctx.rt(&["ps", &id]);
    out.assert_ok();
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column:\n{out}"));
    let pids: Vec<u64> = lines
        .filter_map(|l| l.split_whitespace().nth(col)?.parse().ok())
        .collect();
    assert_eq!(pids, [pid], "table:\n{out}");

    // An exec'd process shows up too.
    let pf = ctx.tmp.join("exec.pid");
    let pfs = pf.to_string_lossy().into_owned();
    ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        &pfs,
        &id,
        "/checker",
        "sleep",
        "600",
    ])
    .assert_ok();
    let exec_pid: u64 = read_trimmed(&pf).parse().expect("exec pid");
    let out = ctx.rt(&["ps", "-f", "json", &id]);
    out.assert_ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ps -f json is not JSON ({e}):\n{out}"));
    let mut got: Vec<u64> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"))
        .iter()
        .map(|p| p.as_u64().expect("pid is a number"))
        .collect();
    got.sort_unstable();
    let mut want = vec![pid, exec_pid];
    want.sort_unstable();
    assert_eq!(got, want, "{out}");

    // Arguments after the id go to ps(1).
    let out = ctx.rt(&["ps", &id, "-o", "pid,comm"]);
    out.assert_ok();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["PID", "COMMAND"], "{out}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    for p in [pid, exec_pid] {
        assert!(
            rows.contains(&vec![p.to_string().as_str(), "checker"]),
            "no row for {p}:\n{out}"
        );
    }
    assert_eq!(rows.len(), 2, "other processes listed:\n{out}");
}

// ---------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------

/// Runs `update -r - <id>` with `json` on stdin (through a shell redirection,
/// since the harness gives every command /dev/null as stdin).
fn update_from_stdin(ctx: &Ctx, json: &Value) -> Out {
    let file = ctx.tmp.join("resources-stdin.json");
    fs::write(&file, json.to_string()).expect("write resources");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec "$@" < "$HULL_STDIN""#)
        .arg("sh")
        .arg(&runtime().path)
        .arg("--root")
        .arg(&ctx.root)
        .args(["update", "-r", "-", &ctx.id])
        .env("HULL_STDIN", &file);
    run_cmd(cmd, &ctx.tmp)
}

#[test]
fn update_flags_file_and_stdin() {
    let Some(mut ctx) = ctx_with_cgroup("update") else {
        return;
    };
    let (Some(mem), Some(pids), Some(cpu)) = (
        v1_dir(&ctx, "memory"),
        v1_dir(&ctx, "pids"),
        v1_dir(&ctx, "cpu"),
    ) else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    start(&ctx);
    let id = ctx.id.clone();
    let limit = |d: &Path| read_trimmed(&d.join("memory.limit_in_bytes"));

    ctx.rt(&["update", "--memory", "64m", "--pids-limit", "50", &id])
        .assert_ok();
    assert_eq!(limit(&mem), (64u64 << 20).to_string());
    assert_eq!(read_trimmed(&pids.join("pids.max")), "50");

    let file = ctx.tmp.join("resources.json");
    let res = json!({
        "memory": { "limit": 96u64 << 20 },
        "pids": { "limit": 60 },
        "cpu": { "shares": 512, "quota": 50000, "period": 100000 }
    });
    fs::write(&file, res.to_string()).expect("write resources");
    let f = file.to_string_lossy().into_owned();
    ctx.rt(&["update", "-r", &f, &id]).assert_ok();
    assert_eq!(limit(&mem), (96u64 << 20).to_string());
    assert_eq!(read_trimmed(&pids.join("pids.max")), "60");
    assert_eq!(read_trimmed(&cpu.join("cpu.shares")), "512");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");

    update_from_stdin(
        &ctx,
        &json!({ "memory": { "limit": 80u64 << 20 }, "pids": { "limit": 70 } }),
    )
    .assert_ok();
    assert_eq!(limit(&mem), (80u64 << 20).to_string());
    assert_eq!(read_trimmed(&pids.join("pids.max")), "70");

    // A malformed file changes nothing.
    fs::write(&file, "{ not json").expect("write bad resources");
    ctx.rt(&["update", "-r", &f, &id]).assert_fail();
    assert_eq!(limit(&mem), (80u64 << 20).to_string());
    assert_eq!(ctx.state()["status"], "running");
}

// ---------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------

#[test]
fn events_stats_shape() {
    let Some(mut ctx) = ctx_with_cgroup("events-stats") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    start(&ctx);
    let out = ctx.rt(&["events", "--stats", &ctx.id]);
    out.assert_ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "one event expected:\n{out}");
    let ev = &lines[0];
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], ctx.id.as_str(), "{ev}");
    let data = &ev["data"];
    assert!(data["cpu"]["usage"]["total"].is_u64(), "cpu: {data}");
    assert!(data["cpu"]["usage"]["percpu"].is_array(), "cpu: {data}");
    assert!(data["cpu"]["throttling"].is_object(), "cpu: {data}");
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 0, "memory usage: {}", data["memory"]);
    assert!(
        data["memory"]["raw"].is_object(),
        "memory: {}",
        data["memory"]
    );
    assert!(
        data["pids"]["current"].as_u64().is_some_and(|n| n >= 1),
        "pids: {}",
        data["pids"]
    );
}

/// `events` without `--stats`, in the background, killed by its own handle.
struct Events {
    child: Child,
    out: PathBuf,
}

impl Events {
    fn spawn(ctx: &Ctx, interval: &str) -> Events {
        let out = ctx.tmp.join(format!("events-{interval}.out"));
        let child = Command::new(&runtime().path)
            .arg("--root")
            .arg(&ctx.root)
            .args(["events", "--interval", interval, &ctx.id])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("events output file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn events");
        Events { child, out }
    }

    fn events(&self) -> Vec<Value> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `limit` for an event matching `pred`.
    fn wait_for(&self, limit: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let evs = self.events();
            if pred(&evs) || Instant::now() > deadline {
                return evs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_interval_produces_stats_lines() {
    let Some(mut ctx) = ctx_with_cgroup("events-interval") else {
        return;
    };
    ctx.checker(&["sleep", "600"]);
    start(&ctx);
    let events = Events::spawn(&ctx, "1s");
    let evs = events.wait_for(Duration::from_secs(8), |e| e.len() >= 3);
    assert!(evs.len() >= 3, "fewer than 3 stats events in 8 s: {evs:?}");
    for ev in &evs {
        assert_eq!(ev["type"], "stats", "{ev}");
        assert_eq!(ev["id"], ctx.id.as_str(), "{ev}");
        assert!(ev["data"]["pids"]["current"].is_u64(), "{ev}");
    }
}

/// A process OOM-killed in a container with a small memory limit produces an
/// `{"type":"oom"}` event.
#[test]
fn oom_kill_produces_an_event() {
    let Some(mut ctx) = ctx_with_cgroup("events-oom") else {
        return;
    };
    if v1_dir(&ctx, "memory").is_none() {
        return;
    }
    let limit = 32u64 << 20;
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": limit, "swap": limit });
    ctx.checker(&["sleep", "600"]);
    start(&ctx);
    // A long interval: only the OOM event is expected.
    let events = Events::spawn(&ctx, "60s");
    // Give events time to arm its OOM notification before the OOM.
    std::thread::sleep(Duration::from_millis(500));
    let out = ctx.rt(&[
        "exec",
        &ctx.id,
        "/bin/dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
    ]);
    assert_eq!(out.code(), Some(128 + 9), "dd should be OOM-killed:\n{out}");
    let is_oom = |e: &Value| e["type"] == "oom" && e["id"] == ctx.id.as_str();
    let evs = events.wait_for(Duration::from_secs(5), |evs| evs.iter().any(is_oom));
    assert!(evs.iter().any(is_oom), "no oom event: {evs:?}");
    assert_eq!(ctx.state()["status"], "running", "the init should survive");
}

/// `events` of a stopped container, and `pause` of one, fail.
#[test]
fn cgroup_commands_on_stopped_container_fail() {
    let Some(mut ctx) = ctx_with_cgroup("cgops-stopped") else {
        return;
    };
    ctx.checker(&["exit", "0"]);
    ctx.create().assert_ok();
    ctx.rt(&["start", &ctx.id]).assert_ok();
    ctx.wait_status("stopped");
    ctx.rt(&["pause", &ctx.id]).assert_fail();
    ctx.rt(&["resume", &ctx.id]).assert_fail();
    ctx.rt(&["events", "--stats", &ctx.id]).assert_fail();
    ctx.rt(&["delete", &ctx.id]).assert_ok();
    assert_no_leftovers(&ctx);
}

/// On v1 the device rules are the devices controller's lists, and with no
/// `linux.resources.devices` at all the default is still deny-all plus the
/// built-in devices, as runc's: a node made for /dev/mem (CAP_MKNOD lets the
/// container make any) does not open, /dev/null does.
#[test]
fn v1_devices_deny_by_default() {
    let Some(mut ctx) = ctx_with_cgroup("v1-devices") else {
        return;
    };
    if v1_dir(&ctx, "devices").is_none() {
        return;
    }
    ctx.grant_cap("CAP_MKNOD");
    ctx.config["linux"]["resources"] = json!({});
    ctx.set_args(&[
        "/bin/sh",
        "-c",
        "mknod /dev/kmem c 1 1 && /checker read /dev/kmem; /checker read /dev/null",
    ]);
    let out = ctx.run();
    out.assert_ok();
    let res = out.json_lines();
    assert_eq!(res.len(), 2, "one JSON line per probe:\n{out}");
    assert_eq!(res[0]["errno"], 1, "/dev/mem's node opened:\n{out}");
    assert_eq!(res[1]["ok"], true, "/dev/null did not open:\n{out}");
    assert_no_leftovers(&ctx);
}
