//! `exec` with runc's flags: a new process in a running container joins the
//! init's namespaces and cgroups, gets the process settings the flags ask for,
//! and its exit status comes back to the caller.
//!
//! Every test also runs against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc
//! cargo test -p hull --test exec`. Assertions runc 1.1.5 cannot meet are gated
//! on the runtime being hull, each with the reason.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::console::{console_output, read_console, ConsoleSocket};
use common::fds::rt_with_fd;
use common::{assert_no_leftovers, cap_field, cap_mask, runtime, Ctx, Out};
use serde_json::{json, Value};

const NAMESPACES: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

/// A running `/checker sleep 600` in its own cgroup; returns the init's host pid.
fn running(ctx: &mut Ctx) -> u64 {
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    let id = ctx.id.clone();
    ctx.start_sleeper(&id)["pid"].as_u64().expect("init pid")
}

/// Runs `exec <flags...> <id> <cmd...>`.
fn exec(ctx: &Ctx, flags: &[&str], cmd: &[&str]) -> Out {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(&ctx.id);
    args.extend_from_slice(cmd);
    ctx.rt(&args)
}

/// `exec <flags> <id> /checker facts`; its only JSON line.
#[track_caller]
fn exec_facts(ctx: &Ctx, flags: &[&str]) -> Value {
    let out = exec(ctx, flags, &["/checker", "facts"]);
    out.assert_ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1, "one JSON line expected:\n{out}");
    lines[0].clone()
}

/// Inode of `/proc/<pid>/ns/<ns>`, seen from the host.
fn ns_inode(pid: u64, ns: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("stat /proc/{pid}/ns/{ns}: {e}"))
}

fn proc_cgroup(pid: u64) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"))
}

