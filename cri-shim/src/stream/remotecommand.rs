//! Kubernetes' remote command protocol (exec and attach) over SPDY streams or WebSocket
//! channels: stdin, stdout, stderr, error and resize, as kubelet's streaming server speaks
//! it (k8s.io/cri-streaming, remotecommand). Versions:
//!
//! - `channel.k8s.io`, `v2.channel.k8s.io`: stdio; a failure's message as plain text on
//!   the error stream, nothing on success.
//! - `v3.channel.k8s.io`: adds the resize stream (JSON `{"Width":w,"Height":h}` objects).
//! - `v4.channel.k8s.io`: the error stream carries a JSON metav1.Status, also on success;
//!   a non-zero exit is reason `NonZeroExitCode` with a cause `ExitCode` holding the code.
//! - `v5.channel.k8s.io` (WebSocket only): v4 plus the channel-close message.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::spdy::{self, frame::rst, Incoming};
use super::websocket::WsSession;
use super::{AttachRequest, Backend, BackendError, BoxRead, BoxWrite, ExecRequest, TermSize};

/// How long the client gets to open all its streams (kubelet's default too).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// With a terminal, how long exec waits for the first size, so the process starts on a
/// terminal of the client's size rather than getting a resize just after it started.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(500);
/// After the process exits, how long its output may take to drain to the client.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// A remote command protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `channel.k8s.io`.
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`.
    V3,
    /// `v4.channel.k8s.io`.
    V4,
    /// `v5.channel.k8s.io`.
    V5,
}

impl Version {
    /// The protocol name negotiated in `X-Stream-Protocol-Version` or
    /// `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "channel.k8s.io",
            Self::V2 => "v2.channel.k8s.io",
            Self::V3 => "v3.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }

    fn resizes(self) -> bool {
        self >= Self::V3
    }

    fn json_status(self) -> bool {
        self >= Self::V4
    }
}

/// Versions served over SPDY, in kubelet's order (v5 is WebSocket-only there).
pub const SPDY_VERSIONS: [Version; 4] = [Version::V4, Version::V3, Version::V2, Version::V1];
/// Versions served over WebSocket (binary channels; the base64 variants are not served).
pub const WS_VERSIONS: [Version; 3] = [Version::V5, Version::V4, Version::V1];

/// What the client asked for.
#[derive(Clone, Debug)]
pub enum Op {
    /// Run a command.
    Exec(ExecRequest),
    /// Join the container's stdio.
    Attach(AttachRequest),
}

impl Op {
    /// (stdin, stdout, stderr, tty).
    fn wants(&self) -> (bool, bool, bool, bool) {
        match self {
            Op::Exec(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
            Op::Attach(r) => (r.stdin, r.stdout, r.stderr && !r.tty, r.tty),
        }
    }
}

/// An outbound stream: chunks sent go out in order; dropping the sender ends the stream.
struct Outbound {
    tx: mpsc::Sender<Bytes>,
    done: JoinHandle<()>,
}

impl Outbound {
    async fn finish(self) {
        drop(self.tx);
        let _ = self.done.await;
    }
}

/// The streams of one session, whatever the transport.
struct Channels {
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<Outbound>,
    stderr: Option<Outbound>,
    error: Outbound,
    resize: Option<mpsc::Receiver<Bytes>>,
    gone: watch::Receiver<bool>,
}

/// Serves `op` on an upgraded SPDY session, then ends the session.
pub async fn serve_spdy(
    mut session: spdy::Session,
    version: Version,
    op: Op,
    backend: Arc<dyn Backend>,
) {
    match tokio::time::timeout(
        STREAM_CREATION_TIMEOUT,
        spdy_streams(&mut session, version, &op),
    )
    .await
    {
        Ok(Some(ch)) => run(op, version, ch, backend).await,
        Ok(None) => tracing::debug!("spdy client left before opening its streams"),
        Err(_) => tracing::info!("spdy client did not open its streams within 30 s"),
    }
    session.close().await;
}

async fn spdy_streams(session: &mut spdy::Session, version: Version, op: &Op) -> Option<Channels> {
    let (stdin, stdout, stderr, tty) = op.wants();
    let want = |t: &str| match t {
        "error" => true,
        "stdin" => stdin,
        "stdout" => stdout,
        "stderr" => stderr,
        "resize" => tty && version.resizes(),
        _ => false,
    };
    let expected = ["error", "stdin", "stdout", "stderr", "resize"]
        .iter()
        .filter(|t| want(t))
        .count();
    let mut got: Vec<(String, Incoming)> = Vec::new();
    while got.len() < expected {
        let s = session.accept().await?;
        let kind = s.headers.get("streamtype").unwrap_or("").to_string();
        if !want(&kind) || got.iter().any(|(k, _)| *k == kind) {
            tracing::debug!(
                stream = s.id,
                kind,
                "refusing an unexpected or duplicate stream"
            );
            s.tx.reset(rst::PROTOCOL_ERROR).await;
            continue;
        }
        s.tx.reply().await.ok()?;
        got.push((kind, s));
    }
    let mut take = |k: &str| {
        got.iter()
            .position(|(t, _)| t == k)
            .map(|i| got.remove(i).1)
    };
    let error = spdy_out(take("error")?);
    Some(Channels {
        stdin: take("stdin").map(spdy_in),
        stdout: take("stdout").map(spdy_out),
        stderr: take("stderr").map(spdy_out),
        resize: take("resize").map(spdy_in),
        error,
        gone: session.gone(),
    })
}

fn spdy_in(s: Incoming) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(1);
    let mut recv = s.rx;
    tokio::spawn(async move {
        while let Some(chunk) = recv.recv().await {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    rx
}

fn spdy_out(s: Incoming) -> Outbound {
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let send = s.tx;
    let done = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if send.write(chunk).await.is_err() {
                return;
            }
        }
        let _ = send.finish().await;
    });
    Outbound { tx, done }
}

