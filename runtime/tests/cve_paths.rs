//! Regression tests that attempt the path-based breakouts (the binary and fd
//! CVEs are in `cve.rs`):
//!
//! - CVE-2021-30465: a directory on the way to a mount destination, inside a
//!   volume the container shares, is swapped with a symlink to a host dir
//!   while containers are being created.
//! - CVE-2025-31133 / CVE-2025-52565: the rootfs's `/dev/null` (used to mask
//!   paths) and `/dev/console` (the pty's bind target) are planted files or
//!   symlinks to host files.
//! - CVE-2025-52881: sysctl writes land in a planted `/proc` directory, or a
//!   config mount shadows a `/proc/sys` file.
//!
//! In every case the host must be untouched: the victim files keep their
//! content, mode and times, and no host mount appears. A runtime may refuse
//! the bundle instead, and must then leave nothing behind.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p
//! hull --test cve_paths`. runc 1.1.5 is fixed for CVE-2021-30465 (since
//! 1.0.0-rc95) but predates the fixes for the three 2025 CVEs (runc 1.2.8,
//! 1.3.3, 1.4.0-rc.3); the assertions it fails are gated on `is_hull`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::console::{console_output, read_console, ConsoleSocket};
use common::{assert_no_leftovers, host_mountinfo_mentioning, runtime, Ctx, Out};
use nix::fcntl::{renameat2, RenameFlags};
use serde_json::{json, Value};

const SECRET: &str = "container secret behind a mask";

/// Path → type, mode, size, times and content of everything under a dir.
type Snapshot = BTreeMap<PathBuf, String>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        let mut desc = format!(
            "{:?} mode={:o} size={} mtime={}.{} ctime={}.{}",
            md.file_type(),
            md.mode(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec()
        );
        if md.is_file() {
            desc += &format!(" content={:?}", fs::read_to_string(&p).unwrap_or_default());
        }
        if md.is_dir() {
            todo.extend(
                fs::read_dir(&p)
                    .expect("read dir")
                    .flatten()
                    .map(|e| e.path()),
            );
        }
        snap.insert(p, desc);
    }
    snap
}

/// A host directory that planted links point at, with files in it.
struct Victim {
    dir: PathBuf,
    before: Snapshot,
}

