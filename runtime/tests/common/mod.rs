//! Shared harness for hull's root integration tests.
//!
//! The tests speak the runc command-line contract only, so they can be pointed
//! at any runc-compatible binary: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test
//! -p hull --test lifecycle` validates the tests themselves against runc.
//!
//! Each test gets a [`Ctx`]: a unique container id, its own `--root` state
//! directory and its own bundle (a copy of a busybox rootfs with the static
//! `hull-checker` at `/checker`). Dropping the context force-deletes every
//! container it created, so cleanup happens even when an assertion fails.
//!
//! Environment:
//! - `HULL_TEST_RUNTIME`: runtime binary (default: the `hull` binary under test).
//! - `HULL_TEST_CHECKER`: a prebuilt static `hull-checker` (default: built here).
//! - `HULL_TEST_TEMPLATE`: a prebuilt bundle template, the output of
//!   `bundles/busybox/build.sh --checker <checker> <dir>`, only read (default: built
//!   here once per test binary, under `CARGO_TARGET_TMPDIR`). The VM lane uses it: the
//!   build's ~400 `ln` processes take over a minute under software emulation.
#![allow(dead_code)]

pub mod console;
pub mod fds;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Longest any single runtime command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Path of the checker inside every test rootfs.
pub const CHECKER: &str = "/checker";

// ---------------------------------------------------------------------------
// The runtime under test
// ---------------------------------------------------------------------------

/// The runtime binary the tests drive.
pub struct Runtime {
    pub path: PathBuf,
    /// True when the binary is hull: hull-specific wording is only asserted then.
    pub is_hull: bool,
}

/// Returns the runtime selected by `HULL_TEST_RUNTIME`.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let path = std::env::var_os("HULL_TEST_RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hull")));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let is_hull = name.is_some_and(|n| n.starts_with("hull"));
        Runtime { path, is_hull }
    })
}

/// True when the effective uid is 0 (read from /proc to avoid unsafe code).
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        == Some("0")
}

/// Prints why a test is skipped. Returns true when it must be skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED {test}: needs root (containers need namespaces, mounts and cgroups)");
    true
}

// ---------------------------------------------------------------------------
// Command execution
// ---------------------------------------------------------------------------

/// The outcome of one command.
pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or None when the command itself died from a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with full diagnostics unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed:\n{self}");
        self
    }

    /// Panics with full diagnostics unless the command failed.
    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(!self.ok(), "command unexpectedly succeeded:\n{self}");
        self
    }

    /// Parses every stdout line that looks like a JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
            .collect()
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\nstatus: {}", self.what, self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs `cmd` with stdin from /dev/null and stdout/stderr in files under `dir`.
///
/// Files, not pipes: a detached container inherits the runtime's stdio, and a
/// pipe would then stay open until the container exits.
pub fn run_cmd(mut cmd: Command, dir: &Path) -> Out {
    let (child, out_path, err_path, what) = spawn_cmd(&mut cmd, dir);
    let status = wait_timeout(child, COMMAND_TIMEOUT, &what);
    collect(what, status, &out_path, &err_path)
}

/// Spawns `cmd` like [`run_cmd`] but returns at once; finish with [`Pending::wait`].
pub fn spawn_bg(mut cmd: Command, dir: &Path) -> Pending {
    let (child, out, err, what) = spawn_cmd(&mut cmd, dir);
    Pending {
        child,
        out,
        err,
        what,
    }
}

/// A command running in the background.
pub struct Pending {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    what: String,
}

impl Pending {
    pub fn wait(self) -> Out {
        let status = wait_timeout(self.child, COMMAND_TIMEOUT, &self.what);
        collect(self.what, status, &self.out, &self.err)
    }
}

fn spawn_cmd(cmd: &mut Command, dir: &Path) -> (Child, PathBuf, PathBuf, String) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("cmd-{n}.out"));
    let err_path = dir.join(format!("cmd-{n}.err"));
    let what = format!("{cmd:?}");
    let out = fs::File::create(&out_path).expect("create stdout file");
    let err = fs::File::create(&err_path).expect("create stderr file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    (child, out_path, err_path, what)
}

