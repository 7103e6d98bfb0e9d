//! Feature tests: the terminal, `--preserve-fds`, `--no-pivot`, sysctls,
//! devices, root propagation and writability, deleting a created container,
//! and the fields and flags hull refuses. Namespace features are in
//! `features_ns.rs`.
//!
//! Every test also runs against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc
//! cargo test -p hull --test features`. Assertions runc 1.1.5 cannot meet are
//! gated on the runtime being hull, each with the reason.

mod common;

use std::fs;
use std::process::Command;

use common::console::{console_output, read_console, ConsoleSocket};
use common::{assert_no_leftovers, cgroup_dirs, host_mountinfo_mentioning, run_cmd, runtime};
use common::{Ctx, Out};
use serde_json::{json, Value};

/// A context whose container has its own cgroup, so leaks there are visible.
fn ctx_with_cgroup(test: &str) -> Option<Ctx> {
    let mut ctx = Ctx::new(test)?;
    let path = ctx.cgroup_path();
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    ctx.checker(&["sleep", "600"]);
    Some(ctx)
}

/// Runs create, which must fail naming `always` (any runtime) and, for hull,
/// `hull_names`; then nothing may be left behind.
#[track_caller]
fn create_refused(ctx: &Ctx, always: &str, hull_names: &str) -> Out {
    let out = ctx.create();
    out.assert_fail();
    assert!(
        out.stderr.contains(always),
        "stderr should mention {always:?}:\n{out}"
    );
    if runtime().is_hull {
        assert!(
            out.stderr.contains(hull_names),
            "stderr should name {hull_names:?}:\n{out}"
        );
    }
    assert_no_leftovers(ctx);
    out
}

// ---------------------------------------------------------------------------
// Terminal
// ---------------------------------------------------------------------------

/// The pty master arrives on the console socket; the container's stdio is the
/// pty slave and /dev/console is bound to it (pts major 136 = 0x88). runc
/// 1.1.5 prints exactly this output.
#[test]
fn terminal_through_console_socket() {
    let Some(mut ctx) = ctx_with_cgroup("terminal") else {
        return;
    };
    ctx.config["process"]["terminal"] = json!(true);
    ctx.set_args(&[
        "/bin/sh",
        "-c",
        "tty; test -t 0 && test -t 1 && test -t 2 && echo stdio-is-tty; \
         stat -c 'console %F %t' /dev/console; echo ok",
    ]);
    let socket = ConsoleSocket::listen(&ctx.tmp);
    ctx.write_config();
    let sock = socket.path.to_string_lossy().into_owned();
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let id = ctx.id.clone();
    ctx.rt(&[
        "create",
        "--console-socket",
        &sock,
        "--bundle",
        &bundle,
        &id,
    ])
    .assert_ok();
    let output = read_console(socket.master());
    ctx.rt(&["start", &id]).assert_ok();
    let text = console_output(&output);
    assert_eq!(
        text, "/dev/pts/0\nstdio-is-tty\nconsole character special file 88\nok\n",
        "console output"
    );
    ctx.wait_status("stopped");
    ctx.rt(&["delete", &id]).assert_ok();
    assert_no_leftovers(&ctx);
}

/// A detached terminal container needs somewhere to send its pty master.
/// runc says "cannot allocate tty if runc will detach without setting console
/// socket"; hull names the flag.
#[test]
fn terminal_without_console_socket_fails_cleanly() {
    let Some(mut ctx) = ctx_with_cgroup("terminal-nosock") else {
        return;
    };
    ctx.config["process"]["terminal"] = json!(true);
    create_refused(&ctx, "console", "--console-socket");
}

// ---------------------------------------------------------------------------
// Descriptors, pivot, sysctls
// ---------------------------------------------------------------------------

