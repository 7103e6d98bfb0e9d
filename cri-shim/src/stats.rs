//! Container and pod statistics read from cgroups, for ContainerStats, ListContainerStats,
//! PodSandboxStats and ListPodSandboxStats.
//!
//! The host's layout is detected once from mountinfo ([`CgroupLayout::detect`]): cgroup v1
//! (legacy or hybrid; each controller mounted at its own point, possibly co-mounted as
//! `cpu,cpuacct`) or pure cgroup v2. A cgroup is named by its OCI `linux.cgroupsPath`,
//! which hull places at `<mount point>/<path>` in every v1 hierarchy and at
//! `<cgroup2 mount>/<path>` on v2.
//!
//! Files read, and the CRI fields they feed (the same sources containerd and cadvisor use):
//!
//! | field | v1 | v2 |
//! |---|---|---|
//! | cpu usage | `cpuacct.usage` (ns) | `cpu.stat` `usage_usec` |
//! | memory usage | `memory.usage_in_bytes` | `memory.current` |
//! | working set | usage − `memory.stat` `total_inactive_file` | usage − `inactive_file` |
//! | rss | `total_rss` | `anon` |
//! | page faults | `total_pgfault`, `total_pgmajfault` | `pgfault`, `pgmajfault` |
//! | limit | `memory.limit_in_bytes` | `memory.max` |
//! | oom kills | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | pids | `pids.current`, `pids.max` | same |
//!
//! The kernel flushes `memory.stat` counters lazily (every ~2 s), while the usage counter is
//! exact: working set, rss and page faults of a young cgroup may lag its usage.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api;

/// A v1 memory limit at or above this is "unlimited": the kernel reports its page counter
/// maximum (about 2^63 rounded to a page), and no machine has 4 EiB of memory.
const V1_UNLIMITED: u64 = 1 << 62;

/// Two CPU samples closer than this give no new rate: over a few milliseconds the rate is
/// noise, so the previous rate is reported instead.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(100);

/// Errors of reading cgroup statistics; each names the file or cgroup.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The mount table cannot be read.
    #[error("cannot read mount table {path}")]
    Mountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Neither a v1 hierarchy with cpuacct, memory or pids nor a cgroup2 mount exists.
    #[error("no cgroup v1 cpuacct/memory/pids hierarchy and no cgroup2 mount in mountinfo")]
    NoCgroupFs,
    /// The cgroups path is empty or climbs out of the hierarchy.
    #[error("invalid cgroups path {path:?}: must be non-empty, without `..`")]
    InvalidPath { path: PathBuf },
    /// The cgroup exists in none of the hierarchies read.
    #[error("cgroup {path} does not exist")]
    NotFound { path: PathBuf },
    /// A cgroup file cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroup file holds something other than what the kernel writes there.
    #[error("unexpected content {value:?} in {path}")]
    Parse { path: PathBuf, value: String },
}

/// Where the controllers stats needs are mounted on a cgroup v1 host (`None`: not mounted).
/// Co-mounted controllers (`cpu,cpuacct`) share a mount point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V1Mounts {
    /// The `cpu` hierarchy (not read for stats; listed so callers can find the cgroup).
    pub cpu: Option<PathBuf>,
    /// The `cpuacct` hierarchy.
    pub cpuacct: Option<PathBuf>,
    /// The `memory` hierarchy.
    pub memory: Option<PathBuf>,
    /// The `pids` hierarchy.
    pub pids: Option<PathBuf>,
}

/// The cgroup layout of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers, each at its mount point (legacy or hybrid layout).
    V1(V1Mounts),
    /// Pure cgroup v2: every controller in the hierarchy mounted here.
    V2 {
        /// The cgroup2 mount point, normally `/sys/fs/cgroup`.
        mount: PathBuf,
    },
}

