//! The container side of streaming: [`RuntimeBackend`] serves the streaming protocols'
//! [`Backend`] with the real runtime. Exec runs `<handler> exec` (on a terminal received over
//! a console socket with a tty), attach joins the container's monitor on its attach socket,
//! and port-forward connects inside the pod's pinned network namespace.

mod attach;
mod exec;
mod pty;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tonic::Code;

use super::{Runtime, RuntimeServer};
use crate::records::{Ctr, CtrState};
use crate::stream::{
    AttachRequest, Backend, BackendError, BoxFuture, ExecRequest, Session, TermSize,
};

/// How long a port-forward connection inside a pod may take to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exec, attach and port-forward against the containers and pods of a [`RuntimeServer`].
#[derive(Clone)]
pub struct RuntimeBackend {
    rt: Arc<Runtime>,
}

impl RuntimeBackend {
    /// A backend over the server's containers and pods.
    pub fn new(server: &RuntimeServer) -> Self {
        Self {
            rt: server.rt.clone(),
        }
    }
}

impl Backend for RuntimeBackend {
    fn exec(
        &self,
        req: ExecRequest,
        size: Option<TermSize>,
    ) -> BoxFuture<Result<Session, BackendError>> {
        let rt = self.rt.clone();
        Box::pin(async move { exec::exec(&rt, req, size).await })
    }

    fn attach(&self, req: AttachRequest) -> BoxFuture<Result<Session, BackendError>> {
        let rt = self.rt.clone();
        Box::pin(async move { attach::attach(&rt, req).await })
    }

    fn port_forward(
        &self,
        pod_id: String,
        port: u16,
    ) -> BoxFuture<Result<TcpStream, BackendError>> {
        let rt = self.rt.clone();
        Box::pin(async move { port_forward(&rt, &pod_id, port).await })
    }
}

impl Runtime {
    /// The running container `id` (a full id, as the streaming requests carry).
    fn running_ctr(&self, id: &str) -> Result<Ctr, BackendError> {
        let what = || format!("container {id}");
        if !self.tables().ctrs.contains_key(id) {
            return Err(BackendError::NotFound(what()));
        }
        let c = self.refreshed(id).map_err(|s| match s.code() {
            Code::NotFound => BackendError::NotFound(what()),
            _ => BackendError::Runtime {
                what: format!("reading the record of {}", what()),
                message: s.message().to_string(),
            },
        })?;
        if c.rec.state != CtrState::Running {
            return Err(BackendError::NotRunning(what()));
        }
        Ok(c)
    }
}

/// Connects to `port` on the loopback of the pod: inside its pinned network namespace, or
/// on the host's for a host-network pod.
async fn port_forward(rt: &Runtime, pod_id: &str, port: u16) -> Result<TcpStream, BackendError> {
    let what = || format!("pod sandbox {pod_id}");
    let pod = rt
        .tables()
        .pods
        .get(pod_id)
        .cloned()
        .ok_or_else(|| BackendError::NotFound(what()))?;
    if !pod.rec.ready {
        return Err(BackendError::NotRunning(what()));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let io = |source| BackendError::Io {
        what: format!("connecting to port {port} in {}", what()),
        source,
    };
    if super::pods::host_network(&pod.config) {
        return tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io);
    }
    let ns = rt.paths.pod_run_dir(pod_id).join("ns").join("net");
    // The namespace switch happens on a thread of its own (see sys::connect_in_netns);
    // the blocking pool only waits for it.
    let std = tokio::task::spawn_blocking(move || {
        crate::sys::connect_in_netns(ns, addr, CONNECT_TIMEOUT)
    })
    .await
    .map_err(|e| io(std::io::Error::other(e)))?
    .map_err(io)?;
    std.set_nonblocking(true).map_err(io)?;
    TcpStream::from_std(std).map_err(io)
}

/// A directory held open, so sockets in it are reached by a short path whatever its own
/// length (unix socket paths are limited to 108 bytes): `/proc/self/fd/<n>/<name>`.
struct ShortDir {
    dir: File,
}

impl ShortDir {
    fn open(path: &Path) -> std::io::Result<Self> {
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self { dir })
    }

    /// The short path of `name` in the directory, valid while `self` lives.
    fn join(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }
}

/// A [`BackendError`] for a failed gRPC-style step of the runtime.
fn runtime_error(what: String, s: tonic::Status) -> BackendError {
    BackendError::Runtime {
        what,
        message: s.message().to_string(),
    }
}