fn wait_timeout(mut child: Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for command") {
            return status;
        }
        if Instant::now() > deadline {
            // Only the child this harness spawned is killed, by its own handle.
            let _ = child.kill();
            let _ = child.wait();
            panic!("command timed out after {limit:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn collect(what: String, status: ExitStatus, out: &Path, err: &Path) -> Out {
    Out {
        what,
        status,
        stdout: fs::read_to_string(out).unwrap_or_default(),
        stderr: fs::read_to_string(err).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// The bundle template
// ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

/// Returns a static hull-checker, building it on first use.
///
/// It is built into its own target directory: the outer `cargo test` holds the
/// lock on the workspace target directory while tests run.
fn checker_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_TEST_CHECKER") {
        return PathBuf::from(p);
    }
    let ws = workspace_root();
    let target_dir = ws.join("target").join("hull-checker-static");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&ws)
        .args([
            "build",
            "-p",
            "hull-checker",
            "--release",
            "--target",
            triple,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .expect("run cargo to build hull-checker");
    assert!(status.success(), "building the static hull-checker failed");
    target_dir.join(triple).join("release").join("hull-checker")
}

/// Builds the busybox bundle (with /checker) once per test binary.
pub fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HULL_TEST_TEMPLATE") {
            return PathBuf::from(dir);
        }
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_templates(&base);
        let dir = base.join(format!("hull-template-{}", std::process::id()));
        let script = workspace_root().join("bundles/busybox/build.sh");
        let mut cmd = Command::new(&script);
        cmd.arg("--checker").arg(checker_binary()).arg(&dir);
        let logs = tempfile::tempdir().expect("tempdir for build logs");
        let out = run_cmd(cmd, logs.path());
        assert!(out.ok(), "bundle build failed:\n{out}");
        dir
    })
}

