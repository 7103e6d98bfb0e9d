//! Adversarial rootfs: mount destinations, masked and readonly paths and /dev
//! entries are symlinks that point out of the rootfs, at a host "victim" dir
//! (`<scratch>/host-victim`), both relatively (`../../host-victim/x`, which
//! climbs out of the bundle when resolved on the host) and absolutely.
//!
//! A runtime may refuse such a bundle or contain every mount inside the rootfs
//! (resolving symlinks as if the rootfs were `/`). Either way the host must be
//! untouched: nothing created, written, chmodded or mounted in the victim dir,
//! no host mount mentioning it, and the container must not see host-only data.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p hull --test adversarial`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use common::{assert_no_leftovers, host_mountinfo_mentioning, Ctx, Out};
use serde_json::{json, Value};

const HOST_SECRET: &str = "host-only secret";

/// The host directory that symlinks in the rootfs point at.
struct Victim {
    dir: PathBuf,
}

/// Type, mode, owner, size, times and content of one entry.
type Snapshot = BTreeMap<String, String>;

impl Victim {
    /// Creates `<scratch>/host-victim` with some dirs and files in it.
    fn new(ctx: &Ctx) -> Victim {
        let dir = ctx.tmp.join("host-victim");
        for d in ["tmp", "data", "shm", "pts", "ro", "proc", "mqueue"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir victim dir");
        }
        fs::write(dir.join("data/host-secret"), HOST_SECRET).expect("write secret");
        for f in [
            "masked-file",
            "dev-zero",
            "tmp/host-secret",
            "ro/host-secret",
        ] {
            fs::write(dir.join(f), HOST_SECRET).expect("write victim file");
        }
        Victim { dir }
    }

    /// A symlink target that climbs from `link` (inside the rootfs) out of the
    /// bundle to `host-victim/<name>` when resolved on the host.
    fn relative(link: &str, name: &str) -> PathBuf {
        let depth = link.trim_matches('/').split('/').count(); // components below rootfs
        let mut target = PathBuf::new();
        for _ in 0..depth + 1 {
            target.push(".."); // up through rootfs and bundle to the scratch dir
        }
        target.join("host-victim").join(name)
    }

    fn absolute(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Walks the victim dir, recording everything a runtime could change.
    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::new();
        walk(&self.dir, &self.dir, &mut snap);
        snap
    }
}

fn walk(base: &Path, path: &Path, snap: &mut Snapshot) {
    let rel = path
        .strip_prefix(base)
        .expect("under base")
        .to_string_lossy()
        .into_owned();
    let Ok(md) = fs::symlink_metadata(path) else {
        snap.insert(rel, "vanished".into());
        return;
    };
    let ft = md.file_type();
    let mut desc = format!(
        "type={ft:?} mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    );
    if ft.is_file() {
        desc.push_str(&format!(
            " content={:?}",
            fs::read_to_string(path).unwrap_or_default()
        ));
    }
    snap.insert(rel, desc);
    if ft.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(path)
            .expect("read victim dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        children.sort();
        for c in children {
            walk(base, &c, snap);
        }
    }
}

/// Replaces `rootfs/<link>` (whatever is there) with a symlink to `target`.
fn plant(ctx: &Ctx, link: &str, target: &Path) {
    let path = ctx.rootfs().join(link.trim_start_matches('/'));
    if let Ok(md) = fs::symlink_metadata(&path) {
        if md.is_dir() {
            fs::remove_dir_all(&path).expect("remove rootfs dir");
        } else {
            fs::remove_file(&path).expect("remove rootfs file");
        }
    }
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir parent");
    symlink(target, &path).expect("plant symlink");
}

fn add_mount(ctx: &mut Ctx, mount: Value) {
    ctx.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(mount);
}

/// Runs the container with the probes and checks the host afterwards.
/// Returns the probe results when the runtime accepted the bundle.
fn run_and_check_host(ctx: &mut Ctx, victim: &Victim, probes: &[&[&str]]) -> Option<Vec<Value>> {
    let before = victim.snapshot();
    ctx.checker_script(probes);
    let out = ctx.run();
    let after = victim.snapshot();
    assert_host_untouched(&before, &after, victim, &out);
    if !out.ok() {
        eprintln!("runtime refused the bundle (allowed):\n{out}");
        assert_no_leftovers(ctx);
        return None;
    }
    let lines = out.json_lines();
    assert_eq!(lines.len(), probes.len(), "one JSON line per probe:\n{out}");
    // A mount's root is its source path within its filesystem: the victim's
    // copy inside the rootfs is fine, the host victim itself is not.
    let host_victim = format!("{}/host-victim", ctx.tmp_tag());
    for m in lines[0]["mounts"].as_array().expect("mounts") {
        let root = m["root"].as_str().unwrap_or_default();
        assert!(
            !root.contains(&host_victim),
            "host victim mounted into container: {m}"
        );
    }
    Some(lines)
}

#[track_caller]
fn assert_host_untouched(before: &Snapshot, after: &Snapshot, victim: &Victim, out: &Out) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", before.get(k), after.get(k)))
        .collect();
    assert!(
        changed.is_empty(),
        "host victim dir modified: {changed:#?}\n{out}"
    );
    let mounts = host_mountinfo_mentioning(&victim.dir.to_string_lossy());
    assert!(
        mounts.is_empty(),
        "host mounts on the victim: {mounts:?}\n{out}"
    );
}

/// Asserts no probe result shows host-only content.
#[track_caller]
fn assert_no_secret(results: &[Value]) {
    for r in results {
        assert!(
            !r.to_string().contains(HOST_SECRET),
            "container saw host data: {r}"
        );
        assert!(
            !r.to_string().contains("host-secret"),
            "container listed host files: {r}"
        );
    }
}

