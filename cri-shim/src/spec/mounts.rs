//! `mounts`: the standard filesystems, the pod's files, and the request's bind mounts.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};

use super::mountinfo;
use super::namespaces::Modes;
use super::{built, HostFacts, PodContext, SpecError};
use crate::api::{self, MountPropagation, NamespaceMode};

/// The mounts and the rootfs propagation they need.
pub struct Mounts {
    pub mounts: Vec<Mount>,
    /// `rshared` when a mount is bidirectional, `rslave` when one is host-to-container:
    /// propagation into a bind mount only works if the rootfs mount propagates too.
    pub rootfs_propagation: Option<String>,
}

fn mount(dest: &str, typ: &str, source: &Path, opts: &[&str]) -> Result<Mount, SpecError> {
    let b = MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    built("mounts", b.build())
}

fn bind(dest: &str, source: &Path, propagation: &str, ro: bool) -> Result<Mount, SpecError> {
    let mode = if ro { "ro" } else { "rw" };
    mount(dest, "bind", source, &["rbind", propagation, mode])
}

/// The filesystems every container gets (containerd's default spec, minus `/run`, which
/// would hide the image's own). `/sys` and the cgroup tree are read-only unless
/// privileged. `/dev/shm` is decided by the IPC mode.
fn standard(pod: &PodContext, privileged: bool, modes: &Modes) -> Result<Vec<Mount>, SpecError> {
    let ro = |opts: &[&'static str]| -> Vec<&'static str> {
        let mut v = opts.to_vec();
        if !privileged {
            v.push("ro");
        }
        v
    };
    let shm = match (modes.ipc, &pod.files.shm) {
        (NamespaceMode::Node, _) => bind("/dev/shm", Path::new("/dev/shm"), "rprivate", false)?,
        (NamespaceMode::Pod, Some(dir)) => bind("/dev/shm", dir, "rprivate", false)?,
        _ => mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    };
    Ok(vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        shm,
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &ro(&["nosuid", "noexec", "nodev"]),
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &ro(&["nosuid", "noexec", "nodev", "relatime"]),
        )?,
    ])
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// One request mount, checked. Returns the mount and its propagation option.
fn user_mount(
    i: usize,
    m: &api::Mount,
    host: &HostFacts,
    volumes: &HashMap<usize, PathBuf>,
) -> Result<(Mount, &'static str), SpecError> {
    let f = |name: &str| format!("mounts[{i}].{name}");
    if !m.container_path.starts_with('/') || m.container_path.contains('\0') {
        return Err(SpecError::invalid(
            f("container_path"),
            &m.container_path,
            "must be an absolute path",
        ));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(SpecError::unsupported(
            f("uidMappings"),
            "an id-mapped mount",
        ));
    }
    if m.recursive_read_only {
        return Err(SpecError::unsupported(f("recursive_read_only"), true));
    }
    // Id-mapped and recursively read-only mounts are refused for image volumes too.
    if m.image.is_some() {
        return image_volume(i, m, volumes);
    }
    if !m.host_path.starts_with('/') {
        return Err(SpecError::invalid(
            f("host_path"),
            &m.host_path,
            "must be an absolute path",
        ));
    }
    // Resolve links now, as containerd does: the host path is the operator's, and the
    // mount must not change meaning if the link changes before `hull create`.
    let src = std::fs::canonicalize(&m.host_path).map_err(|source| SpecError::HostPath {
        field: f("host_path"),
        path: PathBuf::from(&m.host_path),
        source,
    })?;
    let prop = MountPropagation::try_from(m.propagation)
        .map_err(|_| SpecError::invalid(f("propagation"), m.propagation, "unknown propagation"))?;
    let option = match prop {
        MountPropagation::PropagationPrivate => "rprivate",
        MountPropagation::PropagationHostToContainer => {
            let p = mountinfo::propagation(&host.mountinfo, &src)?;
            if !p.shared && !p.slave {
                return Err(SpecError::invalid(
                    f("propagation"),
                    "PROPAGATION_HOST_TO_CONTAINER",
                    format!(
                        "the host mount of {} is neither shared nor a slave",
                        src.display()
                    ),
                ));
            }
            "rslave"
        }
        MountPropagation::PropagationBidirectional => {
            if !mountinfo::propagation(&host.mountinfo, &src)?.shared {
                return Err(SpecError::invalid(
                    f("propagation"),
                    "PROPAGATION_BIDIRECTIONAL",
                    format!("the host mount of {} is not shared", src.display()),
                ));
            }
            "rshared"
        }
    };
    Ok((bind(&m.container_path, &src, option, m.readonly)?, option))
}