impl CgroupLayout {
    /// Detects the layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, StatsError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| StatsError::Mountinfo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Detects the layout from mountinfo text (`proc(5)` format). If any v1 hierarchy
    /// carries cpuacct, memory or pids, the host is v1 (a hybrid host's controller-less
    /// cgroup2 mount is ignored); otherwise the first cgroup2 mount is the v2 hierarchy.
    /// The first mount of each controller wins (later ones are bind mounts of it).
    pub fn from_mountinfo(text: &str) -> Result<Self, StatsError> {
        let mut v1 = V1Mounts::default();
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut fields = right.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4).map(unescape) else {
                continue;
            };
            match fstype {
                "cgroup2" => {
                    v2.get_or_insert(mount_point);
                }
                "cgroup" => {
                    for option in options.split(',') {
                        let slot = match option {
                            "cpu" => &mut v1.cpu,
                            "cpuacct" => &mut v1.cpuacct,
                            "memory" => &mut v1.memory,
                            "pids" => &mut v1.pids,
                            _ => continue,
                        };
                        slot.get_or_insert_with(|| mount_point.clone());
                    }
                }
                _ => {}
            }
        }
        if v1.cpuacct.is_some() || v1.memory.is_some() || v1.pids.is_some() {
            Ok(CgroupLayout::V1(v1))
        } else if let Some(mount) = v2 {
            Ok(CgroupLayout::V2 { mount })
        } else {
            Err(StatsError::NoCgroupFs)
        }
    }

    /// The directories of the cgroup `cgroups_path` in the hierarchies stats reads (v1:
    /// cpu, cpuacct, memory, pids, each once; v2: one). They need not exist.
    pub fn dirs(&self, cgroups_path: &Path) -> Result<Vec<PathBuf>, StatsError> {
        let rel = relative(cgroups_path)?;
        let mut out: Vec<PathBuf> = Vec::new();
        match self {
            CgroupLayout::V1(m) => {
                for mount in [&m.cpu, &m.cpuacct, &m.memory, &m.pids]
                    .into_iter()
                    .flatten()
                {
                    let dir = mount.join(&rel);
                    if !out.contains(&dir) {
                        out.push(dir);
                    }
                }
            }
            CgroupLayout::V2 { mount } => out.push(mount.join(&rel)),
        }
        Ok(out)
    }

    /// Reads the statistics of the cgroup `cgroups_path` now. A controller that is not
    /// mounted (v1) or not enabled for the cgroup (v2) leaves its fields `None`; a cgroup
    /// found in no hierarchy is [`StatsError::NotFound`]. `cpu_usage_nano_cores` is left
    /// `None`: it needs a previous sample, see [`CpuSampler`].
    pub fn read(&self, cgroups_path: &Path) -> Result<CgroupStats, StatsError> {
        let rel = relative(cgroups_path)?;
        let mut stats = CgroupStats::empty(now_ns());
        let found = match self {
            CgroupLayout::V1(m) => read_v1(m, &rel, &mut stats)?,
            CgroupLayout::V2 { mount } => read_v2(&mount.join(&rel), &mut stats)?,
        };
        if !found {
            return Err(StatsError::NotFound {
                path: cgroups_path.to_path_buf(),
            });
        }
        Ok(stats)
    }
}

/// Statistics of one cgroup at one instant. `None`: the controller is missing (or, for
/// `available_bytes` and `pids_limit`, there is no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// When the files were read, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Cumulative CPU time of all cores, nanoseconds.
    pub cpu_usage_core_nanos: Option<u64>,
    /// CPU rate in core-nanoseconds per second, filled by [`CpuSampler::update`].
    pub cpu_usage_nano_cores: Option<u64>,
    /// All memory charged to the cgroup, page cache included.
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages (floor 0): what kubelet evicts on.
    pub memory_working_set_bytes: Option<u64>,
    /// Anonymous and swap-cache memory.
    pub memory_rss_bytes: Option<u64>,
    /// The memory limit, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Cumulative page faults.
    pub page_faults: Option<u64>,
    /// Cumulative major page faults.
    pub major_page_faults: Option<u64>,
    /// Limit minus working set (floor 0); `None` when unlimited.
    pub available_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup (needed for reason OOMKilled).
    pub oom_kill: Option<u64>,
    /// Tasks in the cgroup.
    pub pids_current: Option<u64>,
    /// The pids limit, `None` when unlimited.
    pub pids_limit: Option<u64>,
}

