//! The gRPC trait: each RPC unpacks its request and calls the Runtime method that does the
//! work. RPCs hull-cri does not serve yet answer `UNIMPLEMENTED` naming the RPC and the issue
//! tracking it, never a fake success.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::RuntimeServer;
use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;
use crate::records::CtrState;
use crate::stream::{self, StreamRequest, TokenError};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type Rpc<T> = Result<Response<T>, Status>;

fn unimplemented(rpc: &str, issue: u32) -> Status {
    Status::unimplemented(format!(
        "RuntimeService/{rpc} is not implemented in hull-cri yet (tracked by issue {issue})"
    ))
}

impl RuntimeServer {
    fn stream_urls(&self) -> Result<&crate::stream::StreamUrls, Status> {
        self.streaming
            .as_deref()
            .ok_or_else(|| Status::unavailable("the streaming server of hull-cri is not running"))
    }

    /// The full id of a running container.
    fn running_ctr(&self, given: &str, rpc: &str) -> Result<String, Status> {
        let id = self.rt.ctr_id(given)?;
        if self.rt.refreshed(&id)?.rec.state != CtrState::Running {
            return Err(Status::failed_precondition(format!(
                "{rpc}: container {id} is not running"
            )));
        }
        Ok(id)
    }
}

/// kubelet's rules for streams: some stdio, and no stderr beside a terminal (its output is
/// one stream).
fn check_stdio(
    rpc: &str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(format!(
            "{rpc}: tty and stderr cannot both be true"
        )));
    }
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(format!(
            "{rpc}: one of stdin, stdout or stderr must be set"
        )));
    }
    Ok(())
}

fn exec_request(r: ExecRequest) -> Result<stream::ExecRequest, Status> {
    if r.cmd.is_empty() || r.cmd[0].is_empty() {
        return Err(Status::invalid_argument("Exec: cmd is required"));
    }
    check_stdio("Exec", r.tty, r.stdin, r.stdout, r.stderr)?;
    Ok(stream::ExecRequest {
        container_id: r.container_id,
        cmd: r.cmd,
        tty: r.tty,
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr,
    })
}

fn attach_request(r: AttachRequest) -> Result<stream::AttachRequest, Status> {
    check_stdio("Attach", r.tty, r.stdin, r.stdout, r.stderr)?;
    Ok(stream::AttachRequest {
        container_id: r.container_id,
        tty: r.tty,
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr,
    })
}

/// The ports are advisory (the client names each port on its streams), but must be ports.
fn check_ports(ports: &[i32]) -> Result<(), Status> {
    match ports.iter().find(|p| !(1..=65535).contains(*p)) {
        Some(p) => Err(Status::invalid_argument(format!(
            "PortForward: port {p} is not in 1..65535"
        ))),
        None => Ok(()),
    }
}