impl Victim {
    fn new(ctx: &Ctx, files: &[&str]) -> Victim {
        let dir = ctx.tmp.join("host-victim");
        fs::create_dir(&dir).expect("mkdir victim");
        for f in files {
            fs::write(dir.join(f), format!("host file {f}\n")).expect("write victim file");
        }
        let before = snapshot(&dir);
        Victim { dir, before }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Entries that existed before are unchanged, new ones are empty
    /// directories or files, and nothing is mounted on the victim.
    #[track_caller]
    fn assert_only_empty_entries_added(&self, out: &Out) {
        let now = snapshot(&self.dir);
        for (path, before) in &self.before {
            if path != &self.dir {
                assert_eq!(Some(before), now.get(path), "host victim changed:\n{out}");
            }
        }
        for (path, desc) in now.iter().filter(|(p, _)| !self.before.contains_key(*p)) {
            let empty =
                desc.contains("size=0") || fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
            assert!(
                empty,
                "non-empty entry added to the victim: {path:?} {desc}\n{out}"
            );
        }
        let mounts = host_mountinfo_mentioning(&self.dir.to_string_lossy());
        assert!(
            mounts.is_empty(),
            "host mounts on the victim: {mounts:?}\n{out}"
        );
    }

    #[track_caller]
    fn assert_untouched(&self, out: &Out) {
        assert_eq!(
            self.before,
            snapshot(&self.dir),
            "host victim changed:\n{out}"
        );
        let mounts = host_mountinfo_mentioning(&self.dir.to_string_lossy());
        assert!(
            mounts.is_empty(),
            "host mounts on the victim: {mounts:?}\n{out}"
        );
    }
}

fn add_mount(ctx: &mut Ctx, mount: Value) {
    ctx.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(mount);
}

/// Replaces `rootfs/<path>` (if any) with a symlink to `target`.
fn plant_link(ctx: &Ctx, path: &str, target: &Path) {
    let p = ctx.rootfs().join(path);
    let _ = fs::remove_file(&p);
    symlink(target, &p).expect("plant symlink");
}

// ---------------------------------------------------------------------------
// CVE-2021-30465
// ---------------------------------------------------------------------------

/// A thread exchanging two paths (a directory and a symlink) until stopped,
/// also when the test panics, so the scratch dir can be removed.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    paths: (PathBuf, PathBuf),
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, swaps, a, b) = (stop.clone(), swaps.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    renameat2(None, &a, None, &b, RenameFlags::RENAME_EXCHANGE).expect("exchange");
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
            paths: (a, b),
        }
    }

    /// Stops the thread and puts the directory back at the first path;
    /// returns the number of exchanges.
    fn stop(mut self) -> usize {
        self.halt();
        self.swaps.load(Ordering::Relaxed)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (a, b) = &self.paths;
        if fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = renameat2(None, a, None, b, RenameFlags::RENAME_EXCHANGE);
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A thread swaps `vol/swap` (a directory holding the mount points) with
/// `vol/alt` (a symlink to the host victim) as fast as it can, while 20
/// containers are run with mounts whose destinations are under `/vol/swap`.
#[test]
fn cve_2021_30465_mount_destination_symlink_race() {
    let Some(mut ctx) = Ctx::new("cve-30465") else {
        return;
    };
    let victim = Victim::new(&ctx, &["secret"]);
    let vol = ctx.tmp.join("vol");
    let payload = ctx.tmp.join("payload");
    for d in [vol.join("swap/mnt"), vol.join("swap/bind"), payload.clone()] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(payload.join("payload-file"), "payload").expect("write payload");
    symlink(&victim.dir, vol.join("alt")).expect("symlink alt");
    fs::create_dir(ctx.rootfs().join("vol")).expect("mkdir rootfs/vol");
    add_mount(
        &mut ctx,
        json!({
            "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rw"]
        }),
    );
    add_mount(
        &mut ctx,
        json!({
            "destination": "/vol/swap/mnt", "type": "tmpfs", "source": "hull-race",
            "options": ["size=1m"]
        }),
    );
    add_mount(
        &mut ctx,
        json!({
            "destination": "/vol/swap/bind", "type": "bind", "source": payload,
            "options": ["rbind", "ro"]
        }),
    );
    ctx.checker(&["facts"]);
    ctx.write_config();

    let swapper = Swapper::start(vol.join("swap"), vol.join("alt"));
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let (mut ran, mut refused) = (0, 0);
    for i in 0..20 {
        let id = ctx.extra_id(&format!("race{i}"));
        let out = ctx.rt(&["run", "--bundle", &bundle, &id]);
        if runtime().is_hull {
            victim.assert_untouched(&out);
        } else {
            // runc 1.1.5 refuses the mount itself, but its MkdirAll can be
            // raced into creating empty directories on the host
            // (CVE-2024-45310, fixed in runc 1.1.14).
            victim.assert_only_empty_entries_added(&out);
        }
        if out.ok() {
            ran += 1;
            let facts = &out.json_lines()[0];
            let mounts = facts["mounts"].as_array().expect("mounts");
            let race = mounts.iter().filter(|m| m["source"] == "hull-race").count();
            assert_eq!(
                race, 1,
                "the tmpfs is not mounted exactly once in the container"
            );
        } else {
            refused += 1;
        }
    }
    let swaps = swapper.stop();
    eprintln!("{ran} ran, {refused} refused, {swaps} swaps");
    assert!(swaps > 100, "the race barely ran");
    assert_eq!(
        fs::read_dir(&payload).expect("payload").count(),
        1,
        "payload dir changed"
    );
    let left: Vec<_> = fs::read_dir(&ctx.root)
        .expect("state root")
        .flatten()
        .collect();
    assert!(left.is_empty(), "state left: {left:?}");
    assert_no_leftovers(&ctx);
}

// ---------------------------------------------------------------------------
// CVE-2025-31133 / CVE-2025-52565
// ---------------------------------------------------------------------------

