//! `linux.sysctl`: written through the container's own /proc, after checking that what is
//! mounted there really is procfs, so a planted directory or a bind over /proc/sys cannot
//! swallow or redirect the write.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::resolve::Root;
use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The /proc/sys path of a dotted sysctl key (`net.ipv4.ip_forward`).
pub fn key_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Writes `value` to sysctl `key` inside `root`.
pub fn write(root: &Root, key: &str, value: &str) -> io::Result<()> {
    let fd = root.open_in(&key_path(key), libc::O_WRONLY)?;
    if sys::fs_magic(fd.as_fd())? != PROC_SUPER_MAGIC {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    std::fs::File::from(fd).write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys_become_paths() {
        assert_eq!(
            key_path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }

    #[test]
    fn refuses_a_file_that_is_not_on_procfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.path().join("proc/sys/kernel/shmmax"), "").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let e = write(&root, "kernel.shmmax", "1").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    }
}
