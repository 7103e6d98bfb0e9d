//! `linux.resources` from the request's LinuxContainerResources. Zero means "not set" in
//! CRI, so only non-zero values become limits. CRI carries no pids limit for a container:
//! kubelet sets the pod's on the pod cgroup, and `unified` (`pids.max`) covers cgroup v2.

use oci_spec::runtime::{
    LinuxCpu, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxHugepageLimitBuilder,
    LinuxMemory, LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::{built, SpecError};
use crate::api;

const RES: &str = "linux.resources";

fn positive(field: &str, v: i64) -> Result<Option<u64>, SpecError> {
    match v {
        0 => Ok(None),
        v if v > 0 => Ok(Some(v as u64)),
        v => Err(SpecError::invalid(
            format!("{RES}.{field}"),
            v,
            "must not be negative",
        )),
    }
}

/// Hugepage limits on a host without the hugetlb controller. A limit at or above what the
/// host can hand out at all is met without enforcement (kubelet sends a 0 limit for every
/// page size of the node, and a node without hugepages meets it), so it is dropped; a
/// limit the host could exceed is refused, as it cannot be enforced.
pub fn fit_hugepages(
    mut res: LinuxResources,
    host: &super::HostFacts,
) -> Result<LinuxResources, SpecError> {
    if host.hugetlb_cgroup {
        return Ok(res);
    }
    let Some(limits) = res.hugepage_limits().clone() else {
        return Ok(res);
    };
    for (i, l) in limits.iter().enumerate() {
        let capacity = host.hugepage_capacity(l.page_size());
        if u64::try_from(l.limit()).unwrap_or(0) < capacity {
            return Err(SpecError::invalid(
                format!("{RES}.hugepage_limits[{i}]"),
                format!("{} {}", l.page_size(), l.limit()),
                "cannot be enforced: this host has no hugetlb cgroup controller and more hugepages than the limit",
            ));
        }
    }
    res.set_hugepage_limits(None);
    Ok(res)
}

/// Builds `linux.resources`, with the device rules already decided.
pub fn build(
    res: Option<&api::LinuxContainerResources>,
    devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResourcesBuilder::default().devices(devices);
    let Some(r) = res else {
        return built(RES, out.build());
    };
    if let Some(cpu) = cpu(r)? {
        out = out.cpu(cpu);
    }
    if let Some(mem) = memory(r)? {
        out = out.memory(mem);
    }
    let pages = hugepages(r)?;
    if !pages.is_empty() {
        out = out.hugepage_limits(pages);
    }
    if !r.unified.is_empty() {
        // Passed through: hull (like runc) refuses it on a cgroup v1 host with a message.
        out = out.unified(
            r.unified
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    built(RES, out.build())
}

/// `linux.resources.cpu`, or none when the request sets no CPU field.
fn cpu(r: &api::LinuxContainerResources) -> Result<Option<LinuxCpu>, SpecError> {
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Some(p) = positive("cpu_period", r.cpu_period)? {
        cpu = cpu.period(p);
        any_cpu = true;
    }
    // A quota of -1 is "unlimited", which runc writes as such.
    if r.cpu_quota != 0 {
        if r.cpu_quota < -1 {
            return Err(SpecError::invalid(
                format!("{RES}.cpu_quota"),
                r.cpu_quota,
                "must be -1 or positive",
            ));
        }
        cpu = cpu.quota(r.cpu_quota);
        any_cpu = true;
    }
    if let Some(s) = positive("cpu_shares", r.cpu_shares)? {
        cpu = cpu.shares(s);
        any_cpu = true;
    }
    for (field, v) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if v.is_empty() {
            continue;
        }
        if !v
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
        {
            return Err(SpecError::invalid(
                format!("{RES}.{field}"),
                v,
                "must be a list like 0-3,5",
            ));
        }
        cpu = if field == "cpuset_cpus" {
            cpu.cpus(v)
        } else {
            cpu.mems(v)
        };
        any_cpu = true;
    }
    if !any_cpu {
        return Ok(None);
    }
    built("linux.resources.cpu", cpu.build()).map(Some)
}

/// `linux.resources.memory`, or none when the request sets neither limit nor swap.
fn memory(r: &api::LinuxContainerResources) -> Result<Option<LinuxMemory>, SpecError> {
    let mut mem = LinuxMemoryBuilder::default();
    let limit = positive("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    let swap = r.memory_swap_limit_in_bytes;
    if swap < -1 {
        return Err(SpecError::invalid(
            format!("{RES}.memory_swap_limit_in_bytes"),
            swap,
            "must be -1 or positive",
        ));
    }
    if let Some(l) = limit {
        mem = mem.limit(l as i64);
    }
    if swap != 0 {
        mem = mem.swap(swap);
    }
    if limit.is_none() && swap == 0 {
        return Ok(None);
    }
    built("linux.resources.memory", mem.build()).map(Some)
}

/// `linux.resources.hugepageLimits`, page sizes checked.
fn hugepages(r: &api::LinuxContainerResources) -> Result<Vec<LinuxHugepageLimit>, SpecError> {
    let mut pages = Vec::new();
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        let ok = h.page_size.len() > 2
            && h.page_size.ends_with('B')
            && h.page_size[..h.page_size.len() - 2]
                .chars()
                .all(|c| c.is_ascii_digit());
        if !ok {
            let f = format!("{RES}.hugepage_limits[{i}].page_size");
            return Err(SpecError::invalid(
                f,
                &h.page_size,
                "must look like 2MB or 1GB",
            ));
        }
        let limit = i64::try_from(h.limit).map_err(|_| {
            SpecError::invalid(
                format!("{RES}.hugepage_limits[{i}].limit"),
                h.limit,
                "is too large",
            )
        })?;
        let b = LinuxHugepageLimitBuilder::default()
            .page_size(h.page_size.clone())
            .limit(limit);
        pages.push(built("linux.resources.hugepageLimits", b.build())?);
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugepage_limits_without_the_controller_are_dropped_only_when_already_met() {
        let r = api::LinuxContainerResources {
            hugepage_limits: vec![api::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            ..Default::default()
        };
        let mut host = super::super::testutil::host();
        host.hugetlb_cgroup = false;
        // No hugepages on the host: a 0 limit holds without enforcement.
        let out = fit_hugepages(build(Some(&r), Vec::new()).unwrap(), &host).unwrap();
        assert!(out.hugepage_limits().is_none());
        // Two 2 MB pages available: a 0 limit could be exceeded, so it is refused.
        host.hugepages = vec![("2MB".into(), 4 << 20)];
        let e = fit_hugepages(build(Some(&r), Vec::new()).unwrap(), &host).unwrap_err();
        assert!(e.to_string().contains("hugepage_limits[0]"), "{e}");
        // With the controller the limit is kept for the runtime to enforce.
        host.hugetlb_cgroup = true;
        let out = fit_hugepages(build(Some(&r), Vec::new()).unwrap(), &host).unwrap();
        assert_eq!(out.hugepage_limits().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn maps_set_fields_only() {
        let r = api::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            hugepage_limits: vec![api::HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("pids.max".to_string(), "100".to_string())].into(),
            ..Default::default()
        };
        let out = build(Some(&r), Vec::new()).unwrap();
        let cpu = out.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares()),
            (Some(100_000), Some(50_000), Some(512))
        );
        assert_eq!(
            (cpu.cpus().as_deref(), cpu.mems().as_deref()),
            (Some("0-1"), Some("0"))
        );
        let mem = out.memory().as_ref().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(128 << 20)));
        let hp = &out.hugepage_limits().as_ref().unwrap()[0];
        assert_eq!((hp.page_size().as_str(), hp.limit()), ("2MB", 4 << 20));
        assert_eq!(out.unified().as_ref().unwrap()["pids.max"], "100");
        let empty = build(Some(&api::LinuxContainerResources::default()), Vec::new()).unwrap();
        assert!(empty.cpu().is_none() && empty.memory().is_none() && empty.unified().is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            |r: api::LinuxContainerResources| build(Some(&r), Vec::new()).unwrap_err().to_string();
        let s = e(api::LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        });
        assert!(
            s.contains("linux.resources.memory_limit_in_bytes = \"-5\""),
            "{s}"
        );
        let s = e(api::LinuxContainerResources {
            cpuset_cpus: "0-1;rm".into(),
            ..Default::default()
        });
        assert!(s.contains("cpuset_cpus"), "{s}");
        let s = e(api::LinuxContainerResources {
            hugepage_limits: vec![api::HugepageLimit {
                page_size: "huge".into(),
                limit: 1,
            }],
            ..Default::default()
        });
        assert!(s.contains("hugepage_limits[0].page_size"), "{s}");
        let unlimited = api::LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        assert_eq!(
            build(Some(&unlimited), Vec::new())
                .unwrap()
                .cpu()
                .as_ref()
                .unwrap()
                .quota(),
            Some(-1)
        );
    }
}
