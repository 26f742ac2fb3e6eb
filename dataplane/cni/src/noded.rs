//! The plugin's side of `sluice.cni.v1.NodeNetwork`: telling `noded` about pods.
//!
//! Every call is bounded by [`CALL_TIMEOUT`]: containerd waits on the plugin,
//! and a hung node daemon must turn into a clear error, not a stuck sandbox.

use crate::spec::{code, CniError};
use sluice_proto::cni::v1::node_network_client::NodeNetworkClient;
use sluice_proto::cni::v1::{AddPodRequest, CheckPodRequest, DelPodRequest, PodInterface};
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

/// Upper bound for connecting plus one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected client of noded's node network service.
pub struct Noded {
    client: NodeNetworkClient<Channel>,
    socket: String,
}

fn unavailable(socket: &str, what: &str, err: impl std::fmt::Display) -> CniError {
    CniError::new(code::NODED_UNAVAILABLE, format!("noded at {socket} {what}")).with_details(err)
}

impl Noded {
    /// Connect to noded's socket; fails clearly when noded is not running.
    pub async fn connect(socket: &Path) -> Result<Self, CniError> {
        let shown = socket.display().to_string();
        let channel = tokio::time::timeout(CALL_TIMEOUT, sluice_proto::unix::connect(socket))
            .await
            .map_err(|e| unavailable(&shown, "did not answer", e))?
            .map_err(|e| unavailable(&shown, "is not reachable (is noded running?)", e))?;
        Ok(Self {
            client: NodeNetworkClient::new(channel),
            socket: shown,
        })
    }

    /// AddPod: noded attaches the data plane to the pod's host veth.
    pub async fn add_pod(&mut self, pod: PodInterface) -> Result<(), CniError> {
        let call = self.client.add_pod(AddPodRequest { pod: Some(pod) });
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(unavailable(&self.socket, "refused the pod", status.message())),
            Err(e) => Err(unavailable(&self.socket, "did not answer AddPod", e)),
        }
    }

    /// DelPod: noded forgets the pod (idempotent on its side).
    pub async fn del_pod(&mut self, request: DelPodRequest) -> Result<(), CniError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.client.del_pod(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(unavailable(&self.socket, "failed DelPod", status.message())),
            Err(e) => Err(unavailable(&self.socket, "did not answer DelPod", e)),
        }
    }

    /// CheckPod: `Err` with noded's reason when the pod's data plane is not in place.
    pub async fn check_pod(&mut self, pod: PodInterface) -> Result<(), CniError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.client.check_pod(CheckPodRequest { pod: Some(pod) })).await {
            Ok(Ok(reply)) if reply.get_ref().ok => Ok(()),
            Ok(Ok(reply)) => Err(CniError::new(
                code::CHECK_FAILED,
                "noded reports the pod's data plane is not in place",
            )
            .with_details(&reply.get_ref().message)),
            Ok(Err(status)) => Err(unavailable(&self.socket, "failed CheckPod", status.message())),
            Err(e) => Err(unavailable(&self.socket, "did not answer CheckPod", e)),
        }
    }
}