/// The memory figures both layouts provide, before derivation.
struct MemoryRaw {
    usage: u64,
    inactive_file: u64,
    rss: Option<u64>,
    pgfault: Option<u64>,
    pgmajfault: Option<u64>,
    limit: Option<u64>,
    oom_kill: Option<u64>,
}

impl CgroupStats {
    fn empty(timestamp_ns: i64) -> Self {
        Self {
            timestamp_ns,
            ..Self::default()
        }
    }

    fn set_memory(&mut self, m: MemoryRaw) {
        let working_set = m.usage.saturating_sub(m.inactive_file);
        self.memory_usage_bytes = Some(m.usage);
        self.memory_working_set_bytes = Some(working_set);
        self.memory_rss_bytes = m.rss;
        self.memory_limit_bytes = m.limit;
        self.page_faults = m.pgfault;
        self.major_page_faults = m.pgmajfault;
        self.available_bytes = m.limit.map(|l| l.saturating_sub(working_set));
        self.oom_kill = m.oom_kill;
    }

    /// The CRI `CpuUsage`, or `None` without the cpu accounting controller.
    pub fn cpu_usage(&self) -> Option<api::CpuUsage> {
        let core = self.cpu_usage_core_nanos?;
        Some(api::CpuUsage {
            timestamp: self.timestamp_ns,
            usage_core_nano_seconds: Some(value(core)),
            usage_nano_cores: self.cpu_usage_nano_cores.map(value),
            psi: None,
        })
    }

    /// The CRI `MemoryUsage`, or `None` without the memory controller.
    pub fn memory_usage(&self) -> Option<api::MemoryUsage> {
        let usage = self.memory_usage_bytes?;
        Some(api::MemoryUsage {
            timestamp: self.timestamp_ns,
            working_set_bytes: self.memory_working_set_bytes.map(value),
            available_bytes: self.available_bytes.map(value),
            usage_bytes: Some(value(usage)),
            rss_bytes: self.memory_rss_bytes.map(value),
            page_faults: self.page_faults.map(value),
            major_page_faults: self.major_page_faults.map(value),
            psi: None,
        })
    }

    /// The CRI `ProcessUsage` (process count from `pids.current`), or `None` without the
    /// pids controller.
    pub fn process_usage(&self) -> Option<api::ProcessUsage> {
        Some(api::ProcessUsage {
            timestamp: self.timestamp_ns,
            process_count: Some(value(self.pids_current?)),
        })
    }

    /// A container's CRI `ContainerStats` from its cgroup and, when known, the usage of its
    /// writable layer (see [`filesystem_usage`]).
    pub fn container_stats(
        &self,
        attributes: api::ContainerAttributes,
        writable_layer: Option<api::FilesystemUsage>,
    ) -> api::ContainerStats {
        api::ContainerStats {
            attributes: Some(attributes),
            cpu: self.cpu_usage(),
            memory: self.memory_usage(),
            writable_layer,
            swap: None,
            io: None,
        }
    }

    /// A pod's CRI `PodSandboxStats` from the pod's cgroup (the containers' cgroup parent)
    /// and its containers' stats. Network usage is not filled here.
    pub fn pod_sandbox_stats(
        &self,
        attributes: api::PodSandboxAttributes,
        containers: Vec<api::ContainerStats>,
    ) -> api::PodSandboxStats {
        api::PodSandboxStats {
            attributes: Some(attributes),
            linux: Some(api::LinuxPodSandboxStats {
                cpu: self.cpu_usage(),
                memory: self.memory_usage(),
                network: None,
                process: self.process_usage(),
                containers,
                io: None,
            }),
            windows: None,
        }
    }
}

