//! Starting a sandbox: the gofer process, the Sentry and its first process.

use std::io::Write;
use std::path::Path;

use nix::unistd::ForkResult;

use crate::gofer;
use crate::sentry::{Exit, InitSpec, Kernel, SentryError};

/// Errors booting a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The gofer could not be set up.
    #[error("gofer")]
    Gofer(#[from] gofer::GoferError),
    /// Forking the gofer failed.
    #[error("forking the gofer")]
    Fork(#[source] nix::errno::Errno),
    /// The Sentry failed.
    #[error("sentry")]
    Sentry(#[from] SentryError),
}

/// Runs `spec` on a new Sentry over `rootfs` until its init exits. Call while
/// single-threaded: it forks the gofer.
pub fn run(rootfs: &Path, spec: &InitSpec, log: Box<dyn Write>) -> Result<Exit, BootError> {
    let mut k = prepare(rootfs, spec, log)?;
    k.spawn_init(spec)?;
    Ok(k.run()?)
}

/// Starts the gofer and makes the kernel over it; init is not loaded yet.
pub fn prepare(rootfs: &Path, spec: &InitSpec, log: Box<dyn Write>) -> Result<Kernel, BootError> {
    let (client, server) = gofer::channel(rootfs, &spec.binds)?;
    // The caller is single-threaded, so the child may run Rust code.
    let gofer = match fork_gofer()? {
        ForkResult::Child => {
            drop(client);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            server.serve();
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(server);
            child
        }
    };
    let dests = spec.binds.iter().map(|(d, _)| d.clone()).collect();
    let vfs = crate::sentry::vfs::Vfs::new(client, dests);
    let mut k = Kernel::new(vfs, log, spec.hostname.clone());
    k.gofer = Some(gofer);
    Ok(k)
}

fn fork_gofer() -> Result<ForkResult, BootError> {
    crate::sys::fork_process().map_err(BootError::Fork)
}