/// Serves `op` on an upgraded WebSocket connection, then closes it.
pub async fn serve_websocket<IO>(io: IO, version: Version, op: Op, backend: Arc<dyn Backend>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (stdin, stdout, stderr, tty) = op.wants();
    let mut inbound = Vec::new();
    if stdin {
        inbound.push(0);
    }
    if tty {
        inbound.push(4);
    }
    let (ws, mut rx) = WsSession::start(io, &inbound);
    let out = |ch: u8| {
        let (tx, mut q) = mpsc::channel::<Bytes>(4);
        let sender = ws.sender(ch);
        let done = tokio::spawn(async move {
            while let Some(chunk) = q.recv().await {
                if sender.send(&chunk).await.is_err() {
                    return;
                }
            }
        });
        Outbound { tx, done }
    };
    let ch = Channels {
        stdin: rx.remove(&0),
        stdout: stdout.then(|| out(1)),
        stderr: stderr.then(|| out(2)),
        error: out(3),
        resize: rx.remove(&4),
        gone: ws.gone(),
    };
    // As kubelet does: an empty message on the first writable channel tells the client
    // the streams are set up.
    let first = ch
        .stdout
        .as_ref()
        .or(ch.stderr.as_ref())
        .unwrap_or(&ch.error);
    let _ = first.tx.send(Bytes::new()).await;
    run(op, version, ch, backend).await;
    ws.close().await;
}

async fn run(op: Op, version: Version, mut ch: Channels, backend: Arc<dyn Backend>) {
    let mut sizes = ch.resize.take().map(spawn_size_decoder);
    let exec = matches!(op, Op::Exec(_));
    let first = match (&mut sizes, op.wants().3) {
        (Some(s), true) => tokio::time::timeout(FIRST_SIZE_WAIT, s.recv())
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let started = match op {
        Op::Exec(req) => backend.exec(req, first).await,
        Op::Attach(req) => backend.attach(req).await,
    };
    let session = match started {
        Ok(s) => s,
        Err(e) => return finish(version, ch, Err(e), exec).await,
    };
    let mut tasks = Vec::new();
    if let (Some(rx), Some(w)) = (ch.stdin.take(), session.stdin) {
        tasks.push(tokio::spawn(pump_in(rx, w)));
    }
    if let (Some(mut sizes), Some(resize)) = (sizes, session.resize) {
        // Exec already started on the first size; attach gets it now.
        if let (false, Some(first)) = (exec, first) {
            let _ = resize.send(first);
        }
        tasks.push(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if resize.send(size).is_err() {
                    break;
                }
            }
        }));
    }
    let outputs: Vec<_> = [
        (session.stdout, ch.stdout.take()),
        (session.stderr, ch.stderr.take()),
    ]
    .into_iter()
    .filter_map(|pair| match pair {
        (Some(r), Some(out)) => Some(tokio::spawn(pump_out(r, out))),
        (None, Some(out)) => Some(tokio::spawn(out.finish())),
        _ => None,
    })
    .collect();
    let mut gone = ch.gone.clone();
    let exit = tokio::select! {
        code = session.exit => code,
        _ = gone.wait_for(|g| *g) => {
            // The client hung up: dropping the session detaches an attach, kills an exec.
            tracing::debug!("stream client left before the process ended");
            outputs.iter().chain(&tasks).for_each(JoinHandle::abort);
            return;
        }
    };
    let drained = tokio::time::timeout(OUTPUT_GRACE, async {
        for o in outputs {
            let _ = o.await;
        }
    });
    if drained.await.is_err() {
        tracing::info!("output still open {OUTPUT_GRACE:?} after the process exited; ending it");
    }
    tasks.iter().for_each(JoinHandle::abort);
    finish(version, ch, exit, exec).await;
}