/// Runs `run [extra] <id>` with `file` open as fd 3 of the runtime process.
/// A shell does the redirection, so the test needs no unsafe pre_exec.
fn run_with_fd3(ctx: &Ctx, extra: &[&str], file: &std::path::Path) -> Out {
    ctx.write_config();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec "$@" 3<"$HULL_FD3""#)
        .arg("sh")
        .arg(&runtime().path)
        .arg("--root")
        .arg(&ctx.root)
        .arg("run")
        .args(extra)
        .arg("--bundle")
        .arg(&ctx.bundle)
        .arg(&ctx.id)
        .env("HULL_FD3", file);
    run_cmd(cmd, &ctx.tmp)
}

#[test]
fn preserve_fds_passes_exactly_the_extra_fds() {
    let Some(mut ctx) = Ctx::new("preserve-fds") else {
        return;
    };
    let file = ctx.tmp.join("fd3-payload");
    fs::write(&file, "through fd 3\n").expect("write payload");
    // `exec` keeps the shell's own descriptors out of the checker's view.
    ctx.set_args(&["/bin/sh", "-c", "cat <&3; exec /checker facts"]);

    let out = run_with_fd3(&ctx, &["--preserve-fds", "1"], &file);
    out.assert_ok();
    assert!(
        out.stdout.starts_with("through fd 3\n"),
        "fd 3 not readable:\n{out}"
    );
    let facts = &out.json_lines()[0];
    assert_eq!(facts["fds"], json!([0, 1, 2, 3]), "{facts}");

    // Without the flag the same inherited fd must not reach the container.
    ctx.set_args(&["/checker", "facts"]);
    let out = run_with_fd3(&ctx, &[], &file);
    out.assert_ok();
    assert_eq!(out.json_lines()[0]["fds"], json!([0, 1, 2]), "{out}");
}

/// Asking for more fds than the caller passed must not hand the runtime's own
/// descriptors to the container: either create refuses, or fd 4 stays
/// closed. runc 1.1.5 leaks an O_PATH fd of the host's /sys/fs/cgroup here.
#[test]
fn preserve_fds_beyond_passed_leaks_nothing() {
    let Some(mut ctx) = Ctx::new("preserve-fds-extra") else {
        return;
    };
    if !runtime().is_hull {
        eprintln!("SKIPPED preserve_fds_beyond_passed_leaks_nothing: runc 1.1.5 leaks here");
        return;
    }
    let file = ctx.tmp.join("fd3-payload");
    fs::write(&file, "through fd 3\n").expect("write payload");
    ctx.set_args(&["/checker", "facts"]);
    let out = run_with_fd3(&ctx, &["--preserve-fds", "2"], &file);
    if out.ok() {
        assert_eq!(out.json_lines()[0]["fds"], json!([0, 1, 2, 3]), "{out}");
    } else {
        assert!(
            out.stderr.contains("preserve-fds"),
            "unclear refusal:\n{out}"
        );
        assert_no_leftovers(&ctx);
    }
}

/// With chroot instead of pivot_root the container still sees only its rootfs.
#[test]
fn no_pivot_sees_rootfs_as_root() {
    let Some(mut ctx) = Ctx::new("no-pivot") else {
        return;
    };
    let marker = format!("rootfs of {}", ctx.id);
    fs::write(ctx.rootfs().join("marker"), &marker).expect("write marker");
    ctx.checker_script(&[&["ls", "/"], &["read", "/marker"], &["facts"]]);
    let out = ctx.run_with(&["--no-pivot"]);
    out.assert_ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 3, "{out}");
    let entries = &lines[0]["entries"];
    for name in ["bin", "checker", "marker", "proc", "dev"] {
        assert!(
            entries.as_array().is_some_and(|a| a.contains(&json!(name))),
            "/ lacks {name}: {entries}"
        );
    }
    assert_eq!(lines[1]["content"], json!(marker));
    assert_eq!(lines[2]["cwd"], "/");
}

/// Namespaced sysctls are written even though /proc/sys is in readonlyPaths.
#[test]
fn sysctls_are_applied() {
    let Some(mut ctx) = Ctx::new("sysctl") else {
        return;
    };
    ctx.config["linux"]["sysctl"] =
        json!({ "net.ipv4.ip_forward": "1", "kernel.shmmax": "123456" });
    let lines = ctx.probe(&[
        &["read", "/proc/sys/net/ipv4/ip_forward"],
        &["read", "/proc/sys/kernel/shmmax"],
    ]);
    assert_eq!(lines[0]["content"], "1\n", "{}", lines[0]);
    assert_eq!(lines[1]["content"], "123456\n", "{}", lines[1]);
}

