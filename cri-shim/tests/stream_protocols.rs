//! The streaming server against the real Go clients: client-go's remotecommand over SPDY
//! and WebSocket, and its portforward over SPDY and tunnelled through WebSocket
//! (conformance/streamclient, built by conformance/streamclient/build.sh). The backend runs
//! local processes: `exec` spawns the command with pipes, or on a pty from openpty with a
//! tty; `port_forward` dials loopback.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hull_cri::stream::{
    self, AttachRequest, Backend, BackendError, BoxFuture, ExecRequest, Session, StreamRequest,
    StreamUrls, TermSize, Tokens,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Local processes standing in for containers; counts the execs it started.
#[derive(Default)]
struct LocalBackend {
    execs: AtomicUsize,
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> BackendError + '_ {
    move |source| BackendError::Io {
        what: what.to_string(),
        source,
    }
}

fn pipe(wanted: bool) -> Stdio {
    if wanted {
        Stdio::piped()
    } else {
        Stdio::null()
    }
}

impl LocalBackend {
    fn exec_pipes(req: ExecRequest) -> Result<Session, BackendError> {
        let mut child = Command::new(&req.cmd[0])
            .args(&req.cmd[1..])
            .stdin(pipe(req.stdin))
            .stdout(pipe(req.stdout))
            .stderr(pipe(req.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("spawning the command"))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as stream::BoxWrite);
        let stdout = child.stdout.take().map(|s| Box::new(s) as stream::BoxRead);
        let stderr = child.stderr.take().map(|s| Box::new(s) as stream::BoxRead);
        Ok(Session {
            stdin,
            stdout,
            stderr,
            resize: None,
            exit: Box::pin(async move {
                let st = child
                    .wait()
                    .await
                    .map_err(io_err("waiting for the command"))?;
                Ok(st.code().unwrap_or(128))
            }),
        })
    }

    fn exec_tty(req: ExecRequest, size: Option<TermSize>) -> Result<Session, BackendError> {
        let ws = size.map(|s| nix::pty::Winsize {
            ws_row: s.height,
            ws_col: s.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(ws.as_ref(), None)
            .map_err(|e| io_err("openpty")(std::io::Error::from(e)))?;
        let slave_path = nix::unistd::ttyname(&pty.slave)
            .map_err(|e| io_err("ttyname")(std::io::Error::from(e)))?;
        let slave = std::fs::File::from(pty.slave);
        let clone = |f: &std::fs::File| f.try_clone().map_err(io_err("dup of the pty"));
        let mut child = Command::new(&req.cmd[0])
            .args(&req.cmd[1..])
            .stdin(Stdio::from(clone(&slave)?))
            .stdout(Stdio::from(clone(&slave)?))
            .stderr(Stdio::from(slave))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err("spawning the command"))?;
        let master = std::fs::File::from(pty.master);
        let reader = tokio::fs::File::from_std(clone(&master)?);
        let writer = tokio::fs::File::from_std(master);
        // Resizes through stty on the slave: no ioctl (and no unsafe) in the test.
        let (resize, mut sizes) = mpsc::unbounded_channel::<TermSize>();
        tokio::spawn(async move {
            while let Some(s) = sizes.recv().await {
                let _ = Command::new("stty")
                    .arg("-F")
                    .arg(&slave_path)
                    .args(["rows", &s.height.to_string(), "cols", &s.width.to_string()])
                    .status()
                    .await;
            }
        });
        Ok(Session {
            stdin: req.stdin.then(|| Box::new(writer) as stream::BoxWrite),
            stdout: Some(Box::new(reader)),
            stderr: None,
            resize: Some(resize),
            exit: Box::pin(async move {
                let st = child
                    .wait()
                    .await
                    .map_err(io_err("waiting for the command"))?;
                Ok(st.code().unwrap_or(128))
            }),
        })
    }
}

impl Backend for LocalBackend {
    fn exec(
        &self,
        req: ExecRequest,
        size: Option<TermSize>,
    ) -> BoxFuture<Result<Session, BackendError>> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if req.tty {
                Self::exec_tty(req, size)
            } else {
                Self::exec_pipes(req)
            }
        })
    }

    fn attach(&self, req: AttachRequest) -> BoxFuture<Result<Session, BackendError>> {
        Box::pin(async move {
            Err(BackendError::NotFound(format!(
                "container {}",
                req.container_id
            )))
        })
    }

    fn port_forward(
        &self,
        pod_id: String,
        port: u16,
    ) -> BoxFuture<Result<TcpStream, BackendError>> {
        Box::pin(async move {
            if pod_id != "pod-1" {
                return Err(BackendError::NotFound(format!("pod {pod_id}")));
            }
            TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(io_err("connecting to the port"))
        })
    }
}

fn client() -> Option<PathBuf> {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/work/bin/streamclient");
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "skipped: {} is absent (build it with conformance/streamclient/build.sh)",
            bin.display()
        );
        None
    }
}

struct Server {
    urls: StreamUrls,
    backend: Arc<LocalBackend>,
    addr: std::net::SocketAddr,
}

