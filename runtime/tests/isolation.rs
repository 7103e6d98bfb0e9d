//! Isolation tests: the config is checked from inside the container with
//! `hull-checker`, and cgroup limits from the host.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p hull --test isolation`.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{
    cap_field, cap_mask, cgroup_dirs, find_mount, host_ns_inode, mount_options, runtime, Ctx,
};
use serde_json::{json, Value};

const EROFS: i64 = 30;

#[test]
fn hostname_from_config() {
    let Some(mut ctx) = Ctx::new("hostname") else {
        return;
    };
    ctx.config["hostname"] = json!("iso-host");
    ctx.config["domainname"] = json!("iso.domain");
    let f = ctx.facts();
    assert_eq!(f["hostname"], "iso-host");
    // runc 1.1.5 predates `domainname` (runtime-spec 1.1) and ignores it.
    if runtime().is_hull {
        assert_eq!(f["domainname"], "iso.domain");
    }
}

#[test]
fn user_and_groups_from_config() {
    let Some(mut ctx) = Ctx::new("user") else {
        return;
    };
    ctx.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [10, 20] });
    let f = ctx.facts();
    for (k, want) in [("uid", 1000), ("euid", 1000), ("gid", 1000), ("egid", 1000)] {
        assert_eq!(f[k], want, "{k}: {f}");
    }
    let mut groups: Vec<u64> = f["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    groups.sort_unstable();
    assert_eq!(groups, [10, 20], "supplementary groups");
    // A non-root user without ambient capabilities keeps none in effect.
    assert_eq!(cap_field(&f, "cap_eff"), 0, "cap_eff of uid 1000: {f}");
}

/// For uid 0 the kernel's exec rules make the effective set equal to the
/// permitted set (the file is treated as fully privileged, and noNewPrivileges
/// caps the result at the pre-exec permitted set), so the config gives
/// effective == permitted to be satisfiable.
#[test]
fn capabilities_match_config() {
    let Some(mut ctx) = Ctx::new("caps") else {
        return;
    };
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SYS_TIME",
    ];
    let permitted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let effective = permitted;
    let inheritable = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let ambient = ["CAP_KILL"];
    ctx.config["process"]["capabilities"] = json!({
        "bounding": bounding, "permitted": permitted, "effective": effective,
        "inheritable": inheritable, "ambient": ambient,
    });
    let f = ctx.facts();
    let check = |field: &str, names: &[&str]| {
        let (got, want) = (cap_field(&f, field), cap_mask(names));
        assert_eq!(
            got, want,
            "{field}: got {got:#x}, want {want:#x} ({names:?})"
        );
    };
    check("cap_bnd", &bounding);
    check("cap_prm", &permitted);
    check("cap_eff", &effective);
    check("cap_inh", &inheritable);
    check("cap_amb", &ambient);
}

#[test]
fn mounts_present_with_flags() {
    let Some(mut ctx) = Ctx::new("mounts") else {
        return;
    };
    let src = ctx.tmp.join("bind-src");
    fs::create_dir(&src).expect("mkdir bind source");
    fs::write(src.join("payload"), "from host").expect("write payload");
    let mounts = ctx.config["mounts"].as_array_mut().expect("mounts");
    mounts.push(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "size=1m"]
    }));
    mounts.push(json!({
        "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]
    }));
    ctx.checker_script(&[
        &["facts"],
        &["read", "/data/payload"],
        &["write", "/data/new"],
    ]);
    let out = ctx.run();
    out.assert_ok();
    let lines = out.json_lines();
    let (f, read, write) = (&lines[0], &lines[1], &lines[2]);

    let opts = |target: &str| {
        let m = find_mount(f, target).unwrap_or_else(|| panic!("no mount at {target}: {f}"));
        mount_options(m)
    };
    let root = opts("/");
    assert_eq!(root[0], "ro", "root.readonly: {root:?}");
    let scratch = opts("/scratch");
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(
            scratch.iter().any(|o| o == flag),
            "/scratch lacks {flag}: {scratch:?}"
        );
    }
    assert_eq!(
        find_mount(f, "/scratch").expect("/scratch")["fstype"],
        "tmpfs"
    );
    let shm = opts("/dev/shm");
    for flag in ["nosuid", "nodev", "noexec"] {
        assert!(
            shm.iter().any(|o| o == flag),
            "/dev/shm lacks {flag}: {shm:?}"
        );
    }
    assert_eq!(opts("/data")[0], "ro", "bind mount must be ro");
    assert_eq!(opts("/sys")[0], "ro", "/sys must be ro");
    assert_eq!(find_mount(f, "/proc").expect("/proc")["fstype"], "proc");
    assert_eq!(read["content"], "from host", "bind source visible: {read}");
    assert_eq!(write["errno"], EROFS, "write to ro bind: {write}");
    assert!(!src.join("new").exists(), "write went through to the host");
}