/// runc: `sysctl "vm.swappiness" is not in a separate kernel namespace`.
#[test]
fn non_namespaced_sysctl_is_refused() {
    let Some(mut ctx) = ctx_with_cgroup("sysctl-vm") else {
        return;
    };
    ctx.config["linux"]["sysctl"] = json!({ "vm.swappiness": "10" });
    create_refused(&ctx, "vm.swappiness", "linux.sysctl.vm.swappiness");
}

// ---------------------------------------------------------------------------
// /dev
// ---------------------------------------------------------------------------

/// Parses `stat -c '%n|%F|%t|%T|%a|%u|%g'` lines into name → fields.
fn stat_lines(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.contains('|'))
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

#[test]
fn devices_and_dev_symlinks() {
    let Some(mut ctx) = Ctx::new("devices") else {
        return;
    };
    ctx.config["linux"]["devices"] = json!([{
        "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
        "fileMode": 0o666, "uid": 1234, "gid": 5678
    }]);
    let links = ["fd", "stdin", "stdout", "stderr", "ptmx"].map(|l| format!("/dev/{l}"));
    let script = format!(
        "stat -c '%n|%F|%t|%T|%a|%u|%g' /dev/fuse /dev/null /dev/zero /dev/full \
         /dev/random /dev/urandom /dev/tty; for l in {}; do echo \"$l -> $(readlink $l)\"; done",
        links.join(" ")
    );
    ctx.set_args(&["/bin/sh", "-c", &script]);
    let out = ctx.run();
    out.assert_ok();

    // Major and minor are printed in hex by stat.
    let want = [
        "/dev/fuse|character special file|a|e5|666|1234|5678",
        "/dev/null|character special file|1|3|666|0|0",
        "/dev/zero|character special file|1|5|666|0|0",
        "/dev/full|character special file|1|7|666|0|0",
        "/dev/random|character special file|1|8|666|0|0",
        "/dev/urandom|character special file|1|9|666|0|0",
        "/dev/tty|character special file|5|0|666|0|0",
    ];
    let got: Vec<String> = stat_lines(&out.stdout)
        .into_iter()
        .map(|f| f.join("|"))
        .collect();
    assert_eq!(got, want, "{out}");
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        let line = format!("{link} -> {target}");
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line:?}:\n{out}"
        );
    }
}

// ---------------------------------------------------------------------------
// Root filesystem
// ---------------------------------------------------------------------------

/// The optional fields (`shared:N`, `master:N`, ...) of the mount at `/`.
fn root_mount_tags(mountinfo: &str) -> Vec<String> {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in mountinfo:\n{mountinfo}"));
    line.split(' ')
        .skip(6)
        .take_while(|f| *f != "-")
        .map(str::to_string)
        .collect()
}

