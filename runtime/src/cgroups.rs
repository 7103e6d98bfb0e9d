//! The container's cgroup, through youki's libcgroups: v1 (legacy and hybrid hosts), v2,
//! and the systemd driver where systemd runs.

use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, AnyManagerError, CgroupConfig,
    CgroupManager, CgroupSetup, ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::state::CgroupRecord;

/// Failures of cgroup management; each names the cgroup path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("systemd cgroup driver requested, but systemd is not running on this host (no /run/systemd/system)")]
    NoSystemd,
    #[error("cannot detect the cgroup layout of this host")]
    Setup(#[source] libcgroups::common::GetCgroupSetupError),
    #[error("linux.resources.unified needs cgroup v2, but this host uses cgroup v1")]
    UnifiedOnV1,
    #[error("cannot open cgroup {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<libcgroups::common::CreateCgroupSetupError>,
    },
    #[error("cannot place process {pid} in cgroup {path}")]
    AddTask {
        path: PathBuf,
        pid: i32,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot apply linux.resources to cgroup {path}")]
    Apply {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot list processes of cgroup {path}")]
    Pids {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
}

/// An open handle on a container's cgroup.
pub struct Cgroup {
    manager: AnyCgroupManager,
    record: CgroupRecord,
}

/// The cgroup path a container gets: `linux.cgroupsPath`, or a default derived from the id
/// (`/hull-<id>`, or `system.slice:hull:<id>` with the systemd driver).
pub fn default_path(configured: Option<&Path>, id: &str, systemd: bool) -> PathBuf {
    match configured {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ if systemd => PathBuf::from(format!("system.slice:hull:{id}")),
        _ => PathBuf::from(format!("/hull-{id}")),
    }
}

impl Cgroup {
    /// Opens (without creating) the cgroup described by `record`.
    pub fn open(record: &CgroupRecord, id: &str) -> Result<Self, CgroupError> {
        if record.systemd && !libcgroups::systemd::booted() {
            return Err(CgroupError::NoSystemd);
        }
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: record.path.clone(),
            systemd_cgroup: record.systemd,
            container_name: id.to_owned(),
        })
        .map_err(|source| CgroupError::Open {
            path: record.path.clone(),
            source: Box::new(source),
        })?;
        Ok(Self {
            manager,
            record: record.clone(),
        })
    }

    /// Adds `pid` (creating the cgroup directories as needed).
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|source| CgroupError::AddTask {
                path: self.record.path.clone(),
                pid,
                source: Box::new(source),
            })
    }

    /// Applies every limit in `linux.resources`.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let unified = resources.unified().as_ref().is_some_and(|u| !u.is_empty());
        if unified
            && !matches!(
                get_cgroup_setup().map_err(CgroupError::Setup)?,
                CgroupSetup::Unified
            )
        {
            return Err(CgroupError::UnifiedOnV1);
        }
        let disable_oom_killer = resources
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        let opt = ControllerOpt {
            resources,
            disable_oom_killer,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager
            .apply(&opt)
            .map_err(|source| CgroupError::Apply {
                path: self.record.path.clone(),
                source: Box::new(source),
            })
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let pids = self
            .manager
            .get_all_pids()
            .map_err(|source| CgroupError::Pids {
                path: self.record.path.clone(),
                source: Box::new(source),
            })?;
        Ok(pids.into_iter().map(Pid::as_raw).collect())
    }

    /// Kills what is left and removes the cgroup in every controller.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.manager.remove().map_err(|source| CgroupError::Remove {
            path: self.record.path.clone(),
            source: Box::new(source),
        })
    }
}

/// True when the cgroup's freezer reports it frozen (v1 freezer.state or v2 cgroup.freeze).
pub fn is_frozen(record: &CgroupRecord) -> bool {
    if record.path.as_os_str().is_empty() || record.systemd {
        return false;
    }
    let rel = record.path.strip_prefix("/").unwrap_or(&record.path);
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(rel)
        .join("freezer.state");
    if let Ok(s) = std::fs::read_to_string(v1) {
        return s.trim() == "FROZEN";
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("cgroup.freeze");
    std::fs::read_to_string(v2).is_ok_and(|s| s.trim() == "1")
}
