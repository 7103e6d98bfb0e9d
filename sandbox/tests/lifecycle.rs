//! The OCI lifecycle of hull-sandbox as runc users drive it, checked from outside and from
//! the workload: create/start/state/exec/kill/delete, the Sentry's confinement, and that bad
//! input fails with a clear error and leaves nothing behind. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hull-sandbox");

struct Env {
    dir: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
}

impl Env {
    fn new(name: &str, args: &[&str]) -> Env {
        let dir = std::env::temp_dir().join(format!("hull-sandbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("bundle");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/busybox/build.sh");
        let st = Command::new(script)
            .arg(&bundle)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "building the bundle");
        Env {
            root: dir.join("state"),
            dir,
            bundle,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs an operation that leaves the Sentry running (create, run --detach): the Sentry
    /// inherits stdio, as with runc, so it gets files rather than the test's pipes.
    fn detached(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let err = self.dir.join("detached.err");
        let st = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(self.dir.join("detached.out")).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (st, std::fs::read_to_string(err).unwrap_or_default())
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn status(&self, id: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["state", id])).unwrap();
        v["status"].as_str().unwrap().to_string()
    }

    fn edit(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let p = self.bundle.join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    }

    /// Nothing of sandbox `id` is left: no state, no cgroup, no process.
    fn assert_clean(&self, id: &str) {
        assert!(!self.root.join(id).exists(), "state of {id} left behind");
        for c in ["memory", "pids", "cpu"] {
            let p = Path::new("/sys/fs/cgroup").join(c).join(id);
            assert!(!p.exists(), "cgroup {} left behind", p.display());
        }
        let v2 = Path::new("/sys/fs/cgroup").join(id);
        assert!(
            !v2.join("cgroup.procs").exists(),
            "cgroup {} left behind",
            v2.display()
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = self.run(&["delete", "--force", &id.file_name().to_string_lossy()]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `pid` has exited (it may stay a zombie: this host's pid 1 does not reap orphans).
fn gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lifecycle_create_start_exec_kill_delete() {
    let script = "trap 'echo got TERM >> /tmp/log; exit 9' TERM; echo up > /tmp/log; \
                  while true; do sleep 0.05; done";
    let e = Env::new("life", &["/bin/sh", "-c", script]);
    let bundle = e.bundle.to_str().unwrap();
    let pid_file = e.dir.join("pid");
    let (st, err) = e.detached(&[
        "create",
        "--bundle",
        bundle,
        "--pid-file",
        pid_file.to_str().unwrap(),
        "life",
    ]);
    assert!(st.success(), "create: {err}");
    assert_eq!(e.status("life"), "created");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The Sentry is confined before it runs anything: an empty root and a seccomp filter.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .collect();
    assert!(root.is_empty(), "the sentry sees host files: {root:?}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("Seccomp:\t2"),
        "no seccomp filter on the sentry"
    );

    e.ok(&["start", "life"]);
    assert_eq!(e.status("life"), "running");
    let out = e.ok(&[
        "exec",
        "life",
        "sh",
        "-c",
        "cat /tmp/log; uname -r; echo pid $$",
    ]);
    assert!(out.contains("up"), "exec does not see init's files: {out}");
    assert!(
        out.contains("hull-sandbox"),
        "exec is not on the sentry: {out}"
    );
    let o = e.run(&["exec", "life", "sh", "-c", "exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    let o = e.run(&["exec", "life", "/no/such/program"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/program"));

    e.ok(&["kill", "life", "TERM"]);
    wait_for("the sandbox to stop", || e.status("life") == "stopped");
    let o = e.run(&["delete", "life"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    e.assert_clean("life");
    assert!(gone(pid as i64), "sentry {pid} still exists");
}

#[test]
fn run_returns_the_exit_code_and_deletes() {
    let e = Env::new("run", &["/bin/sh", "-c", "echo out; exit 4"]);
    let o = e.run(&["run", "--bundle", e.bundle.to_str().unwrap(), "r1"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    e.assert_clean("r1");
}

#[test]
fn delete_force_kills_the_sentry_and_its_tasks() {
    let e = Env::new("force", &["/bin/sh", "-c", "sleep 1000 & sleep 1000"]);
    let bundle = e.bundle.to_str().unwrap();
    let (st, err) = e.detached(&["run", "--detach", "--bundle", bundle, "f1"]);
    assert!(st.success(), "run --detach: {err}");
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["state", "f1"])).unwrap();
    let pid = v["pid"].as_i64().unwrap();
    let o = e.run(&["delete", "f1"]);
    assert!(
        !o.status.success(),
        "deleting a running sandbox without --force"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("running"));
    e.ok(&["delete", "--force", "f1"]);
    e.assert_clean("f1");
    assert!(gone(pid), "sentry {pid} still exists");
    // No task of the sandbox survives its Sentry (they are its children, traced).
    let orphans = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    assert!(orphans.stdout.is_empty());
}

/// A change to config.json.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn bad_configs_fail_clearly_and_leave_nothing() {
    let e = Env::new("bad", &["/bin/true"]);
    let bundle = e.bundle.to_str().unwrap();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "process.args",
            Box::new(|v| v["process"]["args"] = serde_json::json!([])),
        ),
        (
            "process.terminal",
            Box::new(|v| v["process"]["terminal"] = true.into()),
        ),
        (
            "root.path",
            Box::new(|v| v["root"]["path"] = "nowhere".into()),
        ),
        (
            "of type \"nfs\"",
            Box::new(|v| {
                let m = serde_json::json!({"destination": "/x", "type": "nfs", "source": "h:/e"});
                v["mounts"].as_array_mut().unwrap().push(m);
            }),
        ),
        (
            "source /no/such/dir does not exist",
            Box::new(|v| {
                let m = serde_json::json!({"destination": "/d", "type": "bind",
                                           "source": "/no/such/dir", "options": ["rbind"]});
                v["mounts"].as_array_mut().unwrap().push(m);
            }),
        ),
        (
            "namespaces: user",
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}));
            }),
        ),
    ];
    let pristine = std::fs::read(e.bundle.join("config.json")).unwrap();
    for (want, edit) in cases {
        std::fs::write(e.bundle.join("config.json"), &pristine).unwrap();
        e.edit(|v| edit(v));
        let (st, err) = e.detached(&["create", "--bundle", bundle, "bad"]);
        assert!(!st.success(), "{want}: create succeeded");
        assert!(err.contains(want), "{want}: error does not name it: {err}");
        e.assert_clean("bad");
    }
    std::fs::write(e.bundle.join("config.json"), &pristine).unwrap();
    // A program that does not exist is reported by create, from the Sentry's loader.
    e.edit(|v| v["process"]["args"] = serde_json::json!(["/bin/absent"]));
    let (_, err) = e.detached(&["create", "--bundle", bundle, "bad"]);
    assert!(err.contains("/bin/absent"), "{err}");
    e.assert_clean("bad");
    // A taken id and a bad id.
    std::fs::write(e.bundle.join("config.json"), &pristine).unwrap();
    let (_, err) = e.detached(&["create", "--bundle", bundle, "../escape"]);
    assert!(err.contains("invalid container id"), "{err}");
    let o = e.run(&["start", "missing"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("container missing does not exist"));
}

#[test]
fn the_allowlist_is_printed_and_small() {
    let o = Command::new(BIN).arg("allowlist").output().unwrap();
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{lines} host syscalls")), "{err}");
    assert!(lines < 75, "{lines} is not below gVisor's 75");
}
