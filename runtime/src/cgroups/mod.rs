//! The container's cgroup: v1 (legacy and hybrid hosts), v2, and the systemd driver where
//! systemd runs. On v1 hull places the container itself (v1.rs) and writes its device
//! rules; youki's libcgroups applies the resource limits, reads statistics and freezes. On
//! v2 and with systemd, libcgroups does all but the device program (devices/).

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, AnyManagerError, CgroupConfig,
    CgroupManager, CgroupSetup, ControllerOpt, FreezerState,
};
use libcgroups::stats::Stats;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use crate::state::CgroupRecord;

mod devices;
mod io;
mod oom;
mod v1;
pub use devices::DeviceError;
pub use oom::OomWatch;

/// Where the unified (v2) hierarchy is mounted on a pure cgroup v2 host.
const UNIFIED_ROOT: &str = "/sys/fs/cgroup";

/// Failures of cgroup management; each names the cgroup path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("systemd cgroup driver requested, but systemd is not running on this host (no /run/systemd/system)")]
    NoSystemd,
    #[error("cgroups are disabled for this container (--cgroup-manager=disabled)")]
    Disabled,
    #[error("linux.resources sets limits, but cgroups are disabled (--cgroup-manager=disabled)")]
    LimitsWithoutCgroups,
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
    #[error("cannot join cgroup {path}")]
    Join {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list processes of cgroup {path}")]
    ReadPids {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}")]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot apply linux.resources to cgroup {path}")]
    Apply {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot change the freezer state of cgroup {path}")]
    Freeze {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot read statistics of cgroup {path}")]
    Stats {
        path: PathBuf,
        #[source]
        source: Box<AnyManagerError>,
    },
    #[error("cannot enforce device rules on cgroup {path}")]
    Devices {
        path: PathBuf,
        #[source]
        source: DeviceError,
    },
    #[error("linux.resources.blockIO.weight {weight} is outside 10..1000")]
    BlkioWeight { weight: u16 },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find the cgroup v2 path of process {pid} in {file}")]
    OwnCgroup { pid: i32, file: PathBuf },
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
    record: CgroupRecord,
    driver: Driver,
}

enum Driver {
    /// `--cgroup-manager=disabled`.
    Disabled,
    /// cgroupfs on a v1 host: the container's directory in every hierarchy, and
    /// libcgroups' manager, built only when limits, statistics or the freezer need it.
    V1 {
        dirs: Vec<(PathBuf, v1::Hierarchy)>,
        manager: OnceCell<AnyCgroupManager>,
    },
    /// cgroup v2 and the systemd driver.
    Lib(AnyCgroupManager),
}

/// The cgroup path a container gets: `linux.cgroupsPath`, or a default derived from the id
/// (`/hull-<id>`, or `system.slice:hull:<id>` with the systemd driver). A relative
/// cgroupfs path is resolved against hull's own cgroup, see [`resolve_relative`].
pub fn default_path(configured: Option<&Path>, id: &str, systemd: bool) -> PathBuf {
    match configured {
        Some(p) if !p.as_os_str().is_empty() && systemd => p.to_owned(),
        Some(p) if !p.as_os_str().is_empty() => {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            resolve_relative(p, &own)
        }
        _ if systemd => PathBuf::from(format!("system.slice:hull:{id}")),
        _ => PathBuf::from(format!("/hull-{id}")),
    }
}

/// Where a relative cgroupsPath goes, as runc 1.1 places it (cgroupfs driver),
/// given the runtime's /proc/self/cgroup:
/// - cgroup v2: below the *parent* of the runtime's own cgroup, which most likely
///   holds processes and so cannot have children with controllers
///   (libcontainer/cgroups/fs2/defaultpath.go, `_defaultDirPath`);
/// - cgroup v1: below the runtime's own cgroup in each hierarchy
///   (libcontainer/cgroups/fs/paths.go, `subsysPath`). libcgroups takes one path
///   for every hierarchy, so when hull's own cgroups differ between controllers
///   the path stays below the root, as before.
///
/// `..` cannot climb above the base: the path is cleaned as if absolute first,
/// as runc's `utils.CleanPath` does. Absolute paths are returned as they are.
pub fn resolve_relative(path: &Path, own: &str) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => clean.push(n),
            std::path::Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    let mut v1 = own
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, ctl, p) = (f.next()?, f.next()?, f.next()?);
            // Named hierarchies (name=systemd) are not libcgroups' to place.
            let managed = id != "0" && !ctl.is_empty() && !ctl.starts_with("name=");
            managed.then_some(p)
        })
        .peekable();
    let base = match v1.peek().copied() {
        Some(first) if v1.all(|p| p == first) => PathBuf::from(first),
        Some(_) => PathBuf::from("/"),
        None => {
            let own2 = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            Path::new(own2)
                .parent()
                .unwrap_or(Path::new("/"))
                .to_owned()
        }
    };
    base.join(clean)
}

