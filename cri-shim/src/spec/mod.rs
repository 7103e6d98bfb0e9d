//! The translation of a CRI `CreateContainer` request into an OCI runtime spec
//! (`config.json`) that `hull create` runs, as runc would run containerd's.
//!
//! [`container_spec`] is pure apart from reading what the spec must describe: the
//! container rootfs's `/etc/passwd` and `/etc/group` (opened below the rootfs, never
//! following a link out of it), host paths of mounts and devices, the host's
//! `/proc/self/mountinfo` for propagation checks and a Localhost seccomp profile.
//! Facts about the host that change the output (AppArmor, cgroup v2, the capability count)
//! come in as a [`HostFacts`], so tests can state them.
//!
//! The spec is built from `oci-spec`'s types rather than JSON values: they are the types
//! `hull` parses config.json into, so a field name or a value of the wrong type cannot
//! slip through, and tests can hand the result straight to hull's own validator.

mod devices;
mod host;
mod mountinfo;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod seccomp_default;
mod security;
mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBuilder, RootBuilder, Spec, SpecBuilder};
use oci_spec::OciSpecError;

pub use host::{HostFacts, HULL_APPARMOR_PROFILE};
pub use seccomp_default::default_profile as default_seccomp_profile;
pub use security::DEFAULT_CAPABILITIES;
pub use user::ResolvedUser;

use crate::{api, manifest};

/// The runtime-spec version the output claims.
pub const OCI_VERSION: &str = "1.2.0";

/// Paths of the pod's pinned namespaces. `None` means the pod shares the host's namespace
/// of that kind (host network, host IPC, host PID), so a container joining the pod's
/// namespace gets no entry for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub pid: Option<PathBuf>,
}

/// Host files the pod prepared for its containers. `None` means there is none to bind
/// (the container then sees the image's own file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// Bound at `/etc/hostname`.
    pub hostname: Option<PathBuf>,
    /// Bound at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Bound at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// The pod's shared `/dev/shm` directory, bound when the container's IPC namespace is
    /// the pod's.
    pub shm: Option<PathBuf>,
}

/// The pod a container is created in.
pub struct PodContext<'a> {
    /// Sandbox id.
    pub id: &'a str,
    pub config: &'a api::PodSandboxConfig,
    pub ns: PodNamespaces,
    pub files: PodFiles,
}

/// One CreateContainer request with what hull-cri resolved for it.
pub struct ContainerContext<'a> {
    pub config: &'a api::ContainerConfig,
    /// The image's config (Entrypoint, Cmd, Env, User, WorkingDir).
    pub image: &'a manifest::ImageConfig,
    /// The image name recorded in the `io.kubernetes.cri.image-name` annotation.
    pub image_name: &'a str,
    /// The container's root filesystem (already assembled).
    pub rootfs: &'a Path,
    /// `linux.cgroupsPath`.
    pub cgroups_path: &'a str,
    /// Init pid of a running container of the pod, by container id, for the PID
    /// namespace mode TARGET; `None` when there is no such running container.
    pub target_pid: &'a dyn Fn(&str) -> Option<u32>,
    /// For each request mount with an `image` (by its index in `config.mounts`), the host
    /// directory the caller mounted read-only for it: the image's root or its sub path.
    pub image_volumes: &'a HashMap<usize, PathBuf>,
}

