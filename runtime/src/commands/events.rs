//! `events`: resource statistics and OOM notifications in runc's JSON event shape
//! (`{"type":"stats","id":…,"data":{…}}`, `{"type":"oom","id":…}`).
//!
//! One single-threaded poll loop waits on three fds: a timerfd for the stats interval, a
//! cgroup v1 OOM eventfd (or an inotify watch on v2's memory.events), and the init's
//! pidfd, so the loop ends when the container does, without sleeping or polling files.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use libcgroups::stats::{BlkioDeviceStat, Stats};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use serde_json::{json, Value};

use super::{print, CmdError};
use crate::cgroups::Cgroup;
use crate::state::{Container, Status};
use crate::sys;

/// Parses runc's interval syntax: `5s`, `500ms`, `1m`, or plain seconds.
pub fn parse_interval(s: &str) -> Result<Duration, CmdError> {
    let bad = || CmdError::Usage {
        what: format!("--interval {s:?}: expected e.g. 5s or 500ms"),
    };
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn blkio(v: &[BlkioDeviceStat]) -> Value {
    v.iter()
        .map(|d| json!({"major": d.major, "minor": d.minor, "op": d.op_type.clone().unwrap_or_default(), "value": d.value}))
        .collect()
}

/// libcgroups statistics in runc's `types.Stats` JSON shape.
pub fn stats_json(s: &Stats) -> Value {
    let mem = |m: &libcgroups::stats::MemoryData| json!({"limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_count});
    let hugetlb: serde_json::Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|(k, h)| {
            (
                k.clone(),
                json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.fail_count}),
            )
        })
        .collect();
    let u = &s.cpu.usage;
    json!({
        "cpu": {
            "usage": {
                "total": u.usage_total, "percpu": u.per_core_usage_total,
                "percpu_kernel": u.per_core_usage_kernel, "percpu_user": u.per_core_usage_user,
                "kernel": u.usage_kernel, "user": u.usage_user
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time
            }
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(&s.memory.memory), "swap": mem(&s.memory.memswap),
            "kernel": mem(&s.memory.kernel), "kernelTCP": mem(&s.memory.kernel_tcp),
            "raw": s.memory.stats
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio(&s.blkio.serviced),
            "ioQueueRecursive": blkio(&s.blkio.queued),
            "ioServiceTimeRecursive": blkio(&s.blkio.service_time),
            "ioWaitTimeRecursive": blkio(&s.blkio.wait_time),
            "ioMergedRecursive": blkio(&s.blkio.merged),
            "ioTimeRecursive": blkio(&s.blkio.time),
            "sectorsRecursive": blkio(&s.blkio.sectors)
        },
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": null
    })
}

fn emit(kind: &str, id: &str, data: Option<Value>) -> Result<(), CmdError> {
    let mut ev = json!({"type": kind, "id": id});
    if let Some(d) = data {
        ev["data"] = d;
    }
    print(&(ev.to_string() + "\n"))
}

/// `events [--stats] [--interval D] ID`.
pub fn events(root: &Path, id: &str, stats_once: bool, interval: &str) -> Result<(), CmdError> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(CmdError::WrongState {
            id: id.into(),
            status: "stopped".into(),
            verb: "get events of".into(),
        });
    }
    let cg = Cgroup::open(&c.record.cgroup, id)?;
    if stats_once {
        return emit("stats", id, Some(stats_json(&cg.stats()?)));
    }
    let every = parse_interval(interval)?;
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
        .map_err(CmdError::from_nix)?;
    timer
        .set(
            Expiration::Interval(TimeSpec::from_duration(every)),
            TimerSetTimeFlags::empty(),
        )
        .map_err(CmdError::from_nix)?;
    let oom = crate::cgroups::OomWatch::open(&c.record.cgroup)?;
    let init = sys::pidfd_open(c.record.pid).map_err(|source| CmdError::Read {
        path: format!("/proc/{}", c.record.pid).into(),
        source,
    })?;
    loop {
        let mut fds = vec![
            PollFd::new(timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(init.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = oom.as_ref().map(|o| o.fd()) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(CmdError::from_nix(e)),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (tick, exited, oomed) = (ready(0), ready(1), ready(2));
        if oomed && oom.as_ref().is_some_and(|o| o.consume()) {
            emit("oom", id, None)?;
        }
        if exited {
            return Ok(());
        }
        if tick {
            timer.wait().map_err(CmdError::from_nix)?;
            emit("stats", id, Some(stats_json(&cg.stats()?)))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("fast").is_err());
    }

    #[test]
    fn stats_have_runc_keys() {
        let v = stats_json(&Stats::default());
        for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert!(v["cpu"]["throttling"].get("throttledPeriods").is_some());
    }
}
