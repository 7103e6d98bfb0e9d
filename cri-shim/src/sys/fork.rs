//! fork(2) for hull-cri's single-threaded helper binaries, refused in a threaded process.

use std::fs;
use std::io;

use nix::unistd::ForkResult;

/// Number of threads of the calling process, from `/proc/self/status`.
fn thread_count() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/status has no Threads line"))
}

/// `fork(2)`, allowed only while the calling process has exactly one thread.
///
/// hull-cri itself is multi-threaded and never calls this; the single-threaded helper
/// `hull-cri-pinns` does, to start a pod's PID-namespace holder. The thread count is checked
/// first so that a misuse from a threaded process fails instead of forking a child that may
/// deadlock on a lock another thread held.
pub fn fork_single_threaded() -> io::Result<ForkResult> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "fork refused: the process has {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked just above, and no thread can be
    // started between the check and the fork since this is that thread), so the child
    // inherits no lock held by another thread and may run arbitrary code, allocation included.
    let forked = unsafe { nix::unistd::fork() };
    forked.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_refused_in_threaded_test_process() {
        // The test harness runs tests on worker threads, so there are at least two threads.
        let _keep = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(1)));
        let err = fork_single_threaded().unwrap_err();
        assert!(err.to_string().contains("fork refused"), "{err}");
    }
}
