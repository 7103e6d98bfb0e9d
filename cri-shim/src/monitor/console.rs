//! A terminal for containers that ask for one. The runtime creates the pty and sends its
//! master over a console socket (runc's `--console-socket` protocol); the monitor then
//! reads the container's output from the master instead of from pipes.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use super::MonitorError;

/// The socket name, relative to the container's directory: a relative path keeps clear of
/// the 108-byte limit of unix socket paths whatever the state root is.
const NAME: &str = "console.sock";

/// A console socket waiting for the runtime's connection.
pub(super) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds `dir/console.sock`; the monitor's working directory must be `dir`.
    pub(super) fn bind(dir: &Path) -> Result<Self, MonitorError> {
        let path = dir.join(NAME);
        let io = |op, source| MonitorError::Io {
            op,
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing stale console socket", e))
            }
            _ => {}
        }
        let listener = UnixListener::bind(NAME).map_err(|e| io("binding console socket", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("configuring console socket", e))?;
        Ok(Self { listener, path })
    }

    /// The path to give the runtime (relative to the shared working directory).
    pub(super) fn arg() -> &'static str {
        NAME
    }

    /// Waits for the runtime to send the pty master, or to exit without doing so; then
    /// waits for the runtime to exit. The socket file is removed either way.
    pub(super) fn receive(
        self,
        child: &mut Child,
    ) -> Result<(Option<OwnedFd>, ExitStatus), MonitorError> {
        let io = |op, source| MonitorError::Io {
            op,
            path: self.path.clone(),
            source,
        };
        let mut master = None;
        loop {
            // Checked before accepting: a runtime that connected and then exited has its
            // connection queued, so it is still accepted below.
            let exited = child
                .try_wait()
                .map_err(|e| io("waiting for the runtime", e))?
                .is_some();
            match self.listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false)
                        .map_err(|e| io("configuring console connection", e))?;
                    master = Some(
                        crate::sys::recv_fd(conn.as_fd())
                            .map_err(|e| io("receiving the terminal", e))?,
                    );
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && exited => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io("accepting on console socket", e)),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let status = child.wait().map_err(|e| io("waiting for the runtime", e))?;
        let _ = std::fs::remove_file(&self.path);
        Ok((master, status))
    }
}