/// Why a request cannot be turned into a spec. Each names the request field
/// (`linux.security_context.run_as_username`, `mounts[2].host_path`) and its value.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{field} = {value:?} is not supported by hull-cri yet")]
    Unsupported { field: String, value: String },
    #[error("{field}: user {user:?} is not in the container's /etc/passwd")]
    UserNotFound { field: String, user: String },
    #[error("{field}: group {group:?} is not in the container's /etc/group")]
    GroupNotFound { field: String, group: String },
    #[error("cannot open the container rootfs {path}")]
    OpenRootfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} of the container rootfs")]
    ReadRootfsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: cannot use host path {path}")]
    HostPath {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {path} is not a character or block device")]
    NotADevice { field: String, path: PathBuf },
    #[error("{field}: cannot read the seccomp profile {path}")]
    SeccompRead {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: the seccomp profile {path} is not a valid profile")]
    SeccompParse {
        field: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("namespace_options.target_id = {id:?}: no running container with that id in the pod")]
    TargetNotRunning { id: String },
    #[error("cannot read the host's {path}")]
    HostFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building {what} of the spec")]
    Build {
        what: &'static str,
        #[source]
        source: OciSpecError,
    },
}

impl SpecError {
    fn invalid(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    fn unsupported(field: impl Into<String>, value: impl ToString) -> Self {
        Self::Unsupported {
            field: field.into(),
            value: value.to_string(),
        }
    }
}

/// Maps an oci-spec builder result (whose only failure is a missing required field).
fn built<T>(what: &'static str, r: Result<T, OciSpecError>) -> Result<T, SpecError> {
    r.map_err(|source| SpecError::Build { what, source })
}

/// The OCI `linux.resources` for UpdateContainerResources: the same mapping as at
/// creation, without device rules (the runtime keeps the ones it was created with).
pub fn update_resources(
    r: &api::LinuxContainerResources,
    host: &HostFacts,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    resources::fit_hugepages(resources::build(Some(r), Vec::new())?, host)
}

/// Builds the OCI runtime spec of one container of `pod`.
pub fn container_spec(
    pod: &PodContext,
    ctr: &ContainerContext,
    host: &HostFacts,
) -> Result<Spec, SpecError> {
    let default_sc = api::LinuxContainerSecurityContext::default();
    let sc = ctr
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .unwrap_or(&default_sc);
    security::check_unsupported(sc, host)?;
    if let Some(d) = ctr.config.cdi_devices.first() {
        return Err(SpecError::unsupported("CDI_devices[0].name", &d.name));
    }
    let modes = namespaces::modes(sc)?;
    let user = user::resolve(ctr.rootfs, sc, ctr.image)?;
    let caps = security::capabilities(sc, host)?;
    let seccomp = seccomp::select(sc, &caps)?;
    let process = process::build(pod, ctr, sc, host, &user, &caps, &modes)?;
    let (devices, device_rules) = devices::build(ctr.config, sc.privileged, host)?;
    let res = ctr.config.linux.as_ref().and_then(|l| l.resources.as_ref());
    let resources = resources::fit_hugepages(resources::build(res, device_rules)?, host)?;
    let mounts = mounts::build(pod, ctr.config, sc, &modes, host, ctr.image_volumes)?;
    let (masked, readonly) = security::masked_and_readonly(sc);
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces::build(pod, &modes, sc, host, ctr.target_pid)?)
        .resources(resources)
        .devices(devices)
        .cgroups_path(PathBuf::from(ctr.cgroups_path))
        .masked_paths(masked)
        .readonly_paths(readonly);
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }
    if let Some(p) = mounts.rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    let root = RootBuilder::default()
        .path(ctr.rootfs)
        .readonly(sc.readonly_rootfs);
    let spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(built("root", root.build())?)
        .process(process)
        .mounts(mounts.mounts)
        .linux(built("linux", linux.build())?)
        .annotations(annotations(pod, ctr));
    let mut spec = built("the spec", spec.build())?;
    // oci-spec's builders start from its `Default`, which names a hostname: the pod's UTS
    // namespace already carries its name, and a host-network pod must not rename the host.
    spec.set_hostname(None);
    Ok(spec)
}

/// The request's annotations, then the `io.kubernetes.cri.*` ones (containerd's names),
/// which win so a request cannot claim another sandbox.
fn annotations(pod: &PodContext, ctr: &ContainerContext) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = ctr
        .config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = pod.config.metadata.clone().unwrap_or_default();
    let name = ctr
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    for (k, v) in [
        ("container-type", "container".to_string()),
        ("container-name", name),
        ("sandbox-id", pod.id.to_string()),
        ("sandbox-name", meta.name),
        ("sandbox-namespace", meta.namespace),
        ("sandbox-uid", meta.uid),
        ("image-name", ctr.image_name.to_string()),
    ] {
        out.insert(format!("io.kubernetes.cri.{k}"), v);
    }
    out
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