impl Cgroup {
    /// Opens (without creating) the cgroup described by `record`.
    pub fn open(record: &CgroupRecord, id: &str) -> Result<Self, CgroupError> {
        let driver = if record.disabled {
            Driver::Disabled
        } else if record.systemd {
            if !libcgroups::systemd::booted() {
                return Err(CgroupError::NoSystemd);
            }
            Driver::Lib(manager(record, id)?)
        } else {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let hierarchies = v1::hierarchies(&mountinfo);
            // A v1 host has at least one hierarchy with controllers; a pure v2 host none.
            if hierarchies.iter().any(|h| !h.controllers.is_empty()) {
                let rel = record.path.strip_prefix("/").unwrap_or(&record.path);
                Driver::V1 {
                    dirs: hierarchies
                        .into_iter()
                        .map(|h| (h.mount.join(rel), h))
                        .collect(),
                    manager: OnceCell::new(),
                }
            } else {
                Driver::Lib(manager(record, id)?)
            }
        };
        Ok(Self {
            record: record.clone(),
            driver,
        })
    }

    /// libcgroups' manager: the one of v2 or systemd, or on v1 built on first use.
    fn lib(&self) -> Result<&AnyCgroupManager, CgroupError> {
        match &self.driver {
            Driver::Disabled => Err(CgroupError::Disabled),
            Driver::Lib(m) => Ok(m),
            Driver::V1 { manager: cell, .. } => {
                if let Some(m) = cell.get() {
                    return Ok(m);
                }
                let m = manager(&self.record, "")?;
                Ok(cell.get_or_init(|| m))
            }
        }
    }

