//! cgroup v2: every `linux.resources` field lands in the right unified-hierarchy
//! file, and the commands that act through the cgroup (pause, events, update,
//! delete) use the v2 interfaces (cgroup.freeze, memory.events, cpu.stat, ...).
//!
//! These tests need a pure cgroup v2 host; on cgroup v1 and hybrid hosts each one
//! prints "SKIPPED <test>: needs cgroup v2" and returns. They run in the VM lane
//! (`conformance/vm/run.sh cgroup_v2 runc:cgroup_v2`), against hull and against
//! runc in the same VM: `HULL_TEST_RUNTIME=/usr/sbin/runc`. Expected values are
//! runc's conversions (blkio weight → io.weight, swap → memory.swap.max), except
//! shares → cpu.weight, where runc 1.1's linear map and the quadratic one of
//! crun, runc 1.3+ and libcgroups are both accepted.
//!
//! The resource tests give the container a cgroup namespace, as Docker and the
//! CRI do on v2 hosts; `host_cgroup_namespace` covers a container without one.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_no_leftovers, run_cmd, runtime, wait_pid_gone, Ctx, Out};
use serde_json::{json, Value};

const ROOT: &str = "/sys/fs/cgroup";
const EPERM: i64 = 1;
/// Increments /dev/shm/counter every 20 ms for as long as it runs.
const COUNTER_SCRIPT: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /dev/shm/counter; sleep 0.02; done";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// True (after saying why) when `test` must be skipped: not a cgroup v2 host.
fn needs_v2(test: &str) -> bool {
    if common::is_cgroup_v2() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: needs cgroup v2 (/sys/fs/cgroup is not a unified hierarchy on this host)"
    );
    true
}

/// A context on a v2 host whose container has its own cgroup and a cgroup namespace.
fn v2_ctx(test: &str) -> Option<Ctx> {
    if needs_v2(test) {
        return None;
    }
    let mut ctx = Ctx::new(test)?;
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    add_namespace(&mut ctx, "cgroup");
    Some(ctx)
}

fn add_namespace(ctx: &mut Ctx, kind: &str) {
    ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({ "type": kind }));
}

/// The directory of cgroup `path` (absolute, or relative to the root cgroup).
fn dir_of(path: &str) -> PathBuf {
    Path::new(ROOT).join(path.trim_start_matches('/'))
}

fn cgroup_dir(ctx: &Ctx) -> PathBuf {
    dir_of(&ctx.cgroup_path())
}

fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A `key value` line of a flat-keyed file such as memory.events or cgroup.events.
fn keyed(dir: &Path, file: &str, key: &str) -> u64 {
    read(dir, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}", dir.join(file).display()))
}

/// Starts `/checker sleep 600` with the current config; returns the init's pid.
fn start_sleeper(ctx: &mut Ctx) -> u64 {
    let id = ctx.id.clone();
    ctx.start_sleeper(&id)["pid"].as_u64().expect("init pid")
}