/// The rootfs's own /dev is used (no tmpfs on it), with a secret file masked.
fn dev_from_rootfs(ctx: &mut Ctx) {
    let mounts = ctx.config["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["destination"] != "/dev");
    fs::write(ctx.rootfs().join("masked-secret"), SECRET).expect("write secret");
    ctx.config["linux"]["maskedPaths"]
        .as_array_mut()
        .expect("maskedPaths")
        .push(json!("/masked-secret"));
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
}

/// Runs the masking probes; returns the outcome and (when it ran) the reads of
/// `/masked-secret` and `/proc/kcore`.
fn run_mask_probes(ctx: &mut Ctx) -> (Out, Option<(Value, Value)>) {
    ctx.checker_script(&[&["read", "/masked-secret"], &["read", "/proc/kcore"]]);
    let out = ctx.run();
    let lines = out.json_lines();
    if out.ok() && lines.len() != 2 {
        // runc 1.1.5 with a /dev/null symlink to a missing file exits 0
        // without the container's output.
        assert!(!runtime().is_hull, "two probes expected:\n{out}");
        eprintln!("probes printed nothing:\n{out}");
        return (out, None);
    }
    let reads = out.ok().then(|| (lines[0].clone(), lines[1].clone()));
    (out, reads)
}

/// A masked path reads as empty (a real /dev/null) or is unreadable.
#[track_caller]
fn assert_masked(read: &Value, what: &str) {
    if read["ok"] == true {
        assert_eq!(
            read["content"], "",
            "{what} not masked by a null device: {read}"
        );
    }
}

#[track_caller]
fn check_masking(ctx: &Ctx, out: &Out, reads: Option<(Value, Value)>, case: &str) {
    let Some((secret, kcore)) = reads else {
        eprintln!(
            "{case}: refused or no output (allowed): {}",
            out.stderr.trim()
        );
        assert_no_leftovers(ctx);
        return;
    };
    assert!(
        !secret.to_string().contains(SECRET),
        "{case}: the masked secret is readable: {secret}"
    );
    if runtime().is_hull {
        // runc 1.1.5 masks with whatever the rootfs's /dev/null is
        // (CVE-2025-31133), so the masked paths show the planted content.
        assert_masked(&secret, "/masked-secret");
        assert_masked(&kcore, "/proc/kcore");
    }
}

/// `/dev/null` is a regular file: masking must not use it.
#[test]
fn cve_2025_31133_dev_null_regular_file() {
    let Some(mut ctx) = Ctx::new("cve-31133-file") else {
        return;
    };
    dev_from_rootfs(&mut ctx);
    let planted = ctx.rootfs().join("dev/null");
    fs::write(&planted, "planted null\n").expect("plant /dev/null");
    let (out, reads) = run_mask_probes(&mut ctx);
    check_masking(&ctx, &out, reads, "regular /dev/null");
}

/// `/dev/null` is a symlink to a host file (absolute host path, which
/// resolves on the host for anything done before pivot_root), or to a
/// procfs file inside the container (the CVE's core_pattern variant: only
/// read here).
#[test]
fn cve_2025_31133_dev_null_symlink() {
    let Some(mut ctx) = Ctx::new("cve-31133-link") else {
        return;
    };
    dev_from_rootfs(&mut ctx);
    let victim = Victim::new(&ctx, &["null-target"]);
    plant_link(&ctx, "dev/null", &victim.file("null-target"));
    let (out, reads) = run_mask_probes(&mut ctx);
    victim.assert_untouched(&out);
    check_masking(&ctx, &out, reads, "/dev/null -> host file");

    plant_link(&ctx, "dev/null", Path::new("/proc/sys/kernel/core_pattern"));
    let (out, reads) = run_mask_probes(&mut ctx);
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if let Some((secret, _)) = &reads {
        if runtime().is_hull {
            // Vulnerable runc binds core_pattern over the masked path.
            assert!(
                pattern.is_empty() || secret["content"].as_str().is_none_or(|c| c != pattern),
                "core_pattern bound over a masked path: {secret}"
            );
        }
    }
    check_masking(&ctx, &out, reads, "/dev/null -> core_pattern");
}

/// Runs the terminal probe of the console tests; returns create's outcome and,
/// when it was created, the console output.
fn run_console(ctx: &mut Ctx) -> (Out, Option<String>) {
    ctx.config["process"]["terminal"] = json!(true);
    ctx.set_args(&[
        "/bin/sh",
        "-c",
        "stat -L -c 'console %F %t' /dev/console; /checker read /masked-secret",
    ]);
    let socket = ConsoleSocket::listen(&ctx.tmp);
    let sock = socket.path.to_string_lossy().into_owned();
    ctx.write_config();
    let bundle = ctx.bundle.to_string_lossy().into_owned();
    let id = ctx.id.clone();
    let out = ctx.rt(&[
        "create",
        "--console-socket",
        &sock,
        "--bundle",
        &bundle,
        &id,
    ]);
    if !out.ok() {
        return (out, None);
    }
    let console = read_console(socket.master());
    ctx.rt(&["start", &id]).assert_ok();
    let text = console_output(&console);
    ctx.wait_status("stopped");
    ctx.rt(&["delete", &id]).assert_ok();
    (out, Some(text))
}

/// Control for the console test below: a terminal works with the rootfs's own
/// (read-only) /dev, where /dev/console does not exist yet.
#[test]
fn terminal_with_rootfs_dev() {
    let Some(mut ctx) = Ctx::new("cve-52565-control") else {
        return;
    };
    dev_from_rootfs(&mut ctx);
    let (out, text) = run_console(&mut ctx);
    let text = text.unwrap_or_else(|| panic!("create failed:\n{out}"));
    assert!(
        text.contains("console character special file 88"),
        "console: {text}"
    );
    assert!(!text.contains(SECRET), "the masked secret leaked: {text}");
    assert_no_leftovers(&ctx);
}

/// `/dev/console` is a symlink to a host file, with a terminal: the pty must
/// not be bound over (or create) the host file.
#[test]
fn cve_2025_52565_dev_console_symlink() {
    let Some(mut ctx) = Ctx::new("cve-52565") else {
        return;
    };
    dev_from_rootfs(&mut ctx);
    let victim = Victim::new(&ctx, &["console-target"]);
    plant_link(&ctx, "dev/console", &victim.file("console-target"));
    let (out, text) = run_console(&mut ctx);
    victim.assert_untouched(&out);
    let Some(text) = text else {
        eprintln!(
            "/dev/console -> host file: refused (allowed): {}",
            out.stderr.trim()
        );
        assert_no_leftovers(&ctx);
        return;
    };
    assert!(!text.contains(SECRET), "the masked secret leaked: {text}");
    if runtime().is_hull {
        // The console is the pty (Unix98 pty slaves are major 136 = 0x88).
        assert!(
            text.contains("console character special file 88"),
            "console: {text}"
        );
    }
    assert_no_leftovers(&ctx);
}

// ---------------------------------------------------------------------------
// CVE-2025-52881
// ---------------------------------------------------------------------------

/// No proc mount, and the rootfs's /proc is a plain directory with a planted
/// `sys/net/ipv4/ip_forward`: a sysctl must not be written into it. hull
/// refuses (the file is not on procfs) naming the sysctl. runc 1.1.5 writes
/// the planted file, so it is skipped.
#[test]
fn cve_2025_52881_sysctl_into_planted_proc() {
    let Some(mut ctx) = Ctx::new("cve-52881-sysctl") else {
        return;
    };
    if !runtime().is_hull {
        eprintln!("SKIPPED cve_2025_52881_sysctl_into_planted_proc: runc 1.1.5 is vulnerable");
        return;
    }
    let planted = ctx.rootfs().join("proc/sys/net/ipv4/ip_forward");
    fs::create_dir_all(planted.parent().expect("parent")).expect("mkdir planted proc");
    fs::write(&planted, "0\n").expect("plant ip_forward");
    let mounts = ctx.config["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["type"] != "proc");
    for list in ["maskedPaths", "readonlyPaths"] {
        let paths = ctx.config["linux"][list].as_array_mut().expect(list);
        paths.retain(|p| !p.as_str().is_some_and(|p| p.starts_with("/proc")));
    }
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.config["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
    // A writable root: a read-only one would stop the write by accident.
    ctx.config["root"]["readonly"] = json!(false);
    ctx.checker(&["read", "/proc/sys/net/ipv4/ip_forward"]);
    let out = ctx.create();
    assert_eq!(
        fs::read_to_string(&planted).ok().as_deref(),
        Some("0\n"),
        "planted file written:\n{out}"
    );
    out.assert_fail();
    assert!(
        out.stderr.contains("net.ipv4.ip_forward"),
        "error must name the sysctl:\n{out}"
    );
    assert_no_leftovers(&ctx);
}

/// A bind mount of a host file over `/proc/sys/kernel/shmmax` is refused
/// (only runc's lxcfs list may be mounted under /proc), and the host file is
/// untouched. runc 1.1.5 refuses it too.
#[test]
fn cve_2025_52881_bind_over_proc_sys_refused() {
    let Some(mut ctx) = Ctx::new("cve-52881-bind") else {
        return;
    };
    let victim = Victim::new(&ctx, &["fake-shmmax"]);
    add_mount(
        &mut ctx,
        json!({
            "destination": "/proc/sys/kernel/shmmax", "type": "bind",
            "source": victim.file("fake-shmmax"), "options": ["bind", "rw"]
        }),
    );
    ctx.config["linux"]["cgroupsPath"] = json!(ctx.cgroup_path());
    ctx.config["linux"]["sysctl"] = json!({ "kernel.shmmax": "123456" });
    ctx.checker(&["read", "/proc/sys/kernel/shmmax"]);
    let out = ctx.create();
    victim.assert_untouched(&out);
    out.assert_fail();
    assert!(
        out.stderr.contains("/proc/sys/kernel/shmmax"),
        "error must name the path:\n{out}"
    );
    assert_no_leftovers(&ctx);
}

/// The lxcfs files stay mountable over /proc (control for the refusal above).
#[test]
fn bind_over_proc_meminfo_is_allowed() {
    let Some(mut ctx) = Ctx::new("cve-52881-lxcfs") else {
        return;
    };
    let file = ctx.tmp.join("meminfo");
    fs::write(&file, "MemTotal: 42 kB\n").expect("write meminfo");
    add_mount(
        &mut ctx,
        json!({
            "destination": "/proc/meminfo", "type": "bind", "source": file, "options": ["bind", "ro"]
        }),
    );
    let read = ctx.run_checker(&["read", "/proc/meminfo"]);
    assert_eq!(read["content"], "MemTotal: 42 kB\n", "{read}");
}
