//! The node's heartbeat: its Lease in `kube-node-lease`
//! (`sluice_kube::node_lease`), renewed every 10 s.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use sluice_kube::node_lease::NodeRef;
use std::time::Duration;

/// The namespace of node heartbeats.
pub const NAMESPACE: &str = sluice_kube::node_lease::NAMESPACE;
/// How often the lease is renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// `spec.leaseDurationSeconds` (four renewals).
pub const DURATION_SECONDS: i32 = 40;

/// Renew forever, every `interval` ([`RENEW_INTERVAL`] by default); failures are logged and retried.
pub async fn run(leases: Api<Lease>, node: Node, interval: Duration) {
    let node = NodeRef::from(&node);
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(err) = sluice_kube::node_lease::renew(&leases, &node, DURATION_SECONDS).await {
            tracing::warn!(%err, "lease renewal failed");
        }
    }
}