fn procs(dir: &Path) -> Vec<u64> {
    read(dir, "cgroup.procs")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// Asserts the init runs in `dir` and returns it.
#[track_caller]
fn assert_in(dir: &Path, pid: u64) {
    assert!(
        procs(dir).contains(&pid),
        "init {pid} is not in {}/cgroup.procs",
        dir.display()
    );
}

/// Removes the given cgroup directories (deepest first) on drop, after the
/// context has deleted its containers.
struct Tree(Vec<PathBuf>);

impl Drop for Tree {
    fn drop(&mut self) {
        let mut dirs = self.0.clone();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
    }
}

/// The `major:minor` of /dev/ramN (the VM lane loads brd with two ram disks).
fn ram_disk(n: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/sys/block/ram{n}/dev")).ok()?;
    let (maj, min) = text.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// linux.resources → v2 files
// ---------------------------------------------------------------------------

/// limit → memory.max, reservation → memory.low, swap (memory+swap) →
/// memory.swap.max = swap - limit.
#[test]
fn memory_max_low_and_swap() {
    let Some(mut ctx) = v2_ctx("memory_max_low_and_swap") else {
        return;
    };
    ctx.config["linux"]["resources"]["memory"] = json!({
        "limit": 64u64 << 20, "reservation": 32u64 << 20, "swap": 96u64 << 20
    });
    let pid = start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    assert_in(&dir, pid);
    assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(&dir, "memory.low"), (32u64 << 20).to_string());
    if dir.join("memory.swap.max").exists() {
        assert_eq!(read(&dir, "memory.swap.max"), (32u64 << 20).to_string());
    } else {
        eprintln!("memory.swap.max not checked: no swap accounting in this kernel");
    }
}

/// swap = -1 means unlimited swap: memory.swap.max = max.
#[test]
fn memory_unlimited_swap() {
    let Some(mut ctx) = v2_ctx("memory_unlimited_swap") else {
        return;
    };
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": 48u64 << 20, "swap": -1 });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    assert_eq!(read(&dir, "memory.max"), (48u64 << 20).to_string());
    if dir.join("memory.swap.max").exists() {
        assert_eq!(read(&dir, "memory.swap.max"), "max");
    }
}

/// The cpu.weight of cpu.shares, in either of the conversions runtimes use:
/// runc up to 1.2 maps [2, 262144] linearly onto [1, 10000]; crun 1.15+, runc
/// 1.3+ and libcgroups 0.7 use a quadratic in log2(shares) that keeps the
/// default 1024 at the default weight 100.
fn weights_of_shares(shares: u64) -> [String; 2] {
    let linear = 1 + (shares - 2) * 9999 / 262_142;
    let l = (shares as f64).log2();
    let quadratic = 10f64.powf((l * l + 125.0 * l) / 612.0 - 7.0 / 34.0).ceil() as u64;
    [linear.to_string(), quadratic.to_string()]
}

#[track_caller]
fn assert_weight_of_shares(dir: &Path, shares: u64) {
    let got = read(dir, "cpu.weight");
    let want = weights_of_shares(shares);
    assert!(
        want.contains(&got),
        "cpu.weight {got} for shares {shares}: want {} (linear) or {} (quadratic)",
        want[0],
        want[1]
    );
}

/// shares → cpu.weight (see [`weights_of_shares`]), quota/period → cpu.max.
#[test]
fn cpu_weight_and_max() {
    let Some(mut ctx) = v2_ctx("cpu_weight_and_max") else {
        return;
    };
    ctx.config["linux"]["resources"]["cpu"] =
        json!({ "shares": 512, "quota": 50000, "period": 100000 });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    assert_weight_of_shares(&dir, 512);
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
}

#[test]
fn cpuset_cpus_and_mems() {
    let Some(mut ctx) = v2_ctx("cpuset_cpus_and_mems") else {
        return;
    };
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let cpus = last_cpu.to_string();
    ctx.config["linux"]["resources"]["cpu"] = json!({ "cpus": cpus, "mems": "0" });
    let pid = start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    assert_eq!(read(&dir, "cpuset.cpus"), cpus);
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    assert_eq!(read(&dir, "cpuset.cpus.effective"), cpus);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim);
    assert_eq!(allowed, Some(cpus.as_str()), "the init's affinity");
}

/// blkio weight → io.bfq.weight when BFQ is there, else io.weight converted
/// (1 + (w-10)*9999/990); throttle devices → io.max.
#[test]
fn io_weight_and_max() {
    let Some(mut ctx) = v2_ctx("io_weight_and_max") else {
        return;
    };
    let Some((maj, min)) = ram_disk(0) else {
        eprintln!("SKIPPED io_weight_and_max: no /dev/ram0 (the VM lane loads brd)");
        return;
    };
    ctx.config["linux"]["resources"]["blockIO"] = json!({
        "weight": 500,
        "throttleReadBpsDevice": [{ "major": maj, "minor": min, "rate": 1048576 }],
        "throttleWriteIOPSDevice": [{ "major": maj, "minor": min, "rate": 100 }]
    });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    if dir.join("io.bfq.weight").exists() {
        assert_eq!(read(&dir, "io.bfq.weight"), "default 500");
    } else {
        assert_eq!(read(&dir, "io.weight"), "default 4950");
    }
    assert_eq!(
        read(&dir, "io.max"),
        format!("{maj}:{min} rbps=1048576 wbps=max riops=max wiops=100")
    );
}

#[test]
fn pids_max() {
    let Some(mut ctx) = v2_ctx("pids_max") else {
        return;
    };
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 42 });
    start_sleeper(&mut ctx);
    assert_eq!(read(&cgroup_dir(&ctx), "pids.max"), "42");
}