    /// The container's directory in the v1 hierarchy with `controller`.
    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        match &self.driver {
            Driver::V1 { dirs, .. } => dirs
                .iter()
                .find(|(_, h)| h.has(controller))
                .map(|(d, _)| d.as_path()),
            _ => None,
        }
    }

    /// Adds `pid` (creating the cgroup directories as needed).
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.driver {
            Driver::Disabled => Ok(()),
            Driver::Lib(manager) => {
                manager
                    .add_task(Pid::from_raw(pid))
                    .map_err(|source| CgroupError::AddTask {
                        path: self.record.path.clone(),
                        pid,
                        source: Box::new(source),
                    })
            }
            Driver::V1 { dirs, .. } => {
                for (dir, h) in dirs {
                    let procs = dir.join("cgroup.procs");
                    v1::create(dir, h.has("cpuset"))
                        .and_then(|()| std::fs::write(&procs, pid.to_string()))
                        .map_err(|source| CgroupError::Join {
                            path: procs.clone(),
                            source,
                        })?;
                }
                Ok(())
            }
        }
    }

    /// The container's first limits, applied by `create` once `pid` (the init)
    /// is in the cgroup. Device rules are enforced even without
    /// `linux.resources.devices` (deny-all plus the built-in devices, as runc
    /// does): otherwise every device the container can create would open.
    pub fn setup(&self, resources: Option<&LinuxResources>, pid: i32) -> Result<(), CgroupError> {
        if let Some(r) = resources {
            self.apply_limits(r)?;
        }
        let rules = resources.and_then(|r| r.devices().as_deref());
        self.enforce_devices(rules.unwrap_or_default(), pid)
    }

    /// `update`: applies `resources` to the cgroup of the container whose init is
    /// `pid`. Device rules, when given, replace the container's.
    pub fn apply(&self, resources: &LinuxResources, pid: i32) -> Result<(), CgroupError> {
        self.apply_limits(resources)?;
        match resources.devices() {
            Some(rules) => self.enforce_devices(rules, pid),
            None => Ok(()),
        }
    }

    /// Writes the v1 devices lists, or attaches the v2 device program (through the
    /// directory of the cgroup `pid` is in when systemd placed it).
    fn enforce_devices(&self, rules: &[LinuxDeviceCgroup], pid: i32) -> Result<(), CgroupError> {
        let dir = match &self.driver {
            Driver::Disabled => return Ok(()),
            Driver::V1 { .. } => {
                let Some(dir) = self.v1_dir("devices") else {
                    return Ok(());
                };
                return devices::write_v1(dir, rules).map_err(|source| CgroupError::Devices {
                    path: dir.to_owned(),
                    source,
                });
            }
            Driver::Lib(AnyCgroupManager::V2(_)) => Path::new(UNIFIED_ROOT).join(self.relative()),
            Driver::Lib(_) => {
                if !matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified)) {
                    // systemd on a v1 host: libcgroups' v1 devices controller wrote them.
                    return Ok(());
                }
                own_v2_dir(pid)?
            }
        };
        devices::enforce(&dir, rules).map_err(|source| CgroupError::Devices { path: dir, source })
    }

    /// The cgroup path below the hierarchy's root.
    fn relative(&self) -> &Path {
        self.record
            .path
            .strip_prefix("/")
            .unwrap_or(&self.record.path)
    }

    /// Applies every limit in `linux.resources` through libcgroups.
    fn apply_limits(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if !has_limits(resources) {
            // Device rules only: enforce_devices' part, and nothing to build a manager for.
            return Ok(());
        }
        let v1 = matches!(self.driver, Driver::V1 { .. });
        let unified = resources.unified().as_ref().is_some_and(|u| !u.is_empty());
        if unified && v1 {
            return Err(CgroupError::UnifiedOnV1);
        }
        let manager = match self.lib() {
            Err(CgroupError::Disabled) => return Err(CgroupError::LimitsWithoutCgroups),
            r => r?,
        };
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
        // On v2 the blkio weight bypasses libcgroups (see io.rs).
        let weight = match manager {
            AnyCgroupManager::V2(_) => resources
                .block_io()
                .as_ref()
                .and_then(|b| b.weight())
                .filter(|w| *w != 0),
            _ => None,
        };
        let mut adjusted = None;
        if weight.is_some() || v1 {
            let mut r = resources.clone();
            if let (Some(b), Some(_)) = (r.block_io_mut(), weight) {
                b.set_weight(None);
            }
            if v1 {
                // The device lists are enforce_devices' to write.
                r.set_devices(None);
            }
            adjusted = Some(r);
        }
        let opt = ControllerOpt {
            resources: adjusted.as_ref().unwrap_or(resources),
            disable_oom_killer,
            oom_score_adj: None,
            freezer_state: None,
        };
        manager.apply(&opt).map_err(|source| CgroupError::Apply {
            path: self.record.path.clone(),
            source: Box::new(source),
        })?;
        match weight {
            Some(w) => io::write_weight(&Path::new(UNIFIED_ROOT).join(self.relative()), w),
            None => Ok(()),
        }
    }

    /// Pids of every process in the cgroup and the cgroups below it.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        if let Driver::V1 { dirs, .. } = &self.driver {
            let dir = self
                .v1_dir("freezer")
                .or_else(|| dirs.first().map(|(d, _)| d.as_path()))
                .ok_or(CgroupError::Disabled)?;
            return v1::pids(dir).map_err(|source| CgroupError::ReadPids {
                path: dir.to_owned(),
                source,
            });
        }
        let pids = self
            .lib()?
            .get_all_pids()
            .map_err(|source| CgroupError::Pids {
                path: self.record.path.clone(),
                source: Box::new(source),
            })?;
        Ok(pids.into_iter().map(Pid::as_raw).collect())
    }

    /// Freezes or thaws every process in the cgroup (v1 freezer, v2 cgroup.freeze).
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.lib()?
            .freeze(state)
            .map_err(|source| CgroupError::Freeze {
                path: self.record.path.clone(),
                source: Box::new(source),
            })
    }

    /// Resource usage, as libcgroups reads it.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.lib()?.stats().map_err(|source| CgroupError::Stats {
            path: self.record.path.clone(),
            source: Box::new(source),
        })
    }

    /// Kills what is left and removes the cgroup in every hierarchy.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match &self.driver {
            Driver::Disabled => Ok(()),
            Driver::Lib(manager) => manager.remove().map_err(|source| CgroupError::Remove {
                path: self.record.path.clone(),
                source: Box::new(source),
            }),
            Driver::V1 { dirs, .. } => {
                for (dir, _) in dirs {
                    v1::remove(dir).map_err(|source| CgroupError::RemoveDir {
                        path: dir.clone(),
                        source,
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// libcgroups' manager for `record`.
fn manager(record: &CgroupRecord, id: &str) -> Result<AnyCgroupManager, CgroupError> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: record.path.clone(),
        systemd_cgroup: record.systemd,
        container_name: id.to_owned(),
    })
    .map_err(|source| CgroupError::Open {
        path: record.path.clone(),
        source: Box::new(source),
    })
}

/// True when `r` sets anything besides device rules (which are the usual default of
/// generated configs). With cgroups disabled such limits are refused, never dropped.
fn has_limits(r: &LinuxResources) -> bool {
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.unified().as_ref().is_some_and(|u| !u.is_empty())
}

/// The unified-hierarchy directory of the cgroup process `pid` is in, from the
/// `0::` line of /proc/PID/cgroup.
fn own_v2_dir(pid: i32) -> Result<PathBuf, CgroupError> {
    let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or(CgroupError::OwnCgroup { pid, file })?;
    Ok(Path::new(UNIFIED_ROOT).join(rel.trim_start_matches('/')))
}

/// True when the cgroup's freezer reports it frozen (v1 freezer.state or v2 cgroup.freeze).
pub fn is_frozen(record: &CgroupRecord) -> bool {
    if record.path.as_os_str().is_empty() || record.systemd || record.disabled {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_like_runc() {
        let rel = Path::new("ctr/../../x/y");
        let v2 = "0::/user.slice/runner\n";
        assert_eq!(resolve_relative(rel, v2), PathBuf::from("/user.slice/x/y"));
        assert_eq!(resolve_relative(rel, "0::/\n"), PathBuf::from("/x/y"));
        let abs = Path::new("/abs/p");
        assert_eq!(resolve_relative(abs, v2), abs);
        let v1_same = "12:pids:/a/b\n11:cpu,cpuacct:/a/b\n1:name=systemd:/other\n0::/\n";
        assert_eq!(resolve_relative(rel, v1_same), PathBuf::from("/a/b/x/y"));
        let v1_mixed = "12:pids:/\n11:memory:/process_api/h\n0::/\n";
        assert_eq!(resolve_relative(rel, v1_mixed), PathBuf::from("/x/y"));
    }
}