/// Writes the status on the error stream and closes it.
async fn finish(version: Version, ch: Channels, exit: Result<i32, BackendError>, exec: bool) {
    // Attach reports no exit code: kubelet answers Success when the attachment ends.
    let status = match exit {
        Ok(code) if code != 0 && exec => Some(non_zero_exit(code)),
        Ok(_) => None,
        Err(e) => Some(internal_error(&e)),
    };
    let body = match (status, version.json_status()) {
        (Some(s), true) => Some(s.to_string()),
        (Some(s), false) => s["message"].as_str().map(str::to_string),
        (None, true) => Some(serde_json::json!({"metadata": {}, "status": "Success"}).to_string()),
        (None, false) => None,
    };
    if let Some(body) = body {
        let _ = ch.error.tx.send(Bytes::from(body)).await;
    }
    for out in [ch.stdout, ch.stderr].into_iter().flatten() {
        out.finish().await;
    }
    ch.error.finish().await;
}

fn non_zero_exit(code: i32) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn internal_error(e: &BackendError) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {}", crate::monitor::chain(e)),
        "reason": "InternalError",
        "code": 500,
    })
}

async fn pump_in(mut rx: mpsc::Receiver<Bytes>, mut w: BoxWrite) {
    while let Some(chunk) = rx.recv().await {
        if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
    // The client's half-close: shut down and drop, which closes the process's stdin.
    let _ = w.shutdown().await;
}

async fn pump_out(mut r: BoxRead, out: Outbound) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        // A terminal's master reads EIO once the last slave fd closes: that is EOF too.
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if out
            .tx
            .send(Bytes::copy_from_slice(&buf[..n]))
            .await
            .is_err()
        {
            break;
        }
    }
    out.finish().await;
}

#[derive(Deserialize)]
struct WireSize {
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Takes every complete size object off the front of `buf`; a partial one stays.
fn decode_sizes(buf: &mut Vec<u8>) -> Result<Vec<TermSize>, serde_json::Error> {
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<WireSize>();
    let mut sizes = Vec::new();
    loop {
        match it.next() {
            Some(Ok(s)) => sizes.push(TermSize {
                width: s.width,
                height: s.height,
            }),
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    let used = it.byte_offset();
    buf.drain(..used);
    Ok(sizes)
}

fn spawn_size_decoder(mut rx: mpsc::Receiver<Bytes>) -> mpsc::UnboundedReceiver<TermSize> {
    let (tx, sizes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(chunk) = rx.recv().await {
            buf.extend_from_slice(&chunk);
            match decode_sizes(&mut buf) {
                Ok(list) => {
                    for s in list {
                        if tx.send(s).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed resize message; ignoring further resizes");
                    return;
                }
            }
            if buf.len() > 4096 {
                tracing::debug!("resize stream without a complete object in 4 KiB; ignoring it");
                return;
            }
        }
    });
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_decode_across_chunks() {
        let mut buf = br#"{"Width":80,"Height":24}
{"Width":100,"Hei"#
            .to_vec();
        let got = decode_sizes(&mut buf).unwrap();
        assert_eq!(
            got,
            vec![TermSize {
                width: 80,
                height: 24
            }]
        );
        buf.extend_from_slice(br#"ght":30}{"width":1,"height":2}"#);
        let got = decode_sizes(&mut buf).unwrap();
        assert_eq!(
            got,
            vec![
                TermSize {
                    width: 100,
                    height: 30
                },
                TermSize {
                    width: 1,
                    height: 2
                }
            ]
        );
        assert!(buf.is_empty());
        assert!(decode_sizes(&mut b"[1]".to_vec()).is_err());
    }

    #[test]
    fn exit_status_matches_what_client_go_parses() {
        let s = non_zero_exit(3);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn versions_name_and_order() {
        assert_eq!(
            SPDY_VERSIONS.map(Version::name),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io"
            ]
        );
        assert!(Version::V3.resizes() && !Version::V2.resizes());
        assert!(Version::V4.json_status() && !Version::V3.json_status());
    }
}
