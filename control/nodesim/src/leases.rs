//! Node heartbeats: one Lease per node in `kube-node-lease`, renewed like a kubelet does
//! (`sluice_kube::node_lease`).
//! Nodes stop heartbeating when the process dies (or for names given to `--no-renew`),
//! which is how tests make a node go NotReady.

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::time::Duration;
use tracing::warn;

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = sluice_kube::node_lease::NAMESPACE;

/// Create `kube-node-lease` if it does not exist yet.
pub async fn ensure_namespace(client: &Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NODE_LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating namespace kube-node-lease"),
    }
}

pub use sluice_kube::node_lease::{renew, NodeRef};

/// Renew every node's Lease each `interval`.
pub async fn renew_forever(
    client: Client,
    nodes: Vec<NodeRef>,
    interval: Duration,
    duration_secs: i32,
    concurrency: usize,
) {
    let api: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let nodes = std::sync::Arc::new(nodes);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first round was written at registration
    loop {
        tick.tick().await;
        let failures = futures::stream::iter(0..nodes.len())
            .map(|i| {
                let (api, nodes) = (api.clone(), nodes.clone());
                async move { renew(&api, &nodes[i], duration_secs).await.err() }
            })
            .buffer_unordered(concurrency.max(1))
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        if let Some(e) = failures.first() {
            warn!(failed = failures.len(), error = %e, "some node leases were not renewed");
        }
    }
}