/// Masks paths of the test's own rootfs, so the test does not depend on which
/// /proc files the host kernel has; the host-dependent ones are checked too.
#[test]
fn masked_paths() {
    let Some(mut ctx) = Ctx::new("masked") else {
        return;
    };
    let rootfs = ctx.rootfs();
    fs::create_dir(rootfs.join("masked-dir")).expect("mkdir");
    fs::write(rootfs.join("masked-dir/secret"), "secret").expect("write");
    fs::write(rootfs.join("masked-file"), "secret").expect("write");
    let proc_file = ["/proc/kcore", "/proc/keys", "/proc/timer_list"]
        .into_iter()
        .find(|p| fs::metadata(p).is_ok())
        .expect("host has one of /proc/kcore, /proc/keys, /proc/timer_list");
    let masked = ctx.config["linux"]["maskedPaths"]
        .as_array_mut()
        .expect("maskedPaths");
    masked.extend([
        json!("/masked-dir"),
        json!("/masked-file"),
        json!(proc_file),
    ]);
    let probes: [&[&str]; 4] = [
        &["read", "/masked-file"],
        &["ls", "/masked-dir"],
        &["read", proc_file],
        &["facts"],
    ];
    let r = ctx.probe(&probes);
    assert_eq!(r[0]["ok"], true, "masked file must read empty: {}", r[0]);
    assert_eq!(r[0]["content"], "", "masked file content: {}", r[0]);
    assert_eq!(
        r[1]["entries"],
        json!([]),
        "masked dir must be empty: {}",
        r[1]
    );
    assert_eq!(r[2]["content"], "", "{proc_file} must read empty: {}", r[2]);
    let dir_mount = find_mount(&r[3], "/masked-dir").expect("mount over masked dir");
    assert_eq!(dir_mount["fstype"], "tmpfs", "masked dir: {dir_mount}");
    assert_eq!(mount_options(dir_mount)[0], "ro", "masked dir: {dir_mount}");
}

#[test]
fn readonly_paths() {
    let Some(mut ctx) = Ctx::new("readonly") else {
        return;
    };
    ctx.config["root"]["readonly"] = json!(false);
    fs::create_dir(ctx.rootfs().join("ro-dir")).expect("mkdir");
    let ro = ctx.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .expect("readonlyPaths");
    ro.push(json!("/ro-dir"));
    let r = ctx.probe(&[
        &["write", "/ro-dir/file"],
        &["write", "/proc/sys/kernel/domainname"],
        &["write", "/rw-file"],
    ]);
    assert_eq!(r[0]["errno"], EROFS, "/ro-dir: {}", r[0]);
    assert_eq!(r[1]["errno"], EROFS, "/proc/sys: {}", r[1]);
    assert_eq!(r[2]["ok"], true, "root is writable here: {}", r[2]);
}

#[test]
fn namespaces_differ_from_host() {
    let Some(mut ctx) = Ctx::new("namespaces") else {
        return;
    };
    let ns = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.push(json!({ "type": "cgroup" }));
    let f = ctx.facts();
    for name in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
        let inner = f["ns"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("ns.{name}: {f}"));
        assert_ne!(inner, host_ns_inode(name), "{name} namespace is the host's");
    }
    // Not requested, so shared with the host.
    assert_eq!(
        f["ns"]["user"].as_u64(),
        Some(host_ns_inode("user")),
        "user ns"
    );
    assert_eq!(f["pid"], 1, "the process is PID 1 of its namespace");
}

