//! The container's program: finding it on the container's PATH and executing it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::sys;

/// runc's PATH when process.env has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Failures finding or running the program.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("cannot change to the working directory {path}")]
    Cwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("executable {name:?} not found in $PATH")]
    NotFound { name: String },
    #[error("{path} is not an executable file")]
    NotExecutable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("argument or environment value contains a NUL byte")]
    Nul,
    #[error("cannot prepare file descriptors for exec")]
    Fds(#[source] io::Error),
    #[error("cannot reset signal handling")]
    Signals(#[source] io::Error),
    #[error("cannot exec {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A resolved program, ready for execve.
pub struct Program {
    path: PathBuf,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn check_exec(path: &Path) -> Result<(), ProgramError> {
    let err = |source| ProgramError::NotExecutable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        return Err(err(io::Error::from_raw_os_error(libc::EISDIR)));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(err(io::Error::from_raw_os_error(libc::EACCES)));
    }
    Ok(())
}

/// Finds `name` as execvp would, on `path_var`.
fn look_path(name: &str, path_var: &str) -> Result<PathBuf, ProgramError> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        check_exec(&p)?;
        return Ok(p);
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if check_exec(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(ProgramError::NotFound {
        name: name.to_owned(),
    })
}

/// Marks every inherited descriptor but stdio and the `preserve` ones close-on-exec.
/// Done first thing in the child: later, a seccomp profile may forbid close_range.
pub fn prepare_fds(preserve: u32) -> Result<(), ProgramError> {
    sys::cloexec_from(3 + preserve).map_err(ProgramError::Fds)?;
    for fd in 3..3 + preserve {
        sys::clear_cloexec(fd as i32).map_err(ProgramError::Fds)?;
    }
    Ok(())
}

/// Changes to process.cwd. Tried first as root, like runc, so that a directory hull can
/// enter but the container's user cannot still works; `retry_later` reports a
/// permission failure, to be tried again as the user.
pub fn change_cwd(process: &Process) -> Result<bool, ProgramError> {
    let cwd = process.cwd();
    match enter_cwd(cwd) {
        Ok(()) => Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => Ok(true),
        Err(source) => Err(ProgramError::Cwd {
            path: cwd.clone(),
            source,
        }),
    }
}

/// The second attempt of [`change_cwd`], as the container's user.
pub fn change_cwd_again(process: &Process) -> Result<(), ProgramError> {
    let cwd = process.cwd();
    enter_cwd(cwd).map_err(|source| ProgramError::Cwd {
        path: cwd.clone(),
        source,
    })
}

/// Changes to `cwd` resolved inside the container's root (now `/`), refusing magic links
/// such as /proc/self/fd/N: an fd inherited from the caller must not become a working
/// directory outside the container (CVE-2024-21626). The result is checked with getcwd,
/// which fails for a directory the root cannot reach.
fn enter_cwd(cwd: &Path) -> io::Result<()> {
    let rel = cwd.strip_prefix("/").unwrap_or(cwd);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let slash = sys::open_path(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)?;
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
    let dir = sys::openat2(
        std::os::fd::AsFd::as_fd(&slash),
        rel,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        resolve,
    )?;
    nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&dir))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) | Err(_) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
    }
}

/// The home directory of `uid` in passwd(5) text, or "/".
fn home_of(passwd: &str, uid: u32) -> String {
    crate::passwd::field(passwd, uid, 5)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_owned()
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, ProgramError> {
    v.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| ProgramError::Nul))
        .collect()
}

impl Program {
    /// Resolves the executable (relative to the working directory, on the container's
    /// PATH).
    pub fn resolve(process: &Process) -> Result<Self, ProgramError> {
        let args = process.args().clone().unwrap_or_default();
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            // As runc: HOME from the container's /etc/passwd, "/" for an unknown uid.
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            env.push(format!("HOME={}", home_of(&passwd, process.user().uid())));
        }
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let path = look_path(&args[0], path_var)?;
        Ok(Self {
            path,
            args: cstrings(&args)?,
            env: cstrings(&env)?,
        })
    }

    /// Resets signals and execs. Returns only on failure.
    pub fn exec(&self) -> Result<std::convert::Infallible, ProgramError> {
        sys::reset_signals().map_err(ProgramError::Signals)?;
        let path = CString::new(self.path.as_os_str().as_bytes()).map_err(|_| ProgramError::Nul)?;
        let e = nix::unistd::execve(&path, &self.args, &self.env).unwrap_err();
        Err(ProgramError::Exec {
            path: self.path.clone(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_from_passwd() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:n:/nonexistent:/bin/false\n";
        assert_eq!(home_of(passwd, 0), "/root");
        assert_eq!(home_of(passwd, 65534), "/nonexistent");
        assert_eq!(home_of(passwd, 1000), "/");
        assert_eq!(home_of("garbage", 0), "/");
    }

    #[test]
    fn finds_on_path() {
        assert_eq!(
            look_path("sh", "/nonexistent:/bin").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(matches!(
            look_path("no-such-prog-x", "/bin"),
            Err(ProgramError::NotFound { .. })
        ));
        assert!(matches!(
            look_path("/etc/passwd", "/bin"),
            Err(ProgramError::NotExecutable { .. })
        ));
    }
}
