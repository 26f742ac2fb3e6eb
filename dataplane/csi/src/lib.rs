//! The Container Storage Interface for Sluice: the CSI v1 gRPC API
//! ([`v1`], compiled from the spec's `csi.proto`), the kubelet's plugin
//! registration API ([`registration`]), and the few names every CSI
//! participant must agree on ([`volume_attachment_name`], [`rpc_error`]).
//!
//! noded is the node plugin's client (NodeStage/NodePublish, registration),
//! `sluice-csi-controller` the controller plugin's (CreateVolume,
//! ControllerPublish), and `sluice-csi-hostpath` a driver serving both.

/// CSI v1 (`csi.v1`): Identity, Controller, Node (and GroupController, SnapshotMetadata).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("csi.v1");
}

/// The kubelet's plugin registration API (`pluginregistration`).
pub mod registration {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("pluginregistration");
}

pub use sluice_proto::unix::{connect, connect_lazy};

/// The `PluginInfo.type` of a CSI driver.
pub const CSI_PLUGIN: &str = "CSIPlugin";

/// Kubernetes' Node annotation listing `{driver: nodeID}` as JSON.
pub const ANN_NODE_ID: &str = "csi.volume.kubernetes.io/nodeid";

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The VolumeAttachment name for a volume on a node, as Kubernetes' CSI
/// attacher names it: `csi-` and the SHA-256 of volume handle, driver and
/// node name concatenated.
pub fn volume_attachment_name(volume_handle: &str, driver: &str, node: &str) -> String {
    format!(
        "csi-{}",
        sha256_hex(format!("{volume_handle}{driver}{node}").as_bytes())
    )
}

/// A gRPC error worded as Go's grpc-status prints it (what the kubelet's
/// events quote): `rpc error: code = NotFound desc = volume not found`.
pub fn rpc_error(status: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_are_the_hash_of_handle_driver_and_node() {
        let name = volume_attachment_name("vol-1", "hostpath.csi.k8s.io", "node-a");
        assert_eq!(name.len(), 4 + 64);
        assert_eq!(name, format!("csi-{}", sha256_hex(b"vol-1hostpath.csi.k8s.ionode-a")));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rpc_errors_read_like_go_grpc() {
        let s = tonic::Status::not_found("volume not found");
        assert_eq!(rpc_error(&s), "rpc error: code = NotFound desc = volume not found");
    }
}
