//! The node's heartbeat: a coordination.k8s.io Lease renewed every 10 s.
//!
//! The node lifecycle controller reads `spec.renewTime` of the Lease named
//! after the node in `kube-node-lease`; a node whose lease is older than the
//! grace period is marked NotReady and its pods are evicted. The Lease is
//! owned by the Node, so deleting the Node deletes it.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// The namespace of node heartbeats.
pub const NAMESPACE: &str = "kube-node-lease";
/// How often the lease is renewed.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// `spec.leaseDurationSeconds` (four renewals).
pub const DURATION_SECONDS: i32 = 40;

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Create or renew the lease of `node` once.
pub async fn renew(leases: &Api<Lease>, node: &Node) -> kube::Result<Lease> {
    let name = node.metadata.name.clone().unwrap_or_default();
    match leases.get_opt(&name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = Some(DURATION_SECONDS);
            spec.renew_time = Some(now());
            // resourceVersion is kept: a concurrent writer makes this a conflict, retried next tick.
            leases.replace(&name, &PostParams::default(), &lease).await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: node.metadata.uid.clone().map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(DURATION_SECONDS),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await
        }
    }
}

/// Renew forever, every `interval` ([`RENEW_INTERVAL`] by default); failures are logged and retried.
pub async fn run(leases: Api<Lease>, node: Node, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(err) = renew(&leases, &node).await {
            tracing::warn!(%err, "lease renewal failed");
        }
    }
}
