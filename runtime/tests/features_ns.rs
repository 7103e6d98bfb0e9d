//! Namespace features: time and cgroup namespaces, joining another
//! container's namespaces by path, and `kill --all` without a pid namespace.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p
//! hull --test features_ns`. Assertions runc 1.1.5 cannot meet are gated on
//! the runtime being hull, each with the reason.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Ctx;
use common::{cgroup_dirs, find_mount, host_ns_inode, mount_options, runtime, wait_pid_gone};
use serde_json::{json, Value};

const EROFS: i64 = 30;

/// Seconds since boot, from /proc/uptime.
fn uptime(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad /proc/uptime {text:?}"))
}

/// Drops the namespace of `kind` from the config.
fn remove_namespace(ctx: &mut Ctx, kind: &str) {
    let list = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    list.retain(|n| n["type"] != kind);
}

fn add_namespace(ctx: &mut Ctx, ns: Value) {
    let list = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    list.push(ns);
}

#[test]
fn time_namespace_offsets() {
    let Some(mut ctx) = Ctx::new("time-ns") else {
        return;
    };
    if !runtime().is_hull {
        // runc 1.1.5 fails with `namespace {"time" ""} does not exist`.
        eprintln!("SKIPPED time_namespace_offsets: runc 1.1.5 predates time namespaces");
        return;
    }
    if !Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIPPED time_namespace_offsets: the kernel has no time namespaces");
        return;
    }
    add_namespace(&mut ctx, json!({ "type": "time" }));
    ctx.config["linux"]["timeOffsets"] = json!({
        "boottime": { "secs": 86400 }, "monotonic": { "secs": 3600 }
    });
    let host_up = uptime(&fs::read_to_string("/proc/uptime").expect("read /proc/uptime"));
    let lines = ctx.probe(&[
        &["facts"],
        &["read", "/proc/uptime"],
        &["read", "/proc/self/timens_offsets"],
    ]);
    assert_ne!(
        lines[0]["ns"]["time"],
        host_ns_inode("time"),
        "time ns shared"
    );
    let inner_up = uptime(lines[1]["content"].as_str().expect("uptime"));
    assert!(
        inner_up >= host_up + 86000.0,
        "uptime inside {inner_up} vs host {host_up}"
    );
    let offsets = lines[2]["content"].as_str().expect("timens_offsets");
    let offsets: Vec<Vec<&str>> = offsets
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        offsets.contains(&vec!["monotonic", "3600", "0"]),
        "{offsets:?}"
    );
    assert!(
        offsets.contains(&vec!["boottime", "86400", "0"]),
        "{offsets:?}"
    );
}

