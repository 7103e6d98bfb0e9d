//! Building the container's root filesystem, all inside the container's mount namespace:
//! propagation, the rootfs bind, config mounts, /dev, masked and read-only paths, the cwd,
//! then pivot_root (or chroot) and the read-only remount of `/`.

mod cgroupfs;
mod copyup;
mod devices;
mod mounts;
mod options;
mod paths;
mod pivot;
mod resolve;
mod sysctl;

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

pub use mounts::MountCtx;
pub use resolve::Root;

/// A failed step of rootfs setup, naming the object it was working on.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot make the mount tree of the container private")]
    Propagation(#[source] io::Error),
    #[error("cannot bind the rootfs {path} onto itself")]
    RootBind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounts[{index}]: cannot mount on {dest}")]
    Mount {
        index: usize,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounts[{index}]: cannot use bind source {path}")]
    Source {
        index: usize,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounts[{index}]: bad options")]
    Option {
        index: usize,
        #[source]
        source: options::Unsupported,
    },
    #[error("mount destination {dest} is inside /proc and is not one runc allows")]
    ProcDest { dest: PathBuf },
    #[error("cannot create device {path}")]
    Device {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the /dev symlinks")]
    DevLinks(#[source] io::Error),
    #[error("cannot mask {path}")]
    Mask {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make {path} read-only")]
    Readonly {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the working directory (process.cwd) {path}")]
    Cwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot switch to the rootfs {path}")]
    Pivot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the root filesystem read-only")]
    ReadonlyRoot(#[source] io::Error),
}

/// Everything about the rootfs the init needs besides the spec.
pub struct RootfsPlan<'a> {
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub no_pivot: bool,
    pub in_user_ns: bool,
    pub new_cgroup_ns: bool,
    pub cwd: &'a Path,
    /// The container shares the host's mount namespace (no "mount" namespace in the
    /// config): leave the host's propagation alone and chroot instead of pivot_root.
    pub host_mount_ns: bool,
    /// process.terminal: /dev/console must exist before the root may turn read-only.
    pub terminal: bool,
}

/// First half of rootfs setup, up to where runc runs the createRuntime and
/// createContainer hooks: the private mount tree, the rootfs bind, config mounts, /dev.
pub fn prepare(spec: &Spec, plan: &RootfsPlan) -> Result<Root, RootfsError> {
    if !plan.host_mount_ns {
        // By default nothing mounted from here on propagates back to the host. A config's
        // rootfsPropagation replaces that first remount, as in runc's prepareRoot, so an
        // `rshared` root lets a container's mounts reach a shared host path.
        let flags = root_propagation(spec);
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| RootfsError::Propagation(e.into()))?;
        pivot::make_parent_private(plan.rootfs).map_err(RootfsError::Propagation)?;
    }
    // pivot_root needs the new root to be a mount point.
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    let bind_err = |source| RootfsError::RootBind {
        path: plan.rootfs.to_owned(),
        source,
    };
    nix::mount::mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        bind,
        None::<&str>,
    )
    .map_err(|e| bind_err(e.into()))?;
    if plan.host_mount_ns {
        // On the host's own tree: keep the container's mounts from propagating to peers.
        let private = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
        nix::mount::mount(
            None::<&str>,
            plan.rootfs,
            None::<&str>,
            private,
            None::<&str>,
        )
        .map_err(|e| bind_err(e.into()))?;
    }
    let root = Root::open(plan.rootfs).map_err(bind_err)?;
    let ctx = MountCtx {
        bundle: plan.bundle,
        new_cgroup_ns: plan.new_cgroup_ns,
    };
    let all_mounts = spec.mounts().as_deref().unwrap_or_default();
    for (index, m) in all_mounts.iter().enumerate() {
        mounts::mount_one(&root, m, index, &ctx)?;
    }
    let dev_bound = all_mounts.iter().any(|m| {
        resolve::clean(m.destination()) == Path::new("dev")
            && m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    });
    if !dev_bound {
        create_devices(spec, &root, plan.in_user_ns)?;
    }
    if plan.terminal {
        // The bind target of the pty, made now: the root may be read-only later.
        let console = Path::new("/dev/console");
        root.create_file(console)
            .map_err(|source| RootfsError::Device {
                path: console.into(),
                source,
            })?;
    }
    Ok(root)
}

/// The propagation `/` is remounted with first: `linux.rootfsPropagation`, else rslave.
fn root_propagation(spec: &Spec) -> MsFlags {
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref());
    match prop.map(options::propagation) {
        Some((flag, recursive)) if flag != 0 => {
            let f = MsFlags::from_bits_truncate(flag as _);
            if recursive {
                f | MsFlags::MS_REC
            } else {
                f
            }
        }
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

fn create_devices(spec: &Spec, root: &Root, in_user_ns: bool) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    let config_devices = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    for node in devices::wanted(config_devices) {
        devices::create(root, &node, in_user_ns).map_err(|source| RootfsError::Device {
            path: node.path.clone(),
            source,
        })?;
    }
    devices::symlinks(root).map_err(RootfsError::DevLinks)
}

/// Second half: sysctls, the cwd, masked and read-only paths, then pivot_root (or
/// chroot) and the root's read-only flag and propagation.
pub fn enter(spec: &Spec, plan: &RootfsPlan, root: Root) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // Before readonlyPaths, which usually include /proc/sys.
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        sysctl::write(&root, key, value).map_err(|source| RootfsError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    root.mkdir_all(plan.cwd)
        .map_err(|source| RootfsError::Cwd {
            path: plan.cwd.to_owned(),
            source,
        })?;
    protect_paths(spec, &root)?;
    let pivot_err = |source| RootfsError::Pivot {
        path: plan.rootfs.to_owned(),
        source,
    };
    if plan.host_mount_ns {
        pivot::chroot(&root).map_err(pivot_err)?;
    } else if plan.no_pivot {
        pivot::move_root(&root).map_err(pivot_err)?;
    } else {
        pivot::pivot(&root).map_err(pivot_err)?;
    }
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let propagation = linux.and_then(|l| l.rootfs_propagation().as_deref());
    pivot::finish_root(readonly, propagation).map_err(RootfsError::ReadonlyRoot)
}

/// `linux.maskedPaths` and `linux.readonlyPaths`.
fn protect_paths(spec: &Spec, root: &Root) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default();
    if !masked.is_empty() {
        let null = paths::NullSource::open().map_err(|source| RootfsError::Mask {
            path: "/dev/null".into(),
            source,
        })?;
        for p in masked {
            paths::mask(root, &null, Path::new(p)).map_err(|source| RootfsError::Mask {
                path: p.into(),
                source,
            })?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        paths::make_readonly(root, Path::new(p)).map_err(|source| RootfsError::Readonly {
            path: p.into(),
            source,
        })?;
    }
    Ok(())
}
