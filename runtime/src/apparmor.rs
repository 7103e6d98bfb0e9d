//! `process.apparmorProfile`: the AppArmor profile the container's program runs under.
//!
//! As runc does (libcontainer/apparmor), the init writes `exec <profile>` to its own
//! `attr/apparmor/exec` (Linux 5.8+), or to `attr/exec` on kernels without per-LSM
//! directories, through `/proc/thread-self`. AppArmor switches to the profile at the next
//! execve. An empty profile means "none" and writes nothing.
//!
//! The write goes through a procfs directory fd with `openat2`: no symlinks inside the
//! task directory, no crossing of mount points, and the opened file must be on procfs. A
//! container that mounted something over `/proc/self/attr/...` (the CVE-2025-52881 class)
//! therefore makes the write fail instead of redirecting it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// openat2 `RESOLVE_NO_XDEV`: fail rather than cross a mount point.
const RESOLVE_NO_XDEV: u64 = 0x01;

/// This thread's directory in procfs, a relative symlink to `<pid>/task/<tid>`.
const TASK_DIR: &str = "thread-self";
/// The attribute files, newest convention first (relative to a task directory).
const EXEC_ATTR: &str = "attr/apparmor/exec";
const LEGACY_EXEC_ATTR: &str = "attr/exec";