#[test]
fn hugetlb_max() {
    let Some(mut ctx) = v2_ctx("hugetlb_max") else {
        return;
    };
    if !read(Path::new(ROOT), "cgroup.controllers").contains("hugetlb") {
        eprintln!("SKIPPED hugetlb_max: no hugetlb controller");
        return;
    }
    ctx.config["linux"]["resources"]["hugepageLimits"] =
        json!([{ "pageSize": "2MB", "limit": 4u64 << 20 }]);
    start_sleeper(&mut ctx);
    assert_eq!(
        read(&cgroup_dir(&ctx), "hugetlb.2MB.max"),
        (4u64 << 20).to_string()
    );
}

/// `unified` keys are written verbatim, after the typed fields.
#[test]
fn unified_keys() {
    let Some(mut ctx) = v2_ctx("unified_keys") else {
        return;
    };
    ctx.config["linux"]["resources"]["unified"] = json!({
        "memory.high": (40u64 << 20).to_string(),
        "pids.max": "33",
        "cpu.weight": "150"
    });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    assert_eq!(read(&dir, "memory.high"), (40u64 << 20).to_string());
    assert_eq!(read(&dir, "pids.max"), "33");
    assert_eq!(read(&dir, "cpu.weight"), "150");
}

/// A `unified` key naming no file fails the create, and nothing is left behind.
#[test]
fn unified_unknown_key_fails_cleanly() {
    let Some(mut ctx) = v2_ctx("unified_unknown_key_fails_cleanly") else {
        return;
    };
    ctx.config["linux"]["resources"]["unified"] = json!({ "memory.no_such_file": "1" });
    ctx.checker(&["sleep", "600"]);
    let out = ctx.create();
    out.assert_fail();
    if runtime().is_hull {
        assert!(
            out.stderr.contains("memory.no_such_file"),
            "the error should name the key:\n{out}"
        );
    }
    assert_no_leftovers(&ctx);
}

/// The device rules are an eBPF program on v2 (no devices.* files): a device
/// allowed "r" reads but does not write, a device not allowed does not open.
#[test]
fn devices_through_ebpf() {
    let Some(mut ctx) = v2_ctx("devices_through_ebpf") else {
        return;
    };
    let (Some((maj, min0)), Some((_, min1))) = (ram_disk(0), ram_disk(1)) else {
        eprintln!(
            "SKIPPED devices_through_ebpf: no /dev/ram0 and /dev/ram1 (the VM lane loads brd)"
        );
        return;
    };
    let node = |path: &str, min: u64| {
        json!({ "path": path, "type": "b", "major": maj, "minor": min,
                "fileMode": 0o666, "uid": 0, "gid": 0 })
    };
    ctx.config["linux"]["devices"] = json!([node("/dev/ra", min0), node("/dev/rb", min1)]);
    ctx.config["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "b", "major": maj, "minor": min0, "access": "r" }
    ]);
    let res = ctx.probe(&[
        &["read", "/dev/ra"],
        &["write", "/dev/ra"],
        &["read", "/dev/rb"],
    ]);
    // ok and errno only: a successful read carries 4 KiB of the disk.
    let brief = |v: &Value| format!("ok={} errno={}", v["ok"], v["errno"]);
    let all = format!(
        "read allowed-r: {}, write allowed-r: {}, read denied: {}",
        brief(&res[0]),
        brief(&res[1]),
        brief(&res[2])
    );
    assert_eq!(res[0]["ok"], true, "reading an allowed device; {all}");
    assert_eq!(res[1]["errno"], EPERM, "writing a read-only device; {all}");
    assert_eq!(res[2]["errno"], EPERM, "reading a denied device; {all}");
    assert!(
        !cgroup_dir(&ctx).join("devices.list").exists(),
        "v2 has no devices.list"
    );
}

