//! The gRPC trait: each RPC unpacks its request and calls the Runtime method that does the
//! work. RPCs hull-cri does not serve yet answer `UNIMPLEMENTED` naming the RPC and the issue
//! tracking it, never a fake success.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::RuntimeServer;
use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type Rpc<T> = Result<Response<T>, Status>;

fn unimplemented(rpc: &str, issue: u32) -> Status {
    Status::unimplemented(format!(
        "RuntimeService/{rpc} is not implemented in hull-cri yet (tracked by issue {issue})"
    ))
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
        self.rt.reopen_log(&req.into_inner().container_id)?;
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

    async fn exec(&self, _req: Request<ExecRequest>) -> Rpc<ExecResponse> {
        Err(unimplemented("Exec", 5))
    }

    async fn attach(&self, _req: Request<AttachRequest>) -> Rpc<AttachResponse> {
        Err(unimplemented("Attach", 5))
    }

    async fn port_forward(&self, _req: Request<PortForwardRequest>) -> Rpc<PortForwardResponse> {
        Err(unimplemented("PortForward", 5))
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