/// Errors applying an AppArmor profile.
#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error("invalid apparmor profile {0:?}: it contains a NUL byte")]
    BadProfile(String),
    #[error("cannot open {path} in procfs")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot check that {path} is on procfs")]
    Statfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not on procfs (filesystem magic {magic:#x})")]
    NotProcfs { path: PathBuf, magic: i64 },
    #[error("cannot apply apparmor profile {profile:?} through {path}")]
    Write {
        profile: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// True when AppArmor is enabled on the host: runc's test, securityfs has an `apparmor`
/// directory and the module parameter `enabled` reads `Y`.
pub fn is_enabled() -> bool {
    enabled_at(
        Path::new("/sys/kernel/security/apparmor"),
        Path::new("/sys/module/apparmor/parameters/enabled"),
    )
}

fn enabled_at(securityfs_dir: &Path, parameter: &Path) -> bool {
    if std::fs::metadata(securityfs_dir).is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    File::open(parameter)
        .and_then(|mut f| f.read_exact(&mut first))
        .is_ok_and(|()| first[0] == b'Y')
}

/// Writes `exec <profile>` to this thread's AppArmor exec attribute, found through
/// `proc_dir`, a directory fd of a procfs mount (tests pass a fake tree and
/// `verify_procfs: false`). The profile takes effect at the next execve.
///
/// `thread-self` is followed (it is procfs's own relative symlink to `<pid>/task/<tid>`);
/// below it no symlink and no mount point is crossed, and with `verify_procfs` the task
/// directory and the attribute file must both be on procfs.
pub fn apply_exec_profile(
    proc_dir: BorrowedFd<'_>,
    profile: &str,
    verify_procfs: bool,
) -> Result<(), AppArmorError> {
    if profile.is_empty() {
        return Ok(());
    }
    if profile.contains('\0') {
        return Err(AppArmorError::BadProfile(profile.to_owned()));
    }
    let task = Open {
        rel: TASK_DIR,
        shown: PathBuf::from(TASK_DIR),
        flags: libc::O_PATH | libc::O_DIRECTORY,
        resolve: sys::RESOLVE_BENEATH | sys::RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    let task = open_checked(proc_dir, task, verify_procfs)?;
    let (path, attr) = open_exec_attr(task.as_fd(), verify_procfs)?;
    let value = format!("exec {profile}");
    // One write(2): the kernel parses each write as a whole command.
    match File::from(attr).write(value.as_bytes()) {
        Ok(n) if n == value.len() => Ok(()),
        Ok(_) => Err(io::Error::from(io::ErrorKind::WriteZero)),
        Err(e) => Err(e),
    }
    .map_err(|source| AppArmorError::Write {
        profile: profile.to_owned(),
        path,
        source,
    })
}

/// Opens `attr/apparmor/exec` under the task directory, or `attr/exec` when the kernel
/// has no per-LSM directory (ENOENT), as runc does. Returns the path used and the fd.
fn open_exec_attr(
    task: BorrowedFd<'_>,
    verify_procfs: bool,
) -> Result<(PathBuf, OwnedFd), AppArmorError> {
    let open = |rel: &'static str| {
        let what = Open {
            rel,
            shown: Path::new(TASK_DIR).join(rel),
            flags: libc::O_WRONLY,
            resolve: sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
        };
        let shown = what.shown.clone();
        open_checked(task, what, verify_procfs).map(|fd| (shown, fd))
    };
    match open(EXEC_ATTR) {
        Err(AppArmorError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            open(LEGACY_EXEC_ATTR)
        }
        other => other,
    }
}

/// An openat2 request: `rel` under a directory fd, named `shown` in errors.
struct Open<'a> {
    rel: &'a str,
    shown: PathBuf,
    flags: i32,
    resolve: u64,
}

/// openat2 of `what` under `dir`; with `verify`, the result must be on procfs.
fn open_checked(
    dir: BorrowedFd<'_>,
    what: Open<'_>,
    verify: bool,
) -> Result<OwnedFd, AppArmorError> {
    let Open {
        rel,
        shown: path,
        flags,
        resolve,
    } = what;
    let fd = match sys::openat2(dir, Path::new(rel), flags, 0, resolve) {
        Ok(fd) => fd,
        Err(source) => return Err(AppArmorError::Open { path, source }),
    };
    if verify {
        let magic = match sys::fs_magic(fd.as_fd()) {
            Ok(m) => m,
            Err(source) => return Err(AppArmorError::Statfs { path, source }),
        };
        if magic != PROC_SUPER_MAGIC {
            return Err(AppArmorError::NotProcfs { path, magic });
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::report::chain;

    /// A fake procfs: `thread-self -> 7/task/7`, with `attr/` and optionally
    /// `attr/apparmor/`, each holding an empty `exec`.
    fn fake_proc(per_lsm_dir: bool) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("7/task/7");
        fs::create_dir_all(task.join("attr")).unwrap();
        fs::write(task.join(LEGACY_EXEC_ATTR), "").unwrap();
        if per_lsm_dir {
            fs::create_dir_all(task.join("attr/apparmor")).unwrap();
            fs::write(task.join(EXEC_ATTR), "").unwrap();
        }
        symlink("7/task/7", dir.path().join("thread-self")).unwrap();
        let fd = File::open(dir.path()).unwrap();
        (dir, fd)
    }

    fn read(dir: &tempfile::TempDir, rel: &str) -> String {
        fs::read_to_string(dir.path().join("7/task/7").join(rel)).unwrap()
    }

    #[test]
    fn writes_exactly_exec_and_the_profile() {
        let (dir, proc) = fake_proc(true);
        apply_exec_profile(proc.as_fd(), "docker-default", false).unwrap();
        assert_eq!(read(&dir, EXEC_ATTR), "exec docker-default");
        assert_eq!(read(&dir, LEGACY_EXEC_ATTR), "");
    }

    #[test]
    fn falls_back_to_attr_exec_on_old_kernels() {
        let (dir, proc) = fake_proc(false);
        apply_exec_profile(proc.as_fd(), "p", false).unwrap();
        assert_eq!(read(&dir, LEGACY_EXEC_ATTR), "exec p");
    }

    #[test]
    fn an_empty_profile_writes_nothing() {
        let (dir, proc) = fake_proc(true);
        apply_exec_profile(proc.as_fd(), "", false).unwrap();
        assert_eq!(read(&dir, EXEC_ATTR), "");
    }

    #[test]
    fn a_symlinked_attr_file_is_refused() {
        let (dir, proc) = fake_proc(true);
        let victim = dir.path().join("victim");
        fs::write(&victim, "").unwrap();
        let attr = dir.path().join("7/task/7").join(EXEC_ATTR);
        fs::remove_file(&attr).unwrap();
        symlink("../../../../../victim", &attr).unwrap();
        let e = apply_exec_profile(proc.as_fd(), "p", false).unwrap_err();
        assert!(
            matches!(&e, AppArmorError::Open { source, .. } if source.raw_os_error() == Some(libc::ELOOP)),
            "{e:?}"
        );
        assert_eq!(
            chain(&e),
            "cannot open thread-self/attr/apparmor/exec in procfs: \
             Too many levels of symbolic links (os error 40)"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "");
    }

    #[test]
    fn a_symlinked_attr_directory_is_refused() {
        let (dir, proc) = fake_proc(false);
        let task = dir.path().join("7/task/7");
        fs::rename(task.join("attr"), dir.path().join("elsewhere")).unwrap();
        symlink("../../../elsewhere", task.join("attr")).unwrap();
        let e = apply_exec_profile(proc.as_fd(), "p", false).unwrap_err();
        assert!(matches!(e, AppArmorError::Open { .. }), "{e:?}");
        assert_eq!(
            fs::read_to_string(dir.path().join("elsewhere/exec")).unwrap(),
            ""
        );
    }

    #[test]
    fn thread_self_must_stay_beneath_the_proc_dir() {
        let (dir, proc) = fake_proc(true);
        let outside = tempfile::tempdir().unwrap();
        fs::remove_file(dir.path().join("thread-self")).unwrap();
        symlink(outside.path(), dir.path().join("thread-self")).unwrap();
        let e = apply_exec_profile(proc.as_fd(), "p", false).unwrap_err();
        assert!(matches!(e, AppArmorError::Open { .. }), "{e:?}");
    }

    #[test]
    fn a_tree_that_is_not_procfs_is_refused_when_verifying() {
        let (dir, proc) = fake_proc(true);
        let e = apply_exec_profile(proc.as_fd(), "p", true).unwrap_err();
        assert!(matches!(e, AppArmorError::NotProcfs { .. }), "{e:?}");
        assert_eq!(read(&dir, EXEC_ATTR), "");
    }

    #[test]
    fn the_real_procfs_passes_verification() {
        // A profile that cannot exist: the write itself fails with EINVAL (no LSM takes
        // it) or ENOENT (AppArmor has no such profile); opening and verifying must not.
        let proc = File::open("/proc").unwrap();
        match apply_exec_profile(proc.as_fd(), "hull-test-no-such-profile", true) {
            Ok(()) | Err(AppArmorError::Write { .. }) => {}
            Err(e) => panic!("{}", chain(&e)),
        }
    }

    #[test]
    fn a_nul_in_the_profile_is_refused() {
        let (_dir, proc) = fake_proc(true);
        let e = apply_exec_profile(proc.as_fd(), "a\0b", false).unwrap_err();
        assert!(matches!(e, AppArmorError::BadProfile(_)), "{e:?}");
    }

    #[test]
    fn enabled_needs_securityfs_and_a_y() {
        let dir = tempfile::tempdir().unwrap();
        let sec = dir.path().join("apparmor");
        let param = dir.path().join("enabled");
        fs::write(&param, "Y\n").unwrap();
        assert!(!enabled_at(&sec, &param), "no securityfs directory");
        fs::create_dir(&sec).unwrap();
        assert!(enabled_at(&sec, &param));
        fs::write(&param, "N\n").unwrap();
        assert!(!enabled_at(&sec, &param));
        fs::write(&param, "").unwrap();
        assert!(!enabled_at(&sec, &param));
        assert!(!enabled_at(&sec, &dir.path().join("missing")));
    }
}