/// A container with CAP_MKNOD may create any device node (the built-in
/// `b *:* m` and `c *:* m` rules), but only the devices its rules allow open:
/// a node made for a denied disk or for /dev/mem fails with EPERM.
#[test]
fn mknod_cannot_reach_denied_devices() {
    let Some(mut ctx) = v2_ctx("mknod_cannot_reach_denied_devices") else {
        return;
    };
    let (Some((maj, min0)), Some((_, min1))) = (ram_disk(0), ram_disk(1)) else {
        eprintln!(
            "SKIPPED mknod_cannot_reach_denied_devices: no /dev/ram0 and /dev/ram1 (the VM lane loads brd)"
        );
        return;
    };
    ctx.grant_cap("CAP_MKNOD");
    ctx.config["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "b", "major": maj, "minor": min0, "access": "rw" }
    ]);
    let script = format!(
        "mknod /dev/ok b {maj} {min0}; /checker read /dev/ok; \
         mknod /dev/no b {maj} {min1}; /checker read /dev/no; /checker write /dev/no; \
         mknod /dev/kmem c 1 1; /checker read /dev/kmem; /checker read /dev/null"
    );
    ctx.set_args(&["/bin/sh", "-c", &script]);
    let out = ctx.run();
    out.assert_ok();
    let res = out.json_lines();
    assert_eq!(res.len(), 5, "one JSON line per probe:\n{out}");
    let brief = |v: &Value| format!("ok={} errno={}", v["ok"], v["errno"]);
    let all: Vec<String> = res.iter().map(brief).collect();
    assert_eq!(res[0]["ok"], true, "an allowed disk opens; {all:?}\n{out}");
    assert_eq!(
        res[1]["errno"], EPERM,
        "a denied disk does not; {all:?}\n{out}"
    );
    assert_eq!(res[2]["errno"], EPERM, "nor for writing; {all:?}");
    assert_eq!(
        res[3]["errno"], EPERM,
        "a node for /dev/mem does not; {all:?}"
    );
    assert_eq!(res[4]["ok"], true, "/dev/null (built in) opens; {all:?}");
}

/// `update` with device rules replaces the container's device program: a disk
/// denied at create opens afterwards, which it would not if the old program
/// stayed attached beside the new one (every attached program must allow).
/// runc 1.1's `update` ignores device rules, so against runc only the first
/// half runs.
#[test]
fn update_replaces_device_program() {
    let Some(mut ctx) = v2_ctx("update_replaces_device_program") else {
        return;
    };
    let Some((maj, min)) = ram_disk(0) else {
        eprintln!("SKIPPED update_replaces_device_program: no /dev/ram0 (the VM lane loads brd)");
        return;
    };
    ctx.config["linux"]["devices"] = json!([{ "path": "/dev/ra", "type": "b", "major": maj,
        "minor": min, "fileMode": 0o666, "uid": 0, "gid": 0 }]);
    start_sleeper(&mut ctx);
    let id = ctx.id.clone();
    let read_ra = |ctx: &Ctx| {
        let out = ctx.rt(&["exec", &id, "/checker", "read", "/dev/ra"]);
        out.json_lines()
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("no probe output:\n{out}"))
    };
    assert_eq!(read_ra(&ctx)["errno"], EPERM, "denied at create");
    if !runtime().is_hull {
        eprintln!("SKIPPED update_replaces_device_program (update half): runc ignores device rules in update");
        return;
    }
    let file = ctx.tmp.join("resources.json");
    let res = json!({ "devices": [
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "b", "major": maj, "minor": min, "access": "r" }
    ]});
    fs::write(&file, res.to_string()).expect("write resources");
    ctx.rt(&["update", "-r", &file.to_string_lossy(), &id])
        .assert_ok();
    assert_eq!(read_ra(&ctx)["ok"], true, "allowed after update");
}

// ---------------------------------------------------------------------------
// Placement: cgroup namespaces, nested and relative paths
// ---------------------------------------------------------------------------

/// With a cgroup namespace the container sees its cgroup as `/`, and its
/// /sys/fs/cgroup is a cgroup2 mount rooted at its own cgroup.
#[test]
fn private_cgroup_namespace() {
    let Some(mut ctx) = v2_ctx("private_cgroup_namespace") else {
        return;
    };
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 77 });
    let res = ctx.probe(&[
        &["read", "/proc/self/cgroup"],
        &["read", "/sys/fs/cgroup/pids.max"],
        &["ls", "/sys/fs/cgroup"],
    ]);
    assert_eq!(res[0]["content"], "0::/\n", "{}", res[0]);
    assert_eq!(res[1]["content"], "77\n", "{}", res[1]);
    let entries = res[2]["entries"].as_array().expect("ls entries");
    assert!(
        !entries
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("hulltest-"))),
        "the container sees other cgroups: {entries:?}"
    );
}

