//! The raw process operations hull-cri's single-threaded helper binaries need. The daemon
//! itself never calls anything here that forks.

use nix::unistd::{ForkResult, Pid};

/// Forks the calling process.
///
/// Only the single-threaded helper binaries (the container monitor) call this; hull-cri's
/// tokio process never does (see docs/design/cri.md, process model).
pub fn fork_single_threaded() -> nix::Result<Option<Pid>> {
    // SAFETY: callers are single-threaded helper processes (no other thread can hold a lock
    // the child would inherit), and the child only continues running ordinary Rust code of
    // that same single thread.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Some(child)),
        ForkResult::Child => Ok(None),
    }
}
