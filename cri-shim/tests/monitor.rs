//! Root integration test of `hull-cri-monitor` with the real `hull` runtime: the monitor
//! detaches, reports the created container, writes its output in the CRI log format,
//! reaps it and records the exit code; a failed create is reported with the runtime's
//! message and leaves no runtime state.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hull_cri::crilog::parse_line;
use hull_cri::monitor::{ExitRecord, Report};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `hull`, built from runtime/ into the same target directory as this test.
fn hull() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("hull");
    p.exists().then_some(p)
}

fn bundle(dir: &Path, script: &str) -> Result<PathBuf> {
    let b = dir.join("bundle");
    let st = Command::new(repo_root().join("bundles/busybox/build.sh"))
        .arg(&b)
        .args(["sh", "-c", script])
        .stdout(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("bundles/busybox/build.sh failed");
    }
    Ok(b)
}

struct Run {
    report: Report,
    exit_file: PathBuf,
    log: PathBuf,
}

fn monitor(dir: &Path, hull: &Path, id: &str, bundle: &Path) -> Result<Run> {
    monitor_with(dir, hull, id, bundle, &[])
}

fn monitor_with(dir: &Path, hull: &Path, id: &str, bundle: &Path, extra: &[&str]) -> Result<Run> {
    let exit_file = dir.join("exit.json");
    let log = dir.join("logs/ctr.log");
    std::fs::create_dir_all(log.parent().unwrap())?;
    let out = Command::new(env!("CARGO_BIN_EXE_hull-cri-monitor"))
        .args(["--id", id, "--bundle"])
        .arg(bundle)
        .arg("--runtime")
        .arg(hull)
        .arg("--runtime-root")
        .arg(dir.join("state"))
        .arg("--log")
        .arg(&log)
        .arg("--exit-file")
        .arg(&exit_file)
        .arg("--pid-file")
        .arg(dir.join("init.pid"))
        .arg("--runtime-log")
        .arg(dir.join("runtime.log"))
        .args(extra)
        .stdin(Stdio::null())
        // The monitor keeps its stderr for diagnostics while the container lives; a pipe
        // here would never reach EOF.
        .stderr(std::fs::File::create(dir.join("monitor.log"))?)
        .output()
        .context("running hull-cri-monitor")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let report =
        serde_json::from_str(text.trim()).with_context(|| format!("monitor report {text:?}"))?;
    Ok(Run {
        report,
        exit_file,
        log,
    })
}

fn wait_exit(path: &Path) -> Result<ExitRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(b) = std::fs::read(path) {
            return Ok(serde_json::from_slice(&b)?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no exit file {} after 20 s", path.display())
}

fn hull_cmd(hull: &Path, dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(hull)
        .arg("--root")
        .arg(dir.join("state"))
        .args(args)
        .output()?)
}

#[test]
fn output_goes_to_the_cri_log_and_the_exit_code_is_recorded() -> Result<()> {
    let Some(hull) = hull().filter(|_| is_root()) else {
        eprintln!("skipped: needs root and `cargo build -p hull`");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let id = format!("mon-{}", std::process::id());
    let b = bundle(dir.path(), "echo out; echo err >&2; printf partial; exit 3")?;
    let run = monitor(dir.path(), &hull, &id, &b)?;
    let Report::Created { pid, monitor } = run.report else {
        bail!("create failed: {:?}", run.report);
    };
    assert!(pid > 0 && monitor > 0);
    // The monitor is in its own session, not a child of this test.
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        monitor.to_string(),
        "monitor is a session leader"
    );
    let st = hull_cmd(&hull, dir.path(), &["start", &id])?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let exit = wait_exit(&run.exit_file)?;
    assert_eq!(exit.exit_code, 3);
    let log = std::fs::read_to_string(&run.log)?;
    let lines: Vec<_> = log.lines().map(|l| parse_line(l).unwrap()).collect();
    let texts: Vec<(String, String)> = lines
        .iter()
        .map(|l| (l.stream.as_str().to_string(), l.text.clone()))
        .collect();
    assert!(texts.contains(&("stdout".into(), "out".into())), "{log}");
    assert!(texts.contains(&("stderr".into(), "err".into())), "{log}");
    assert!(
        texts.contains(&("stdout".into(), "partial".into())),
        "{log}"
    );
    let _ = hull_cmd(&hull, dir.path(), &["delete", "--force", &id]);
    Ok(())
}

