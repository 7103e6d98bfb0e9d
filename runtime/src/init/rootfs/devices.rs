//! /dev inside the container: the default device nodes, `linux.devices`, and the
//! standard symlinks. Nodes are created relative to a /dev descriptor resolved inside the
//! rootfs; in a user namespace, where mknod is not allowed, the host node is bind-mounted.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::{fchmodat, FchmodatFlags, Mode};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::Root;
use crate::sys;

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runtime-spec "Default Devices").
pub fn defaults() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts a config.json device.
pub fn from_spec(d: &LinuxDevice) -> Node {
    let kind = match d.typ() {
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

/// The full device list: config devices, plus defaults the config does not override.
pub fn wanted(config: &[LinuxDevice]) -> Vec<Node> {
    let mut out: Vec<Node> = config.iter().map(from_spec).collect();
    for d in defaults() {
        if !out.iter().any(|n| n.path == d.path) {
            out.push(d);
        }
    }
    out
}

/// Creates `node` inside `root`. `bind` selects bind-mounting the host node.
pub fn create(root: &Root, node: &Node, bind: bool) -> io::Result<()> {
    if bind {
        let target = root.create_file(&node.path)?;
        let tree = sys::clone_tree(sys::cwd(), &node.path, false)?;
        return sys::move_mount_fd(tree.as_fd(), target.as_fd());
    }
    let parent_path = node.path.parent().unwrap_or(Path::new("/dev"));
    let parent = root.mkdir_all(parent_path)?;
    let name = node
        .path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    match nix::unistd::unlinkat(
        Some(parent.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    sys::mknod_at(parent.as_fd(), Path::new(name), node.kind | node.mode, dev)?;
    fchmodat(
        Some(parent.as_raw_fd()),
        name,
        Mode::from_bits_truncate(node.mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EOPNOTSUPP {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    let fd = sys::openat2(
        parent.as_fd(),
        Path::new(name),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_BENEATH,
    )?;
    sys::fchown_fd(fd.as_fd(), node.uid, node.gid)
}

/// The /dev symlinks of runtime-spec plus runc's /dev/ptmx and /dev/core.
pub fn symlinks(root: &Root) -> io::Result<()> {
    let dev = root.mkdir_all(Path::new("/dev"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            // The ptmx of the container's own devpts instance, not a node of the host's.
            let _ = nix::unistd::unlinkat(
                Some(dev.as_raw_fd()),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        match nix::unistd::symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_a_default() {
        let d: LinuxDevice = serde_json::from_str(
            r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":384}"#,
        )
        .unwrap();
        let all = wanted(&[d]);
        let nulls: Vec<_> = all
            .iter()
            .filter(|n| n.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(nulls.len(), 1);
        assert_eq!(nulls[0].mode, 0o600);
        assert_eq!(all.len(), 6);
    }
}
