//! The contract between the streaming protocols and the containers they reach.

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A boxed reader of a process's output.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writer to a process's input.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
/// A boxed future, so [`Backend`] stays object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A terminal size in character cells, as the resize stream sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// An Exec the client asked for; remembered under its token until the client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The full container id (resolved from a prefix by the RPC).
    pub container_id: String,
    /// The command and its arguments; never empty.
    pub cmd: Vec<String>,
    /// Run on a terminal; stdout and stderr are then one stream.
    pub tty: bool,
    /// Whether the client sends stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr (always false with `tty`).
    pub stderr: bool,
}

/// An Attach the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachRequest {
    /// The full container id.
    pub container_id: String,
    /// The container runs on a terminal.
    pub tty: bool,
    /// Whether the client sends stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr.
    pub stderr: bool,
}

/// A running exec or an attachment to a container: the protocol pumps these streams.
///
/// Streams the client did not ask for are `None`. Shutting down `stdin` is the client's
/// half-close. `exit` resolves with the process's exit code (for attach, the container's,
/// when it exits); dropping the session before then detaches an attach and kills an exec.
pub struct Session {
    /// The process's (or container's) stdin.
    pub stdin: Option<BoxWrite>,
    /// Its stdout; with a tty, the terminal's output.
    pub stdout: Option<BoxRead>,
    /// Its stderr; `None` with a tty.
    pub stderr: Option<BoxRead>,
    /// Terminal resizes, with a tty.
    pub resize: Option<mpsc::UnboundedSender<TermSize>>,
    /// The exit code.
    pub exit: BoxFuture<Result<i32, BackendError>>,
}

/// Why a backend could not serve a stream.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The container or pod does not exist (any more).
    #[error("{0} not found")]
    NotFound(String),
    /// The container is not running, or the pod is not ready.
    #[error("{0} is not running")]
    NotRunning(String),
    /// The runtime refused: its message.
    #[error("{what}: {message}")]
    Runtime {
        /// What was attempted, naming the object.
        what: String,
        /// The runtime's own words.
        message: String,
    },
    /// An I/O error, naming what was attempted.
    #[error("{what}")]
    Io {
        /// What was attempted, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Reaches containers for the streaming server.
pub trait Backend: Send + Sync + 'static {
    /// Starts `req.cmd` in the container, on a terminal of `size` if `req.tty`.
    fn exec(
        &self,
        req: ExecRequest,
        size: Option<TermSize>,
    ) -> BoxFuture<Result<Session, BackendError>>;
    /// Joins the running container's stdio through its monitor.
    fn attach(&self, req: AttachRequest) -> BoxFuture<Result<Session, BackendError>>;
    /// Connects to `port` on the loopback of pod `pod_id`'s network namespace.
    fn port_forward(&self, pod_id: String, port: u16)
        -> BoxFuture<Result<TcpStream, BackendError>>;
}