/// Templates of test binaries that have exited are removed here, since a
/// static is never dropped.
fn remove_stale_templates(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("hull-template-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

// ---------------------------------------------------------------------------
// Per-test context
// ---------------------------------------------------------------------------

/// One test's containers, state root and bundle; cleans up on drop.
pub struct Ctx {
    /// The primary container id.
    pub id: String,
    /// Scratch space (0755, so a user-namespaced container can traverse it).
    pub tmp: PathBuf,
    /// The `--root` state directory.
    pub root: PathBuf,
    pub bundle: PathBuf,
    /// The config written to `bundle/config.json` by [`Ctx::write_config`].
    pub config: Value,
    ids: Vec<String>,
    _dir: TempDir,
}

impl Ctx {
    /// Sets up a context, or returns None (after saying why) when not root.
    pub fn new(test: &str) -> Option<Ctx> {
        if skip_unless_root(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("hull-it-")
            .tempdir()
            .expect("create temp dir");
        let tmp = dir.path().to_path_buf();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let root = tmp.join("state");
        let bundle = tmp.join("bundle");
        fs::create_dir(&root).expect("create state root");
        fs::create_dir(&bundle).expect("create bundle dir");
        copy_tree(&template().join("rootfs"), &bundle.join("rootfs"));
        let text = fs::read_to_string(template().join("config.json")).expect("read config");
        let config = serde_json::from_str(&text).expect("template config is JSON");
        let id = unique_id(test);
        Some(Ctx {
            ids: vec![id.clone()],
            id,
            tmp,
            root,
            bundle,
            config,
            _dir: dir,
        })
    }

    /// Returns another unique id that is cleaned up with this context.
    pub fn extra_id(&mut self, tag: &str) -> String {
        let id = unique_id(tag);
        self.ids.push(id.clone());
        id
    }

    /// The unique final component of the scratch dir (`hull-it-XXXXXX`); it
    /// shows up in any mount or process derived from this test's bundle.
    pub fn tmp_tag(&self) -> String {
        let name = self.tmp.file_name().expect("temp dir has a name");
        name.to_string_lossy().into_owned()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// `linux.cgroupsPath` for this test: `/hulltest-<id>`.
    pub fn cgroup_path(&self) -> String {
        format!("/hulltest-{}", self.id)
    }

    /// Adds capability `cap` to the bounding, effective and permitted sets.
    pub fn grant_cap(&mut self, cap: &str) {
        for set in ["bounding", "effective", "permitted"] {
            self.config["process"]["capabilities"][set]
                .as_array_mut()
                .expect("capability set")
                .push(json!(cap));
        }
    }

    /// Sets `process.args`.
    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    /// Sets `process.args` to run `/checker` with `args`.
    pub fn checker(&mut self, args: &[&str]) {
        let mut all = vec![CHECKER];
        all.extend_from_slice(args);
        self.set_args(&all);
    }

    /// Sets `process.args` to a shell running several checker commands, one
    /// JSON line each, in order.
    pub fn checker_script(&mut self, cmds: &[&[&str]]) {
        let lines: Vec<String> = cmds
            .iter()
            .map(|c| {
                let words: Vec<String> = c.iter().map(|w| shell_quote(w)).collect();
                format!("{CHECKER} {}", words.join(" "))
            })
            .collect();
        let script = lines.join("; ");
        self.set_args(&["/bin/sh", "-c", &script]);
    }

    /// Writes `self.config` to `bundle/config.json`.
    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialise config");
        fs::write(self.bundle.join("config.json"), text).expect("write config.json");
    }

    /// Runs `<runtime> --root <root> <args>`.
    pub fn rt(&self, args: &[&str]) -> Out {
        self.rt_global(&[], args)
    }

    /// Runs `<runtime> --root <root> <global...> <args>`.
    pub fn rt_global(&self, global: &[&str], args: &[&str]) -> Out {
        run_cmd(self.rt_command(global, args), &self.tmp)
    }

    /// Like [`Ctx::rt`], but in the background.
    pub fn rt_bg(&self, args: &[&str]) -> Pending {
        spawn_bg(self.rt_command(&[], args), &self.tmp)
    }

    fn rt_command(&self, global: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(&runtime().path);
        cmd.arg("--root").arg(&self.root).args(global).args(args);
        cmd
    }

    fn bundle_str(&self) -> String {
        self.bundle.to_string_lossy().into_owned()
    }

    /// Writes the config and runs `create --bundle <bundle> <id>`.
    pub fn create_id(&self, id: &str) -> Out {
        self.write_config();
        self.rt(&["create", "--bundle", &self.bundle_str(), id])
    }

    pub fn create(&self) -> Out {
        self.create_id(&self.id)
    }

    /// Writes the config and runs `run [extra...] --bundle <bundle> <id>`.
    pub fn run_with(&self, extra: &[&str]) -> Out {
        self.write_config();
        let bundle = self.bundle_str();
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &bundle, &self.id]);
        self.rt(&args)
    }

    pub fn run(&self) -> Out {
        self.run_with(&[])
    }

    /// Runs the container with `process.args` = checker `args`; returns its
    /// only JSON line.
    pub fn run_checker(&mut self, args: &[&str]) -> Value {
        self.checker(args);
        let out = self.run();
        out.assert_ok();
        let mut lines = out.json_lines();
        assert_eq!(lines.len(), 1, "expected one JSON line:\n{out}");
        lines.remove(0)
    }

    /// Runs `hull-checker facts` in the container.
    pub fn facts(&mut self) -> Value {
        self.run_checker(&["facts"])
    }

    /// Runs the checker commands of [`Ctx::checker_script`]; one JSON per command.
    pub fn probe(&mut self, cmds: &[&[&str]]) -> Vec<Value> {
        self.checker_script(cmds);
        let out = self.run();
        out.assert_ok();
        let lines = out.json_lines();
        assert_eq!(lines.len(), cmds.len(), "one JSON line per probe:\n{out}");
        lines
    }

    /// `state <id>` parsed, or None when the runtime reports an error.
    pub fn state_of(&self, id: &str) -> Option<Value> {
        let out = self.rt(&["state", id]);
        out.ok().then(|| {
            serde_json::from_str(&out.stdout)
                .unwrap_or_else(|e| panic!("state is not JSON ({e}):\n{out}"))
        })
    }

    pub fn state(&self) -> Value {
        self.state_of(&self.id)
            .unwrap_or_else(|| panic!("state {} failed", self.id))
    }

    /// Polls `state` until `status` matches, or panics after 10 s.
    pub fn wait_status_of(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.state_of(id);
            if let Some(s) = st.as_ref().filter(|s| s["status"] == status) {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {status}: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_status(&self, status: &str) -> Value {
        self.wait_status_of(&self.id, status)
    }

    /// Creates and starts a long sleeper with this config; returns its state.
    pub fn start_sleeper(&mut self, id: &str) -> Value {
        self.checker(&["sleep", "600"]);
        self.create_id(id).assert_ok();
        self.rt(&["start", id]).assert_ok();
        self.wait_status_of(id, "running")
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt(&["delete", "--force", id]);
        }
        for dir in cgroup_dirs(&self.cgroup_path()) {
            let _ = fs::remove_dir(dir);
        }
        unmount_leaks(&self.tmp);
    }
}

/// Container ids are unique across parallel tests and concurrent test binaries.
fn unique_id(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let tag: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("ht-{tag}-{}-{n}", std::process::id())
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp -a");
    assert!(
        status.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
}

/// Quotes `s` for /bin/sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A leaked host mount under the scratch dir would make the recursive removal
/// descend into whatever is mounted there, so detach such mounts first.
fn unmount_leaks(tmp: &Path) {
    let mut leaked = mounts_under(tmp);
    leaked.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in leaked {
        eprintln!("cleanup: detaching leaked host mount {target}");
        let _ = Command::new("umount").arg("-l").arg(&target).status();
    }
}

// ---------------------------------------------------------------------------
// Host-side observations
// ---------------------------------------------------------------------------

/// Mount targets in this (host) mount namespace at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    host_mounts()
        .into_iter()
        .filter(|t| t == &prefix || t.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Mount targets of the host mount namespace (octal escapes left as is).
pub fn host_mounts() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Host mountinfo lines mentioning `needle` anywhere (source, target, root).
pub fn host_mountinfo_mentioning(needle: &str) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// True on a pure cgroup v2 host, where /sys/fs/cgroup is the unified hierarchy itself.
pub fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
}

/// The hierarchy mount points: /sys/fs/cgroup itself on a cgroup v2 host, else the v1
/// controller (and hybrid unified) mount points under it.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    if is_cgroup_v2() {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Every directory that exists for cgroup `path` in any hierarchy, whether
/// placed at the hierarchy root or below this process's own cgroup.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let own = own_cgroups();
    let mut found = Vec::new();
    for h in cgroup_hierarchies() {
        let mut candidates = vec![h.join(rel)];
        let ctrl = if is_cgroup_v2() {
            Some("unified".to_string())
        } else {
            h.file_name().map(|n| n.to_string_lossy().into_owned())
        };
        if let Some(mine) = ctrl.and_then(|c| own.get(&c).cloned()) {
            candidates.push(h.join(mine.trim_start_matches('/')).join(rel));
        }
        found.extend(candidates.into_iter().filter(|c| c.is_dir()));
    }
    found.sort();
    found.dedup();
    found
}

/// This process's cgroup per hierarchy directory name (e.g. "memory").
fn own_cgroups() -> BTreeMap<String, String> {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctrls), Some(path)) = (ctrls, path) else {
            continue;
        };
        for c in ctrls.split(',') {
            let name = match c {
                "" => "unified".to_string(),
                c => c.trim_start_matches("name=").to_string(),
            };
            map.insert(name, path.to_string());
        }
    }
    map
}

