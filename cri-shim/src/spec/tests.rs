//! Whole-spec tests: the pieces together, checked by hull's own config validator and
//! seccomp compiler (hull is a dev-dependency for exactly this).

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};

use super::testutil::{fake_rootfs, host, pod_config};
use super::*;
use crate::manifest::{ImageConfig, RunConfig};

fn image() -> ImageConfig {
    let mut img: ImageConfig =
        serde_json::from_str(r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
    img.config = Some(RunConfig {
        user: Some("www-data".into()),
        cmd: Some(vec!["sh".into()]),
        env: Some(vec!["PATH=/bin".into()]),
        ..Default::default()
    });
    img
}

fn pod_ns() -> PodNamespaces {
    PodNamespaces {
        net: Some("/run/hull-cri/p1/net".into()),
        ipc: Some("/run/hull-cri/p1/ipc".into()),
        uts: Some("/run/hull-cri/p1/uts".into()),
        pid: None,
    }
}

fn make(cfg: &api::ContainerConfig, rootfs: &Path, h: &HostFacts) -> Result<Spec, SpecError> {
    let pc = pod_config();
    let pod = PodContext {
        id: "p1",
        config: &pc,
        ns: pod_ns(),
        files: PodFiles::default(),
    };
    let img = image();
    let no_target = |_: &str| None;
    let ctr = ContainerContext {
        config: cfg,
        image: &img,
        image_name: "docker.io/library/busybox:latest",
        rootfs,
        cgroups_path: "/kubepods/p1/c1",
        target_pid: &no_target,
        image_volumes: &std::collections::HashMap::new(),
    };
    container_spec(&pod, &ctr, h)
}

fn with_sc(sc: api::LinuxContainerSecurityContext) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        linux: Some(api::LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        annotations: [
            (
                "io.kubernetes.cri.sandbox-id".to_string(),
                "spoofed".to_string(),
            ),
            ("team".to_string(), "a".to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

/// Serialises the spec and parses it back with hull's config loader, which applies
/// runtime-spec's and hull's own rules.
fn hull_accepts(spec: &Spec) {
    let json = serde_json::to_vec(spec).unwrap();
    if let Err(e) = hull::config::parse(&json, Path::new("config.json")) {
        panic!(
            "hull refuses the spec: {e}: {:?}",
            std::error::Error::source(&e)
        );
    }
}

#[test]
fn a_default_container() {
    let root = fake_rootfs();
    let spec = make(&with_sc(Default::default()), root.path(), &host()).unwrap();
    hull_accepts(&spec);
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_deref().unwrap(), ["sh"]);
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(
        p.user().additional_gids().as_deref(),
        Some(&[33, 50000][..])
    );
    assert!(p
        .env()
        .as_ref()
        .unwrap()
        .contains(&"HOSTNAME=pod-host".to_string()));
    let caps = p.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(p.apparmor_profile().is_none());
    assert_eq!(p.no_new_privileges(), Some(false));
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/p1/c1"))
    );
    assert!(
        linux.seccomp().is_none(),
        "no profile asked: unconfined, like containerd"
    );
    assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 11);
    let types: Vec<_> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| n.typ())
        .collect();
    assert!(
        !types.contains(&LinuxNamespaceType::Pid),
        "pod on the host PID namespace"
    );
    assert!(
        types.contains(&LinuxNamespaceType::Mount) && types.contains(&LinuxNamespaceType::Network)
    );
    let ann = spec.annotations().as_ref().unwrap();
    assert_eq!(ann["io.kubernetes.cri.sandbox-id"], "p1");
    assert_eq!(ann["io.kubernetes.cri.container-name"], "app");
    assert_eq!(ann["io.kubernetes.cri.container-type"], "container");
    assert_eq!(
        ann["io.kubernetes.cri.image-name"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(ann["team"], "a");
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
    assert!(
        spec.hostname().is_none(),
        "the pod's UTS namespace already has its name"
    );
    assert!(
        p.rlimits().is_none(),
        "limits are inherited, not oci-spec's default 1024"
    );
    let json = serde_json::to_string(&spec).unwrap();
    assert!(
        !json.contains("youki"),
        "no oci-spec default leaks into the spec"
    );
}

#[test]
fn a_privileged_container() {
    let root = fake_rootfs();
    let sc = api::LinuxContainerSecurityContext {
        privileged: true,
        seccomp: Some(api::SecurityProfile::default()),
        ..Default::default()
    };
    let spec = make(&with_sc(sc), root.path(), &host()).unwrap();
    hull_accepts(&spec);
    let p = spec.process().as_ref().unwrap();
    let caps = p
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .clone()
        .unwrap();
    assert!(caps.contains(&Capability::SysAdmin) && caps.len() == 41);
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    assert!(linux
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .any(|d| d.path() == Path::new("/dev/null")));
}

#[test]
fn runtime_default_seccomp_compiles_with_hull() {
    let root = fake_rootfs();
    for add in [vec![], vec!["SYS_ADMIN".to_string()]] {
        let sc = api::LinuxContainerSecurityContext {
            seccomp: Some(api::SecurityProfile::default()),
            readonly_rootfs: true,
            no_new_privs: true,
            capabilities: Some(api::Capability {
                add_capabilities: add,
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = make(&with_sc(sc), root.path(), &host()).unwrap();
        hull_accepts(&spec);
        let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        let filter = hull::seccomp::compile(&seccomp).unwrap();
        assert!(filter.instructions().len() < hull::seccomp::MAX_INSNS);
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
    }
}

#[test]
fn cgroup_v2_hosts_get_a_cgroup_namespace() {
    let root = fake_rootfs();
    let mut h = host();
    h.cgroup_v2 = true;
    let spec = make(&with_sc(Default::default()), root.path(), &h).unwrap();
    hull_accepts(&spec);
    let types: Vec<_> = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .iter()
        .flatten()
        .map(|n| n.typ())
        .collect();
    assert!(types.contains(&LinuxNamespaceType::Cgroup));
}

#[test]
fn oom_score_adj_is_kept_above_what_the_host_lets_hull_cri_set() {
    let root = fake_rootfs();
    let mut cfg = with_sc(Default::default());
    cfg.linux.as_mut().unwrap().resources = Some(api::LinuxContainerResources {
        oom_score_adj: -997,
        ..Default::default()
    });
    let adj = |h: &HostFacts| {
        make(&cfg, root.path(), h)
            .unwrap()
            .process()
            .as_ref()
            .unwrap()
            .oom_score_adj()
    };
    let mut h = host();
    assert_eq!(adj(&h), Some(-997));
    // Without CAP_SYS_RESOURCE the floor is hull-cri's own value.
    h.min_oom_score_adj = 0;
    assert_eq!(adj(&h), Some(0));
}

#[test]
fn errors_name_the_field_and_create_nothing() {
    let root = fake_rootfs();
    let mut cfg = with_sc(api::LinuxContainerSecurityContext {
        run_as_username: "ghost".into(),
        ..Default::default()
    });
    let e = make(&cfg, root.path(), &host()).unwrap_err().to_string();
    assert!(
        e.contains("linux.security_context.run_as_username") && e.contains("ghost"),
        "{e}"
    );
    let missing = root.path().join("no/such/dir");
    cfg = with_sc(Default::default());
    cfg.mounts = vec![api::Mount {
        container_path: "/data".into(),
        host_path: missing.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let e = make(&cfg, root.path(), &host()).unwrap_err().to_string();
    assert!(
        e.contains("mounts[0].host_path") && e.contains("no/such/dir"),
        "{e}"
    );
    assert!(!missing.exists(), "a missing host path is not created");
    cfg = with_sc(Default::default());
    cfg.cdi_devices = vec![api::CdiDevice {
        name: "vendor.com/gpu=0".into(),
    }];
    let e = make(&cfg, root.path(), &host()).unwrap_err().to_string();
    assert!(
        e.contains("CDI_devices[0].name") && e.contains("vendor.com/gpu=0"),
        "{e}"
    );
}
