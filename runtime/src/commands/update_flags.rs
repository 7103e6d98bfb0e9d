//! `update`'s inputs: a resources JSON file (or stdin) and runc's resource flags.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxMemory, LinuxPids, LinuxResources};

use super::CmdError;
use crate::cli::UpdateArgs;

/// Reads a runtime-spec LinuxResources object from `path`, `-` meaning stdin.
pub fn read_resources(path: &Path) -> Result<LinuxResources, CmdError> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|source| CmdError::Read {
        path: path.to_owned(),
        source,
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| CmdError::Usage {
        what: format!(
            "{}: invalid value at `{}`: {}",
            path.display(),
            e.path(),
            e.inner()
        ),
    })
}

/// Parses a byte count as runc does (`512`, `64k`, `1.5g`, `-1` for unlimited).
pub fn parse_bytes(flag: &str, s: &str) -> Result<i64, CmdError> {
    let bad = || CmdError::Usage {
        what: format!("--{flag} {s:?}: expected bytes, e.g. 64m"),
    };
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

/// Overlays the flags on `res`.
pub fn apply_flags(res: &mut LinuxResources, a: &UpdateArgs) -> Result<(), CmdError> {
    let mut mem = (*res.memory()).unwrap_or_default();
    let mut touched_mem = false;
    for (flag, value, set) in [
        (
            "memory",
            &a.memory,
            LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
        ),
        (
            "memory-reservation",
            &a.memory_reservation,
            LinuxMemory::set_reservation,
        ),
        ("memory-swap", &a.memory_swap, LinuxMemory::set_swap),
        ("kernel-memory", &a.kernel_memory, LinuxMemory::set_kernel),
        (
            "kernel-memory-tcp",
            &a.kernel_memory_tcp,
            LinuxMemory::set_kernel_tcp,
        ),
    ] {
        if let Some(v) = value {
            set(&mut mem, Some(parse_bytes(flag, v)?));
            touched_mem = true;
        }
    }
    if touched_mem {
        res.set_memory(Some(mem));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let mut touched_cpu = false;
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
        touched_cpu = true;
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
        touched_cpu = true;
    }
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
        touched_cpu = true;
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
        touched_cpu = true;
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
        touched_cpu = true;
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
        touched_cpu = true;
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
        touched_cpu = true;
    }
    if touched_cpu {
        res.set_cpu(Some(cpu));
    }
    if let Some(limit) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    if let Some(w) = a.blkio_weight {
        let mut io: LinuxBlockIo = res.block_io().clone().unwrap_or_default();
        io.set_weight(Some(w));
        res.set_block_io(Some(io));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(parse_bytes("memory", "512").unwrap(), 512);
        assert_eq!(parse_bytes("memory", "64k").unwrap(), 65536);
        assert_eq!(parse_bytes("memory", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("memory", "10MB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("memory", "-1").unwrap(), -1);
        assert!(parse_bytes("memory", "lots").is_err());
    }
}