/// Without a cgroup namespace /proc/self/cgroup shows the host path. The
/// container's /sys/fs/cgroup shows its own cgroup either at the top (a bind
/// of its directory, as runc does on v1) or at its host path (a cgroup2 mount
/// of the whole hierarchy, as runc 1.1 does on v2).
#[test]
fn host_cgroup_namespace() {
    if needs_v2("host_cgroup_namespace") {
        return;
    }
    let Some(mut ctx) = Ctx::new("host_cgroup_namespace") else {
        return;
    };
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 78 });
    let below = format!("/sys/fs/cgroup{}/pids.max", ctx.cgroup_path());
    let res = ctx.probe(&[
        &["read", "/proc/self/cgroup"],
        &["read", "/sys/fs/cgroup/pids.max"],
        &["read", &below],
    ]);
    assert_eq!(
        res[0]["content"],
        format!("0::{}\n", ctx.cgroup_path()),
        "{}",
        res[0]
    );
    assert!(
        res[1]["content"] == "78\n" || res[2]["content"] == "78\n",
        "the container's pids.max is neither at /sys/fs/cgroup nor at {below}: {} {}",
        res[1],
        res[2]
    );
}

/// A nested cgroupsPath creates every level, enables the controllers on the
/// way down, and delete removes the container's own level.
#[test]
fn nested_cgroups_path() {
    let Some(mut ctx) = v2_ctx("nested_cgroups_path") else {
        return;
    };
    let top = ctx.cgroup_path();
    let path = format!("{top}/a/b");
    let _tree = Tree(vec![
        dir_of(&top),
        dir_of(&format!("{top}/a")),
        dir_of(&path),
    ]);
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 21 });
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": 40u64 << 20 });
    let pid = start_sleeper(&mut ctx);
    let leaf = dir_of(&path);
    assert_in(&leaf, pid);
    assert_eq!(read(&leaf, "pids.max"), "21");
    assert_eq!(read(&leaf, "memory.max"), (40u64 << 20).to_string());
    for parent in [dir_of(&top), dir_of(&format!("{top}/a"))] {
        let ctl = read(&parent, "cgroup.subtree_control");
        for c in ["memory", "pids"] {
            assert!(
                ctl.split_whitespace().any(|w| w == c),
                "{c} not enabled in {}: {ctl:?}",
                parent.display()
            );
        }
    }
    ctx.rt(&["delete", "--force", &ctx.id]).assert_ok();
    assert!(wait_pid_gone(pid), "init survived delete");
    assert!(!leaf.exists(), "{} survived delete", leaf.display());
}

/// A relative cgroupsPath, from a runtime running in the root cgroup, lands
/// below the root.
#[test]
fn relative_cgroups_path_from_root_cgroup() {
    let Some(mut ctx) = v2_ctx("relative_cgroups_path_from_root_cgroup") else {
        return;
    };
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if own.trim() != "0::/" {
        eprintln!("SKIPPED relative_cgroups_path_from_root_cgroup: the test does not run in the root cgroup ({own:?})");
        return;
    }
    let rel = ctx.cgroup_path().trim_start_matches('/').to_string();
    ctx.config["linux"]["cgroupsPath"] = json!(rel);
    let pid = start_sleeper(&mut ctx);
    assert_in(&dir_of(&rel), pid);
    ctx.rt(&["delete", "--force", &ctx.id]).assert_ok();
    assert!(!dir_of(&rel).exists(), "cgroup survived delete");
}

/// runc places a relative cgroupsPath below the parent of the runtime's own
/// cgroup (its own one most likely holds processes, so it cannot have children
/// with controllers).
#[test]
fn relative_cgroups_path_from_a_sub_cgroup() {
    let Some(mut ctx) = v2_ctx("relative_cgroups_path_from_a_sub_cgroup") else {
        return;
    };
    let top = ctx.cgroup_path();
    let runner = dir_of(&format!("{top}/runner"));
    let expected = dir_of(&format!("{top}/ctr"));
    let _tree = Tree(vec![dir_of(&top), runner.clone(), expected.clone()]);
    fs::create_dir_all(&runner).expect("create the runner cgroup");
    ctx.config["linux"]["cgroupsPath"] = json!("ctr");
    ctx.checker(&["sleep", "600"]);
    ctx.write_config();
    // The runtime runs in <top>/runner, moved there by the shell before exec.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$RUNNER/cgroup.procs" && exec "$@""#)
        .arg("sh")
        .arg(&runtime().path)
        .arg("--root")
        .arg(&ctx.root)
        .args(["create", "--bundle"])
        .arg(&ctx.bundle)
        .arg(&ctx.id)
        .env("RUNNER", &runner);
    let out: Out = run_cmd(cmd, &ctx.tmp);
    out.assert_ok();
    let pid = ctx.state()["pid"].as_u64().expect("init pid");
    let actual = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(
        expected.is_dir() && procs(&expected).contains(&pid),
        "relative cgroupsPath \"ctr\" from a runtime in {top}/runner: want the init in \
         {top}/ctr as runc places it; it is in {actual:?}"
    );
    ctx.rt(&["delete", "--force", &ctx.id]).assert_ok();
}

