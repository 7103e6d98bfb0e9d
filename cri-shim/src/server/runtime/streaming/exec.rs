//! Exec: `<handler> exec` with the requested streams on pipes, or on a terminal whose
//! master the runtime sends over a console socket (`--tty --console-socket`).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncWrite, Interest};
use tokio::net::UnixListener;
use tokio::process::{Child, ChildStdin, Command};

use super::pty::Master;
use super::{runtime_error, ShortDir};
use crate::server::runtime::exec::{exit_code, kill_exec, read_capped, tempdir_in};
use crate::server::runtime::Runtime;
use crate::stream::{BackendError, ExecRequest, Session, TermSize};

/// The console socket's name in the exec's directory (the runtime's working directory).
const CONSOLE: &str = "console.sock";

/// How long the runtime may take to send the terminal.
const CONSOLE_WAIT: Duration = Duration::from_secs(30);

/// Starts `req.cmd` in the container.
pub(super) async fn exec(
    rt: &Runtime,
    req: ExecRequest,
    size: Option<TermSize>,
) -> Result<Session, BackendError> {
    let id = req.container_id.clone();
    if req.cmd.is_empty() {
        return Err(BackendError::Runtime {
            what: format!("exec in container {id}"),
            message: "no command given".into(),
        });
    }
    let c = rt.running_ctr(&id)?;
    let handler = rt
        .handlers
        .get(&c.rec.handler)
        .map_err(|e| BackendError::Runtime {
            what: format!("exec in container {id}"),
            message: crate::monitor::chain(&e),
        })?;
    let tmp = tempdir_in(&rt.paths.ctr_dir(&id))
        .map_err(|s| runtime_error(format!("exec in container {id}"), s))?;
    let pid_file = tmp.join("exec.pid");
    let mut cmd = handler.command();
    cmd.arg("exec").arg("--pid-file").arg(&pid_file);
    if req.tty {
        // Relative to the runtime's working directory: a short path whatever the root's.
        cmd.args(["--tty", "--console-socket", CONSOLE])
            .current_dir(&tmp);
    }
    cmd.arg(&id).args(&req.cmd).kill_on_drop(true);
    let what = format!("exec {:?} in container {id}", req.cmd);
    let result = match req.tty {
        true => on_terminal(cmd, &req, size, &tmp, &what).await,
        false => on_pipes(cmd, &req, &what),
    };
    match result {
        Ok((child, mut session)) => {
            let running = Running {
                child: Some(child),
                pid_file,
                tmp,
            };
            session.exit = Box::pin(running.wait(what));
            Ok(session)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Spawns the runtime with pipes for the streams the client asked for.
fn on_pipes(
    mut cmd: Command,
    req: &ExecRequest,
    what: &str,
) -> Result<(Child, Session), BackendError> {
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(pipe(req.stdin))
        .stdout(pipe(req.stdout))
        .stderr(pipe(req.stderr));
    let mut child = cmd.spawn().map_err(|source| BackendError::Io {
        what: format!("starting the runtime for {what}"),
        source,
    })?;
    let session = Session {
        stdin: child
            .stdin
            .take()
            .map(|s| Box::new(ClosingStdin(Some(s))) as _),
        stdout: child.stdout.take().map(|s| Box::new(s) as _),
        stderr: child.stderr.take().map(|s| Box::new(s) as _),
        resize: None,
        // Replaced by the caller.
        exit: Box::pin(std::future::pending()),
    };
    Ok((child, session))
}

/// Spawns the runtime with `--tty` and receives the terminal it makes.
async fn on_terminal(
    mut cmd: Command,
    req: &ExecRequest,
    size: Option<TermSize>,
    tmp: &Path,
    what: &str,
) -> Result<(Child, Session), BackendError> {
    let io = |step: &str| {
        let what = format!("{step} for {what}");
        move |source| BackendError::Io { what, source }
    };
    let dir = ShortDir::open(tmp).map_err(io("opening the exec directory"))?;
    let listener =
        UnixListener::bind(dir.join(CONSOLE)).map_err(io("binding the console socket"))?;
    // The runtime's own errors; the process's output goes to the terminal.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(io("starting the runtime"))?;
    let master = tokio::select! {
        r = receive(&listener) => r.map_err(io("receiving the terminal"))?,
        st = child.wait() => {
            let message = String::from_utf8_lossy(&read_capped(child.stderr.take()).await)
                .trim()
                .to_string();
            return Err(BackendError::Runtime {
                what: what.to_string(),
                message: match st {
                    Ok(st) if !message.is_empty() => format!("{message} ({st})"),
                    Ok(st) => format!("the runtime exited with {st} before sending a terminal"),
                    Err(e) => e.to_string(),
                },
            });
        }
        () = tokio::time::sleep(CONSOLE_WAIT) => {
            return Err(BackendError::Runtime {
                what: what.to_string(),
                message: format!("the runtime sent no terminal within {}s", CONSOLE_WAIT.as_secs()),
            });
        }
    };
    let master = Master::new(master).map_err(io("registering the terminal"))?;
    if let Some(size) = size {
        master.resize(size).map_err(io("sizing the terminal"))?;
    }
    let stdout = master.reader();
    let stdout = match req.stdout {
        true => Some(Box::new(stdout) as _),
        false => {
            // Nobody reads it, yet a full terminal would block the process: drained here.
            let mut stdout = stdout;
            tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await });
            None
        }
    };
    let session = Session {
        stdin: req.stdin.then(|| Box::new(master.writer()) as _),
        stdout,
        stderr: None,
        resize: Some(master.resizer()),
        exit: Box::pin(std::future::pending()),
    };
    Ok((child, session))
}

/// Accepts the runtime's connection and takes the descriptor it carries.
async fn receive(listener: &UnixListener) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let (conn, _) = listener.accept().await?;
    loop {
        conn.readable().await?;
        match conn.try_io(Interest::READABLE, || crate::sys::recv_fd(conn.as_fd())) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A started exec: dropped before its exit, it kills the exec'd process (then the
/// runtime, through `kill_on_drop`); either way it removes the exec's directory.
struct Running {
    child: Option<Child>,
    pid_file: PathBuf,
    tmp: PathBuf,
}

impl Running {
    async fn wait(mut self, what: String) -> Result<i32, BackendError> {
        // Borrowed while waiting: a session dropped mid-wait still kills the process.
        let st = match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => unreachable!("the child is taken only in drop"),
        };
        self.child = None;
        let st = st.map_err(|source| BackendError::Io {
            what: format!("waiting for {what}"),
            source,
        })?;
        Ok(exit_code(st))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let tmp = std::mem::take(&mut self.tmp);
        let Some(child) = self.child.take() else {
            let _ = std::fs::remove_dir_all(&tmp);
            return;
        };
        let orphan = Orphan {
            child,
            pid_file: std::mem::take(&mut self.pid_file),
            tmp,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn(orphan.kill())),
            Err(_) => orphan.kill_now(),
        }
    }
}

/// How long a dropped exec's runtime may take to report the process's pid.
const PID_WAIT: Duration = Duration::from_secs(10);

/// An exec dropped before its exit. The runtime writes the pid file only after the
/// process has exec'd, so a session dropped in between must wait for it: killing the
/// runtime first would leave the process running, orphaned, in the container.
struct Orphan {
    child: Child,
    pid_file: PathBuf,
    tmp: PathBuf,
}

impl Orphan {
    async fn kill(mut self) {
        let deadline = tokio::time::Instant::now() + PID_WAIT;
        while !self.pid_file.exists() && tokio::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.kill_now();
    }

    fn kill_now(self) {
        // Before the child drops (and kill_on_drop kills the runtime): while the runtime
        // is unreaped, the process's parent check in kill_exec is reliable.
        kill_exec(&self.pid_file, self.child.id());
        drop(self.child);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// The process's stdin, closed by a shutdown: the client's half-close must reach the
/// process as end of file, which a shutdown of the pipe alone does not do.
struct ClosingStdin(Option<ChildStdin>);

impl AsyncWrite for ClosingStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, data),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}
