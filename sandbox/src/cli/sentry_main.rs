//! The Sentry process's life: set-up inside its namespaces, confinement, the wait for
//! `start`, then the event loop. Its exit status is the workload's.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::create::{chain, Plan};
use crate::confine;

/// Runs the Sentry; returns the process exit code.
pub fn main(plan: &Plan, sync: &OwnedFd) -> i32 {
    let mut report = std::fs::File::from(match sync.try_clone() {
        Ok(f) => f,
        Err(_) => return 125,
    });
    match setup(plan) {
        Ok((mut kernel, fifo)) => {
            let _ = writeln!(report, "ok");
            drop(report);
            if wait_start(&fifo).is_err() {
                return 125;
            }
            drop(fifo);
            match kernel.run() {
                Ok(exit) => exit.shell_code(),
                Err(e) => {
                    kernel.log_error(&chain(&e));
                    125
                }
            }
        }
        Err(e) => {
            let _ = writeln!(report, "err {e}");
            125
        }
    }
}

fn setup(plan: &Plan) -> Result<(crate::sentry::Kernel, OwnedFd), String> {
    confine::private_mounts().map_err(|e| chain(&e))?;
    // No hostname in the config means the UTS namespace is joined (a pod's): keep its name.
    let mut init = plan.init.clone();
    if init.hostname.is_empty() {
        init.hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
    } else {
        nix::unistd::sethostname(&init.hostname)
            .map_err(|e| format!("setting the hostname: {e}"))?;
    }
    let plan = &Plan {
        init,
        ..plan.clone()
    };
    let fifo = nix::fcntl::open(
        &super::state::fifo(&plan.dir),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening the start fifo: {e}"))?;
    let fifo = crate::sys::own_fd(fifo);
    let log_path = plan.dir.join("sentry.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    let control = listen(&plan.dir)?;
    let mut kernel =
        crate::boot::prepare(&plan.rootfs, &plan.init, Box::new(log)).map_err(|e| chain(&e))?;
    confine::empty_root().map_err(|e| chain(&e))?;
    kernel.spawn_init(&plan.init).map_err(|e| chain(&e))?;
    let zygote = crate::platform::Tracee::new_address_space().map_err(|e| chain(&e))?;
    kernel.set_control(control, zygote);
    crate::sys::catch_signals(&crate::sentry::FORWARDED)
        .map_err(|e| format!("signal handlers: {e}"))?;
    confine::apply_allowlist().map_err(|e| chain(&e))?;
    Ok((kernel, fifo))
}

/// Blocks until `start` writes to the fifo.
fn wait_start(fifo: &OwnedFd) -> Result<(), nix::errno::Errno> {
    loop {
        let mut p = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut p, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let mut b = [0u8; 1];
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(fifo), &mut b) {
            Ok(1) => return Ok(()),
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds the control socket (mode 0600) in the state directory. The name is relative to
/// the directory, as its full path may exceed the 108 bytes of a socket address.
fn listen(dir: &std::path::Path) -> Result<OwnedFd, String> {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    let fail = |what: &str, e: nix::errno::Errno| {
        format!("{what} {}: {e}", super::state::control(dir).display())
    };
    nix::unistd::chdir(dir).map_err(|e| fail("entering the directory of", e))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| fail("creating", e))?;
    let addr = UnixAddr::new("control.sock").map_err(|e| fail("naming", e))?;
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o177));
    let r = bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
    nix::sys::stat::umask(old);
    r.map_err(|e| fail("binding", e))?;
    listen(&fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| fail("listening on", e))?;
    Ok(fd)
}