#[test]
fn a_failed_create_is_reported_and_leaves_no_state() -> Result<()> {
    let Some(hull) = hull().filter(|_| is_root()) else {
        eprintln!("skipped: needs root and `cargo build -p hull`");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let id = format!("monfail-{}", std::process::id());
    let b = bundle(dir.path(), "true")?;
    // An invalid config: the runtime must refuse it, naming the field.
    let cfg = b.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
    v["process"]["user"]["uid"] = serde_json::json!("root");
    std::fs::write(&cfg, serde_json::to_vec(&v)?)?;
    let run = monitor(dir.path(), &hull, &id, &b)?;
    let Report::Failed { message } = run.report else {
        bail!("create succeeded: {:?}", run.report);
    };
    assert!(message.contains("process.user.uid"), "{message}");
    let list = hull_cmd(&hull, dir.path(), &["list", "-q"])?;
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "");
    Ok(())
}

#[test]
fn a_terminal_is_received_over_the_console_socket_and_logged() -> Result<()> {
    let Some(hull) = hull().filter(|_| is_root()) else {
        eprintln!("skipped: needs root and `cargo build -p hull`");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let id = format!("montty-{}", std::process::id());
    let b = bundle(dir.path(), "test -t 1 && echo on-a-tty; exit 4")?;
    let cfg = b.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
    v["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(&cfg, serde_json::to_vec(&v)?)?;
    let run = monitor_with(dir.path(), &hull, &id, &b, &["--tty"])?;
    let Report::Created { .. } = run.report else {
        bail!("create failed: {:?}", run.report);
    };
    assert!(
        !dir.path().join("console.sock").exists(),
        "console socket left behind"
    );
    let st = hull_cmd(&hull, dir.path(), &["start", &id])?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(wait_exit(&run.exit_file)?.exit_code, 4);
    let log = std::fs::read_to_string(&run.log)?;
    let line = log
        .lines()
        .map(|l| parse_line(l).unwrap())
        .find(|l| l.text.trim_end() == "on-a-tty")
        .with_context(|| format!("no tty output in {log:?}"))?;
    assert_eq!(line.stream.as_str(), "stdout");
    let _ = hull_cmd(&hull, dir.path(), &["delete", "--force", &id]);
    Ok(())
}

#[test]
fn sigusr1_reopens_the_log_after_rotation() -> Result<()> {
    let Some(hull) = hull().filter(|_| is_root()) else {
        eprintln!("skipped: needs root and `cargo build -p hull`");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let id = format!("monrot-{}", std::process::id());
    // Prints "before", waits for /go (created below), then prints "after".
    let b = bundle(
        dir.path(),
        "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after",
    )?;
    let cfg = b.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
    v["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(&cfg, serde_json::to_vec(&v)?)?;
    let run = monitor(dir.path(), &hull, &id, &b)?;
    let Report::Created { monitor, .. } = run.report else {
        bail!("create failed: {:?}", run.report);
    };
    let st = hull_cmd(&hull, dir.path(), &["start", &id])?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&run.log)?.contains("before") {
        assert!(Instant::now() < deadline, "no output before rotation");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Rotate as kubelet does: rename, then ReopenContainerLog (SIGUSR1 to the monitor).
    let rotated = run.log.with_extension("log.1");
    std::fs::rename(&run.log, &rotated)?;
    let st = Command::new("kill")
        .args(["-USR1", &monitor.to_string()])
        .status()?;
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run.log.exists() {
        assert!(Instant::now() < deadline, "the log was not reopened");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(b.join("rootfs/tmp/go"), b"")?;
    wait_exit(&run.exit_file)?;
    let old = std::fs::read_to_string(&rotated)?;
    let new = std::fs::read_to_string(&run.log)?;
    assert!(old.contains("before") && !old.contains("after"), "{old}");
    assert!(new.contains("after") && !new.contains("before"), "{new}");
    let _ = hull_cmd(&hull, dir.path(), &["delete", "--force", &id]);
    Ok(())
}
