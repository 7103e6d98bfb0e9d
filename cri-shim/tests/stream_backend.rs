//! Root integration test of the container side of streaming ([`RuntimeBackend`]): exec on
//! pipes and on a terminal, attach through the container's monitor, port-forward into the
//! pod's network namespace, and the errors for unknown or stopped objects.
//!
//! Pods and containers are made through a real hull-cri (tests/common); the backend under
//! test runs in this process over the same state, as the streaming server will inside
//! hull-cri. Skips with a reason when not root or a tool is missing.

// The shared helpers; this test does not use the ones for restarts and bad input.
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{sh_ctr, Env, NetOpts, PLUGINS};
use hull_cri::api::*;
use hull_cri::cni::Cni;
use hull_cri::oci::Handlers;
use hull_cri::server::{Paths, RuntimeBackend, RuntimeServer};
use hull_cri::snapshot::Snapshots;
use hull_cri::store::Store;
use hull_cri::stream::{
    AttachRequest, Backend, BackendError, BoxRead, ExecRequest, Session, TermSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// A backend over the daemon's state, loaded now (create what it must see first).
async fn backend(env: &Env) -> RuntimeBackend {
    let root = env.root();
    let run = env.run_dir();
    let store = Arc::new(Store::open(&root).unwrap());
    let snapshots = Arc::new(Snapshots::open(&root).unwrap());
    let handlers = Handlers::new(
        &BTreeMap::new(),
        common::hull_bin(),
        None,
        &run.join("runtime"),
    );
    let cni = Cni::new(env.path("cni-conf"), vec![PLUGINS.into()], root.join("cni"));
    let paths = Paths {
        root,
        run,
        monitor: env!("CARGO_BIN_EXE_hull-cri-monitor").into(),
        pinns: env!("CARGO_BIN_EXE_hull-cri-pinns").into(),
    };
    let server = RuntimeServer::new(paths, store, snapshots, handlers, cni)
        .await
        .expect("a second view of the daemon's state");
    RuntimeBackend::new(&server)
}

/// A started pod with one started container of `config`; returns (pod id, container id).
async fn pod_with(env: &mut Env, name: &str, mut config: ContainerConfig) -> (String, String) {
    let image = env.pull_busybox().await;
    config.image = Some(common::image(&image));
    let pod = env.pod_config(name);
    let pod_id = env.run_pod(pod.clone()).await.expect("RunPodSandbox");
    let id = env
        .create(&pod_id, &pod, config)
        .await
        .expect("CreateContainer");
    env.rt
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
    (pod_id, id)
}

/// Reads `r` until what was read contains `want`; returns all of it.
async fn read_until(r: &mut BoxRead, want: &str) -> String {
    let mut got = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(want) {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        true
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        matches!(found, Ok(true)),
        "no {want:?} in the stream; got {text:?}"
    );
    text
}

async fn read_all(r: Option<BoxRead>) -> String {
    let mut buf = Vec::new();
    if let Some(mut r) = r {
        tokio::time::timeout(WAIT, r.read_to_end(&mut buf))
            .await
            .expect("the stream to end")
            .expect("reading the stream");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Removes the pod through the daemon and checks that nothing of it is left: no process
/// (exec'd runtimes included), mount, directory (exec dirs, sockets) or network.
async fn remove_and_assert_clean(env: &mut Env, pod_id: &str) {
    env.rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        })
        .await
        .expect("RemovePodSandbox");
    env.assert_clean();
}

async fn exit_of(s: Session) -> i32 {
    tokio::time::timeout(WAIT, s.exit)
        .await
        .expect("the exit in time")
        .expect("an exit code")
}

fn exec_req(id: &str, cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }
}