#[test]
fn rlimits_from_config() {
    let Some(mut ctx) = Ctx::new("rlimits") else {
        return;
    };
    ctx.config["process"]["rlimits"] = json!([
        { "type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024 },
        { "type": "RLIMIT_CORE", "soft": 1234, "hard": 5678 },
        { "type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192 },
    ]);
    let f = ctx.facts();
    assert_eq!(f["rlimits"]["RLIMIT_NOFILE"], json!([512, 1024]));
    assert_eq!(f["rlimits"]["RLIMIT_CORE"], json!([1234, 5678]));
    assert_eq!(f["rlimits"]["RLIMIT_MSGQUEUE"], json!([4096, 8192]));
}

#[test]
fn process_attributes() {
    let Some(mut ctx) = Ctx::new("process-attrs") else {
        return;
    };
    ctx.config["process"]["cwd"] = json!("/tmp");
    ctx.config["process"]["user"]["umask"] = json!(0o027);
    ctx.config["process"]["oomScoreAdj"] = json!(123);
    ctx.config["process"]["noNewPrivileges"] = json!(true);
    ctx.config["process"]["env"] = json!(["PATH=/bin", "HULL_TEST=1"]);
    let f = ctx.facts();
    assert_eq!(f["cwd"], "/tmp");
    assert_eq!(f["umask"], "0027");
    assert_eq!(f["oom_score_adj"], 123);
    assert_eq!(f["no_new_privs"], 1);
    assert_eq!(f["fds"], json!([0, 1, 2]), "no fds beyond stdio may leak");
    let env: Vec<&str> = f["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"HULL_TEST=1") && env.contains(&"PATH=/bin"),
        "env: {env:?}"
    );

    ctx.config["process"]["noNewPrivileges"] = json!(false);
    let f = ctx.facts();
    assert_eq!(f["no_new_privs"], 0, "noNewPrivileges=false");
}

#[test]
fn user_namespace_mapping() {
    let Some(mut ctx) = Ctx::new("userns") else {
        return;
    };
    let ns = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.push(json!({ "type": "user" }));
    let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    ctx.config["linux"]["uidMappings"] = map.clone();
    ctx.config["linux"]["gidMappings"] = map;
    let r = ctx.probe(&[
        &["read", "/proc/self/uid_map"],
        &["read", "/proc/self/gid_map"],
        &["facts"],
    ]);
    for (i, file) in ["uid_map", "gid_map"].iter().enumerate() {
        let content = r[i]["content"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: {}", r[i]));
        let fields: Vec<&str> = content.split_whitespace().collect();
        assert_eq!(fields, ["0", "100000", "65536"], "{file}: {content:?}");
    }
    let f = &r[2];
    assert_eq!(f["uid"], 0, "container root: {f}");
    assert_ne!(
        f["ns"]["user"].as_u64(),
        Some(host_ns_inode("user")),
        "user ns not new"
    );
}

fn read_trimmed(path: &std::path::Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().to_string()
}

#[test]
fn cgroup_limits_and_removal() {
    let Some(mut ctx) = Ctx::new("cgroups") else {
        return;
    };
    let memory_root = std::path::Path::new("/sys/fs/cgroup/memory");
    let pids_root = std::path::Path::new("/sys/fs/cgroup/pids");
    if !memory_root.is_dir() || !pids_root.is_dir() {
        eprintln!("SKIPPED cgroup_limits_and_removal: needs cgroup v1 memory and pids");
        return;
    }
    let path = ctx.cgroup_path();
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": 64 << 20 });
    ctx.config["linux"]["resources"]["pids"] = json!({ "limit": 77 });
    let id = ctx.id.clone();
    let pid = ctx.start_sleeper(&id)["pid"].as_u64().expect("pid");

    let rel = path.trim_start_matches('/');
    let mem = memory_root.join(rel);
    assert_eq!(
        read_trimmed(&mem.join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read_trimmed(&pids_root.join(rel).join("pids.max")), "77");
    let procs = read_trimmed(&mem.join("cgroup.procs"));
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "pid {pid} not in {procs:?}"
    );

    ctx.rt(&["kill", &id, "KILL"]).assert_ok();
    ctx.wait_status("stopped");
    ctx.rt(&["delete", &id]).assert_ok();
    let left = cgroup_dirs(&path);
    assert!(left.is_empty(), "delete left cgroup directories: {left:?}");
}

/// The harness's capability table must match the kernel's bit numbers.
#[test]
fn cap_mask_matches_kernel_numbering() {
    assert_eq!(
        cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
        0x421
    );
    assert_eq!(cap_mask(&["CAP_SYS_ADMIN"]), 1 << 21);
    assert_eq!(cap_mask(&["CAP_CHECKPOINT_RESTORE"]), 1 << 40);
    assert_eq!(common::CAP_NAMES.split_whitespace().count(), 41);
}

/// Unmounts (lazily) what a test mounted on the host, also when it fails.
struct HostMounts(Vec<PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// With rootfsPropagation rshared, a mount made inside the container under an `rshared`
/// bind of a shared host directory reaches the host (critest's bidirectional propagation).
/// hull used to make its own binds slaves when detaching the old root after pivot_root.
#[test]
fn rshared_bind_propagates_to_the_host() {
    let Some(mut ctx) = Ctx::new("rshared") else {
        return;
    };
    let src = ctx.tmp.join("shared");
    fs::create_dir_all(src.join("sub")).expect("mkdir shared source");
    let mount = |args: &[&std::ffi::OsStr]| {
        let st = Command::new("mount")
            .args(args)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount {args:?}");
    };
    mount(&["--bind".as_ref(), src.as_os_str(), src.as_os_str()]);
    let _cleanup = HostMounts(vec![src.clone(), src.join("sub")]);
    mount(&["--make-rshared".as_ref(), src.as_os_str()]);
    ctx.config["linux"]["rootfsPropagation"] = json!("rshared");
    ctx.grant_cap("CAP_SYS_ADMIN");
    ctx.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({
            "destination": "/shared", "type": "bind", "source": src,
            "options": ["rbind", "rshared"]
        }));
    ctx.set_args(&["sh", "-c", "mount --bind /etc /shared/sub"]);
    ctx.run().assert_ok();
    assert!(
        src.join("sub/passwd").exists(),
        "the container's mount did not propagate to the host"
    );
}