// ---------------------------------------------------------------------------
// Commands through the cgroup
// ---------------------------------------------------------------------------

fn counter(pid: u64) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/root/dev/shm/counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// pause writes 1 to cgroup.freeze and waits for cgroup.events to say frozen;
/// resume thaws.
#[test]
fn pause_and_resume_through_cgroup_freeze() {
    let Some(mut ctx) = v2_ctx("pause_and_resume_through_cgroup_freeze") else {
        return;
    };
    ctx.set_args(&["/bin/sh", "-c", COUNTER_SCRIPT]);
    ctx.create().assert_ok();
    ctx.rt(&["start", &ctx.id]).assert_ok();
    let pid = ctx.wait_status("running")["pid"].as_u64().expect("pid");
    let dir = cgroup_dir(&ctx);
    let first = wait_for("the counter", || counter(pid));
    wait_for("the counter to move", || {
        counter(pid).filter(|n| *n > first)
    });

    ctx.rt(&["pause", &ctx.id]).assert_ok();
    assert_eq!(ctx.state()["status"], "paused");
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert_eq!(keyed(&dir, "cgroup.events", "frozen"), 1);
    let frozen = counter(pid);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(pid), frozen, "a paused container kept running");

    ctx.rt(&["resume", &ctx.id]).assert_ok();
    assert_eq!(ctx.state()["status"], "running");
    assert_eq!(read(&dir, "cgroup.freeze"), "0");
    let frozen = frozen.unwrap_or(0);
    wait_for("the counter to move again", || {
        counter(pid).filter(|n| *n > frozen)
    });
}

/// `delete --force` of a paused container thaws, kills and removes it.
#[test]
fn delete_force_of_paused_container() {
    let Some(mut ctx) = v2_ctx("delete_force_of_paused_container") else {
        return;
    };
    let pid = start_sleeper(&mut ctx);
    ctx.rt(&["pause", &ctx.id]).assert_ok();
    ctx.rt(&["delete", "--force", &ctx.id]).assert_ok();
    assert!(wait_pid_gone(pid), "init {pid} survived delete --force");
    assert_no_leftovers(&ctx);
}

/// `events --stats` reads the v2 files: the numbers match what the files say.
#[test]
fn events_stats_from_v2_files() {
    let Some(mut ctx) = v2_ctx("events_stats_from_v2_files") else {
        return;
    };
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": 64u64 << 20 });
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 50 });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    let out = ctx.rt(&["events", "--stats", &ctx.id]);
    out.assert_ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "one event expected:\n{out}");
    let data = &lines[0]["data"];
    assert_eq!(lines[0]["type"], "stats", "{out}");

    let pids_current: u64 = read(&dir, "pids.current").parse().expect("pids.current");
    assert_eq!(
        data["pids"]["current"], pids_current,
        "pids: {}",
        data["pids"]
    );
    assert_eq!(data["pids"]["limit"], 50, "pids: {}", data["pids"]);

    let mem = &data["memory"];
    assert_eq!(mem["usage"]["limit"], 64u64 << 20, "memory: {mem}");
    let usage = mem["usage"]["usage"].as_u64().unwrap_or(0);
    let current: u64 = read(&dir, "memory.current")
        .parse()
        .expect("memory.current");
    assert!(
        usage > 0 && usage.abs_diff(current) < 8 << 20,
        "memory usage {usage} vs memory.current {current}: {mem}"
    );
    let anon = read(&dir, "memory.stat")
        .lines()
        .find_map(|l| l.strip_prefix("anon ")?.parse::<u64>().ok())
        .expect("anon in memory.stat");
    assert!(
        mem["raw"]["anon"]
            .as_u64()
            .is_some_and(|a| a.abs_diff(anon) < 8 << 20),
        "memory.raw.anon vs memory.stat anon {anon}: {mem}"
    );

    let usage_usec = keyed(&dir, "cpu.stat", "usage_usec");
    let total = data["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    assert!(
        total > 0 && total / 1000 <= usage_usec + 1_000_000,
        "cpu total {total} ns vs cpu.stat usage_usec {usage_usec}: {}",
        data["cpu"]
    );
}

