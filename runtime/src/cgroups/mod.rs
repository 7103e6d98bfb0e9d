//! The container's cgroup, through youki's libcgroups: v1 (legacy and hybrid hosts), v2,
//! and the systemd driver where systemd runs.

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
    Extra {
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
    /// `None` with `--cgroup-manager=disabled`.
    manager: Option<AnyCgroupManager>,
    record: CgroupRecord,
    /// The container's directories in hierarchies libcgroups does not manage.
    extra: Vec<PathBuf>,
}

/// Mount points of the hierarchies libcgroups leaves alone on v1 hosts: named ones
/// (`name=systemd`) and, on hybrid hosts, the controller-less cgroup2 mount. runc places
/// the container in these too, so that /proc/self/cgroup and the container's view of
/// /sys/fs/cgroup show its own cgroup in every hierarchy.
fn extra_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let named = fstype == "cgroup" && super_opts.split(',').any(|o| o.starts_with("name="));
        let hybrid_unified = fstype == "cgroup2" && mount_point == "/sys/fs/cgroup/unified";
        if named || hybrid_unified {
            out.push(PathBuf::from(mount_point));
        }
    }
    out
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
        if record.disabled {
            return Ok(Self {
                manager: None,
                record: record.clone(),
                extra: Vec::new(),
            });
        }
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
        let extra = match (&manager, record.systemd) {
            (AnyCgroupManager::V1(_), false) => {
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                let rel = record.path.strip_prefix("/").unwrap_or(&record.path);
                extra_hierarchies(&mountinfo)
                    .into_iter()
                    .map(|m| m.join(rel))
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(Self {
            manager: Some(manager),
            record: record.clone(),
            extra,
        })
    }

    fn enabled(&self) -> Result<&AnyCgroupManager, CgroupError> {
        self.manager.as_ref().ok_or(CgroupError::Disabled)
    }

    /// Adds `pid` (creating the cgroup directories as needed).
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        let Some(manager) = &self.manager else {
            return Ok(());
        };
        manager
            .add_task(Pid::from_raw(pid))
            .map_err(|source| CgroupError::AddTask {
                path: self.record.path.clone(),
                pid,
                source: Box::new(source),
            })?;
        for dir in &self.extra {
            let procs = dir.join("cgroup.procs");
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&procs, pid.to_string()))
                .map_err(|source| CgroupError::Extra {
                    path: procs.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The container's first limits, applied by `create` once `pid` (the init)
    /// is in the cgroup. On cgroup v2 the device program is attached even
    /// without `linux.resources.devices` (deny-all plus the built-in devices,
    /// as runc does), since v2 otherwise lets every device open.
    pub fn setup(&self, resources: Option<&LinuxResources>, pid: i32) -> Result<(), CgroupError> {
        if let Some(r) = resources {
            self.apply_limits(r)?;
        }
        let rules = resources.and_then(|r| r.devices().as_deref());
        self.enforce_devices(rules.unwrap_or_default(), pid)
    }

    /// `update`: applies `resources` to the cgroup of the container whose init is
    /// `pid`. Device rules, when given, replace the container's device program.
    pub fn apply(&self, resources: &LinuxResources, pid: i32) -> Result<(), CgroupError> {
        self.apply_limits(resources)?;
        match resources.devices() {
            Some(rules) => self.enforce_devices(rules, pid),
            None => Ok(()),
        }
    }

    /// On cgroup v2, attaches the device program of `rules` (through the
    /// directory of the cgroup `pid` is in when systemd placed it).
    fn enforce_devices(&self, rules: &[LinuxDeviceCgroup], pid: i32) -> Result<(), CgroupError> {
        let dir = match &self.manager {
            None | Some(AnyCgroupManager::V1(_)) => return Ok(()),
            Some(AnyCgroupManager::V2(_)) => Path::new(UNIFIED_ROOT).join(self.relative()),
            Some(AnyCgroupManager::Systemd(_)) => {
                if !matches!(get_cgroup_setup(), Ok(CgroupSetup::Unified)) {
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
        let Some(manager) = &self.manager else {
            return only_devices(resources);
        };
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
        // On v2 the blkio weight bypasses libcgroups (see io.rs).
        let weight = match manager {
            AnyCgroupManager::V2(_) => resources
                .block_io()
                .as_ref()
                .and_then(|b| b.weight())
                .filter(|w| *w != 0),
            _ => None,
        };
        let without_weight;
        let resources = match weight {
            Some(_) => {
                let mut r = resources.clone();
                if let Some(b) = r.block_io_mut() {
                    b.set_weight(None);
                }
                without_weight = r;
                &without_weight
            }
            None => resources,
        };
        let opt = ControllerOpt {
            resources,
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

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let pids = self
            .enabled()?
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
        self.enabled()?
            .freeze(state)
            .map_err(|source| CgroupError::Freeze {
                path: self.record.path.clone(),
                source: Box::new(source),
            })
    }

    /// Resource usage, as libcgroups reads it.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        self.enabled()?
            .stats()
            .map_err(|source| CgroupError::Stats {
                path: self.record.path.clone(),
                source: Box::new(source),
            })
    }

    /// Kills what is left and removes the cgroup in every controller.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let Some(manager) = &self.manager else {
            return Ok(());
        };
        manager.remove().map_err(|source| CgroupError::Remove {
            path: self.record.path.clone(),
            source: Box::new(source),
        })?;
        for dir in &self.extra {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(CgroupError::Extra {
                        path: dir.clone(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// With cgroups disabled, only a device list may be present (it is the usual default of
/// generated configs); any real limit is refused rather than silently dropped.
fn only_devices(r: &LinuxResources) -> Result<(), CgroupError> {
    let limits = r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.unified().as_ref().is_some_and(|u| !u.is_empty());
    if limits {
        Err(CgroupError::LimitsWithoutCgroups)
    } else {
        Ok(())
    }
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

    #[test]
    fn finds_named_and_hybrid_unified_hierarchies() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  33 25 0:29 / /mnt/other rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            extra_hierarchies(mi),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }
}