/// `(controllers, path)` of each /proc/self/cgroup line naming a real v1
/// controller (not `name=...` hierarchies, not the unified `0::` line).
fn controller_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let real = !ctrls.is_empty() && !ctrls.starts_with("name=");
            real.then(|| (ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// Without a cgroup namespace /proc/self/cgroup shows cgroupsPath; with one
/// it shows `/`. Either way the memory hierarchy at /sys/fs/cgroup/memory is
/// the container's own (its limit is visible) and read-only.
#[test]
fn cgroup_namespace_and_cgroup_mount() {
    for with_ns in [false, true] {
        let Some(mut ctx) = Ctx::new(&format!("cgroupns-{with_ns}")) else {
            return;
        };
        if !Path::new("/sys/fs/cgroup/memory").is_dir() {
            eprintln!("SKIPPED cgroup_namespace_and_cgroup_mount: needs cgroup v1 memory");
            return;
        }
        let path = ctx.cgroup_path();
        ctx.config["linux"]["cgroupsPath"] = json!(path);
        ctx.config["linux"]["resources"]["memory"] = json!({ "limit": 64 << 20 });
        if with_ns {
            add_namespace(&mut ctx, json!({ "type": "cgroup" }));
        }
        let limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
        let lines = ctx.probe(&[
            &["facts"],
            &["read", "/proc/self/cgroup"],
            &["read", limit],
            &["write", limit],
        ]);
        let want = if with_ns { "/" } else { path.as_str() };
        let cgroups = controller_lines(lines[1]["content"].as_str().expect("cgroup"));
        assert!(
            cgroups.iter().any(|(c, _)| c == "memory"),
            "no memory line: {cgroups:?}"
        );
        for (ctrls, p) in &cgroups {
            assert_eq!(p, want, "{ctrls} (cgroup ns: {with_ns}): {cgroups:?}");
        }
        if with_ns {
            assert_ne!(lines[0]["ns"]["cgroup"], host_ns_inode("cgroup"));
        }
        let mount = find_mount(&lines[0], "/sys/fs/cgroup/memory")
            .unwrap_or_else(|| panic!("no /sys/fs/cgroup/memory mount: {}", lines[0]));
        assert_eq!(mount["fstype"], "cgroup", "{mount}");
        assert!(mount_options(mount).contains(&"ro".to_string()), "{mount}");
        assert_eq!(lines[2]["content"], format!("{}\n", 64u64 << 20));
        assert_eq!(lines[3]["errno"], EROFS, "write {limit}: {}", lines[3]);
    }
}

/// B joins A's network and uts namespaces by path. B sets no hostname: both
/// runc and hull would otherwise set it in the joined namespace, renaming A.
#[test]
fn join_namespaces_by_path() {
    let Some(mut ctx) = Ctx::new("join-ns") else {
        return;
    };
    ctx.config["hostname"] = json!("ctr-a");
    let a = ctx.extra_id("join-a");
    let pid = ctx.start_sleeper(&a)["pid"].as_u64().expect("pid of A");
    let ino = |ns: &str| {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(format!("/proc/{pid}/ns/{ns}"))
            .unwrap_or_else(|e| panic!("stat /proc/{pid}/ns/{ns}: {e}"))
            .ino()
    };

    ctx.config
        .as_object_mut()
        .expect("config")
        .remove("hostname");
    ctx.config["linux"]["namespaces"] = json!([
        { "type": "pid" },
        { "type": "mount" },
        { "type": "ipc" },
        { "type": "network", "path": format!("/proc/{pid}/ns/net") },
        { "type": "uts", "path": format!("/proc/{pid}/ns/uts") },
    ]);
    let f = ctx.facts();
    assert_eq!(f["ns"]["net"], ino("net"), "net ns: {f}");
    assert_eq!(f["ns"]["uts"], ino("uts"), "uts ns: {f}");
    assert_ne!(f["ns"]["ipc"], ino("ipc"), "B has its own ipc ns: {f}");
    assert_eq!(f["hostname"], "ctr-a");
}

/// The pids in the container's cgroup, read from the first hierarchy that
/// has it.
fn cgroup_procs(path: &str) -> Vec<u64> {
    let dir = cgroup_dirs(path)
        .into_iter()
        .find(|d| d.join("cgroup.procs").is_file())
        .unwrap_or_else(|| panic!("no cgroup directory for {path}"));
    let text = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Without a pid namespace, the init's death does not take its children with
/// it; `kill --all` must reach them through the cgroup.
#[test]
fn kill_all_without_pid_namespace() {
    let Some(mut ctx) = Ctx::new("kill-all-hostpid") else {
        return;
    };
    remove_namespace(&mut ctx, "pid");
    let path = ctx.cgroup_path();
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    ctx.set_args(&["/bin/sh", "-c", "sleep 100 & sleep 100"]);
    let id = ctx.id.clone();
    ctx.create().assert_ok();
    ctx.rt(&["start", &id]).assert_ok();

    // Wait for both sleeps (the shell may exec the second one itself).
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeps = loop {
        let sleeps: Vec<u64> = cgroup_procs(&path)
            .into_iter()
            .filter(|p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"sleep\x00100\x00"))
            })
            .collect();
        if sleeps.len() == 2 {
            break sleeps;
        }
        assert!(
            Instant::now() < deadline,
            "sleeps never started: {sleeps:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    ctx.rt(&["kill", "--all", &id, "KILL"]).assert_ok();
    for pid in &sleeps {
        assert!(wait_pid_gone(*pid), "sleep {pid} survived kill --all");
    }
    ctx.wait_status("stopped");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cgroup_procs(&path).is_empty() {
        assert!(
            Instant::now() < deadline,
            "cgroup not empty: {:?}",
            cgroup_procs(&path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.rt(&["delete", &id]).assert_ok();
    let left = cgroup_dirs(&path);
    assert!(left.is_empty(), "delete left cgroup directories: {left:?}");
}

/// runc places the container in every hierarchy of a hybrid host, the named
/// `name=systemd` one and the unified `0::` one included, and binds only the
/// container's own directory at /sys/fs/cgroup/systemd.
#[test]
fn every_hierarchy_is_joined() {
    let Some(mut ctx) = Ctx::new("cgroup-all-hierarchies") else {
        return;
    };
    if !Path::new("/sys/fs/cgroup/systemd").is_dir() {
        eprintln!("SKIPPED every_hierarchy_is_joined: no name=systemd hierarchy");
        return;
    }
    let path = ctx.cgroup_path();
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    let lines = ctx.probe(&[&["facts"], &["read", "/proc/self/cgroup"]]);
    let text = lines[1]["content"].as_str().expect("cgroup");
    for line in text.lines() {
        assert!(line.ends_with(&format!(":{path}")), "{line:?} in\n{text}");
    }
    let mount = find_mount(&lines[0], "/sys/fs/cgroup/systemd")
        .unwrap_or_else(|| panic!("no /sys/fs/cgroup/systemd mount: {}", lines[0]));
    assert_eq!(mount["root"], json!(path), "{mount}");
}
