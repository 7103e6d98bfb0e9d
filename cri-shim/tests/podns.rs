//! Root integration tests of pod namespaces (`hull-cri-pinns`, `podns`) and of the CNI driver
//! with Debian's plugins. Every network is test-only: a bridge `hulltst<N>`, a subnet
//! 10.251.<N>.0/24, a config dir and host-local data dir in a temp dir; traffic goes only
//! between namespaces the test made and over loopback. Skips with a reason when not root or
//! when the plugins or tools are missing.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hull_cri::cni::{Attachment, Cni, CniError, PortMapping};
use hull_cri::podns::{self, PinRequest, Pinned, PodNsError};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

const PINNS: &str = env!("CARGO_BIN_EXE_hull-cri-pinns");
const PLUGINS: &str = "/usr/lib/cni";

fn skip_reason() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    for p in ["bridge", "host-local", "portmap", "loopback"] {
        if !Path::new(PLUGINS).join(p).exists() {
            return Some(format!(
                "{PLUGINS}/{p} missing (containernetworking-plugins)"
            ));
        }
    }
    for tool in ["nsenter", "ip", "sysctl", "busybox", "iptables-save"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} missing"));
        }
    }
    None
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
        // Holders are orphaned when pinns exits; as a subreaper this process inherits them and
        // can reap them (this host's PID 1 does not), which also lets the tests see how they
        // died.
        nix::sys::prctl::set_child_subreaper(true).unwrap();
    };
}

/// Runs a command; returns stdout, panicking with stderr on failure.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .map(str::to_owned)
        .collect()
}

/// Processes named like the holder whose command line names `dir`.
fn holders_for(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            comm.trim() == "hull-pod-init"
                && String::from_utf8_lossy(&cmd).contains(&needle)
                && !fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
        })
        .collect()
}

