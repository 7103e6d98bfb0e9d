//! RuntimeService: `Version` is real; every other RPC answers `UNIMPLEMENTED` naming itself
//! and the issue that tracks it, never a fake success.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;

/// The RuntimeService implementation.
#[derive(Default)]
pub struct RuntimeServer;

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "RuntimeService/{rpc} is not implemented yet in hull-cri (tracked by issue 4)"
    ))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

macro_rules! runtime_service {
    (
        unary { $($name:ident($req:ty) -> $resp:ty = $rpc:literal;)* }
        streaming { $($sname:ident, $stype:ident($sreq:ty) -> $sresp:ty = $srpc:literal;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for RuntimeServer {
            async fn version(&self, _req: Request<VersionRequest>) -> Result<Response<VersionResponse>, Status> {
                Ok(Response::new(VersionResponse {
                    version: "0.1.0".to_string(),
                    runtime_name: super::RUNTIME_NAME.to_string(),
                    runtime_version: env!("CARGO_PKG_VERSION").to_string(),
                    runtime_api_version: super::RUNTIME_API_VERSION.to_string(),
                }))
            }
            $(
                async fn $name(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(unimplemented($rpc))
                }
            )*
            $(
                type $stype = BoxStream<$sresp>;
                async fn $sname(&self, _req: Request<$sreq>) -> Result<Response<Self::$stype>, Status> {
                    Err(unimplemented($srpc))
                }
            )*
        }
    };
}

runtime_service! {
    unary {
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox";
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox";
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse = "RemovePodSandbox";
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse = "PodSandboxStatus";
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox";
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer";
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer";
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers";
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources";
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog";
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
        exec(ExecRequest) -> ExecResponse = "Exec";
        attach(AttachRequest) -> AttachResponse = "Attach";
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward";
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats";
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats";
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse = "ListPodSandboxStats";
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse = "UpdateRuntimeConfig";
        status(StatusRequest) -> StatusResponse = "Status";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse = "RuntimeConfig";
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse = "UpdatePodSandboxResources";
    }
    streaming {
        stream_pod_sandboxes, StreamPodSandboxesStream(StreamPodSandboxesRequest) -> StreamPodSandboxesResponse = "StreamPodSandboxes";
        stream_containers, StreamContainersStream(StreamContainersRequest) -> StreamContainersResponse = "StreamContainers";
        stream_container_stats, StreamContainerStatsStream(StreamContainerStatsRequest) -> StreamContainerStatsResponse = "StreamContainerStats";
        stream_pod_sandbox_stats, StreamPodSandboxStatsStream(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsResponse = "StreamPodSandboxStats";
        get_container_events, GetContainerEventsStream(GetEventsRequest) -> ContainerEventResponse = "GetContainerEvents";
        stream_pod_sandbox_metrics, StreamPodSandboxMetricsStream(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsResponse = "StreamPodSandboxMetrics";
    }
}