fn token_status(e: TokenError) -> Status {
    let code = match e {
        TokenError::TooMany => tonic::Code::ResourceExhausted,
        TokenError::Random(_) => tonic::Code::Internal,
    };
    Status::new(code, e.to_string())
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(&self, _req: Request<VersionRequest>) -> Rpc<VersionResponse> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".to_string(),
            runtime_name: crate::server::RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime_api_version: crate::server::RUNTIME_API_VERSION.to_string(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Rpc<RunPodSandboxResponse> {
        let r = req.into_inner();
        let pod_sandbox_id = self.rt.run_pod(r.config, r.runtime_handler).await?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Rpc<StopPodSandboxResponse> {
        self.rt.stop_pod(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Rpc<RemovePodSandboxResponse> {
        self.rt.remove_pod(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Rpc<PodSandboxStatusResponse> {
        let r = req.into_inner();
        Ok(Response::new(
            self.rt.pod_status(&r.pod_sandbox_id, r.verbose)?,
        ))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Rpc<ListPodSandboxResponse> {
        let items = self.rt.list_pods(req.into_inner().filter);
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Rpc<CreateContainerResponse> {
        let r = req.into_inner();
        let container_id = self.rt.create_ctr(&r.pod_sandbox_id, r.config).await?;
        Ok(Response::new(CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Rpc<StartContainerResponse> {
        self.rt.start_ctr(&req.into_inner().container_id).await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Rpc<StopContainerResponse> {
        let r = req.into_inner();
        self.rt.stop_ctr(&r.container_id, r.timeout).await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Rpc<RemoveContainerResponse> {
        self.rt.remove_ctr(&req.into_inner().container_id).await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Rpc<ListContainersResponse> {
        let containers = self.rt.list_ctrs(req.into_inner().filter);
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Rpc<ContainerStatusResponse> {
        let r = req.into_inner();
        Ok(Response::new(
            self.rt.ctr_status(&r.container_id, r.verbose)?,
        ))
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Rpc<UpdateContainerResourcesResponse> {
        let r = req.into_inner();
        self.rt.update_resources(&r.container_id, r.linux).await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Rpc<ReopenContainerLogResponse> {
        self.rt.reopen_log(&req.into_inner().container_id).await?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, req: Request<ExecSyncRequest>) -> Rpc<ExecSyncResponse> {
        let r = req.into_inner();
        Ok(Response::new(
            self.rt.exec_sync(&r.container_id, r.cmd, r.timeout).await?,
        ))
    }

    async fn container_stats(
        &self,
        req: Request<ContainerStatsRequest>,
    ) -> Rpc<ContainerStatsResponse> {
        let stats = self.rt.ctr_stats(&req.into_inner().container_id)?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        req: Request<ListContainerStatsRequest>,
    ) -> Rpc<ListContainerStatsResponse> {
        let stats = self.rt.list_ctr_stats(req.into_inner().filter);
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<PodSandboxStatsRequest>,
    ) -> Rpc<PodSandboxStatsResponse> {
        let stats = self.rt.pod_stats(&req.into_inner().pod_sandbox_id)?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<ListPodSandboxStatsRequest>,
    ) -> Rpc<ListPodSandboxStatsResponse> {
        let stats = self.rt.list_pod_stats(req.into_inner().filter);
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Rpc<UpdateRuntimeConfigResponse> {
        // kubelet sends the pod CIDR here; the CNI config (host-local ranges) owns
        // addressing, so there is nothing to change.
        tracing::debug!(config = ?req.into_inner().runtime_config, "UpdateRuntimeConfig");
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Rpc<StatusResponse> {
        Ok(Response::new(self.rt.status(req.into_inner().verbose)))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Rpc<RuntimeConfigResponse> {
        Ok(Response::new(self.rt.runtime_config()))
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Rpc<ExecResponse> {
        let r = req.into_inner();
        let urls = self.stream_urls()?;
        let mut req = exec_request(r)?;
        req.container_id = self.running_ctr(&req.container_id, "Exec")?;
        let url = urls.issue(StreamRequest::Exec(req)).map_err(token_status)?;
        Ok(Response::new(ExecResponse { url }))
    }

    async fn attach(&self, req: Request<AttachRequest>) -> Rpc<AttachResponse> {
        let r = req.into_inner();
        let urls = self.stream_urls()?;
        let mut req = attach_request(r)?;
        req.container_id = self.running_ctr(&req.container_id, "Attach")?;
        let url = urls
            .issue(StreamRequest::Attach(req))
            .map_err(token_status)?;
        Ok(Response::new(AttachResponse { url }))
    }

    async fn port_forward(&self, req: Request<PortForwardRequest>) -> Rpc<PortForwardResponse> {
        let r = req.into_inner();
        let urls = self.stream_urls()?;
        check_ports(&r.port)?;
        let pod_id = self.rt.pod_id(&r.pod_sandbox_id)?;
        let ready = self.rt.tables().pods.get(&pod_id).map(|p| p.rec.ready);
        if ready != Some(true) {
            return Err(Status::failed_precondition(format!(
                "PortForward: pod sandbox {pod_id} is not ready"
            )));
        }
        let url = urls
            .issue(StreamRequest::PortForward { pod_id })
            .map_err(token_status)?;
        Ok(Response::new(PortForwardResponse { url }))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Rpc<CheckpointContainerResponse> {
        Err(unimplemented("CheckpointContainer", 5))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Rpc<ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors", 5))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Rpc<ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics", 5))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _req: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Rpc<UpdatePodSandboxResourcesResponse> {
        Err(unimplemented("UpdatePodSandboxResources", 5))
    }

    type StreamPodSandboxesStream = BoxStream<StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        _req: Request<StreamPodSandboxesRequest>,
    ) -> Rpc<Self::StreamPodSandboxesStream> {
        Err(unimplemented("StreamPodSandboxes", 5))
    }

    type StreamContainersStream = BoxStream<StreamContainersResponse>;
    async fn stream_containers(
        &self,
        _req: Request<StreamContainersRequest>,
    ) -> Rpc<Self::StreamContainersStream> {
        Err(unimplemented("StreamContainers", 5))
    }

    type StreamContainerStatsStream = BoxStream<StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        _req: Request<StreamContainerStatsRequest>,
    ) -> Rpc<Self::StreamContainerStatsStream> {
        Err(unimplemented("StreamContainerStats", 5))
    }

    type StreamPodSandboxStatsStream = BoxStream<StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        _req: Request<StreamPodSandboxStatsRequest>,
    ) -> Rpc<Self::StreamPodSandboxStatsStream> {
        Err(unimplemented("StreamPodSandboxStats", 5))
    }

    type GetContainerEventsStream = BoxStream<ContainerEventResponse>;
    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Rpc<Self::GetContainerEventsStream> {
        Err(unimplemented("GetContainerEvents", 5))
    }

    type StreamPodSandboxMetricsStream = BoxStream<StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<StreamPodSandboxMetricsRequest>,
    ) -> Rpc<Self::StreamPodSandboxMetricsStream> {
        Err(unimplemented("StreamPodSandboxMetrics", 5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(cmd: &[&str], tty: bool, stdin: bool, stdout: bool, stderr: bool) -> ExecRequest {
        ExecRequest {
            container_id: "c".into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout,
            stderr,
        }
    }

    #[test]
    fn exec_requests_are_checked_as_kubelet_does() {
        let ok = exec_request(exec(&["ls"], true, true, true, false)).unwrap();
        assert_eq!(
            (ok.cmd, ok.tty, ok.stdin),
            (vec!["ls".to_string()], true, true)
        );
        for bad in [
            exec(&[], false, false, true, false),
            exec(&[""], false, false, true, false),
            exec(&["ls"], true, false, true, true),
            exec(&["ls"], false, false, false, false),
        ] {
            let e = exec_request(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn attach_requests_and_ports_are_checked() {
        let a = |tty, stderr| AttachRequest {
            container_id: "c".into(),
            stdin: false,
            tty,
            stdout: true,
            stderr,
        };
        assert!(attach_request(a(false, true)).is_ok());
        assert!(attach_request(a(true, true)).is_err());
        assert!(check_ports(&[80, 65535]).is_ok());
        assert!(check_ports(&[0]).is_err());
        assert!(check_ports(&[65536]).is_err());
    }
}
