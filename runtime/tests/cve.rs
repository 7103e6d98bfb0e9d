//! Regression tests that attempt the runtime-binary and leaked-fd breakouts:
//!
//! - CVE-2019-5736: a container overwrites the runtime binary through
//!   `/proc/<pid>/exe` of a runtime process that is (or was) inside it: the
//!   init while `created`, an `exec` held before its execve, and the runtime's
//!   own CLI run inside the container through `/proc/self/exe`.
//! - CVE-2024-21626: `process.cwd` (or `exec --cwd`) `/proc/self/fd/N` names
//!   a directory descriptor leaked from the host.
//!
//! The mount and procfs CVEs are in `cve_paths.rs`.
//!
//! The 5736 tests drive a private copy of the runtime binary, so a runtime
//! that is vulnerable damages only the copy; the copy's sha256 must not change.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p
//! hull --test cve`. Debian's runc 1.1.5+ds1-1+deb12u1 carries the fixes for
//! both CVEs (5736 since 1.0-rc6, 21626 backported), so every test runs on it.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::fds::rt_with_fd;
use common::{assert_no_leftovers, run_cmd, runtime, shell_quote, Ctx, Out};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// CVE-2019-5736 helpers
// ---------------------------------------------------------------------------

/// A private copy of the runtime binary under test, at `<scratch>/rt/<name>`.
struct RtCopy {
    path: PathBuf,
}

impl RtCopy {
    fn new(ctx: &Ctx) -> RtCopy {
        let dir = ctx.tmp.join("rt");
        fs::create_dir(&dir).expect("mkdir rt");
        let name = runtime().path.file_name().expect("runtime has a file name");
        let path = dir.join(name);
        fs::copy(&runtime().path, &path).expect("copy the runtime binary");
        RtCopy { path }
    }

    fn sha256(&self) -> String {
        let out = Command::new("sha256sum")
            .arg(&self.path)
            .output()
            .expect("run sha256sum");
        assert!(out.status.success(), "sha256sum failed");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_string()
    }

    /// (st_dev, st_ino) of the copy.
    fn identity(&self) -> (u64, u64) {
        let md = fs::metadata(&self.path).expect("stat runtime copy");
        (md.dev(), md.ino())
    }

    fn command(&self, ctx: &Ctx, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&ctx.root).args(args);
        cmd
    }

    fn rt(&self, ctx: &Ctx, args: &[&str]) -> Out {
        run_cmd(self.command(ctx, args), &ctx.tmp)
    }

    /// Writes the config and runs `create`, with stdout going to `stdout`.
    fn create(&self, ctx: &Ctx, stdout: Stdio) -> Child {
        ctx.write_config();
        let bundle = ctx.bundle.to_string_lossy().into_owned();
        self.command(ctx, &["create", "--bundle", &bundle, &ctx.id])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(ctx.tmp.join("create.err")).expect("stderr file"))
            .spawn()
            .expect("spawn create")
    }
}

/// Copies the ELF interpreter and shared libraries of `bin` into the rootfs
/// at their host paths: the busybox rootfs has none, and the kernel resolves a
/// dynamic binary's interpreter in the caller's root, so without them an
/// execve of `/proc/self/exe` fails with ENOENT before any runtime code runs.
fn install_libs(ctx: &Ctx, bin: &Path) {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = ctx.rootfs().join(word.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir lib dir");
        // fs::copy follows the host's symlinks, so the rootfs gets real files.
        fs::copy(word, &dest).unwrap_or_else(|e| panic!("copy {word}: {e}"));
    }
}

/// (st_dev, st_ino) of what `/proc/<pid>/exe` points at.
fn exe_identity(pid: u64) -> (u64, u64) {
    let md = fs::metadata(format!("/proc/{pid}/exe")).expect("stat /proc/<pid>/exe");
    (md.dev(), md.ino())
}

/// Opens `path` for appending and writes a marker. Ok means the attack worked.
fn try_write(path: &str) -> io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(b"PWNED by hull cve test\n")
}

/// An O_PATH descriptor of `/proc/<pid>/exe`, as an attacker would keep.
fn hold_exe(pid: u64) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .expect("open /proc/<pid>/exe O_PATH")
}

