//! Attach: a client of the container's monitor on its attach socket, turning the socket's
//! frames (`crate::monitor::frame`) into the session's streams and back.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::ShortDir;
use crate::monitor::frame::{Frame, MAX_PAYLOAD};
use crate::monitor::ExitRecord;
use crate::server::runtime::Runtime;
use crate::stream::{AttachRequest, BackendError, Session, TermSize};

/// Output buffered between the socket and the protocol, per stream.
const PIPE: usize = 64 * 1024;

/// Joins the running container's stdio through its monitor.
pub(super) async fn attach(rt: &Runtime, req: AttachRequest) -> Result<Session, BackendError> {
    let id = req.container_id.clone();
    let c = rt.running_ctr(&id)?;
    if req.stdin && !c.config.stdin {
        return Err(BackendError::Runtime {
            what: format!("attaching stdin to container {id}"),
            message: "the container was created without stdin".into(),
        });
    }
    let dir = rt.paths.ctr_dir(&id);
    let sock = connect(&dir).await.map_err(|source| BackendError::Io {
        what: format!("connecting to the monitor of container {id}"),
        source,
    })?;
    let (out_tx, out_rx) = split_pipe(req.stdout);
    let (err_tx, err_rx) = split_pipe(req.stderr && !req.tty);
    let (in_tx, in_rx) = split_pipe(req.stdin);
    let (resize_tx, resize_rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    let pump = Pump {
        sock,
        out: out_tx,
        err: err_tx,
        stdin: in_rx,
        resize: req.tty.then_some(resize_rx),
        exit_file: dir.join("exit.json"),
        id: id.clone(),
    };
    tokio::spawn(pump.run(exit_tx));
    let exit = async move {
        exit_rx.await.unwrap_or_else(|_| {
            Err(BackendError::Runtime {
                what: format!("attached to container {id}"),
                message: "the attachment ended without an exit".into(),
            })
        })
    };
    Ok(Session {
        stdin: in_tx.map(|w| Box::new(w) as _),
        stdout: out_rx.map(|r| Box::new(r) as _),
        stderr: err_rx.map(|r| Box::new(r) as _),
        resize: req.tty.then_some(resize_tx),
        exit: Box::pin(exit),
    })
}

/// Connects to `dir/attach.sock` through a short path.
async fn connect(dir: &Path) -> std::io::Result<UnixStream> {
    let short = ShortDir::open(dir)?;
    UnixStream::connect(short.join("attach.sock")).await
}

/// Both ends of an in-memory pipe, when `on`.
fn split_pipe(on: bool) -> (Option<DuplexStream>, Option<DuplexStream>) {
    match on {
        true => {
            let (a, b) = tokio::io::duplex(PIPE);
            (Some(a), Some(b))
        }
        false => (None, None),
    }
}

/// Moves frames between the socket and the session's streams until the container exits
/// or the session is dropped.
struct Pump {
    sock: UnixStream,
    out: Option<DuplexStream>,
    err: Option<DuplexStream>,
    stdin: Option<DuplexStream>,
    resize: Option<mpsc::UnboundedReceiver<TermSize>>,
    exit_file: std::path::PathBuf,
    id: String,
}

impl Pump {
    async fn run(mut self, mut exit_tx: oneshot::Sender<Result<i32, BackendError>>) {
        let result = tokio::select! {
            r = self.pump() => r,
            // The session was dropped: detach, leaving the container running.
            () = exit_tx.closed() => return,
        };
        // The output streams end before the exit is told, so nothing is cut off.
        self.out = None;
        self.err = None;
        let _ = exit_tx.send(result);
    }

    async fn pump(&mut self) -> Result<i32, BackendError> {
        let io = |what: &str, id: &str| {
            let what = format!("{what} container {id}");
            move |source| BackendError::Io { what, source }
        };
        let (mut rd, mut wr) = self.sock.split();
        let mut frames = Vec::new();
        if self.stdin.is_some() {
            Frame::OpenStdin.encode(&mut frames);
            wr.write_all(&frames)
                .await
                .map_err(io("writing to the monitor of", &self.id))?;
        }
        let mut input = Vec::with_capacity(64 * 1024);
        let mut stdin_buf = vec![0u8; MAX_PAYLOAD];
        loop {
            frames.clear();
            tokio::select! {
                n = rd.read_buf(&mut input) => {
                    let n = n.map_err(io("reading from the monitor of", &self.id))?;
                    if let Some(code) = deliver(&mut input, &mut self.out, &mut self.err).await? {
                        return Ok(code);
                    }
                    if n == 0 {
                        return self.exit_from_file();
                    }
                }
                n = read_opt(&mut self.stdin, &mut stdin_buf), if self.stdin.is_some() => {
                    match n {
                        Ok(0) | Err(_) => {
                            self.stdin = None;
                            Frame::StdinClose.encode(&mut frames);
                        }
                        Ok(n) => Frame::Stdin(stdin_buf[..n].to_vec()).encode(&mut frames),
                    }
                }
                size = recv_opt(&mut self.resize), if self.resize.is_some() => match size {
                    Some(s) => Frame::Resize { width: s.width, height: s.height }.encode(&mut frames),
                    None => self.resize = None,
                },
            }
            if !frames.is_empty() {
                wr.write_all(&frames)
                    .await
                    .map_err(io("writing to the monitor of", &self.id))?;
            }
        }
    }

    /// The monitor closed the socket without an exit frame: its exit file says, if any.
    fn exit_from_file(&self) -> Result<i32, BackendError> {
        let read = std::fs::read(&self.exit_file).ok();
        match read.and_then(|b| serde_json::from_slice::<ExitRecord>(&b).ok()) {
            Some(r) => Ok(r.exit_code),
            None => Err(BackendError::Runtime {
                what: format!("attached to container {}", self.id),
                message: "the monitor went away without recording an exit".into(),
            }),
        }
    }
}

/// Hands the whole frames at the start of `input` to the output streams; the exit code if
/// an exit frame came. A stream whose reader is gone is dropped, not an error.
async fn deliver(
    input: &mut Vec<u8>,
    out: &mut Option<DuplexStream>,
    err: &mut Option<DuplexStream>,
) -> Result<Option<i32>, BackendError> {
    loop {
        let decoded = Frame::decode(input).map_err(|e| BackendError::Io {
            what: "reading the attach socket".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let Some((frame, used)) = decoded else {
            return Ok(None);
        };
        input.drain(..used);
        let (target, data) = match frame {
            Frame::Stdout(d) => (&mut *out, d),
            Frame::Stderr(d) => (&mut *err, d),
            Frame::Exit(code) => return Ok(Some(code)),
            _ => continue,
        };
        if let Some(w) = target {
            if w.write_all(&data).await.is_err() {
                *target = None;
            }
        }
    }
}

async fn read_opt<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => Ok(0),
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => None,
    }
}
