//! noded's side of `sluice.cni.v1.NodeNetwork`: the pods' network endpoints.
//!
//! The CNI plugin calls AddPod once a pod's veth pair exists and DelPod when
//! it is torn down. This service keeps the node's table of local endpoints
//! (container id -> host veth, ifindex, pod IP, pod identity) and, when noded
//! runs a data plane ([`crate::network::DataPlane`]), attaches the pod
//! programs to the host veth and programs the pod's endpoint before AddPod
//! answers (a failure fails the CNI ADD: a pod without its data plane must
//! not start). After a noded restart the table is rebuilt from the CNI
//! plugin's address store, so nothing running loses its entry.

use crate::network::DataPlane;
use sluice_cni::ipam::IpamStore;
use sluice_proto::cni::v1::node_network_server::{NodeNetwork, NodeNetworkServer};
use sluice_proto::cni::v1::{
    AddPodRequest, AddPodResponse, CheckPodRequest, CheckPodResponse, DelPodRequest, DelPodResponse, PodInterface,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tonic::{Request, Response, Status};

/// The node's local pod endpoints, shared by the gRPC service and the rest of noded.
#[derive(Clone, Default)]
pub struct Endpoints {
    by_container: Arc<RwLock<HashMap<String, PodInterface>>>,
}

impl Endpoints {
    /// Rebuild the table from the CNI address store (after a restart).
    pub fn recover(store: &IpamStore) -> Result<Self, sluice_cni::ipam::IpamError> {
        let endpoints = Self::default();
        for allocation in store.list()? {
            endpoints.insert(PodInterface {
                container_id: allocation.container_id,
                ifname: allocation.ifname,
                host_veth: allocation.host_veth,
                pod_ip: allocation.ip.to_string(),
                ..Default::default()
            });
        }
        Ok(endpoints)
    }

    fn insert(&self, pod: PodInterface) {
        self.by_container
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pod.container_id.clone(), pod);
    }

    /// The endpoint of a sandbox, if known.
    pub fn get(&self, container_id: &str) -> Option<PodInterface> {
        self.by_container
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(container_id)
            .cloned()
    }

    /// Every known endpoint.
    pub fn all(&self) -> Vec<PodInterface> {
        self.by_container
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// The gRPC service over [`Endpoints`] (and the data plane, when there is one).
pub struct NodeNetworkService {
    endpoints: Endpoints,
    dataplane: Option<DataPlane>,
}

impl NodeNetworkService {
    /// A service updating `endpoints` only (no data plane: tests of the kubelet path).
    pub fn new(endpoints: Endpoints) -> Self {
        Self {
            endpoints,
            dataplane: None,
        }
    }

    /// A service updating `endpoints` and attaching pods to `dataplane`.
    pub fn with_data_plane(endpoints: Endpoints, dataplane: DataPlane) -> Self {
        Self {
            endpoints,
            dataplane: Some(dataplane),
        }
    }
}

#[tonic::async_trait]
impl NodeNetwork for NodeNetworkService {
    async fn add_pod(&self, request: Request<AddPodRequest>) -> Result<Response<AddPodResponse>, Status> {
        let pod = request
            .into_inner()
            .pod
            .ok_or_else(|| Status::invalid_argument("AddPod without a pod"))?;
        if pod.container_id.is_empty() || pod.host_veth.is_empty() || pod.pod_ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(Status::invalid_argument(
                "AddPod needs container_id, host_veth and an IPv4 pod_ip",
            ));
        }
        if let Some(dataplane) = self.dataplane.clone() {
            let attach = pod.clone();
            tokio::task::spawn_blocking(move || dataplane.attach_pod(&attach))
                .await
                .map_err(|e| Status::internal(format!("attaching the pod's data plane: {e}")))?
                .map_err(|e| Status::internal(format!("attaching the pod's data plane: {e:#}")))?;
        }
        tracing::info!(container = %pod.container_id, pod = %format!("{}/{}", pod.pod_namespace, pod.pod_name),
            ip = %pod.pod_ip, veth = %pod.host_veth, "pod endpoint added");
        self.endpoints.insert(pod);
        Ok(Response::new(AddPodResponse {}))
    }

    async fn del_pod(&self, request: Request<DelPodRequest>) -> Result<Response<DelPodResponse>, Status> {
        let request = request.into_inner();
        let removed = self
            .endpoints
            .by_container
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.container_id);
        if let Some(dataplane) = self.dataplane.clone() {
            let ip = removed
                .as_ref()
                .map(|p| p.pod_ip.as_str())
                .unwrap_or(&request.pod_ip)
                .parse()
                .ok();
            let veth = removed
                .as_ref()
                .map(|p| p.host_veth.clone())
                .unwrap_or_else(|| request.host_veth.clone());
            tokio::task::spawn_blocking(move || dataplane.detach_pod(ip, Some(&veth)))
                .await
                .map_err(|e| Status::internal(format!("detaching the pod's data plane: {e}")))?
                .map_err(|e| Status::internal(format!("detaching the pod's data plane: {e:#}")))?;
        }
        if removed.is_some() {
            tracing::info!(container = %request.container_id, ip = %request.pod_ip, "pod endpoint removed");
        }
        Ok(Response::new(DelPodResponse {}))
    }

    async fn check_pod(&self, request: Request<CheckPodRequest>) -> Result<Response<CheckPodResponse>, Status> {
        let pod = request.into_inner().pod.unwrap_or_default();
        let reply = match self.endpoints.get(&pod.container_id) {
            Some(known) if known.pod_ip == pod.pod_ip => CheckPodResponse {
                ok: true,
                message: String::new(),
            },
            Some(known) => CheckPodResponse {
                ok: false,
                message: format!("noded knows the pod with IP {}", known.pod_ip),
            },
            None => CheckPodResponse {
                ok: false,
                message: "noded has no endpoint for this sandbox".into(),
            },
        };
        Ok(Response::new(reply))
    }
}

/// Serve the service (no data plane) on the unix socket `socket` (a stale socket file is replaced).
pub fn serve(socket: &Path, endpoints: Endpoints) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve_service(socket, NodeNetworkService::new(endpoints))
}

/// Serve the service on `socket`, attaching pods to `dataplane`.
pub fn serve_with_data_plane(
    socket: &Path,
    endpoints: Endpoints,
    dataplane: DataPlane,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve_service(socket, NodeNetworkService::with_data_plane(endpoints, dataplane))
}

fn serve_service(socket: &Path, service: NodeNetworkService) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(NodeNetworkServer::new(service))
        .serve_with_incoming(incoming);
    Ok(tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(%err, "node network service stopped");
        }
    }))
}