fn value(value: u64) -> api::UInt64Value {
    api::UInt64Value { value }
}

/// The CRI `FilesystemUsage` of a writable layer stored on the filesystem at `mountpoint`.
pub fn filesystem_usage(
    timestamp_ns: i64,
    mountpoint: &Path,
    bytes: u64,
    inodes: u64,
) -> api::FilesystemUsage {
    api::FilesystemUsage {
        timestamp: timestamp_ns,
        fs_id: Some(api::FilesystemIdentifier {
            mountpoint: mountpoint.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(value(bytes)),
        inodes_used: Some(value(inodes)),
    }
}

/// Bytes allocated and inodes used by a container's writable layer (its overlay upper
/// directory), each inode counted once. A missing directory is an error (`NotFound`), not
/// zero usage: it means the container's layer is gone.
pub fn writable_layer_usage(upper: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(upper)?;
    crate::fsutil::usage(upper)
}

/// Derives `usage_nano_cores` from consecutive samples of each cgroup. The server holds one
/// in a `Mutex` and passes every fresh [`CgroupStats`] through [`CpuSampler::update`].
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: HashMap<PathBuf, Sample>,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    timestamp_ns: i64,
    usage: u64,
    rate: Option<u64>,
}

impl CpuSampler {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `stats.cpu_usage_nano_cores` from the previous sample of `key` (the cgroups
    /// path) and remembers this one. The first sample of a cgroup gives no rate, nor does
    /// one where the counter went backwards (the cgroup was recreated). A sample within
    /// 100 ms of the remembered one reports the remembered rate and is not kept, so that
    /// back-to-back calls do not shrink the window to noise.
    pub fn update(&mut self, key: &Path, stats: &mut CgroupStats) {
        let Some(usage) = stats.cpu_usage_core_nanos else {
            self.last.remove(key);
            return;
        };
        let now = Sample {
            timestamp_ns: stats.timestamp_ns,
            usage,
            rate: None,
        };
        let next = match self.last.get(key) {
            Some(prev) if usage >= prev.usage => {
                let dt = now.timestamp_ns.saturating_sub(prev.timestamp_ns);
                if dt < MIN_RATE_WINDOW.as_nanos() as i64 {
                    stats.cpu_usage_nano_cores = prev.rate;
                    return;
                }
                let rate = u128::from(usage - prev.usage) * 1_000_000_000 / dt as u128;
                Sample {
                    rate: Some(u64::try_from(rate).unwrap_or(u64::MAX)),
                    ..now
                }
            }
            _ => now,
        };
        stats.cpu_usage_nano_cores = next.rate;
        self.last.insert(key.to_path_buf(), next);
    }

    /// Drops the sample of a removed cgroup.
    pub fn forget(&mut self, key: &Path) {
        self.last.remove(key);
    }

    /// Keeps only the samples whose key `keep` accepts (e.g. the cgroups still listed).
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        self.last.retain(|k, _| keep(k));
    }
}

/// Returns whether the cgroup was found in any v1 hierarchy.
fn read_v1(m: &V1Mounts, rel: &Path, stats: &mut CgroupStats) -> Result<bool, StatsError> {
    let mut found = false;
    if let Some(mount) = &m.cpuacct {
        if let Some(usage) = read_u64_opt(&mount.join(rel).join("cpuacct.usage"))? {
            stats.cpu_usage_core_nanos = Some(usage);
            found = true;
        }
    }
    if let Some(mount) = &m.memory {
        let dir = mount.join(rel);
        if let Some(usage) = read_u64_opt(&dir.join("memory.usage_in_bytes"))? {
            let stat = read(&dir.join("memory.stat"))?;
            let limit = read_u64(&dir.join("memory.limit_in_bytes"))?;
            let oom_control = read_opt(&dir.join("memory.oom_control"))?;
            stats.set_memory(MemoryRaw {
                usage,
                inactive_file: stat_value(&stat, "total_inactive_file").unwrap_or(0),
                rss: stat_value(&stat, "total_rss"),
                pgfault: stat_value(&stat, "total_pgfault"),
                pgmajfault: stat_value(&stat, "total_pgmajfault"),
                limit: (limit < V1_UNLIMITED).then_some(limit),
                // Kernels before 4.13 lack the line: then the count is unknown.
                oom_kill: oom_control.and_then(|t| stat_value(&t, "oom_kill")),
            });
            found = true;
        }
    }
    if let Some(mount) = &m.pids {
        found |= read_pids(&mount.join(rel), stats)?;
    }
    Ok(found)
}

/// Returns whether the cgroup directory exists.
fn read_v2(dir: &Path, stats: &mut CgroupStats) -> Result<bool, StatsError> {
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(StatsError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    // cpu.stat is a core file: present even when the cpu controller is not enabled.
    if let Some(text) = read_opt(&dir.join("cpu.stat"))? {
        let usec = stat_value(&text, "usage_usec").ok_or_else(|| StatsError::Parse {
            path: dir.join("cpu.stat"),
            value: text.clone(),
        })?;
        stats.cpu_usage_core_nanos = Some(usec.saturating_mul(1000));
    }
    if let Some(usage) = read_u64_opt(&dir.join("memory.current"))? {
        let stat = read(&dir.join("memory.stat"))?;
        let events = read_opt(&dir.join("memory.events"))?;
        stats.set_memory(MemoryRaw {
            usage,
            inactive_file: stat_value(&stat, "inactive_file").unwrap_or(0),
            rss: stat_value(&stat, "anon"),
            pgfault: stat_value(&stat, "pgfault"),
            pgmajfault: stat_value(&stat, "pgmajfault"),
            limit: read_max(&dir.join("memory.max"))?,
            oom_kill: events.and_then(|t| stat_value(&t, "oom_kill")),
        });
    }
    read_pids(dir, stats)?;
    Ok(true)
}

/// Fills the pids fields from `dir`; returns whether `pids.current` exists.
fn read_pids(dir: &Path, stats: &mut CgroupStats) -> Result<bool, StatsError> {
    let Some(current) = read_u64_opt(&dir.join("pids.current"))? else {
        return Ok(false);
    };
    stats.pids_current = Some(current);
    stats.pids_limit = read_max(&dir.join("pids.max"))?;
    Ok(true)
}

/// The cgroups path relative to a hierarchy's mount point, refusing `..`.
fn relative(path: &Path) -> Result<PathBuf, StatsError> {
    let invalid = || StatsError::InvalidPath {
        path: path.to_path_buf(),
    };
    if path.as_os_str().is_empty() {
        return Err(invalid());
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(invalid()),
        }
    }
    Ok(rel)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn read(path: &Path) -> Result<String, StatsError> {
    fs::read_to_string(path).map_err(|source| StatsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file; `None` if it does not exist (controller absent or not enabled).
fn read_opt(path: &Path) -> Result<Option<String>, StatsError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatsError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, StatsError> {
    text.trim().parse().map_err(|_| StatsError::Parse {
        path: path.to_path_buf(),
        value: text.to_owned(),
    })
}

fn read_u64(path: &Path) -> Result<u64, StatsError> {
    parse_u64(path, &read(path)?)
}

fn read_u64_opt(path: &Path) -> Result<Option<u64>, StatsError> {
    read_opt(path)?.map(|t| parse_u64(path, &t)).transpose()
}

/// A limit file (`memory.max`, `pids.max`): a number, or `max` for no limit (`None`).
/// A missing file is no limit too.
fn read_max(path: &Path) -> Result<Option<u64>, StatsError> {
    match read_opt(path)? {
        Some(t) if t.trim() == "max" => Ok(None),
        Some(t) => parse_u64(path, &t).map(Some),
        None => Ok(None),
    }
}

/// The value of `key` in a flat-keyed file (`key value` per line), as memory.stat.
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests;
