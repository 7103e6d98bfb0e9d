//! Root integration test: statistics of a real cgroup (v1 on this host, v2 where the host is
//! pure v2). A busy-looping `sh` is moved into a fresh cgroup, its CPU, memory and pids are
//! read through `hull_cri::stats`, then the process is reaped and the cgroup removed.
//! Skips with a reason when not root or when the needed controllers are not mounted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hull_cri::api::ContainerAttributes;
use hull_cri::stats::{CgroupLayout, CpuSampler};

/// Kills and reaps a child on drop, so no process outlives the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test cgroup's directories; removed on drop (after the child, declared later, is
/// reaped), so a failing assertion leaves nothing behind.
struct TestCgroup(Vec<PathBuf>);

impl TestCgroup {
    fn remove(&self) -> Result<()> {
        for dir in &self.0 {
            // The last task may still be leaving the cgroup right after wait(): retry EBUSY.
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(16) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => return Err(e).with_context(|| format!("rmdir {}", dir.display())),
                }
            }
        }
        Ok(())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Why the test cannot run here, if it cannot.
fn skip_reason(layout: &CgroupLayout) -> Option<String> {
    if !is_root() {
        return Some("not root: creating cgroups needs root".into());
    }
    match layout {
        CgroupLayout::V1(m) if m.cpuacct.is_none() || m.memory.is_none() || m.pids.is_none() => {
            Some(format!(
                "cgroup v1 host without cpuacct, memory or pids mounted: {m:?}"
            ))
        }
        CgroupLayout::V1(_) => None,
        CgroupLayout::V2 { mount } => enable_v2_controllers(mount).err().map(|e| format!("{e:#}")),
    }
}

/// On v2, a child cgroup has the cpu, memory and pids files only if the root's
/// `cgroup.subtree_control` enables them (systemd normally does; enable what is missing).
fn enable_v2_controllers(mount: &Path) -> Result<()> {
    let control = mount.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).with_context(|| format!("{}", control.display()))?;
    for c in ["cpu", "memory", "pids"] {
        if !enabled.split_whitespace().any(|e| e == c) {
            fs::write(&control, format!("+{c}")).with_context(|| {
                format!("cgroup v2: cannot enable {c} in {}", control.display())
            })?;
        }
    }
    Ok(())
}

#[test]
fn stats_of_a_real_cgroup() -> Result<()> {
    let layout = CgroupLayout::detect()?;
    if let Some(reason) = skip_reason(&layout) {
        eprintln!("SKIP stats_of_a_real_cgroup: {reason}");
        return Ok(());
    }
    let path = PathBuf::from(format!("/hull-test-stats-{}", std::process::id()));
    let cgroup = TestCgroup(layout.dirs(&path)?);
    for dir in &cgroup.0 {
        fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }

    // The child waits on stdin until it is in the cgroup, then execs a fresh shell so that
    // its new memory is charged to the cgroup (v1 does not move existing charges).
    let child = Command::new("sh")
        .args(["-c", "read go; exec sh -c 'while :; do :; done'"])
        .stdin(Stdio::piped())
        .spawn()
        .context("spawn sh")?;
    let mut child = Reaped(child);
    for dir in &cgroup.0 {
        fs::write(dir.join("cgroup.procs"), child.0.id().to_string())
            .with_context(|| format!("move child into {}", dir.display()))?;
    }
    child.0.stdin.take().context("stdin")?.write_all(b"go\n")?;

    let mut sampler = CpuSampler::new();
    std::thread::sleep(Duration::from_millis(300));
    let mut first = layout.read(&path)?;
    sampler.update(&path, &mut first);
    std::thread::sleep(Duration::from_millis(400));
    let mut s = layout.read(&path)?;
    sampler.update(&path, &mut s);
    eprintln!("stats of {}: {s:#?}", path.display());

    let cpu = s.cpu_usage_core_nanos.context("cpu usage")?;
    if cpu == 0 || cpu < first.cpu_usage_core_nanos.unwrap_or(0) {
        bail!("cpu usage {cpu} did not grow from {first:?}");
    }
    let rate = s
        .cpu_usage_nano_cores
        .context("cpu rate from two samples")?;
    // One single-threaded loop uses at most one core (slack for sampling jitter).
    assert!(rate > 0 && rate <= 1_500_000_000, "rate {rate}");
    let usage = s.memory_usage_bytes.context("memory usage")?;
    assert!(usage > 0, "memory usage is 0");
    assert!(s.memory_working_set_bytes.context("working set")? <= usage);
    // memory.stat counters are flushed by the kernel lazily (every ~2 s), unlike the usage
    // counter: wait for them rather than race the flush.
    let deadline = Instant::now() + Duration::from_secs(6);
    let flushed = loop {
        let m = layout.read(&path)?;
        if m.page_faults.context("page faults")? > 0 && m.memory_rss_bytes.unwrap_or(0) > 0 {
            break m;
        }
        if Instant::now() > deadline {
            bail!("memory.stat counters stayed 0: {m:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(flushed.memory_working_set_bytes <= flushed.memory_usage_bytes);
    assert_eq!(s.oom_kill, Some(0), "nothing was OOM-killed");
    assert_eq!(s.pids_current, Some(1), "one shell in the cgroup");
    assert_eq!(s.memory_limit_bytes, None, "no limit was set");
    assert_eq!(s.available_bytes, None);

    let cri = s.container_stats(ContainerAttributes::default(), None);
    assert_eq!(
        cri.cpu.and_then(|c| c.usage_nano_cores).map(|v| v.value),
        Some(rate)
    );
    assert_eq!(
        cri.memory.and_then(|m| m.usage_bytes).map(|v| v.value),
        Some(usage)
    );

    drop(child); // killed and reaped before the cgroup goes
    cgroup.remove()?;
    for dir in &cgroup.0 {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(matches!(
        layout.read(&path),
        Err(hull_cri::stats::StatsError::NotFound { .. })
    ));
    Ok(())
}
