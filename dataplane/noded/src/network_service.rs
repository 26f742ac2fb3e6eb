//! noded's side of `sluice.cni.v1.NodeNetwork`: the pods' network endpoints.
//!
//! The CNI plugin calls AddPod once a pod's veth pair exists and DelPod when
//! it is torn down. This service keeps the node's table of local endpoints
//! (container id -> host veth, ifindex, pod IP, pod identity), which the data
//! plane uses to attach its TC programs to the host veth and to route to
//! local pods. After a noded restart the table is rebuilt from the CNI
//! plugin's address store, so nothing running loses its entry.

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
        self.by_container.write().unwrap_or_else(|e| e.into_inner()).insert(pod.container_id.clone(), pod);
    }

    /// The endpoint of a sandbox, if known.
    pub fn get(&self, container_id: &str) -> Option<PodInterface> {
        self.by_container.read().unwrap_or_else(|e| e.into_inner()).get(container_id).cloned()
    }

    /// Every known endpoint.
    pub fn all(&self) -> Vec<PodInterface> {
        self.by_container.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// The gRPC service over [`Endpoints`].
pub struct NodeNetworkService {
    endpoints: Endpoints,
}

impl NodeNetworkService {
    /// A service updating `endpoints`.
    pub fn new(endpoints: Endpoints) -> Self {
        Self { endpoints }
    }
}

#[tonic::async_trait]
impl NodeNetwork for NodeNetworkService {
    async fn add_pod(&self, request: Request<AddPodRequest>) -> Result<Response<AddPodResponse>, Status> {
        let pod = request.into_inner().pod.ok_or_else(|| Status::invalid_argument("AddPod without a pod"))?;
        if pod.container_id.is_empty() || pod.host_veth.is_empty() || pod.pod_ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(Status::invalid_argument("AddPod needs container_id, host_veth and an IPv4 pod_ip"));
        }
        tracing::info!(container = %pod.container_id, pod = %format!("{}/{}", pod.pod_namespace, pod.pod_name),
            ip = %pod.pod_ip, veth = %pod.host_veth, "pod endpoint added");
        self.endpoints.insert(pod);
        Ok(Response::new(AddPodResponse {}))
    }

    async fn del_pod(&self, request: Request<DelPodRequest>) -> Result<Response<DelPodResponse>, Status> {
        let request = request.into_inner();
        let removed = self.endpoints.by_container.write().unwrap_or_else(|e| e.into_inner()).remove(&request.container_id);
        if removed.is_some() {
            tracing::info!(container = %request.container_id, ip = %request.pod_ip, "pod endpoint removed");
        }
        Ok(Response::new(DelPodResponse {}))
    }

    async fn check_pod(&self, request: Request<CheckPodRequest>) -> Result<Response<CheckPodResponse>, Status> {
        let pod = request.into_inner().pod.unwrap_or_default();
        let reply = match self.endpoints.get(&pod.container_id) {
            Some(known) if known.pod_ip == pod.pod_ip => CheckPodResponse { ok: true, message: String::new() },
            Some(known) => CheckPodResponse { ok: false, message: format!("noded knows the pod with IP {}", known.pod_ip) },
            None => CheckPodResponse { ok: false, message: "noded has no endpoint for this sandbox".into() },
        };
        Ok(Response::new(reply))
    }
}

/// Serve the service on the unix socket `socket` (a stale socket file is replaced).
pub fn serve(socket: &Path, endpoints: Endpoints) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(NodeNetworkServer::new(NodeNetworkService::new(endpoints)))
        .serve_with_incoming(incoming);
    Ok(tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(%err, "node network service stopped");
        }
    }))
}
