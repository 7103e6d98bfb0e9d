//! Pod start latency over one CRI connection, as kubelet drives a runtime: RunPodSandbox,
//! CreateContainer, StartContainer, timed from the first call to the last reply; then
//! StopPodSandbox and RemovePodSandbox. conformance/bench/cri.sh runs it against hull-cri
//! and containerd in turn. A client process per call (crictl) would add its own start-up,
//! about 20 ms here, to every call of both runtimes.
//!
//! usage: pod_start SOCKET IMAGE TAG RUNS          one pod at a time; prints "start_ms stop_ms"
//!        pod_start SOCKET IMAGE TAG RUNS --parallel  all RUNS pods at once; prints the total
//!                                                 ms, then the pod ids (left running)

use std::time::Instant;

use anyhow::{bail, Context, Result};
use hull_cri::api::runtime_service_client::RuntimeServiceClient;
use hull_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

type Client = RuntimeServiceClient<Channel>;

async fn connect(sock: String) -> Result<Client> {
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
        .context("connecting to the CRI socket")?;
    Ok(RuntimeServiceClient::new(ch))
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: "bench".into(),
            uid: name.into(),
            attempt: 0,
        }),
        log_directory: "/var/log/hull-bench".into(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// Starts one pod with a busybox `sleep` in it; returns the pod's id.
async fn start_pod(mut rt: Client, image: String, name: String) -> Result<String> {
    let config = pod_config(&name);
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| format!("RunPodSandbox {name}"))?
        .into_inner()
        .pod_sandbox_id;
    let ctr = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "sleeper".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "sleeper.log".into(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ctr),
            sandbox_config: Some(config),
        })
        .await
        .with_context(|| format!("CreateContainer in {name}"))?
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest { container_id: id })
        .await
        .with_context(|| format!("StartContainer in {name}"))?;
    Ok(pod)
}

async fn remove_pod(rt: &mut Client, pod: &str) -> Result<()> {
    let id = pod.to_string();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .with_context(|| format!("StopPodSandbox {pod}"))?;
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .with_context(|| format!("RemovePodSandbox {pod}"))?;
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sock, image, tag, runs, parallel) = match &args[..] {
        [s, i, t, n] => (s, i, t, n, false),
        [s, i, t, n, p] if p == "--parallel" => (s, i, t, n, true),
        _ => bail!("usage: pod_start SOCKET IMAGE TAG RUNS [--parallel]"),
    };
    let runs: usize = runs.parse().context("RUNS")?;
    let mut rt = connect(sock.clone()).await?;
    if parallel {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..runs)
            .map(|i| tokio::spawn(start_pod(rt.clone(), image.clone(), format!("{tag}-{i}"))))
            .collect();
        let mut pods = Vec::new();
        for t in tasks {
            pods.push(t.await??);
        }
        println!("{:.1}", ms(t0));
        for p in pods {
            println!("{p}");
        }
        return Ok(());
    }
    for i in 0..runs {
        let t0 = Instant::now();
        let pod = start_pod(rt.clone(), image.clone(), format!("{tag}-{i}")).await?;
        let started = ms(t0);
        let t1 = Instant::now();
        remove_pod(&mut rt, &pod).await?;
        println!("{started:.1} {:.1}", ms(t1));
    }
    Ok(())
}