fn ns_id(path: &str) -> (u64, u64) {
    let m = fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

fn alive(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z")
}

/// A pinned pod, unpinned on drop so a failing test leaves no mount or holder behind.
struct Pod(Pinned);

impl std::ops::Deref for Pod {
    type Target = Pinned;
    fn deref(&self) -> &Pinned {
        &self.0
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podns::unpin(&self.0.dir, self.0.holder_pid);
    }
}

async fn pin(dir: &Path, req: &PinRequest) -> Pod {
    Pod(podns::pin(Path::new(PINNS), dir, req).await.unwrap())
}

fn full_request() -> PinRequest {
    PinRequest {
        net: true,
        ipc: true,
        uts: true,
        pid: true,
        hostname: Some("hull-test-pod".into()),
        sysctls: [
            ("net.ipv4.ping_group_range".to_owned(), "0 12345".to_owned()),
            ("kernel.shmmni".to_owned(), "1234".to_owned()),
        ]
        .into(),
    }
}

#[tokio::test]
async fn pin_every_namespace_then_unpin() {
    skip_unless_able!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pod");
    let pinned = pin(&dir, &full_request()).await;
    let holder = pinned.holder_pid.expect("a pid namespace has a holder");
    let ns_pin = |ns: &str| pinned.path(ns).unwrap().display().to_string();
    assert_eq!(mounts_under(&dir).len(), 5, "dir itself + 4 pins");

    // Each setting is visible in its namespace only.
    let net = format!("--net={}", ns_pin("net"));
    let range = run(&["nsenter", &net, "sysctl", "-n", "net.ipv4.ping_group_range"]);
    assert_eq!(range.split_whitespace().collect::<Vec<_>>(), ["0", "12345"]);
    let host_range = run(&["sysctl", "-n", "net.ipv4.ping_group_range"]);
    assert_ne!(host_range.split_whitespace().nth(1), Some("12345"));
    let uts = format!("--uts={}", ns_pin("uts"));
    assert_eq!(run(&["nsenter", &uts, "hostname"]).trim(), "hull-test-pod");
    let ipc = format!("--ipc={}", ns_pin("ipc"));
    assert_eq!(
        run(&["nsenter", &ipc, "sysctl", "-n", "kernel.shmmni"]).trim(),
        "1234"
    );

    // The holder: PID 1 of the pinned pid namespace, in the pod's other namespaces, no fds.
    let status = fs::read_to_string(format!("/proc/{holder}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    assert_eq!(
        fs::read_to_string(format!("/proc/{holder}/comm"))
            .unwrap()
            .trim(),
        "hull-pod-init"
    );
    for ns in ["pid", "net", "ipc", "uts"] {
        assert_eq!(
            ns_id(&format!("/proc/{holder}/ns/{ns}")),
            ns_id(&ns_pin(ns)),
            "{ns}"
        );
    }
    let fds: Vec<String> = fs::read_dir(format!("/proc/{holder}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = fs::read_link(e.path()).unwrap();
            format!("{}={}", e.file_name().to_string_lossy(), target.display())
        })
        .collect();
    assert_eq!(fds.len(), 3, "{fds:?}");
    assert!(fds.iter().all(|f| f.ends_with("=/dev/null")), "{fds:?}");

    // Signals other than SIGTERM/SIGKILL do nothing.
    for sig in [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
    ] {
        kill(Pid::from_raw(holder), sig).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(holder), "holder survived SIGINT/SIGHUP/SIGUSR1");

    // A process orphaned inside the namespace is reaped by the holder (no zombie stays).
    let pidns = format!("--pid={}", ns_pin("pid"));
    let inner = run(&["nsenter", &pidns, "sh", "-c", "busybox sleep 0.2 & echo $$"]);
    let inner: i32 = inner.trim().parse().unwrap();
    assert!(inner > 1 && inner < 100, "pid {inner} inside the namespace");
    std::thread::sleep(Duration::from_millis(500));
    let zombies_of_holder = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|s| {
            let rest = s.rsplit_once(") ").map_or("", |r| r.1);
            rest.starts_with("Z ") && rest.split(' ').nth(1) == Some(&holder.to_string())
        })
        .count();
    assert_eq!(zombies_of_holder, 0);

    podns::unpin(&dir, pinned.holder_pid).unwrap();
    assert_eq!(
        waitpid(Pid::from_raw(holder), None).unwrap(),
        WaitStatus::Signaled(Pid::from_raw(holder), Signal::SIGKILL, false)
    );
    assert!(!dir.exists());
    assert!(mounts_under(&dir).is_empty());
    podns::unpin(&dir, pinned.holder_pid).unwrap(); // idempotent
}

#[tokio::test]
async fn failures_leave_nothing_behind() {
    skip_unless_able!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pod");

    // A sysctl that does not exist: the helper fails after unsharing, and undoes everything.
    let mut req = full_request();
    req.sysctls
        .insert("net.ipv4.hull_no_such_sysctl".into(), "1".into());
    let err = podns::pin(Path::new(PINNS), &dir, &req).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PodNsError::Helper { .. }), "{err:?}");
    assert!(
        msg.contains("net.ipv4.hull_no_such_sysctl") && msg.contains("os error 2"),
        "{msg}"
    );
    assert!(!dir.exists() && mounts_under(tmp.path()).is_empty());

    // A sysctl of a namespace not created, a host-wide one: refused before any change.
    for (name, want) in [
        ("kernel.shmmax", "needs --ipc"),
        ("vm.swappiness", "not a namespaced"),
    ] {
        let req = PinRequest {
            net: true,
            pid: true,
            sysctls: [(name.to_owned(), "1".to_owned())].into(),
            ..PinRequest::default()
        };
        let msg = podns::pin(Path::new(PINNS), &dir, &req)
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(name) && msg.contains(want), "{msg}");
        assert!(!dir.exists());
    }

    // A directory already holding something is refused and left as it was.
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("net"), "mine").unwrap();
    let msg = podns::pin(Path::new(PINNS), &dir, &full_request())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not empty"), "{msg}");
    assert_eq!(fs::read_to_string(dir.join("net")).unwrap(), "mine");
    assert!(mounts_under(tmp.path()).is_empty());
    assert!(holders_for(tmp.path()).is_empty(), "no holder left");
}

#[tokio::test]
async fn unpin_never_kills_a_recycled_pid() {
    skip_unless_able!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pod");
    let req = PinRequest {
        pid: true,
        ..PinRequest::default()
    };
    let pinned = pin(&dir, &req).await;
    let holder = pinned.holder_pid.unwrap();
    // A record naming the wrong process: that process is spared, the real holder is found.
    let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
    podns::unpin(&dir, Some(bystander.id() as i32)).unwrap();
    assert!(alive(bystander.id() as i32), "bystander killed");
    assert_eq!(
        waitpid(Pid::from_raw(holder), None).unwrap(),
        WaitStatus::Signaled(Pid::from_raw(holder), Signal::SIGKILL, false)
    );
    assert!(!dir.exists());
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    // A holder that ends on SIGTERM, as a pod's init should.
    let pinned = pin(&dir, &req).await;
    let holder = pinned.holder_pid.unwrap();
    kill(Pid::from_raw(holder), Signal::SIGTERM).unwrap();
    assert_eq!(
        waitpid(Pid::from_raw(holder), None).unwrap(),
        WaitStatus::Exited(Pid::from_raw(holder), 0)
    );
    podns::unpin(&dir, Some(holder)).unwrap();
    assert!(!dir.exists());
}

/// The CNI tests (they share the helpers above).
#[path = "podns/net.rs"]
mod net;