/// Everything a runtime process inside the container must withstand while it
/// runs: it is not the binary, and its exe cannot be written.
#[track_caller]
fn assert_exe_unwritable(pid: u64, bin: &RtCopy) {
    let link = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    // The binary's own inode is acceptable only through a read-only mount
    // (runc 1.1.5 execs a read-only bind mount of it; hull an overlayfs copy
    // or a sealed memfd, which are other inodes).
    if exe_identity(pid) == bin.identity() {
        let st = statvfs(format!("/proc/{pid}/exe").as_str()).expect("statvfs exe");
        assert!(
            st.flags().contains(FsFlags::ST_RDONLY),
            "/proc/{pid}/exe ({}) is the runtime binary on a writable mount",
            link.display()
        );
    }
    if runtime().is_hull {
        // hull re-executes itself from a read-only overlayfs or a sealed memfd.
        let st = statvfs(format!("/proc/{pid}/exe").as_str()).expect("statvfs exe");
        let memfd = link.to_string_lossy().starts_with("/memfd:");
        assert!(
            st.flags().contains(FsFlags::ST_RDONLY) || memfd,
            "/proc/{pid}/exe ({}) is neither on a read-only mount nor a memfd",
            link.display()
        );
    }
    let res = try_write(&format!("/proc/{pid}/exe"));
    assert!(res.is_err(), "wrote /proc/{pid}/exe ({})", link.display());
}

/// Reopens a held exe descriptor for writing, after its process moved on.
#[track_caller]
fn assert_held_unwritable(held: &File) {
    let res = try_write(&format!("/proc/self/fd/{}", held.as_raw_fd()));
    assert!(
        res.is_err(),
        "wrote through a held /proc/<pid>/exe descriptor"
    );
}

/// A pipe whose buffer is full, so that a process writing to it blocks.
fn full_pipe() -> (File, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
    for chunk in [4096, 1] {
        let buf = vec![b'.'; chunk];
        loop {
            match nix::unistd::write(&w, &buf) {
                Ok(_) => {}
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("fill pipe: {e}"),
            }
        }
    }
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("blocking again");
    (File::from(r), w)
}

/// Reads the pipe to its end in a thread; the text arrives on the channel.
fn drain(mut r: File) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn cmdline(pid: u64) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The pid of host process `pid` inside its innermost pid namespace.
fn ns_pid(pid: u64) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last()?.parse().ok())
        .expect("NSpid")
}