async fn server(ttl: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tokens = Arc::new(Tokens::with_ttl(ttl));
    let backend = Arc::new(LocalBackend::default());
    tokio::spawn(stream::serve(listener, tokens.clone(), backend.clone()));
    Server {
        urls: StreamUrls::new(addr, tokens),
        backend,
        addr,
    }
}

fn exec_req(cmd: &[&str], stdin: bool, tty: bool) -> StreamRequest {
    StreamRequest::Exec(ExecRequest {
        container_id: "ctr-1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    })
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run_client(bin: &PathBuf, args: &[&str], input: &[u8]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("streamclient hung")
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn exec(
    s: &Server,
    bin: &PathBuf,
    ws: bool,
    req: StreamRequest,
    extra: &[&str],
    input: &[u8],
) -> Run {
    let url = s.urls.issue(req).unwrap();
    let mut args = vec!["exec", "-url", &url];
    if ws {
        args.push("-ws");
    }
    args.extend_from_slice(extra);
    run_client(bin, &args, input).await
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_stay_apart() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_secs(60)).await;
    for ws in [false, true] {
        let req = exec_req(
            &["sh", "-c", "echo out; echo err >&2; echo more"],
            false,
            false,
        );
        let r = exec(&s, &bin, ws, req, &[], b"").await;
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (Some(0), "out\nmore\n", "err\n"),
            "ws={ws}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_half_close_ends_cat() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_secs(60)).await;
    // 200 KB: several SPDY windows and WebSocket messages.
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for ws in [false, true] {
        let r = exec(
            &s,
            &bin,
            ws,
            exec_req(&["cat"], true, false),
            &["-stdin"],
            &input,
        )
        .await;
        assert_eq!(r.code, Some(0), "ws={ws}: {}", r.stderr);
        assert!(
            r.stdout.as_bytes() == input,
            "ws={ws}: {} bytes back",
            r.stdout.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_propagates() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_secs(60)).await;
    for ws in [false, true] {
        let r = exec(
            &s,
            &bin,
            ws,
            exec_req(&["sh", "-c", "exit 3"], false, false),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.code, Some(3), "ws={ws}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_starts_at_the_client_size_and_follows_resizes() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_secs(60)).await;
    for ws in [false, true] {
        let req = exec_req(&["sh", "-c", "stty size; sleep 1; stty size"], false, true);
        let r = exec(&s, &bin, ws, req, &["-tty", "-resize", "24x80,30x100"], b"").await;
        assert_eq!(r.code, Some(0), "ws={ws}: {}", r.stderr);
        assert_eq!(r.stdout, "24 80\r\n30 100\r\n", "ws={ws}");
    }
}

async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_echoes() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_secs(60)).await;
    let port = echo_server().await.to_string();
    let pf = |pod: &str| StreamRequest::PortForward { pod_id: pod.into() };
    // SPDY, then SPDY tunnelled through WebSocket (critest's -websocket-portforward).
    for ws in [false, true] {
        let url = s.urls.issue(pf("pod-1")).unwrap();
        let mut args = vec!["portforward", "-url", &url, "-port", &port];
        if ws {
            args.push("-ws");
        }
        let r = run_client(&bin, &[&args[..], &["-msg", "ping-pong"]].concat(), b"").await;
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (Some(0), "ping-pong"),
            "ws={ws}: {}",
            r.stderr
        );
        // A pod the backend does not know: the error stream says so.
        let url = s.urls.issue(pf("pod-2")).unwrap();
        let mut args = vec!["portforward", "-url", &url, "-port", &port, "-msg", "x"];
        if ws {
            args.push("-ws");
        }
        let r = run_client(&bin, &args, b"").await;
        assert!(
            r.stderr.contains("pod pod-2 not found"),
            "ws={ws}: {}",
            r.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn used_expired_and_unknown_tokens_are_refused() {
    let Some(bin) = client() else { return };
    let s = server(Duration::from_millis(300)).await;
    let url = s.urls.issue(exec_req(&["true"], false, false)).unwrap();
    let first = run_client(&bin, &["exec", "-url", &url], b"").await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    for ws in [false, true] {
        let mut args = vec!["exec", "-url", url.as_str()];
        if ws {
            args.push("-ws");
        }
        let again = run_client(&bin, &args, b"").await;
        assert_eq!(again.code, Some(100), "ws={ws}");
        if !ws {
            // client-go's SPDY upgrader shows the body; its WebSocket one only the status.
            assert!(
                again.stderr.contains("unknown, expired or already used"),
                "{}",
                again.stderr
            );
        }
    }
    let late = s.urls.issue(exec_req(&["true"], false, false)).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = run_client(&bin, &["exec", "-url", &late], b"").await;
    assert_eq!(r.code, Some(100));
    assert!(
        r.stderr.contains("unknown, expired or already used"),
        "{}",
        r.stderr
    );
    // Only the first connection ran anything.
    assert_eq!(s.backend.execs.load(Ordering::SeqCst), 1);
    // A plain request gets a 404 with a body naming the problem.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /exec/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(
        resp.contains("\"nope\" is unknown, expired or already used"),
        "{resp}"
    );
}