fn exec_dirs(env: &Env, id: &str) -> Vec<String> {
    std::fs::read_dir(env.root().join("containers").join(id))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("exec-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_pipes_and_on_a_terminal() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let (pod_id, id) = pod_with(&mut env, "exec", sh_ctr("sleeper", "", "sleep 1000")).await;
    let b = backend(&env).await;

    // stdout and stderr apart, and the exit code.
    let mut s = b
        .exec(
            exec_req(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"]),
            None,
        )
        .await
        .expect("exec");
    assert!(s.stdin.is_none() && s.resize.is_none());
    let (out, err) = tokio::join!(read_all(s.stdout.take()), read_all(s.stderr.take()));
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(exit_of(s).await, 3);

    // stdin: cat echoes, and the half-close ends it.
    let mut req = exec_req(&id, &["cat"]);
    req.stdin = true;
    req.stderr = false;
    let mut s = b.exec(req, None).await.expect("exec cat");
    assert!(s.stderr.is_none());
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"hello cat\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(read_all(s.stdout.take()).await, "hello cat\n");
    assert_eq!(exit_of(s).await, 0);

    // A terminal: its initial size, then a resize, each seen by `stty size`.
    let req = ExecRequest {
        tty: true,
        stdin: true,
        stderr: false,
        ..exec_req(
            &id,
            &["sh", "-c", "read a; stty size; read b; stty size; exit 5"],
        )
    };
    let size = TermSize {
        width: 80,
        height: 24,
    };
    let mut s = b.exec(req, Some(size)).await.expect("exec on a terminal");
    assert!(s.stderr.is_none());
    let mut stdin = s.stdin.take().expect("stdin");
    let mut out = s.stdout.take().expect("stdout");
    let resize = s.resize.take().expect("resize");
    stdin.write_all(b"\n").await.unwrap();
    read_until(&mut out, "24 80").await;
    resize
        .send(TermSize {
            width: 100,
            height: 30,
        })
        .unwrap();
    // The resize is applied by a task: give it a moment before asking again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.write_all(b"\n").await.unwrap();
    read_until(&mut out, "30 100").await;
    assert_eq!(exit_of(s).await, 5);

    // Dropping a session before the exit kills the exec'd process.
    let s = b
        .exec(exec_req(&id, &["sleep", "4242"]), None)
        .await
        .expect("exec sleep");
    let sleeping = || {
        common::scan::processes()
            .iter()
            .any(|p| p.cmdline.trim() == "sleep 4242")
    };
    common::wait_for(sleeping, "the exec'd sleep to run");
    drop(s);
    common::wait_for(|| !sleeping(), "the exec'd sleep to be killed");

    // Dropped at once, most likely before the runtime has written the process's pid: the
    // process must not outlive the session either, whenever it gets to run.
    let s = b
        .exec(exec_req(&id, &["sleep", "4243"]), None)
        .await
        .expect("exec sleep");
    drop(s);
    common::wait_for(|| exec_dirs(&env, &id).is_empty(), "exec dirs removed");
    let left = common::scan::processes()
        .into_iter()
        .filter(|p| p.cmdline.trim() == "sleep 4243")
        .count();
    assert_eq!(left, 0, "an exec dropped at once left its process running");

    // A command the container lacks: the runtime's failure is the exit, nothing is left.
    let s = b
        .exec(exec_req(&id, &["/no/such/binary"]), None)
        .await
        .expect("the runtime starts");
    assert_ne!(exit_of(s).await, 0);
    common::wait_for(|| exec_dirs(&env, &id).is_empty(), "exec dirs removed");

    // Unknown and stopped containers.
    let r = b.exec(exec_req("no-such-container", &["true"]), None).await;
    assert!(
        matches!(&r, Err(BackendError::NotFound(w)) if w.contains("no-such-container")),
        "{:?}",
        r.err()
    );
    env.rt
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
    let r = b.exec(exec_req(&id, &["true"]), None).await;
    assert!(
        matches!(&r, Err(BackendError::NotRunning(w)) if w.contains(&id)),
        "{:?}",
        r.err()
    );
    assert!(exec_dirs(&env, &id).is_empty());
    remove_and_assert_clean(&mut env, &pod_id).await;
}

fn attach_req(id: &str, stdin: bool) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        tty: false,
        stdin,
        stdout: true,
        stderr: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_the_containers_stdio() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    // A shell reading its commands from stdin, closed when the first client detaches.
    let mut shell = sh_ctr("shell", "", "");
    shell.command = vec!["sh".into()];
    shell.stdin = true;
    shell.stdin_once = true;
    let (pod_id, id) = pod_with(&mut env, "attach", shell).await;
    // A container without stdin that keeps printing.
    let ticker = sh_ctr(
        "ticker",
        &env.registry.busybox(),
        "while true; do echo tick; sleep 0.2; done",
    );
    let pod = env.pod_config("attach");
    let ticker_id = env.create(&pod_id, &pod, ticker).await.expect("create");
    env.rt
        .start_container(StartContainerRequest {
            container_id: ticker_id.clone(),
        })
        .await
        .expect("start");
    // A shell on a terminal.
    let mut term = sh_ctr("term", &env.registry.busybox(), "");
    term.command = vec!["sh".into()];
    term.stdin = true;
    term.tty = true;
    let term_id = env.create(&pod_id, &pod, term).await.expect("create");
    env.rt
        .start_container(StartContainerRequest {
            container_id: term_id.clone(),
        })
        .await
        .expect("start");
    let b = backend(&env).await;

    let mut s = b.attach(attach_req(&id, true)).await.expect("attach");
    assert!(s.resize.is_none());
    let mut stdin = s.stdin.take().expect("stdin");
    let mut out = s.stdout.take().expect("stdout");
    let mut err = s.stderr.take().expect("stderr");
    stdin.write_all(b"echo hi\n").await.unwrap();
    read_until(&mut out, "hi\n").await;
    stdin.write_all(b"echo oops >&2\n").await.unwrap();
    read_until(&mut err, "oops\n").await;
    // The exit code of sh at end of input is its last command's.
    stdin.write_all(b"(exit 7)\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert_eq!(exit_of(s).await, 7);
    common::wait_for(
        || {
            std::fs::read_to_string(env.root().join("containers").join(&id).join("exit.json"))
                .is_ok()
        },
        "the exit file",
    );
    let st = env.ctr_status(&id).await;
    assert_eq!(st.exit_code, 7);

    // A container on a terminal: input, output and resizes through the monitor.
    let req = AttachRequest {
        tty: true,
        stderr: false,
        ..attach_req(&term_id, true)
    };
    let mut s = b.attach(req).await.expect("attach on a terminal");
    assert!(s.stderr.is_none());
    let mut stdin = s.stdin.take().expect("stdin");
    let mut out = s.stdout.take().expect("stdout");
    let resize = s.resize.take().expect("resize");
    resize
        .send(TermSize {
            width: 101,
            height: 31,
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.write_all(b"stty size\n").await.unwrap();
    read_until(&mut out, "31 101").await;
    stdin.write_all(b"exit 4\n").await.unwrap();
    assert_eq!(exit_of(s).await, 4);

    // Output of a container created without stdin; stdin is refused there.
    let r = b.attach(attach_req(&ticker_id, true)).await;
    assert!(
        matches!(&r, Err(BackendError::Runtime { message, .. }) if message.contains("without stdin")),
        "{:?}",
        r.err()
    );
    let mut s = b
        .attach(attach_req(&ticker_id, false))
        .await
        .expect("attach");
    assert!(s.stdin.is_none());
    let mut out = s.stdout.take().expect("stdout");
    read_until(&mut out, "tick\ntick\n").await;
    // Detaching leaves the container running.
    drop(out);
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = env.ctr_status(&ticker_id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);

    // Unknown and exited containers.
    let r = b.attach(attach_req("no-such-container", false)).await;
    assert!(matches!(r, Err(BackendError::NotFound(_))), "{:?}", r.err());
    let r = b.attach(attach_req(&id, false)).await;
    assert!(
        matches!(r, Err(BackendError::NotRunning(_))),
        "{:?}",
        r.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_the_pods_loopback() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let echo = sh_ctr("echo", "", "exec nc -ll -p 8080 -e cat");
    let (pod_id, _id) = pod_with(&mut env, "portfwd", echo).await;
    let b = backend(&env).await;
    // A listener on the host's loopback that never echoes: reaching it instead of the pod's
    // would time out below. (If the port is taken, whatever holds it does not echo either.)
    let _host = std::net::TcpListener::bind("127.0.0.1:8080").ok();

    // nc listens once the container has run that far: retry until then.
    let mut conn = None;
    for _ in 0..100 {
        match b.port_forward(pod_id.clone(), 8080).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(BackendError::Io { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("port_forward: {e}"),
        }
    }
    let mut conn = conn.expect("a connection to port 8080 in the pod");
    conn.write_all(b"ping through the pod\n").await.unwrap();
    let mut buf = vec![0u8; 21];
    tokio::time::timeout(WAIT, conn.read_exact(&mut buf))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(&buf, b"ping through the pod\n");
    // The connection is in the pod's namespace: its peer is the pod's loopback.
    assert_eq!(conn.peer_addr().unwrap().port(), 8080);
    drop(conn);

    // A port nobody listens on is refused, as an I/O error naming the pod.
    let r = b.port_forward(pod_id.clone(), 8081).await;
    assert!(
        matches!(&r, Err(BackendError::Io { what, source }) if what.contains(&pod_id)
            && source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{:?}",
        r.err()
    );
    let r = b.port_forward("no-such-pod".into(), 8080).await;
    assert!(matches!(r, Err(BackendError::NotFound(_))), "{:?}", r.err());

    env.rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    // A fresh view: the stopped pod's record says not ready.
    let b = backend(&env).await;
    let r = b.port_forward(pod_id.clone(), 8080).await;
    assert!(
        matches!(r, Err(BackendError::NotRunning(_))),
        "{:?}",
        r.err()
    );
}