/// An image volume (`mounts[i].image`): a private read-only bind of the directory the
/// caller mounted for it (the image's read-only root, or its `image_sub_path`).
fn image_volume(
    i: usize,
    m: &api::Mount,
    volumes: &HashMap<usize, PathBuf>,
) -> Result<(Mount, &'static str), SpecError> {
    let f = |name: &str| format!("mounts[{i}].{name}");
    // The CRI defines image volumes as read-only; a writable one is a caller's mistake,
    // not something to quietly downgrade.
    if !m.readonly {
        return Err(SpecError::invalid(
            f("readonly"),
            false,
            "an image volume is read-only: set readonly",
        ));
    }
    if !m.host_path.is_empty() {
        return Err(SpecError::invalid(
            f("host_path"),
            &m.host_path,
            "must be empty for an image volume",
        ));
    }
    if m.propagation != MountPropagation::PropagationPrivate as i32 {
        return Err(SpecError::invalid(
            f("propagation"),
            m.propagation,
            "an image volume is private (PROPAGATION_PRIVATE)",
        ));
    }
    let src = volumes
        .get(&i)
        .ok_or_else(|| SpecError::invalid(f("image"), i, "no image volume was mounted for it"))?;
    Ok((bind(&m.container_path, src, "rprivate", true)?, "rprivate"))
}