/// Both propagations are accepted, a writable root can be written, and no
/// container mount shows up on the host.
#[test]
fn rootfs_propagation_and_writable_root() {
    for propagation in ["shared", "private"] {
        let Some(mut ctx) = Ctx::new(&format!("propagation-{propagation}")) else {
            return;
        };
        ctx.config["linux"]["rootfsPropagation"] = json!(propagation);
        ctx.config["root"]["readonly"] = json!(false);
        ctx.set_args(&[
            "/bin/sh",
            "-c",
            "/checker write /written-by-container; cat /proc/self/mountinfo",
        ]);
        let out = ctx.run();
        out.assert_ok();
        assert_eq!(out.json_lines()[0]["ok"], true, "write to /:\n{out}");
        assert!(ctx.rootfs().join("written-by-container").is_file());
        let mounts = host_mountinfo_mentioning(&ctx.tmp_tag());
        assert!(mounts.is_empty(), "host mounts left: {mounts:?}");

        // runc 1.1.5 accepts "shared" but leaves the root mount private (it
        // makes the rootfs's parent private for pivot_root), so the mount's
        // propagation is only checked for hull.
        if runtime().is_hull {
            let tags = root_mount_tags(&out.stdout);
            let shared = tags.iter().any(|t| t.starts_with("shared:"));
            assert_eq!(shared, propagation == "shared", "{propagation}: {tags:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Lifecycle edge
// ---------------------------------------------------------------------------

/// A container that was created but never started is deleted without --force.
#[test]
fn delete_created_container() {
    let Some(ctx) = ctx_with_cgroup("delete-created") else {
        return;
    };
    ctx.create().assert_ok();
    let pid = ctx.wait_status("created")["pid"].as_u64().expect("pid");
    assert!(
        !cgroup_dirs(&ctx.cgroup_path()).is_empty(),
        "no cgroup made"
    );
    ctx.rt(&["delete", &ctx.id]).assert_ok();
    assert!(common::wait_pid_gone(pid), "init {pid} survived delete");
    assert!(ctx.state_of(&ctx.id).is_none(), "state still answers");
    assert_no_leftovers(&ctx);
}

// ---------------------------------------------------------------------------
// hull-only behaviour
// ---------------------------------------------------------------------------

/// runc 1.1.5 predates `domainname` (runtime-spec 1.1) and ignores it.
#[test]
fn domainname_from_config() {
    let Some(mut ctx) = Ctx::new("domainname") else {
        return;
    };
    if !runtime().is_hull {
        eprintln!("SKIPPED domainname_from_config: runc 1.1.5 ignores domainname");
        return;
    }
    ctx.config["domainname"] = json!("feat.example");
    let lines = ctx.probe(&[&["facts"], &["read", "/proc/sys/kernel/domainname"]]);
    assert_eq!(lines[0]["domainname"], "feat.example");
    assert_eq!(lines[1]["content"], "feat.example\n");
}

/// Fields hull does not implement are refused by name rather than ignored.
/// runc implements or ignores these, so only hull is tested.
#[test]
fn unsupported_fields_are_refused() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 3] = [
        ("linux.intelRdt", |c| {
            c["linux"]["intelRdt"] = json!({ "closID": "x" });
        }),
        ("linux.netDevices", |c| {
            c["linux"]["netDevices"] = json!({ "eth9": {} });
        }),
        ("linux.personality", |c| {
            c["linux"]["personality"] = json!({ "domain": "LINUX" });
        }),
    ];
    for (field, edit) in cases {
        let Some(mut ctx) = ctx_with_cgroup(&format!("unsupported-{field}")) else {
            return;
        };
        if !runtime().is_hull {
            eprintln!("SKIPPED unsupported_fields_are_refused: runc supports these");
            return;
        }
        edit(&mut ctx.config);
        create_refused(&ctx, field, field);
    }
}

/// Without systemd (no /run/systemd/system) the systemd driver cannot work.
/// runc 1.1.5 fails the same way: "systemd not running on this host, cannot
/// use systemd cgroups manager".
#[test]
fn systemd_cgroup_without_systemd_fails_cleanly() {
    let Some(mut ctx) = Ctx::new("systemd-cgroup") else {
        return;
    };
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("SKIPPED systemd_cgroup_without_systemd_fails_cleanly: systemd runs here");
        return;
    }
    let unit = format!("hulltest-{}", ctx.id);
    ctx.config["linux"]["cgroupsPath"] = json!(format!("system.slice:hulltest:{}", ctx.id));
    ctx.checker(&["sleep", "600"]);
    ctx.write_config();
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let out = ctx.rt_global(
        &["--systemd-cgroup"],
        &["create", "--bundle", &bundle, &ctx.id],
    );
    out.assert_fail();
    assert!(
        out.stderr.to_lowercase().contains("systemd"),
        "stderr should mention systemd:\n{out}"
    );
    assert_no_leftovers(&ctx);
    let scope = cgroup_dirs(&format!("system.slice/{unit}.scope"));
    assert!(scope.is_empty(), "scope cgroups left: {scope:?}");
}
