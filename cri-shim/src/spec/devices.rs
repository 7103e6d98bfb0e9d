//! `linux.devices` and the device cgroup rules: deny everything, allow the devices every
//! container needs, then the request's devices (or, privileged, every host device).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType as T,
};

use super::{built, HostFacts, SpecError};
use crate::api;

/// Devices every container may use (runc's default allow list, libcontainer/specconv):
/// (type, major, minor, what). `None` is a wildcard.
const ALLOWED: [(T, Option<i64>, Option<i64>, &str); 10] = [
    (T::C, None, None, "m"), // mknod of any char device (use still denied)
    (T::B, None, None, "m"), // mknod of any block device
    (T::C, Some(1), Some(3), "rwm"), // /dev/null
    (T::C, Some(1), Some(5), "rwm"), // /dev/zero
    (T::C, Some(1), Some(7), "rwm"), // /dev/full
    (T::C, Some(1), Some(8), "rwm"), // /dev/random
    (T::C, Some(1), Some(9), "rwm"), // /dev/urandom
    (T::C, Some(5), Some(0), "rwm"), // /dev/tty
    (T::C, Some(5), Some(2), "rwm"), // /dev/ptmx
    (T::C, Some(136), None, "rwm"), // /dev/pts/*
];

/// Directories of /dev whose nodes a privileged container does not get as devices: they
/// are mounted separately (pts, shm, mqueue) or are not devices (fd).
const SKIP_DIRS: [&str; 4] = ["pts", "shm", "mqueue", "fd"];

fn rule(
    allow: bool,
    typ: T,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    built("linux.resources.devices", b.build())
}

/// Linux's `dev_t` encoding (glibc's gnu_dev_major / gnu_dev_minor).
fn major_minor(dev: u64) -> (i64, i64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as i64, minor as i64)
}

/// The device node at `host` (links followed) as the container's `dest`.
fn device(field: &str, host: &Path, dest: &Path) -> Result<LinuxDevice, SpecError> {
    let meta = std::fs::metadata(host).map_err(|source| SpecError::HostPath {
        field: field.to_string(),
        path: host.to_path_buf(),
        source,
    })?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        T::C
    } else if ft.is_block_device() {
        T::B
    } else {
        return Err(SpecError::NotADevice {
            field: field.to_string(),
            path: host.to_path_buf(),
        });
    };
    let (major, minor) = major_minor(meta.rdev());
    let b = LinuxDeviceBuilder::default()
        .path(dest)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid());
    built("linux.devices", b.build())
}

/// Every device node below `dir`, for a privileged container.
fn host_devices(dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<(), SpecError> {
    let err = |source| SpecError::HostFile {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        let ft = entry.file_type().map_err(err)?;
        let name = entry.file_name();
        if ft.is_dir() && !SKIP_DIRS.iter().any(|s| name == *s) {
            host_devices(&path, out)?;
        } else if (ft.is_char_device() || ft.is_block_device()) && name != "ptmx" {
            // runc makes /dev/ptmx a link to the container's devpts; a node would clash.
            out.push(device("privileged", &path, &path)?);
        }
    }
    Ok(())
}

/// Checks a CRI permission string: a non-empty subset of `rwm`; empty means `rwm`.
fn permissions(i: usize, p: &str) -> Result<String, SpecError> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    let ok = p.chars().all(|c| "rwm".contains(c));
    if !ok {
        let field = format!("devices[{i}].permissions");
        return Err(SpecError::invalid(field, p, "must be made of r, w and m"));
    }
    Ok(p.to_string())
}

/// Builds `linux.devices` and the device cgroup rules.
pub fn build(
    cfg: &api::ContainerConfig,
    privileged: bool,
    host: &HostFacts,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices = Vec::new();
    let mut rules = vec![rule(false, T::A, None, None, "rwm")?];
    if privileged {
        host_devices(&host.dev_dir, &mut devices)?;
        rules.push(rule(true, T::A, None, None, "rwm")?);
    } else {
        for (t, major, minor, access) in ALLOWED {
            rules.push(rule(true, t, major, minor, access)?);
        }
    }
    for (i, d) in cfg.devices.iter().enumerate() {
        let field = format!("devices[{i}].host_path");
        if !d.container_path.starts_with("/dev/") {
            let f = format!("devices[{i}].container_path");
            return Err(SpecError::invalid(
                f,
                &d.container_path,
                "must be under /dev",
            ));
        }
        let access = permissions(i, &d.permissions)?;
        let dev = device(
            &field,
            Path::new(&d.host_path),
            &PathBuf::from(&d.container_path),
        )?;
        if !privileged {
            rules.push(rule(
                true,
                dev.typ(),
                Some(dev.major()),
                Some(dev.minor()),
                &access,
            )?);
        }
        devices.retain(|x| x.path() != dev.path());
        devices.push(dev);
    }
    Ok((devices, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::host;

    fn dev(host_path: &str, dest: &str, perms: &str) -> api::Device {
        api::Device {
            host_path: host_path.into(),
            container_path: dest.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn request_devices_are_stat_ed_and_allowed() {
        let cfg = api::ContainerConfig {
            devices: vec![dev("/dev/null", "/dev/mynull", "rw")],
            ..Default::default()
        };
        let (devs, rules) = build(&cfg, false, &host()).unwrap();
        assert_eq!(devs.len(), 1);
        let d = &devs[0];
        assert_eq!(
            (d.path().to_str(), d.typ(), d.major(), d.minor()),
            (Some("/dev/mynull"), T::C, 1, 3)
        );
        assert!(!rules[0].allow() && rules[0].typ() == Some(T::A));
        let last = rules.last().unwrap();
        assert!(last.allow() && last.major() == Some(1) && last.minor() == Some(3));
        assert_eq!(last.access().as_deref(), Some("rw"));
        assert_eq!(rules.len(), 1 + ALLOWED.len() + 1);
    }

    #[test]
    fn bad_devices_are_named() {
        let run = |d: api::Device| {
            let cfg = api::ContainerConfig {
                devices: vec![d],
                ..Default::default()
            };
            build(&cfg, false, &host()).unwrap_err().to_string()
        };
        let e = run(dev("/dev/hull-missing", "/dev/x", ""));
        assert!(
            e.contains("devices[0].host_path") && e.contains("/dev/hull-missing"),
            "{e}"
        );
        let e = run(dev("/etc/hostname", "/dev/x", ""));
        assert!(e.contains("not a character or block device"), "{e}");
        let e = run(dev("/dev/null", "/dev/x", "rwx"));
        assert!(e.contains("devices[0].permissions"), "{e}");
        let e = run(dev("/dev/null", "/tmp/x", ""));
        assert!(e.contains("devices[0].container_path"), "{e}");
    }

    #[test]
    fn privileged_gets_host_devices_and_allow_all() {
        let (devs, rules) = build(&api::ContainerConfig::default(), true, &host()).unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!devs.iter().any(|d| d.path().starts_with("/dev/pts")));
        assert!(!devs.iter().any(|d| d.path() == Path::new("/dev/ptmx")));
        assert_eq!(rules.len(), 2);
        assert!(rules[1].allow() && rules[1].typ() == Some(T::A));
    }

    #[test]
    fn dev_t_decoding() {
        // makedev(259, 70000): a major above 255 and a minor above 255 use the high bits.
        let dev: u64 = ((259 & 0xfff) << 8) | (70000 & 0xff) | ((70000 & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 70000));
    }
}
