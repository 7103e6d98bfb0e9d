//! Every raw system call hull makes, and every `unsafe` block of the runtime.
//!
//! The rest of the crate calls these safe wrappers. Each wrapper owns the
//! invariants its syscall needs (valid pointers, owned fds), so that callers
//! never hold raw pointers or raw fds.

mod bpf;
mod exe;
mod fs;
mod mount;
mod process;
mod socket;

pub use bpf::*;
pub use exe::*;
pub use fs::*;
pub use mount::*;
pub use process::*;
pub use socket::*;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path to a C string, rejecting interior NULs with `EINVAL`.
pub fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Converts a raw syscall return value into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

mod landlock;
pub use landlock::*;
mod sigpipe;
pub use sigpipe::*;

mod seccomp;
pub use seccomp::*;
