//! Root integration test: the spec `hull_cri::spec::container_spec` writes for a busybox
//! rootfs actually runs under the `hull` binary, with the user, groups, capabilities,
//! hostname and seccomp filter it asks for, seen from inside the container.
//!
//! Skips with a reason when not root or when a tool is missing. Needs `hull` built
//! (`cargo build -p hull`); found next to this test's target dir or at `$HULL_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use hull_cri::api;
use hull_cri::manifest::{ImageConfig, RunConfig};
use hull_cri::spec::{
    container_spec, ContainerContext, HostFacts, PodContext, PodFiles, PodNamespaces,
};

fn hull_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HULL_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/debug/deps/spec_run-* -> target/debug/hull
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("hull");
    p.is_file().then_some(p)
}

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    for tool in ["unshare", "jq", "mount", "umount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    if hull_bin().is_none() {
        return Some("the hull binary is not built (cargo build -p hull)".into());
    }
    None
}

/// Pinned UTS, IPC and network namespaces standing in for a pod; unmounted on drop.
struct FakePod {
    dir: PathBuf,
}

impl FakePod {
    fn new(dir: &Path) -> Result<Self> {
        let pod = Self {
            dir: dir.to_path_buf(),
        };
        for ns in ["uts", "ipc", "net"] {
            std::fs::write(dir.join(ns), "")?;
        }
        let st = Command::new("unshare")
            .arg(format!("--uts={}", dir.join("uts").display()))
            .arg(format!("--ipc={}", dir.join("ipc").display()))
            .arg(format!("--net={}", dir.join("net").display()))
            .args(["hostname", "pod-host"])
            .status()?;
        if !st.success() {
            bail!("unshare could not pin the pod namespaces");
        }
        Ok(pod)
    }

    fn namespaces(&self) -> PodNamespaces {
        PodNamespaces {
            net: Some(self.dir.join("net")),
            ipc: Some(self.dir.join("ipc")),
            uts: Some(self.dir.join("uts")),
            pid: None,
        }
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        for ns in ["uts", "ipc", "net"] {
            let _ = Command::new("umount").arg(self.dir.join(ns)).status();
        }
    }
}

/// Deletes the container on drop, whatever happened.
struct Container<'a> {
    hull: &'a Path,
    state: &'a Path,
    id: &'a str,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.hull)
            .arg("--root")
            .arg(self.state)
            .args(["delete", "--force", self.id])
            .output();
    }
}

fn busybox_rootfs(dir: &Path) -> Result<PathBuf> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bundles/busybox/build.sh");
    let out = Command::new("sh").arg(script).arg(dir).output()?;
    if !out.status.success() {
        bail!("build.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rootfs = dir.join("rootfs");
    // An image user with a supplementary group, as in critest's test images.
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/:/bin/sh\n",
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nwww-data:x:33:\nextra:x:50000:www-data\n",
    )?;
    Ok(rootfs)
}

/// CapBnd of a process holding exactly the default capabilities.
fn default_cap_mask() -> u64 {
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, SETPCAP 8,
    // NET_BIND_SERVICE 10, NET_RAW 13, SYS_CHROOT 18, MKNOD 27, AUDIT_WRITE 29, SETFCAP 31.
    [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        .iter()
        .fold(0, |m, b| m | (1u64 << b))
}

#[test]
fn the_spec_runs_under_hull() -> Result<()> {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let hull = hull_bin().context("hull binary")?;
    let tmp = tempfile::tempdir()?;
    let rootfs = busybox_rootfs(&tmp.path().join("bundle"))?;
    let pod_dir = tmp.path().join("pod");
    std::fs::create_dir(&pod_dir)?;
    let fake = FakePod::new(&pod_dir)?;

    let mut image: ImageConfig =
        serde_json::from_str(r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#)?;
    image.config = Some(RunConfig {
        user: Some("www-data".into()),
        entrypoint: Some(vec!["sh".into(), "-c".into()]),
        ..Default::default()
    });
    let script = "id; grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                  hostname; echo \"env=$GREETING\"; \
                  if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=denied; fi";
    let cfg = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "probe".into(),
            attempt: 0,
        }),
        args: vec![script.into()],
        envs: vec![api::KeyValue {
            key: "GREETING".into(),
            value: b"hi".to_vec(),
        }],
        linux: Some(api::LinuxContainerConfig {
            resources: None,
            security_context: Some(api::LinuxContainerSecurityContext {
                seccomp: Some(api::SecurityProfile::default()),
                no_new_privs: true,
                readonly_rootfs: true,
                supplemental_groups: vec![4242],
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let pod_cfg = api::PodSandboxConfig {
        hostname: "pod-host".into(),
        ..Default::default()
    };
    let pod = PodContext {
        id: "pod1",
        config: &pod_cfg,
        ns: fake.namespaces(),
        files: PodFiles::default(),
    };
    let id = format!("hull-cri-spec-{}", std::process::id());
    // One level, so `hull delete` removes all of it.
    let cgroups_path = format!("/{id}");
    let no_target = |_: &str| None;
    let ctr = ContainerContext {
        config: &cfg,
        image: &image,
        image_name: "busybox",
        rootfs: &rootfs,
        cgroups_path: &cgroups_path,
        target_pid: &no_target,
        image_volumes: &std::collections::HashMap::new(),
    };
    let spec = container_spec(&pod, &ctr, &HostFacts::detect())?;
    let bundle = tmp.path().join("bundle");
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec)?,
    )?;

    let state = tmp.path().join("state");
    let _guard = Container {
        hull: &hull,
        state: &state,
        id: &id,
    };
    let out = Command::new(&hull)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hull run failed: {stdout}\n{stderr}");

    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in:\n{stdout}\n{stderr}"))
            .to_string()
    };
    let id_line = line("uid=");
    assert!(
        id_line.starts_with("uid=33(www-data) gid=33(www-data)"),
        "{id_line}"
    );
    for g in ["33", "50000", "4242"] {
        assert!(id_line.contains(g), "group {g} missing: {id_line}");
    }
    let bnd = u64::from_str_radix(line("CapBnd:").split_whitespace().nth(1).unwrap(), 16)?;
    assert_eq!(bnd, default_cap_mask(), "{stdout}");
    // A non-root user keeps no effective capabilities across exec.
    assert!(line("CapEff:").ends_with("0000000000000000"), "{stdout}");
    assert_eq!(line("NoNewPrivs:").split_whitespace().nth(1), Some("1"));
    assert_eq!(line("Seccomp:").split_whitespace().nth(1), Some("2"));
    assert!(stdout.lines().any(|l| l == "pod-host"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "env=hi"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "unshare=denied"), "{stdout}");
    Ok(())
}
