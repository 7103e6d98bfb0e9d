//! Root integration test of hull-cri's RuntimeService through a tonic client: bad input gets
//! the right gRPC code with a message naming the object; RunPodSandbox and CreateContainer
//! made to fail at each step leave nothing on the host; the happy path; and recovery after
//! a kill -9. Each test runs its own hull-cri (with `hull` from the same target dir) on a
//! temp root, a test-only CNI bridge and subnet, and its own cgroup parent; see
//! `common/`. Skips with a reason when not root or a tool is missing.

mod common;

use std::time::{Duration, Instant};

use common::{assert_err, image, sh_ctr, Env, NetOpts};
use hull_cri::api::*;
use tonic::Code;

/// An image no test pulls.
const NEVER_PULLED: &str = "127.0.0.1:1/hull/never-pulled:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_missing_fields_and_bad_images_get_the_right_codes() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let t0 = Instant::now();
    let ghost = "no-such-object-rtest";
    let rt = &mut env.rt;
    let r = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: ghost.into(),
            verbose: false,
        })
        .await;
    assert_err(r, Code::NotFound, ghost);
    let r = rt
        .container_status(ContainerStatusRequest {
            container_id: ghost.into(),
            verbose: false,
        })
        .await;
    assert_err(r, Code::NotFound, ghost);
    let r = rt
        .container_stats(ContainerStatsRequest {
            container_id: ghost.into(),
        })
        .await;
    assert_err(r, Code::NotFound, ghost);
    let r = rt
        .start_container(StartContainerRequest {
            container_id: ghost.into(),
        })
        .await;
    assert_err(r, Code::NotFound, ghost);
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: ghost.into(),
            cmd: vec!["true".into()],
            timeout: 0,
        })
        .await;
    assert_err(r, Code::NotFound, ghost);

    // Stop and Remove of unknown ids succeed, as kubelet requires.
    rt.stop_container(StopContainerRequest {
        container_id: ghost.into(),
        timeout: 0,
    })
    .await
    .unwrap();
    rt.remove_container(RemoveContainerRequest {
        container_id: ghost.into(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: ghost.into(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: ghost.into(),
    })
    .await
    .unwrap();

    // Missing required fields and an unknown handler.
    let mut no_meta = env.pod_config("no-meta");
    no_meta.metadata = None;
    assert_err(
        env.run_pod(no_meta).await,
        Code::InvalidArgument,
        "metadata",
    );
    let r = env
        .rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(env.pod_config("handler")),
            runtime_handler: "no-such-handler".into(),
        })
        .await;
    assert_err(r, Code::InvalidArgument, "no-such-handler");
    env.assert_clean();

    // CreateContainer of an image never pulled.
    let pod = env.pod_config("images");
    let pod_id = env.run_pod(pod.clone()).await.unwrap();
    let r = env
        .create(&pod_id, &pod, sh_ctr("c", NEVER_PULLED, "true"))
        .await;
    assert_err(r, Code::NotFound, NEVER_PULLED);
    let mut no_name = sh_ctr("c", NEVER_PULLED, "true");
    no_name.metadata = None;
    assert_err(
        env.create(&pod_id, &pod, no_name).await,
        Code::InvalidArgument,
        "metadata",
    );
    env.assert_no_ctr();

    // PullImage: a closed loopback port, and a reference that does not parse.
    let dead = format!("127.0.0.1:{}/hull/busybox:1", common::free_port());
    let r = env
        .img
        .pull_image(PullImageRequest {
            image: Some(image(&dead)),
            ..Default::default()
        })
        .await;
    assert_err(r, Code::Unavailable, &dead);
    let r = env
        .img
        .pull_image(PullImageRequest {
            image: Some(image("Bad/Name")),
            ..Default::default()
        })
        .await;
    assert_err(r, Code::InvalidArgument, "Bad/Name");

    env.remove_pod_and_assert_clean(pod_id).await;
    eprintln!("bad input: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pod_sandbox_failing_at_each_step_leaves_nothing() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let t0 = Instant::now();
    // A namespaced sysctl the kernel does not have: pinning fails after the namespaces and
    // the holder of the shared PID namespace exist.
    let mut pod = env.pod_config("sysctl");
    let linux = pod.linux.as_mut().unwrap();
    linux
        .sysctls
        .insert("net.ipv4.no_such_sysctl_rtest".into(), "1".into());
    linux.security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert_err(
        env.run_pod(pod).await,
        Code::InvalidArgument,
        "net.ipv4.no_such_sysctl_rtest",
    );
    env.assert_clean();
    // One that would change the host: refused.
    let mut pod = env.pod_config("host-sysctl");
    let linux = pod.linux.as_mut().unwrap();
    linux.sysctls.insert("kernel.panic".into(), "1".into());
    assert_err(
        env.run_pod(pod).await,
        Code::InvalidArgument,
        "kernel.panic",
    );
    env.assert_clean();

    // A duplicate name: refused, and the first pod is untouched.
    let pod = env.pod_config("dup");
    let first = env.run_pod(pod.clone()).await.unwrap();
    let before = pod_ip(&mut env, &first).await;
    assert!(before.starts_with(&env.subnet_prefix()), "{before}");
    let e = assert_err(env.run_pod(pod).await, Code::AlreadyExists, "dup");
    assert!(e.message().contains(&first), "{}", e.message());
    assert_eq!(pod_ip(&mut env, &first).await, before);
    let pods = env
        .rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, PodSandboxState::SandboxReady as i32);
    assert_eq!(env.ip_files().len(), 1, "{:?}", env.ip_files());
    let veths = common::run_out(&["ip", "-o", "link", "show", "master", &env.bridge()]);
    assert_eq!(veths.lines().count(), 1, "{veths}");
    assert_eq!(
        std::fs::read_dir(env.root().join("pods")).unwrap().count(),
        1
    );
    env.remove_pod_and_assert_clean(first).await;
    eprintln!("RunPodSandbox failures: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_add_failing_midway_leaves_nothing() {
    let opts = NetOpts {
        middle: Some("hull-no-such-plugin"),
    };
    let Some(mut env) = Env::start(opts).await else {
        return;
    };
    let t0 = Instant::now();
    // bridge has made the veth, the address and the masquerade rule when the chain fails.
    let r = env.run_pod(env.pod_config("cni")).await;
    assert_err(r, Code::FailedPrecondition, "hull-no-such-plugin");
    env.assert_clean();
    eprintln!("CNI ADD failure: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_container_failing_at_each_step_leaves_nothing() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let t0 = Instant::now();
    let busybox = env.pull_busybox().await;
    let pod = env.pod_config("ctrs");
    let pod_id = env.run_pod(pod.clone()).await.unwrap();

    // The spec fails after the rootfs is mounted: a bind of a missing host path.
    let missing = env.path("no-such-host-dir");
    let mut c = sh_ctr("c", &busybox, "true");
    c.mounts.push(Mount {
        container_path: "/data".into(),
        host_path: missing.display().to_string(),
        ..Default::default()
    });
    let r = env.create(&pod_id, &pod, c).await;
    assert_err(r, Code::InvalidArgument, &missing.display().to_string());
    env.assert_no_ctr();

    // A user the image's /etc/passwd does not have.
    let mut c = sh_ctr("c", &busybox, "true");
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_username: "no-such-user-rtest".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let r = env.create(&pod_id, &pod, c).await;
    assert_err(r, Code::InvalidArgument, "no-such-user-rtest");
    env.assert_no_ctr();

    // The log path is checked after the spec is written.
    let mut c = sh_ctr("c", &busybox, "true");
    c.log_path = "../escape.log".into();
    let r = env.create(&pod_id, &pod, c).await;
    assert_err(r, Code::InvalidArgument, "../escape.log");
    env.assert_no_ctr();

    // `hull create` refuses it (the working directory is a file), so the monitor reports
    // a failure after the runtime has started.
    let mut c = sh_ctr("c", &busybox, "true");
    c.working_dir = "/etc/passwd".into();
    let r = env.create(&pod_id, &pod, c).await;
    assert_err(r, Code::Internal, "/etc/passwd");
    env.assert_no_ctr();

    // A pod that does not exist.
    let r = env
        .create("no-such-pod-rtest", &pod, sh_ctr("c", &busybox, "true"))
        .await;
    assert_err(r, Code::NotFound, "no-such-pod-rtest");
    env.assert_no_ctr();

    // Every failure released the name.
    let id = env
        .create(&pod_id, &pod, sh_ctr("c", &busybox, "true"))
        .await
        .unwrap();
    assert_eq!(
        env.ctr_status(&id).await.state,
        ContainerState::ContainerCreated as i32
    );
    env.remove_pod_and_assert_clean(pod_id).await;
    eprintln!("CreateContainer failures: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_containers_run_exec_stop_and_are_removed() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let t0 = Instant::now();
    let busybox = env.pull_busybox().await;
    let pod = env.pod_config("happy");
    let pod_id = env.run_pod(pod.clone()).await.unwrap();
    assert!(pod_ip(&mut env, &pod_id)
        .await
        .starts_with(&env.subnet_prefix()));

    // A container that prints a line and its groups and exits 3, as a uid without a
    // passwd entry (so gid 0) with one supplementary group.
    let mut c = sh_ctr("exits", &busybox, "echo hello-from-rtest; id -G; exit 3");
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1234 }),
            supplemental_groups: vec![5678],
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = env.create(&pod_id, &pod, c).await.unwrap();
    start(&mut env, &id).await;
    let st = wait_exited(&mut env, &id).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    // ContainerStatus reports the identity the process got (critest's
    // SupplementalGroupsPolicy tests compare the two).
    let user = st.user.as_ref().and_then(|u| u.linux.clone());
    let want = LinuxContainerUser {
        uid: 1234,
        gid: 0,
        supplemental_groups: vec![0, 5678],
    };
    assert_eq!(user, Some(want));
    assert!(
        st.started_at > 0 && st.finished_at >= st.started_at,
        "started {} finished {}",
        st.started_at,
        st.finished_at
    );
    let log = std::fs::read_to_string(&st.log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.ends_with(" stdout F hello-from-rtest")),
        "{log}"
    );
    assert!(log.contains(" stdout F 0 5678\n"), "{log}");

    // ExecSync in a running container: output, exit code, and a timeout.
    let script = "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done";
    let id = env
        .create(&pod_id, &pod, sh_ctr("runs", &busybox, script))
        .await
        .unwrap();
    start(&mut env, &id).await;
    // The scan that finds leftovers sees every kind of thing a live pod and container hold.
    let live = env.leftovers().join("\n");
    for kind in [
        "container dir",
        "overlay mount",
        "cgroup",
        "runtime state",
        "monitor process",
        "container process",
        "pod dir",
        "nsfs mount",
        "tmpfs mount",
        "holder process",
        "veth",
        "host-local allocation",
        "CNI cache",
        "iptables rule",
    ] {
        assert!(live.contains(kind), "the scan misses the {kind}:\n{live}");
    }
    let out = exec(
        &mut env,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 5"],
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 5)
    );
    let t = Instant::now();
    let dir = env.dir.path().display().to_string();
    let r = exec(&mut env, &id, &["sleep", "10"], 1).await;
    assert_err(r, Code::DeadlineExceeded, &id);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let sleepers: Vec<_> = common::scan::processes()
        .into_iter()
        .filter(|p| {
            (p.cmdline.trim() == "sleep 10" && p.cgroup.contains(&env.cgroup_parent()))
                || (p.comm == "hull" && p.cmdline.contains(&dir))
        })
        .map(|p| p.cmdline)
        .collect();
    assert!(sleepers.is_empty(), "exec left {sleepers:?}");
    // Not even a zombie or a dying process, right after the call returns: `tail` is a name
    // nothing else in the container runs.
    let r = exec(&mut env, &id, &["tail", "-f", "/dev/null"], 1).await;
    assert_err(r, Code::DeadlineExceeded, &id);
    let tails = tasks_named("tail", &env.cgroup_parent());
    assert!(tails.is_empty(), "a timed-out exec left {tails:?}");

    // ReopenContainerLog after a rotation returns once the new file is there, as kubelet
    // and critest look for it right after the call.
    let log_path = env.ctr_status(&id).await.log_path;
    std::fs::rename(&log_path, format!("{log_path}.1")).unwrap();
    env.rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(
        std::path::Path::new(&log_path).exists(),
        "ReopenContainerLog returned before {log_path} was created"
    );

    // StopContainer sends SIGTERM first, which the container handles.
    let t = Instant::now();
    env.rt
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 10,
        })
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let st = env.ctr_status(&id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 7, "the TERM trap did not run");
    let log = std::fs::read_to_string(&st.log_path).unwrap();
    assert!(log.contains(" stdout F got-term"), "{log}");

    env.remove_pod_and_assert_clean(pod_id).await;
    eprintln!("happy path: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_container_whose_init_just_exited_succeeds() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let busybox = env.pull_busybox().await;
    let mut pod = env.pod_config("exited");
    let linux = pod.linux.get_or_insert_with(Default::default);
    linux.security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod_id = env.run_pod(pod.clone()).await.unwrap();
    // In a pod-shared PID namespace the background sleep outlives the init and holds its
    // stdout, so the monitor writes exit.json only after its drain grace (2 s): meanwhile
    // the record still says Running and the runtime already says "not running".
    let c = sh_ctr("quick", &busybox, "sleep 30 & exit 0");
    let id = env.create(&pod_id, &pod, c).await.unwrap();
    start(&mut env, &id).await;
    let info = env
        .rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let detail: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = detail["pid"].as_i64().unwrap();
    common::wait_for(
        || !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container's init to exit",
    );
    env.rt
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await
        .expect("StopContainer of a container that has just exited");
    let st = env.ctr_status(&id).await;
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 0)
    );
    env.remove_pod_and_assert_clean(pod_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_the_pod_and_container_running() {
    let Some(mut env) = Env::start(NetOpts::default()).await else {
        return;
    };
    let t0 = Instant::now();
    let busybox = env.pull_busybox().await;
    let pod = env.pod_config("restart");
    let pod_id = env.run_pod(pod.clone()).await.unwrap();
    let ip = pod_ip(&mut env, &pod_id).await;
    let c = sh_ctr("sleeper", &busybox, "while true; do sleep 1; done");
    let id = env.create(&pod_id, &pod, c).await.unwrap();
    start(&mut env, &id).await;
    let started = env.ctr_status(&id).await.started_at;

    env.restart_hard().await;

    let pods = env
        .rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(
        (pods[0].id.as_str(), pods[0].state),
        (pod_id.as_str(), PodSandboxState::SandboxReady as i32)
    );
    assert_eq!(pod_ip(&mut env, &pod_id).await, ip);
    let ctrs = env
        .rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(ctrs.len(), 1);
    assert_eq!(
        (ctrs[0].id.as_str(), ctrs[0].state),
        (id.as_str(), ContainerState::ContainerRunning as i32)
    );
    // The same process, not a new start.
    assert_eq!(env.ctr_status(&id).await.started_at, started);
    let out = exec(&mut env, &id, &["hostname"], 5).await.unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.exit_code),
        (&b"restart\n"[..], 0)
    );

    env.remove_pod_and_assert_clean(pod_id).await;
    eprintln!("restart: {:?}", t0.elapsed());
}

/// `pid state` of every task named `comm` in a cgroup under `parent`, zombies included.
fn tasks_named(comm: &str, parent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        let (Some((head, tail)), Ok(cg)) = (
            stat.rsplit_once(") "),
            std::fs::read_to_string(p.join("cgroup")),
        ) else {
            continue;
        };
        if head.ends_with(&format!("({comm}")) && cg.contains(parent) {
            out.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                &tail[..1]
            ));
        }
    }
    out
}

async fn pod_ip(env: &mut Env, id: &str) -> String {
    env.rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

async fn start(env: &mut Env, id: &str) {
    env.rt
        .start_container(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

async fn exec(
    env: &mut Env,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    env.rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

async fn wait_exited(env: &mut Env, id: &str) -> ContainerStatus {
    let t = Instant::now();
    loop {
        let st = env.ctr_status(id).await;
        if st.state == ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