/// Pids (other than ours) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    processes_matching(|_, cmdline| cmdline.contains(needle))
}

/// Processes that look like leftovers of `ctx`: the command line mentions the
/// container id or the scratch dir, or the process's mount table mentions the
/// scratch dir (a container's root mount shows the bundle's rootfs as its
/// root, even after pivot_root).
pub fn leaked_processes(ctx: &Ctx) -> Vec<(u32, String)> {
    let tag = ctx.tmp_tag();
    processes_matching(|pid, cmdline| {
        cmdline.contains(&ctx.id)
            || cmdline.contains(&tag)
            || fs::read_to_string(format!("/proc/{pid}/mountinfo")).is_ok_and(|m| m.contains(&tag))
    })
}

fn processes_matching(pred: impl Fn(u32, &str) -> bool) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            pred(pid, &cmdline).then_some((pid, cmdline))
        })
        .collect()
}

/// Waits (up to 10 s) for pid to go away; true if it did.
pub fn wait_pid_gone(pid: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = fs::read_to_string(format!("/proc/{pid}/status"));
        // A zombie has no cmdline and state Z; treat it as gone.
        match status {
            Err(_) => return true,
            Ok(s)
                if s.lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

/// Inode of `/proc/self/ns/<ns>` for the test process itself.
pub fn host_ns_inode(ns: &str) -> u64 {
    fs::metadata(format!("/proc/self/ns/{ns}"))
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("stat /proc/self/ns/{ns}: {e}"))
}

/// Asserts that a failed create left nothing behind: no state directory, no
/// cgroup directory, no host mount mentioning the bundle, no process.
#[track_caller]
pub fn assert_no_leftovers(ctx: &Ctx) {
    let state: Vec<String> = fs::read_dir(&ctx.root)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !state.iter().any(|n| n.contains(&ctx.id)),
        "state left under --root: {state:?}"
    );
    let cgroups = cgroup_dirs(&ctx.cgroup_path());
    assert!(cgroups.is_empty(), "cgroup directories left: {cgroups:?}");
    let mounts = host_mountinfo_mentioning(&ctx.tmp_tag());
    assert!(mounts.is_empty(), "host mounts left: {mounts:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = leaked_processes(ctx);
        if procs.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {procs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

/// Capability names in bit order (linux/capability.h), CAP_CHOWN = bit 0.
pub const CAP_NAMES: &str = "\
    CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL \
    CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE \
    CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER \
    CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT \
    CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME \
    CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL \
    CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM \
    CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE";

/// The bitmask /proc/<pid>/status shows for a set of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |mask, name| {
        let bit = CAP_NAMES
            .split_whitespace()
            .position(|n| n == *name)
            .unwrap_or_else(|| panic!("unknown capability {name}"));
        mask | (1u64 << bit)
    })
}

/// Parses a hex capability field from the checker's facts.
pub fn cap_field(facts: &Value, field: &str) -> u64 {
    let hex = facts[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{field}={hex}: {e}"))
}

/// Finds the mount with `target` in the checker's facts (the last one wins,
/// as it is the one on top).
pub fn find_mount<'a>(facts: &'a Value, target: &str) -> Option<&'a Value> {
    facts["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["target"] == target)
}

/// The comma-separated options of a mount, as a list.
pub fn mount_options(mount: &Value) -> Vec<String> {
    mount["options"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect()
}