/// An OOM kill in the container is an `oom` event, read from memory.events.
#[test]
fn oom_kill_is_an_event() {
    let Some(mut ctx) = v2_ctx("oom_kill_is_an_event") else {
        return;
    };
    let limit = 32u64 << 20;
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": limit, "swap": limit });
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    let out_path = ctx.tmp.join("events.out");
    let mut events = Command::new(&runtime().path)
        .arg("--root")
        .arg(&ctx.root)
        .args(["events", "--interval", "60s", &ctx.id])
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_path).expect("events output"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn events");
    std::thread::sleep(Duration::from_secs(1));
    let out = ctx.rt(&[
        "exec",
        &ctx.id,
        "/bin/dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
    ]);
    let found = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["type"] == "oom" && e["id"] == ctx.id.as_str())
    });
    // Only the events process this test spawned is killed, by its handle.
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(out.code(), Some(128 + 9), "dd should be OOM-killed:\n{out}");
    assert!(
        keyed(&dir, "memory.events", "oom_kill") >= 1,
        "memory.events"
    );
    assert!(
        found,
        "no oom event; events printed: {}",
        fs::read_to_string(&out_path).unwrap_or_default()
    );
    assert_eq!(ctx.state()["status"], "running", "the init should survive");
}

/// `update` writes the v2 files.
#[test]
fn update_writes_v2_files() {
    let Some(mut ctx) = v2_ctx("update_writes_v2_files") else {
        return;
    };
    start_sleeper(&mut ctx);
    let dir = cgroup_dir(&ctx);
    let id = ctx.id.clone();
    ctx.rt(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "50",
        &id,
    ])
    .assert_ok();
    assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
    if dir.join("memory.swap.max").exists() {
        assert_eq!(read(&dir, "memory.swap.max"), (64u64 << 20).to_string());
    }
    assert_eq!(read(&dir, "pids.max"), "50");
    let file = ctx.tmp.join("resources.json");
    let res = json!({ "cpu": { "shares": 1024, "quota": 20000, "period": 50000 } });
    fs::write(&file, res.to_string()).expect("write resources");
    ctx.rt(&["update", "-r", &file.to_string_lossy(), &id])
        .assert_ok();
    assert_weight_of_shares(&dir, 1024);
    assert_eq!(read(&dir, "cpu.max"), "20000 50000");
}

/// An exec'd process joins the container's v2 cgroup.
#[test]
fn exec_joins_the_cgroup() {
    let Some(mut ctx) = v2_ctx("exec_joins_the_cgroup") else {
        return;
    };
    start_sleeper(&mut ctx);
    let pf = ctx.tmp.join("exec.pid");
    let id = ctx.id.clone();
    ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        &pf.to_string_lossy(),
        &id,
        "/checker",
        "sleep",
        "600",
    ])
    .assert_ok();
    let pid: u64 = fs::read_to_string(&pf)
        .expect("exec pid file")
        .trim()
        .parse()
        .expect("exec pid");
    assert_in(&cgroup_dir(&ctx), pid);
    let line = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert_eq!(line.trim(), format!("0::{}", ctx.cgroup_path()));
}

/// The cgroup is gone after a foreground run ends, and after delete of a
/// stopped container.
#[test]
fn removal_on_delete() {
    let Some(mut ctx) = v2_ctx("removal_on_delete") else {
        return;
    };
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 10 });
    ctx.checker(&["exit", "0"]);
    ctx.run().assert_ok();
    assert!(!cgroup_dir(&ctx).exists(), "cgroup survived run");

    ctx.create().assert_ok();
    assert!(cgroup_dir(&ctx).is_dir(), "create made no cgroup");
    ctx.rt(&["start", &ctx.id]).assert_ok();
    ctx.wait_status("stopped");
    ctx.rt(&["delete", &ctx.id]).assert_ok();
    assert_no_leftovers(&ctx);
}