/// Builds `mounts`. A request mount replaces a standard or pod mount at the same
/// destination; a request mount of `/dev` also replaces the standard ones under it.
/// `volumes` holds, by request mount index, the host directories of image volumes.
pub fn build(
    pod: &PodContext,
    cfg: &api::ContainerConfig,
    sc: &api::LinuxContainerSecurityContext,
    modes: &Modes,
    host: &HostFacts,
    volumes: &HashMap<usize, PathBuf>,
) -> Result<Mounts, SpecError> {
    let mut user = Vec::new();
    let mut rootfs_propagation = None;
    for (i, m) in cfg.mounts.iter().enumerate() {
        let (mount, prop) = user_mount(i, m, host, volumes)?;
        match prop {
            "rshared" => rootfs_propagation = Some("rshared".to_string()),
            "rslave" if rootfs_propagation.is_none() => {
                rootfs_propagation = Some("rslave".to_string());
            }
            _ => {}
        }
        user.push(mount);
    }
    let taken = |dest: &Path| user.iter().any(|m| m.destination() == dest);
    let user_dev = taken(Path::new("/dev"));
    let mut out: Vec<Mount> = standard(pod, sc.privileged, modes)?
        .into_iter()
        .filter(|m| !taken(m.destination()))
        .filter(|m| !(user_dev && m.destination().starts_with("/dev")))
        .collect();
    let mut extra = Vec::new();
    for (dest, file) in [
        ("/etc/hostname", &pod.files.hostname),
        ("/etc/resolv.conf", &pod.files.resolv_conf),
        ("/etc/hosts", &pod.files.hosts),
    ] {
        if let Some(src) = file.as_deref().filter(|_| !taken(Path::new(dest))) {
            extra.push(bind(dest, src, "rprivate", sc.readonly_rootfs)?);
        }
    }
    extra.extend(user);
    // Parents before children, so a mount is not hidden by one of its parent directory.
    extra.sort_by_key(|m| depth(m.destination()));
    out.extend(extra);
    Ok(Mounts {
        mounts: out,
        rootfs_propagation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::namespaces::modes;
    use crate::spec::testutil::{host, pod_config};
    use crate::spec::{PodFiles, PodNamespaces};

    struct Out {
        list: Vec<String>,
        prop: Option<String>,
    }

    fn run(
        files: PodFiles,
        mounts: Vec<api::Mount>,
        sc: &api::LinuxContainerSecurityContext,
        info: &str,
    ) -> Result<Out, SpecError> {
        run_with(files, mounts, sc, info, &HashMap::new())
    }

    fn run_with(
        files: PodFiles,
        mounts: Vec<api::Mount>,
        sc: &api::LinuxContainerSecurityContext,
        info: &str,
        volumes: &HashMap<usize, PathBuf>,
    ) -> Result<Out, SpecError> {
        let cfg = pod_config();
        let pod = PodContext {
            id: "p",
            config: &cfg,
            ns: PodNamespaces::default(),
            files,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut h = host();
        h.mountinfo = dir.path().join("mountinfo");
        std::fs::write(&h.mountinfo, info).unwrap();
        let c = api::ContainerConfig {
            mounts,
            ..Default::default()
        };
        let m = build(&pod, &c, sc, &modes(sc)?, &h, volumes)?;
        let list = m
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {}",
                    m.destination().display(),
                    m.typ().as_deref().unwrap_or(""),
                    m.source().as_deref().unwrap_or(Path::new("")).display(),
                    m.options().as_deref().unwrap_or_default().join(",")
                )
            })
            .collect();
        Ok(Out {
            list,
            prop: m.rootfs_propagation,
        })
    }

    fn find<'a>(o: &'a Out, dest: &str) -> Option<&'a String> {
        o.list.iter().find(|l| l.starts_with(&format!("{dest} ")))
    }

    fn um(host: &Path, dest: &str, ro: bool, prop: MountPropagation) -> api::Mount {
        api::Mount {
            container_path: dest.into(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: ro,
            propagation: prop as i32,
            ..Default::default()
        }
    }

    #[test]
    fn standard_mounts_and_privileged_sysfs() {
        let sc = api::LinuxContainerSecurityContext::default();
        let o = run(PodFiles::default(), vec![], &sc, "").unwrap();
        let dests: Vec<&str> = o
            .list
            .iter()
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert!(find(&o, "/sys").unwrap().ends_with(",ro"));
        assert!(find(&o, "/dev/shm").unwrap().contains("tmpfs"));
        let p = api::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        let o = run(PodFiles::default(), vec![], &p, "").unwrap();
        assert!(!find(&o, "/sys").unwrap().contains("ro"));
        assert!(!find(&o, "/sys/fs/cgroup").unwrap().ends_with(",ro"));
    }

    #[test]
    fn pod_files_and_shm() {
        let files = PodFiles {
            hostname: Some("/pod/hostname".into()),
            resolv_conf: Some("/pod/resolv.conf".into()),
            hosts: Some("/pod/hosts".into()),
            shm: Some("/pod/shm".into()),
        };
        let mut sc = api::LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..Default::default()
        };
        let o = run(files.clone(), vec![], &sc, "").unwrap();
        assert_eq!(
            find(&o, "/etc/hosts").unwrap(),
            "/etc/hosts bind /pod/hosts rbind,rprivate,ro"
        );
        assert_eq!(
            find(&o, "/dev/shm").unwrap(),
            "/dev/shm bind /pod/shm rbind,rprivate,rw"
        );
        assert!(find(&o, "/etc/hostname").is_some() && find(&o, "/etc/resolv.conf").is_some());
        sc.namespace_options = Some(api::NamespaceOption {
            ipc: NamespaceMode::Node as i32,
            ..Default::default()
        });
        let o = run(files, vec![], &sc, "").unwrap();
        assert_eq!(
            find(&o, "/dev/shm").unwrap(),
            "/dev/shm bind /dev/shm rbind,rprivate,rw"
        );
    }

    #[test]
    fn request_mounts_override_and_sort() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().canonicalize().unwrap();
        std::fs::write(src.join("hosts"), "").unwrap();
        let files = PodFiles {
            hosts: Some("/pod/hosts".into()),
            ..Default::default()
        };
        let mounts = vec![
            um(
                &src,
                "/data/sub",
                true,
                MountPropagation::PropagationPrivate,
            ),
            um(&src, "/data", false, MountPropagation::PropagationPrivate),
            um(
                &src.join("hosts"),
                "/etc/hosts",
                false,
                MountPropagation::PropagationPrivate,
            ),
            um(&src, "/dev", false, MountPropagation::PropagationPrivate),
        ];
        let sc = api::LinuxContainerSecurityContext::default();
        let o = run(files, mounts, &sc, "").unwrap();
        let s = src.display();
        assert_eq!(
            find(&o, "/data/sub").unwrap(),
            &format!("/data/sub bind {s} rbind,rprivate,ro")
        );
        let pos = |d: &str| {
            o.list
                .iter()
                .position(|l| l.starts_with(&format!("{d} ")))
                .unwrap()
        };
        assert!(pos("/data") < pos("/data/sub"));
        assert_eq!(
            find(&o, "/etc/hosts").unwrap(),
            &format!("/etc/hosts bind {s}/hosts rbind,rprivate,rw")
        );
        assert!(find(&o, "/dev/pts").is_none() && find(&o, "/dev/shm").is_none());
        assert!(find(&o, "/dev").unwrap().contains(" bind "));
        assert_eq!(o.prop, None);
    }

    #[test]
    fn missing_host_path_and_bad_fields_are_named() {
        let sc = api::LinuxContainerSecurityContext::default();
        let missing = um(
            Path::new("/nonexistent/hull-x"),
            "/x",
            false,
            MountPropagation::PropagationPrivate,
        );
        let e = run(PodFiles::default(), vec![missing], &sc, "")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("mounts[0].host_path") && e.contains("/nonexistent/hull-x"),
            "{e}"
        );
        let rel = um(
            Path::new("/tmp"),
            "x",
            false,
            MountPropagation::PropagationPrivate,
        );
        let e = run(PodFiles::default(), vec![rel], &sc, "")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mounts[0].container_path"), "{e}");
        let mut rro = um(
            Path::new("/tmp"),
            "/x",
            true,
            MountPropagation::PropagationPrivate,
        );
        rro.recursive_read_only = true;
        let e = run(PodFiles::default(), vec![rro], &sc, "")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("recursive_read_only"), "{e}");
    }

    #[test]
    fn propagation_needs_a_propagating_host_mount() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().canonicalize().unwrap();
        let sc = api::LinuxContainerSecurityContext::default();
        let private = "1 0 0:1 / / rw - ext4 /dev/x rw\n";
        let slave = "1 0 0:1 / / rw master:3 - ext4 /dev/x rw\n";
        let shared = "1 0 0:1 / / rw shared:3 - ext4 /dev/x rw\n";
        let h2c = || {
            vec![um(
                &src,
                "/m",
                false,
                MountPropagation::PropagationHostToContainer,
            )]
        };
        let bi = || {
            vec![um(
                &src,
                "/m",
                false,
                MountPropagation::PropagationBidirectional,
            )]
        };
        assert!(run(PodFiles::default(), h2c(), &sc, private).is_err());
        let o = run(PodFiles::default(), h2c(), &sc, slave).unwrap();
        assert!(find(&o, "/m").unwrap().contains("rslave"));
        assert_eq!(o.prop.as_deref(), Some("rslave"));
        let e = run(PodFiles::default(), bi(), &sc, slave)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("mounts[0].propagation") && e.contains("not shared"),
            "{e}"
        );
        let o = run(PodFiles::default(), bi(), &sc, shared).unwrap();
        assert!(find(&o, "/m").unwrap().contains("rshared"));
        assert_eq!(o.prop.as_deref(), Some("rshared"));
    }

    fn image_mount(dest: &str) -> api::Mount {
        api::Mount {
            container_path: dest.into(),
            readonly: true,
            image: Some(api::ImageSpec {
                image: "sha256:aa".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn image_volumes_bind_the_prepared_directory_read_only() {
        let sc = api::LinuxContainerSecurityContext::default();
        let volumes = HashMap::from([(1, PathBuf::from("/state/c1/volumes/1/rootfs/etc"))]);
        let mounts = vec![
            um(
                Path::new("/tmp"),
                "/data",
                false,
                MountPropagation::PropagationPrivate,
            ),
            image_mount("/mnt/image"),
        ];
        let o = run_with(PodFiles::default(), mounts, &sc, "", &volumes).unwrap();
        assert_eq!(
            find(&o, "/mnt/image").unwrap(),
            "/mnt/image bind /state/c1/volumes/1/rootfs/etc rbind,rprivate,ro"
        );
        // A volume the caller did not prepare is an error, never an empty bind.
        let e = run_with(
            PodFiles::default(),
            vec![image_mount("/m")],
            &sc,
            "",
            &volumes,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("mounts[0].image"), "{e}");
    }

    #[test]
    fn image_volumes_refuse_writable_host_path_and_propagation() {
        let sc = api::LinuxContainerSecurityContext::default();
        let volumes = HashMap::from([(0, PathBuf::from("/v"))]);
        let err = |m: api::Mount| {
            run_with(PodFiles::default(), vec![m], &sc, "", &volumes)
                .err()
                .unwrap()
                .to_string()
        };
        let mut rw = image_mount("/m");
        rw.readonly = false;
        assert!(err(rw).contains("mounts[0].readonly"));
        let mut hp = image_mount("/m");
        hp.host_path = "/etc".into();
        assert!(err(hp).contains("mounts[0].host_path"));
        let mut prop = image_mount("/m");
        prop.propagation = MountPropagation::PropagationBidirectional as i32;
        assert!(err(prop).contains("mounts[0].propagation"));
        let mut rro = image_mount("/m");
        rro.recursive_read_only = true;
        assert!(err(rro).contains("mounts[0].recursive_read_only"));
    }
}