fn env_has(facts: &Value, var: &str) -> bool {
    facts["env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| v == var))
}

fn env_count(facts: &Value, prefix: &str) -> usize {
    facts["env"].as_array().map_or(0, |e| {
        e.iter()
            .filter(|v| v.as_str().is_some_and(|s| s.starts_with(prefix)))
            .count()
    })
}

/// The pids in the container's pids-controller cgroup (its only cgroup on v2).
fn cgroup_procs(ctx: &Ctx) -> Vec<u64> {
    let hierarchy = if common::is_cgroup_v2() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/pids"
    };
    let path = Path::new(hierarchy)
        .join(ctx.cgroup_path().trim_start_matches('/'))
        .join("cgroup.procs");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------
// Joining the container
// ---------------------------------------------------------------------------

/// The exec'd process sees the init's namespaces (all eight, compared by inode
/// with the init's from the host), a pid inside the container's pid namespace,
/// and only stdio.
#[test]
fn exec_joins_the_init_namespaces() {
    let Some(mut ctx) = Ctx::new("exec-ns") else {
        return;
    };
    let init = running(&mut ctx);
    let facts = exec_facts(&ctx, &[]);
    for ns in NAMESPACES {
        assert_eq!(
            facts["ns"][ns].as_u64(),
            Some(ns_inode(init, ns)),
            "{ns} namespace differs from the init's: {}",
            facts["ns"]
        );
    }
    // pid 1 is the init; the exec'd process has another pid in the same
    // namespace, and its parent (the runtime) is outside it.
    let pid = facts["pid"].as_u64().expect("pid");
    assert!(pid > 1, "exec'd process has pid {pid}");
    assert_eq!(
        facts["ppid"], 0,
        "parent should be outside the pid namespace"
    );
    assert_eq!(facts["fds"], json!([0, 1, 2]), "extra fds: {facts}");
    assert_eq!(facts["cwd"], "/", "{facts}");
    assert_eq!(facts["hostname"], "hull", "{facts}");
}

/// runc sets HOME from the rootfs's /etc/passwd when the process env has
/// none (`/nonexistent` for nobody, `/` for a uid without an entry), both for
/// the init and for exec; containerd and podman images rely on it.
#[test]
fn home_is_set_from_passwd() {
    let Some(mut ctx) = Ctx::new("exec-home") else {
        return;
    };
    let init = running(&mut ctx);
    // runc 1.1.5's `start` can return before its init has exec'd the program, whose
    // environment is the one to read: wait until the runtime's own is gone.
    let mut environ = String::new();
    for _ in 0..200 {
        let raw = fs::read(format!("/proc/{init}/environ")).expect("init environ");
        environ = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !environ.contains("_LIBCONTAINER_") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(environ.contains("HOME=/root"), "init env: {environ}");
    for (user, home) in [
        ("0", "HOME=/root"),
        ("65534", "HOME=/nonexistent"),
        ("4242", "HOME=/"),
    ] {
        let facts = exec_facts(&ctx, &["-u", user]);
        assert!(env_has(&facts, home), "-u {user}: {}", facts["env"]);
    }
    let facts = exec_facts(&ctx, &["-e", "HOME=/elsewhere"]);
    assert!(env_has(&facts, "HOME=/elsewhere"), "{}", facts["env"]);
    assert_eq!(env_count(&facts, "HOME="), 1, "{}", facts["env"]);
}

#[test]
fn exit_code_and_signal_are_propagated() {
    let Some(mut ctx) = Ctx::new("exec-exit") else {
        return;
    };
    running(&mut ctx);
    let out = exec(&ctx, &[], &["/checker", "exit", "7"]);
    assert_eq!(out.code(), Some(7), "{out}");
    let out = exec(&ctx, &[], &["/checker", "signal-self", "9"]);
    assert_eq!(out.code(), Some(128 + 9), "{out}");
    let out = exec(&ctx, &[], &["/bin/true"]);
    assert_eq!(out.code(), Some(0), "{out}");
    // The container is unaffected.
    assert_eq!(ctx.state()["status"], "running");
}

/// `-e` adds and overrides variables (the config's PATH stays), `--cwd`,
/// `-u uid:gid` and `-g` set the identity.
#[test]
fn env_cwd_user_and_additional_gids() {
    let Some(mut ctx) = Ctx::new("exec-identity") else {
        return;
    };
    running(&mut ctx);
    let facts = exec_facts(
        &ctx,
        &[
            // runc's flag parser refuses mixing `-e` and `--env` (or `-g` and
            // `--additional-gids`) in one command line.
            "-e",
            "FOO=bar",
            "-e",
            "TERM=dumb",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1001",
            "-g",
            "10",
            "-g",
            "20",
        ],
    );
    assert!(env_has(&facts, "FOO=bar"), "{}", facts["env"]);
    assert!(env_has(&facts, "TERM=dumb"), "{}", facts["env"]);
    assert_eq!(
        env_count(&facts, "TERM="),
        1,
        "TERM twice: {}",
        facts["env"]
    );
    assert!(
        env_has(
            &facts,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ),
        "config env lost: {}",
        facts["env"]
    );
    assert_eq!(facts["cwd"], "/tmp");
    assert_eq!(
        (facts["uid"].as_u64(), facts["euid"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(
        (facts["gid"].as_u64(), facts["egid"].as_u64()),
        (Some(1001), Some(1001))
    );
    assert_eq!(facts["groups"], json!([10, 20]), "{facts}");
    // A non-root user keeps no effective capabilities.
    assert_eq!(cap_field(&facts, "cap_eff"), 0, "{facts}");
}

/// `--cap` adds a capability to the bounding, permitted and effective sets.
#[test]
fn cap_flag_adds_the_capability() {
    let Some(mut ctx) = Ctx::new("exec-cap") else {
        return;
    };
    running(&mut ctx);
    let admin = cap_mask(&["CAP_SYS_ADMIN"]);
    let plain = exec_facts(&ctx, &[]);
    for set in ["cap_bnd", "cap_prm", "cap_eff"] {
        assert_eq!(
            cap_field(&plain, set) & admin,
            0,
            "{set} without --cap: {plain}"
        );
    }
    let facts = exec_facts(&ctx, &["--cap", "CAP_SYS_ADMIN"]);
    for set in ["cap_bnd", "cap_prm", "cap_eff"] {
        let v = cap_field(&facts, set);
        assert_eq!(v & admin, admin, "{set} lacks CAP_SYS_ADMIN: {v:x}");
        // The config's capabilities are kept.
        let kill = cap_mask(&["CAP_KILL"]);
        assert_eq!(v & kill, kill, "{set} lost CAP_KILL: {v:x}");
    }
    // An unknown name: hull refuses it; runc 1.1.5 warns ("ignoring unknown or
    // unavailable capabilities") and runs the process. Both name it.
    let out = exec(
        &ctx,
        &["--cap", "CAP_NO_SUCH_THING"],
        &["/checker", "facts"],
    );
    assert!(out.stderr.contains("CAP_NO_SUCH_THING"), "{out}");
    if runtime().is_hull {
        out.assert_fail();
    }
}

#[test]
fn no_new_privs_flag() {
    let Some(mut ctx) = Ctx::new("exec-nnp") else {
        return;
    };
    ctx.config["process"]["noNewPrivileges"] = json!(false);
    running(&mut ctx);
    assert_eq!(exec_facts(&ctx, &[])["no_new_privs"], 0);
    assert_eq!(exec_facts(&ctx, &["--no-new-privs"])["no_new_privs"], 1);
}

/// `-p process.json` replaces the container's process settings entirely.
#[test]
fn process_json() {
    let Some(mut ctx) = Ctx::new("exec-process-json") else {
        return;
    };
    running(&mut ctx);
    let process = json!({
        "terminal": false,
        "user": { "uid": 2, "gid": 3, "additionalGids": [4] },
        "args": ["/checker", "facts"],
        "env": ["A=b"],
        "cwd": "/dev",
        "noNewPrivileges": true
    });
    let path = ctx.tmp.join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");
    let path = path.to_string_lossy().into_owned();
    let out = ctx.rt(&["exec", "-p", &path, &ctx.id]);
    out.assert_ok();
    let facts = &out.json_lines()[0];
    assert_eq!(
        (facts["uid"].as_u64(), facts["gid"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(facts["groups"], json!([4]), "{facts}");
    assert!(env_has(facts, "A=b"), "{}", facts["env"]);
    assert_eq!(
        env_count(facts, "PATH="),
        0,
        "config env leaked: {}",
        facts["env"]
    );
    assert_eq!(facts["cwd"], "/dev");
    assert_eq!(facts["no_new_privs"], 1);
}

// ---------------------------------------------------------------------------
// Detached, terminal, descriptors
// ---------------------------------------------------------------------------

/// `--detach --pid-file`: the file holds the host pid of a live process that
/// is in the container's cgroup in every hierarchy and in its namespaces.
#[test]
fn detach_with_pid_file() {
    let Some(mut ctx) = Ctx::new("exec-detach") else {
        return;
    };
    let init = running(&mut ctx);
    let pid_file = ctx.tmp.join("exec.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    exec(
        &ctx,
        &["--detach", "--pid-file", &pf],
        &["/checker", "sleep", "600"],
    )
    .assert_ok();
    let text = fs::read_to_string(&pid_file).expect("pid file written");
    let pid: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {text:?}: {e}"));
    assert_ne!(pid, init);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("exec'd process alive");
    assert_eq!(
        cmdline, b"/checker\x00sleep\x00600\x00",
        "pid file names another process"
    );

    // Same cgroup as the init, line for line, in every hierarchy.
    let (mine, theirs) = (proc_cgroup(pid), proc_cgroup(init));
    assert_eq!(mine, theirs, "exec'd process is in other cgroups");
    let want = ctx.cgroup_path();
    for line in mine.lines() {
        let mut f = line.splitn(3, ':');
        let (ctrl, path) = (f.nth(1).unwrap_or_default(), f.next().unwrap_or_default());
        // Named (name=systemd) and unified hierarchies are not resource
        // controllers; runc leaves them as they are.
        if ctrl.is_empty() || ctrl.starts_with("name=") {
            continue;
        }
        assert!(
            path.ends_with(&want),
            "{ctrl}: {path} is not the container's cgroup {want}"
        );
    }
    assert!(cgroup_procs(&ctx).contains(&pid), "not in cgroup.procs");
    for ns in NAMESPACES {
        assert_eq!(ns_inode(pid, ns), ns_inode(init, ns), "{ns} namespace");
    }
}

/// `--tty --console-socket` (detached, as runc handles a non-detached tty on
/// its own terminal): stdio is a pty whose master arrives on the socket.
#[test]
fn tty_through_console_socket() {
    let Some(mut ctx) = Ctx::new("exec-tty") else {
        return;
    };
    running(&mut ctx);
    let socket = ConsoleSocket::listen(&ctx.tmp);
    let sock = socket.path.to_string_lossy().into_owned();
    let script = "tty; test -t 0 && test -t 1 && test -t 2 && echo stdio-is-tty; echo done";
    let out = exec(
        &ctx,
        &["--detach", "--tty", "--console-socket", &sock],
        &["/bin/sh", "-c", script],
    );
    out.assert_ok();
    let text = console_output(&read_console(socket.master()));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("/dev/pts/")),
        "tty output: {text:?}"
    );
    assert_eq!(
        &lines[1..],
        ["stdio-is-tty", "done"],
        "tty output: {text:?}"
    );
}

/// `--preserve-fds 1` passes the caller's fd 3 and nothing else; without the
/// flag the same descriptor does not reach the process.
#[test]
fn preserve_fds_and_no_extra_fds() {
    let Some(mut ctx) = Ctx::new("exec-preserve-fds") else {
        return;
    };
    running(&mut ctx);
    let file = ctx.tmp.join("fd3-payload");
    fs::write(&file, "through fd 3\n").expect("write payload");
    let id = ctx.id.clone();
    let script = "cat <&3; exec /checker facts";
    let out = rt_with_fd(
        &ctx,
        3,
        &file,
        &["exec", "--preserve-fds", "1", &id, "/bin/sh", "-c", script],
    );
    out.assert_ok();
    assert!(
        out.stdout.starts_with("through fd 3\n"),
        "fd 3 not readable:\n{out}"
    );
    assert_eq!(out.json_lines()[0]["fds"], json!([0, 1, 2, 3]), "{out}");

    let out = rt_with_fd(&ctx, 3, &file, &["exec", &id, "/checker", "facts"]);
    out.assert_ok();
    assert_eq!(out.json_lines()[0]["fds"], json!([0, 1, 2]), "{out}");
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

/// runc: "cannot exec in a stopped container"; hull: "... it is stopped".
#[test]
fn exec_into_stopped_container_fails_cleanly() {
    let Some(mut ctx) = Ctx::new("exec-stopped") else {
        return;
    };
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.checker(&["exit", "0"]);
    ctx.create().assert_ok();
    ctx.rt(&["start", &ctx.id]).assert_ok();
    ctx.wait_status("stopped");
    let out = exec(&ctx, &[], &["/checker", "facts"]);
    out.assert_fail();
    assert!(out.stderr.contains("stopped"), "{out}");
    assert!(out.json_lines().is_empty(), "something ran:\n{out}");
    assert_eq!(ctx.state()["status"], "stopped");
    ctx.rt(&["delete", &ctx.id]).assert_ok();
    assert_no_leftovers(&ctx);
}

/// A missing program fails the exec, naming the path; nothing is left in the
/// container's cgroup and the container keeps running.
#[test]
fn missing_executable_is_named() {
    let Some(mut ctx) = Ctx::new("exec-missing") else {
        return;
    };
    let init = running(&mut ctx);
    let out = exec(&ctx, &[], &["/no/such/program", "arg"]);
    out.assert_fail();
    assert!(out.stderr.contains("/no/such/program"), "{out}");
    let out = exec(&ctx, &[], &["no-such-program-in-path"]);
    out.assert_fail();
    assert!(out.stderr.contains("no-such-program-in-path"), "{out}");
    assert_eq!(
        cgroup_procs(&ctx),
        vec![init],
        "a failed exec left a process"
    );
    assert_eq!(ctx.state()["status"], "running");
}

/// Exec into a paused container is refused unless `--ignore-paused`; with
/// it the new process is frozen with the container and runs once resumed.
#[test]
fn exec_into_paused_container() {
    let Some(mut ctx) = Ctx::new("exec-paused") else {
        return;
    };
    running(&mut ctx);
    ctx.rt(&["pause", &ctx.id]).assert_ok();
    let out = exec(&ctx, &[], &["/checker", "exit", "0"]);
    out.assert_fail();
    assert!(out.stderr.contains("paused"), "{out}");

    let pid_file = ctx.tmp.join("paused.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    let id = ctx.id.clone();
    let pending = ctx.rt_bg(&[
        "exec",
        "--ignore-paused",
        "-d",
        "--pid-file",
        &pf,
        &id,
        "/checker",
        "sleep",
        "600",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    ctx.rt(&["resume", &id]).assert_ok();
    pending.wait().assert_ok();
    let pid: u64 = fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        cgroup_procs(&ctx).contains(&pid),
        "not in the container's cgroup"
    );
    assert_eq!(ctx.state()["status"], "running");
}

/// A non-existent container id is an error naming it.
#[test]
fn exec_into_missing_container() {
    let Some(ctx) = Ctx::new("exec-nocontainer") else {
        return;
    };
    let out = ctx.rt(&["exec", "no-such-container-xyz", "/bin/true"]);
    out.assert_fail();
    if runtime().is_hull {
        // runc says "container does not exist" without the id.
        assert!(out.stderr.contains("no-such-container-xyz"), "{out}");
    }
}
