//! Device rules (`linux.resources.devices`): on cgroup v2 an eBPF program of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's cgroup, on v1
//! the devices controller's lists, both from one policy (rules.rs).
//!
//! cgroup v2 has no devices.allow/deny files; without a program every device
//! node a container can create (CAP_MKNOD) opens, host disks included. The v2 side of
//! libcgroups 0.7 does nothing unless built with its `cgroupsv2_devices`
//! feature, which builds libbpf (C, libelf, zlib) through libbpf-sys. The
//! program is small enough to emit here, as hull emits its seccomp filters.

mod program;
mod rules;
#[cfg(test)]
mod tests;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::sys;
pub use rules::Policy;

/// Failures of device rules; rule errors name the rule's index.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("linux.resources.devices[{index}].type {typ:?} cannot be in a device rule (only a, b and c)")]
    Type { index: usize, typ: String },
    #[error("linux.resources.devices[{index}].access {access:?} has modes other than r, w and m")]
    Access { index: usize, access: String },
    #[error("linux.resources.devices[{index}].{field} {value} is neither a device number nor -1")]
    Number {
        index: usize,
        field: &'static str,
        value: i64,
    },
    #[error("device rule [{rule}] (linux.resources.devices[{}]) cannot take access away from one device while wildcard rule [{wildcard}] grants it", index.map_or_else(|| "built-in".to_owned(), |i| i.to_string()))]
    Hole {
        rule: String,
        wildcard: String,
        index: Option<usize>,
    },
    #[error("cannot write device rule {rule:?} to {path}")]
    Write {
        rule: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the device program for cgroup {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open cgroup {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} device programs of cgroup {path}")]
    Attach {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The policy of `rules` followed by hull's built-in allow list, from deny-all.
pub fn policy(rules: &[LinuxDeviceCgroup]) -> Result<Policy, DeviceError> {
    let mut policy = Policy::deny_all();
    for (i, r) in rules.iter().enumerate() {
        policy.apply(&rules::Rule::from_oci(r, i)?, Some(i))?;
    }
    for r in &rules::BUILTIN {
        policy.apply(r, None)?;
    }
    Ok(policy)
}

/// Enforces `rules` on the cgroup v1 devices directory `dir`, as the kernel itself
/// applies them: `a` to devices.deny first (where [`policy`] starts too), then each rule
/// and the built-in list in order, so that devices.list shows the allowed entries in the
/// config's order (runtime-tools checks that). [`policy`] validates first, refusing what
/// v1 would silently ignore. On an `update` of a running container deny-all is briefly
/// all there is; runc instead diffs the lists.
pub fn write_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceError> {
    policy(rules)?;
    let write = |r: &rules::Rule| {
        let (file, text) = match (r.allow, r.pattern) {
            (true, None) => ("devices.allow", "a".to_owned()),
            (false, None) => ("devices.deny", "a".to_owned()),
            // No access named: nothing to grant or take (the kernel would refuse it).
            (_, Some(_)) if r.access == 0 => return Ok(()),
            (allow, Some(p)) => (
                if allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                rules::describe(p, r.access),
            ),
        };
        let path = dir.join(file);
        std::fs::write(&path, &text).map_err(|source| DeviceError::Write {
            rule: text,
            path,
            source,
        })
    };
    write(&rules::Rule::deny_everything())?;
    for (i, r) in rules.iter().enumerate() {
        write(&rules::Rule::from_oci(r, i)?)?;
    }
    rules::BUILTIN.iter().try_for_each(write)
}

/// Enforces `rules` on the cgroup v2 directory `dir`: loads their program,
/// attaches it, then detaches the programs attached there before (an earlier
/// `create` or `update`), so there is no moment without a program.
pub fn enforce(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceError> {
    let insns = program::compile(&policy(rules)?);
    let prog = sys::bpf_load_device_program(&insns).map_err(|source| DeviceError::Load {
        path: dir.to_owned(),
        source,
    })?;
    let cgroup = sys::open_path(dir, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|source| {
        DeviceError::Open {
            path: dir.to_owned(),
            source,
        }
    })?;
    let failed = |what: &'static str| {
        move |source| DeviceError::Attach {
            what,
            path: dir.to_owned(),
            source,
        }
    };
    let old = sys::bpf_query_device_programs(cgroup.as_fd()).map_err(failed("list"))?;
    sys::bpf_attach_device_program(cgroup.as_fd(), prog.as_fd()).map_err(failed("attach"))?;
    for id in old {
        let old_prog = match sys::bpf_program_by_id(id) {
            Ok(fd) => fd,
            // Detached and freed meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(failed("open")(e)),
        };
        match sys::bpf_detach_device_program(cgroup.as_fd(), old_prog.as_fd()) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(failed("detach")(e)),
            _ => {}
        }
    }
    Ok(())
}
