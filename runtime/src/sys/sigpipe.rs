//! SIGPIPE handling around writes to pipes whose reader may be gone (hook stdin).

use std::io;
use std::mem::MaybeUninit;

/// SIGPIPE is ignored while this guard lives; dropping it reinstalls the previous action
/// (handler, mask and flags) exactly as it was.
pub struct SigpipeIgnored {
    previous: libc::sigaction,
}

/// Ignores SIGPIPE until the guard is dropped, so that writing to a pipe whose reader
/// exited fails with EPIPE instead of killing hull. Needed in the container init, which
/// may already have reset SIGPIPE to its default action.
pub fn ignore_sigpipe() -> io::Result<SigpipeIgnored> {
    // SAFETY: sigaction is plain data; all-zero is a valid value (empty mask, no flags)
    // to which we then assign SIG_IGN.
    let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
    ignore.sa_sigaction = libc::SIG_IGN;
    let mut previous = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: both pointers refer to live sigaction structs; installing SIG_IGN runs no
    // code of ours in signal context.
    let ret = unsafe { libc::sigaction(libc::SIGPIPE, &ignore, previous.as_mut_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SigpipeIgnored {
        // SAFETY: sigaction succeeded, so the kernel filled in the previous action.
        previous: unsafe { previous.assume_init() },
    })
}

impl Drop for SigpipeIgnored {
    fn drop(&mut self) {
        // SAFETY: reinstalls the action the kernel reported as installed before, unchanged;
        // a NULL old-action pointer is allowed.
        unsafe { libc::sigaction(libc::SIGPIPE, &self.previous, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> libc::sighandler_t {
        let mut now = MaybeUninit::<libc::sigaction>::uninit();
        // SAFETY: a NULL new action only queries; `now` is a live struct to fill.
        let ret = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), now.as_mut_ptr()) };
        assert_eq!(ret, 0);
        // SAFETY: sigaction succeeded and filled `now`.
        unsafe { now.assume_init() }.sa_sigaction
    }

    #[test]
    fn the_guard_ignores_and_restores() {
        // The test runner (like hull) starts with SIGPIPE ignored by std; the guard must
        // leave it as it found it.
        let before = current();
        {
            let _g = ignore_sigpipe().unwrap();
            assert_eq!(current(), libc::SIG_IGN);
        }
        assert_eq!(current(), before);
    }
}