fn wait_child(mut child: Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The container runs `/checker sleep 600` in its own cgroup, created and
/// started with the copy.
fn start_sleeper(ctx: &mut Ctx, bin: &RtCopy) -> u64 {
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.checker(&["sleep", "600"]);
    wait_child(bin.create(ctx, Stdio::null()), "create");
    bin.rt(ctx, &["start", &ctx.id]).assert_ok();
    ctx.wait_status("running")["pid"].as_u64().expect("pid")
}

// ---------------------------------------------------------------------------
// CVE-2019-5736
// ---------------------------------------------------------------------------

/// While `created`, the init is runtime code waiting for `start`: its exe must
/// be neither the binary nor writable, then or after it exec'd the program.
#[test]
fn cve_2019_5736_created_init() {
    let Some(mut ctx) = Ctx::new("cve-5736-created") else {
        return;
    };
    let bin = RtCopy::new(&ctx);
    let before = bin.sha256();
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.checker(&["sleep", "600"]);
    wait_child(bin.create(&ctx, Stdio::null()), "create");
    let pid = ctx.wait_status("created")["pid"].as_u64().expect("pid");
    assert_exe_unwritable(pid, &bin);
    let held = hold_exe(pid);
    bin.rt(&ctx, &["start", &ctx.id]).assert_ok();
    wait_for("the init to exec", || {
        cmdline(pid).starts_with("/checker sleep").then_some(())
    });
    assert_held_unwritable(&held);
    assert_eq!(bin.sha256(), before, "the runtime binary changed");
}

/// The classic attack: a program in the image (`/bin/hullsh`) is a link to
/// `/proc/self/exe`, so `exec <id> /bin/hullsh` runs the runtime's own binary
/// inside the container (kept there by writing `--help` into a full pipe). An attacker
/// in the container opens its `/proc/<pid>/exe`, tries to write it while it
/// runs, and again through the held descriptor once it has exited.
#[test]
fn cve_2019_5736_exec_of_proc_self_exe() {
    let Some(mut ctx) = Ctx::new("cve-5736-exec") else {
        return;
    };
    let bin = RtCopy::new(&ctx);
    let before = bin.sha256();
    symlink("/proc/self/exe", ctx.rootfs().join("bin/hullsh")).expect("plant link");
    install_libs(&ctx, &bin.path);
    start_sleeper(&mut ctx, &bin);
    let id = ctx.id.clone();

    let (reader, writer) = full_pipe();
    let pid_file = ctx.tmp.join("held.pid");
    let pf = pid_file.to_string_lossy().into_owned();
    // Detached: the process writes straight into the full pipe (without -d,
    // runc copies its output through a pipe of its own).
    let held_exec = bin
        .command(
            &ctx,
            &[
                "exec",
                "-d",
                "--pid-file",
                &pf,
                &id,
                "/bin/hullsh",
                "--help",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(File::create(ctx.tmp.join("held.err")).expect("stderr file"))
        .spawn()
        .expect("spawn exec");
    wait_child(held_exec, "exec -d");
    let pid: u64 = wait_for("the pid file", || {
        let pid: u64 = fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
        cmdline(pid)
            .starts_with("/bin/hullsh --help")
            .then_some(pid)
    });
    assert_exe_unwritable(pid, &bin);
    let held = hold_exe(pid);

    // The attacker inside the container.
    let script = r#"exec 3</proc/$1/exe || { echo open-failed; exit 0; }
echo ready
echo PWNED >> /proc/$1/exe && echo wrote-while-running
while [ -e /proc/$1/exe ]; do sleep 0.05; done
echo PWNED >> /proc/self/fd/3 && echo wrote-after-exit
echo done"#;
    let attacker_out = ctx.tmp.join("attacker.out");
    let target = ns_pid(pid).to_string();
    let attacker = bin
        .command(&ctx, &["exec", &id, "/bin/sh", "-c", script, "sh", &target])
        .stdin(Stdio::null())
        .stdout(File::create(&attacker_out).expect("attacker output"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn attacker");
    let attack = || fs::read_to_string(&attacker_out).unwrap_or_default();
    wait_for("the attacker to open the exe", || {
        let text = attack();
        (text.contains("ready") || text.contains("open-failed")).then_some(())
    });

    let help = drain(reader);
    let help = help
        .recv_timeout(Duration::from_secs(30))
        .expect("pipe drained");
    assert!(
        help.to_lowercase().contains("usage"),
        "not the runtime's help: {help:?}"
    );
    wait_child(attacker, "the attacker");
    let text = attack();
    eprintln!("attacker: {text:?}");
    assert!(
        !text.contains("wrote"),
        "the attacker wrote the runtime binary: {text}"
    );
    assert!(
        text.contains("done") || text.contains("open-failed"),
        "attack incomplete: {text}"
    );
    assert_held_unwritable(&held);
    assert_eq!(bin.sha256(), before, "the runtime binary changed");
}

/// A container whose entrypoint is `/proc/self/exe` runs the runtime's CLI as
/// its init. Neither the host (through the held exe) nor the container can
/// write the binary, during or after.
#[test]
fn cve_2019_5736_entrypoint_proc_self_exe() {
    let Some(mut ctx) = Ctx::new("cve-5736-entrypoint") else {
        return;
    };
    let bin = RtCopy::new(&ctx);
    let before = bin.sha256();
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.set_args(&["/proc/self/exe", "--help"]);
    install_libs(&ctx, &bin.path);
    let (reader, writer) = full_pipe();
    wait_child(bin.create(&ctx, Stdio::from(writer)), "create");
    let pid = ctx.wait_status("created")["pid"].as_u64().expect("pid");
    bin.rt(&ctx, &["start", &ctx.id]).assert_ok();
    wait_for("the CLI to run as the init", || {
        if ctx.state()["status"] == "stopped" {
            panic!("the init failed to exec /proc/self/exe");
        }
        cmdline(pid)
            .starts_with("/proc/self/exe --help")
            .then_some(())
    });
    assert_exe_unwritable(pid, &bin);
    let held = hold_exe(pid);
    let out = bin.rt(
        &ctx,
        &[
            "exec",
            &ctx.id,
            "/bin/sh",
            "-c",
            "echo PWNED >> /proc/1/exe && echo wrote",
        ],
    );
    assert!(
        !out.stdout.contains("wrote"),
        "the container wrote the binary:\n{out}"
    );
    eprintln!("in-container write attempt: {}", out.stderr.trim());

    let help = drain(reader);
    ctx.wait_status("stopped");
    let help = help
        .recv_timeout(Duration::from_secs(30))
        .expect("pipe drained");
    assert!(
        help.to_lowercase().contains("usage"),
        "not the runtime's help: {help:?}"
    );
    assert_held_unwritable(&held);
    assert_eq!(bin.sha256(), before, "the runtime binary changed");
}

/// An `exec` into a paused container (`--ignore-paused`) is frozen as soon as
/// it joins the cgroup, before its execve: runtime code held in the container.
#[test]
fn cve_2019_5736_exec_held_before_execve() {
    let Some(mut ctx) = Ctx::new("cve-5736-held") else {
        return;
    };
    let freezer =
        Path::new("/sys/fs/cgroup/freezer").join(ctx.cgroup_path().trim_start_matches('/'));
    let bin = RtCopy::new(&ctx);
    let before = bin.sha256();
    let init = start_sleeper(&mut ctx, &bin);
    if !freezer.is_dir() {
        eprintln!("SKIPPED cve_2019_5736_exec_held_before_execve: needs the v1 freezer");
        return;
    }
    bin.rt(&ctx, &["pause", &ctx.id]).assert_ok();
    let exec_err = ctx.tmp.join("held.err");
    let mut exec = bin
        .command(
            &ctx,
            &[
                "exec",
                "--ignore-paused",
                "-d",
                &ctx.id,
                "/checker",
                "exit",
                "0",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&exec_err).expect("stderr file"))
        .spawn()
        .expect("spawn exec");
    let held = wait_for("a frozen exec process", || {
        if let Some(status) = exec.try_wait().expect("wait") {
            return Some(Err(status));
        }
        let procs = fs::read_to_string(freezer.join("cgroup.procs")).ok()?;
        let pid = procs
            .lines()
            .filter_map(|l| l.parse::<u64>().ok())
            .find(|p| *p != init)?;
        Some(Ok(pid))
    });
    let pid = match held {
        Ok(pid) => pid,
        Err(status) => {
            let err = fs::read_to_string(&exec_err).unwrap_or_default();
            eprintln!(
                "SKIPPED cve_2019_5736_exec_held_before_execve: the runtime refused \
                 exec --ignore-paused into a paused container ({status}): {err}"
            );
            return;
        }
    };
    assert!(
        !cmdline(pid).starts_with("/checker"),
        "exec'd before it froze"
    );
    assert_exe_unwritable(pid, &bin);
    let held = hold_exe(pid);
    bin.rt(&ctx, &["resume", &ctx.id]).assert_ok();
    wait_child(exec, "exec after resume");
    assert_held_unwritable(&held);
    assert_eq!(bin.sha256(), before, "the runtime binary changed");
}

// ---------------------------------------------------------------------------
// CVE-2024-21626
// ---------------------------------------------------------------------------

/// A host directory handed to the runtime as fd 5, with a marker file the
/// container must never see.
struct HostDir {
    dir: PathBuf,
    marker: String,
}

impl HostDir {
    fn new(ctx: &Ctx) -> HostDir {
        let dir = ctx.tmp.join("host-dir");
        fs::create_dir(&dir).expect("mkdir host dir");
        let marker = format!("host-marker-{}", ctx.tmp_tag());
        fs::write(dir.join(&marker), "host secret").expect("write marker");
        HostDir { dir, marker }
    }
}

/// Probes run with the process's cwd: facts, `ls .`, `ls ..`, and reading the
/// marker relative to the cwd.
fn cwd_probe_script(marker: &str) -> String {
    let m = shell_quote(marker);
    format!(
        "/checker facts; /checker ls .; /checker ls ..; /checker read {m}; /checker read ../{m}"
    )
}

/// The outcome of a run with a hostile cwd: refused (then nothing is left)
/// or contained (then no probe reveals the host directory).
#[track_caller]
fn assert_cwd_contained(ctx: &Ctx, host: &HostDir, out: &Out, cwd: &str) {
    let what = format!("cwd {cwd}");
    if !out.ok() && out.json_lines().is_empty() {
        assert!(
            out.stderr.contains(cwd),
            "{what}: refusal does not name the cwd:\n{out}"
        );
        eprintln!("{what}: refused (allowed): {}", out.stderr.trim());
        return;
    }
    let lines = out.json_lines();
    assert_eq!(lines.len(), 5, "{what}: expected five probes:\n{out}");
    let cwd = &lines[0]["cwd"];
    let text = cwd
        .as_str()
        .unwrap_or_else(|| panic!("{what}: cwd is unreachable: {cwd}"));
    assert!(
        text.starts_with('/') && !text.contains(&ctx.tmp_tag()),
        "{what}: cwd {text} is a host path"
    );
    for listing in &lines[1..3] {
        assert!(
            !listing.to_string().contains(&host.marker),
            "{what}: the host dir is listed: {listing}"
        );
    }
    for read in &lines[3..5] {
        assert_ne!(read["ok"], true, "{what}: read the host marker: {read}");
    }
}

/// `process.cwd` = `/proc/self/fd/N`, N in 3..=10, while the runtime itself
/// was started with a host directory open as fd 5.
#[test]
fn cve_2024_21626_process_cwd() {
    let Some(mut ctx) = Ctx::new("cve-21626-cwd") else {
        return;
    };
    let host = HostDir::new(&ctx);
    let script = cwd_probe_script(&host.marker);
    ctx.set_args(&["/bin/sh", "-c", &script]);
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    for n in 3..=10 {
        ctx.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        ctx.write_config();
        let id = ctx.extra_id(&format!("cwd{n}"));
        let out = rt_with_fd(&ctx, 5, &host.dir, &["run", "--bundle", &bundle, &id]);
        assert_cwd_contained(&ctx, &host, &out, &format!("/proc/self/fd/{n}"));
        assert!(ctx.state_of(&id).is_none(), "{id} left behind");
    }
    assert_no_leftovers(&ctx);
}

/// `exec --cwd /proc/self/fd/N` with a host directory as the runtime's fd 5.
#[test]
fn cve_2024_21626_exec_cwd() {
    let Some(mut ctx) = Ctx::new("cve-21626-exec") else {
        return;
    };
    let host = HostDir::new(&ctx);
    let id = ctx.id.clone();
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.start_sleeper(&id);
    let script = cwd_probe_script(&host.marker);
    for n in 3..=9 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = rt_with_fd(
            &ctx,
            5,
            &host.dir,
            &["exec", "--cwd", &cwd, &id, "/bin/sh", "-c", &script],
        );
        assert_cwd_contained(&ctx, &host, &out, &cwd);
    }
    assert_eq!(ctx.state()["status"], "running");
}

/// The same leaked descriptor must not reach the container's processes at
/// all: their fd table is stdio only.
#[test]
fn cve_2024_21626_no_leaked_fds() {
    let Some(mut ctx) = Ctx::new("cve-21626-fds") else {
        return;
    };
    let host = HostDir::new(&ctx);
    let id = ctx.id.clone();
    ctx.checker(&["facts"]);
    ctx.write_config();
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let out = rt_with_fd(&ctx, 5, &host.dir, &["run", "--bundle", &bundle, &id]);
    out.assert_ok();
    let facts: Value = out.json_lines().remove(0);
    assert_eq!(facts["fds"], json!([0, 1, 2]), "{facts}");
}