#[test]
fn symlinked_mount_destinations() {
    let Some(mut ctx) = Ctx::new("adv-mounts") else {
        return;
    };
    let victim = Victim::new(&ctx);
    let src = ctx.tmp.join("bind-src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("payload"), "payload").expect("write");
    let src_file = ctx.tmp.join("hosts-src");
    fs::write(&src_file, "127.0.0.1 localhost\n").expect("write");

    plant(&ctx, "/tmp", &Victim::relative("/tmp", "tmp"));
    plant(&ctx, "/data", &victim.absolute("data"));
    plant(
        &ctx,
        "/etc/hosts",
        &Victim::relative("/etc/hosts", "hosts-file"),
    );
    ctx.config["root"]["readonly"] = json!(false);
    add_mount(
        &mut ctx,
        json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }),
    );
    add_mount(
        &mut ctx,
        json!({
            "destination": "/tmp/deep/er", "type": "tmpfs", "source": "tmpfs"
        }),
    );
    let bind = |dest: &str, src: &Path| json!({ "destination": dest, "type": "bind", "source": src, "options": ["rbind"] });
    add_mount(&mut ctx, bind("/data", &src));
    add_mount(&mut ctx, bind("/etc/hosts", &src_file));

    let probes: [&[&str]; 5] = [
        &["facts"],
        &["ls", "/tmp"],
        &["write", "/tmp/deep/er/inside"],
        &["ls", "/data"],
        &["read", "/etc/hosts"],
    ];
    if let Some(r) = run_and_check_host(&mut ctx, &victim, &probes) {
        assert_no_secret(&r);
        assert_eq!(
            r[2]["ok"], true,
            "tmpfs at /tmp/deep/er is writable: {}",
            r[2]
        );
        assert_eq!(
            r[3]["entries"],
            json!(["payload"]),
            "bind at /data: {}",
            r[3]
        );
        assert_eq!(
            r[4]["content"], "127.0.0.1 localhost\n",
            "bind at /etc/hosts: {}",
            r[4]
        );
    }
    assert!(
        !victim.dir.join("hosts-file").exists(),
        "file created through symlink"
    );
}

#[test]
fn symlinked_dev_entries() {
    let Some(mut ctx) = Ctx::new("adv-dev") else {
        return;
    };
    let victim = Victim::new(&ctx);
    // No tmpfs on /dev: the runtime populates the rootfs's own /dev.
    let mounts = ctx.config["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["destination"] != "/dev");
    plant(
        &ctx,
        "/dev/null",
        &Victim::relative("/dev/null", "dev-null"),
    );
    plant(&ctx, "/dev/zero", &victim.absolute("dev-zero"));
    plant(&ctx, "/dev/shm", &Victim::relative("/dev/shm", "shm"));
    plant(&ctx, "/dev/pts", &victim.absolute("pts"));
    plant(
        &ctx,
        "/dev/mqueue",
        &Victim::relative("/dev/mqueue", "mqueue"),
    );
    plant(&ctx, "/dev/tty", &victim.absolute("dev-tty"));

    let probes: [&[&str]; 4] = [
        &["facts"],
        &["read", "/dev/zero"],
        &["write", "/dev/null"],
        &["ls", "/dev/shm"],
    ];
    if let Some(r) = run_and_check_host(&mut ctx, &victim, &probes) {
        assert_no_secret(&r);
    }
    for f in ["dev-null", "dev-tty"] {
        assert!(!victim.dir.join(f).exists(), "{f} created on the host");
    }
}

#[test]
fn symlinked_masked_and_readonly_paths() {
    let Some(mut ctx) = Ctx::new("adv-masked") else {
        return;
    };
    let victim = Victim::new(&ctx);
    plant(&ctx, "/masked", &Victim::relative("/masked", "masked-file"));
    plant(&ctx, "/masked-abs", &victim.absolute("masked-file"));
    plant(&ctx, "/ro", &Victim::relative("/ro", "ro"));
    plant(&ctx, "/ro-abs", &victim.absolute("ro"));
    ctx.config["root"]["readonly"] = json!(false);
    let linux = &mut ctx.config["linux"];
    let masked = linux["maskedPaths"].as_array_mut().expect("maskedPaths");
    masked.extend([json!("/masked"), json!("/masked-abs")]);
    let ro = linux["readonlyPaths"]
        .as_array_mut()
        .expect("readonlyPaths");
    ro.extend([json!("/ro"), json!("/ro-abs")]);

    let probes: [&[&str]; 5] = [
        &["facts"],
        &["read", "/masked"],
        &["read", "/masked-abs"],
        &["ls", "/ro"],
        &["ls", "/ro-abs"],
    ];
    if let Some(r) = run_and_check_host(&mut ctx, &victim, &probes) {
        assert_no_secret(&r);
    }
}

#[test]
fn symlinked_proc_and_sys() {
    let Some(mut ctx) = Ctx::new("adv-proc") else {
        return;
    };
    let victim = Victim::new(&ctx);
    plant(&ctx, "/proc", &Victim::relative("/proc", "proc"));
    plant(&ctx, "/sys", &victim.absolute("sys-target"));
    let probes: [&[&str]; 2] = [&["facts"], &["ls", "/proc"]];
    if let Some(r) = run_and_check_host(&mut ctx, &victim, &probes) {
        assert_no_secret(&r);
    }
    assert!(
        !victim.dir.join("sys-target").exists(),
        "/sys target created on the host"
    );
}
