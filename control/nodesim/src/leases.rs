//! Node heartbeats: one Lease per node in `kube-node-lease`, renewed like a kubelet does.
//! Nodes stop heartbeating when the process dies (or for names given to `--no-renew`),
//! which is how tests make a node go NotReady.

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use std::time::Duration;
use tracing::warn;

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

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

/// Create or renew one node's Lease (holder = node name, owned by the Node).
pub async fn renew(api: &Api<Lease>, node: &NodeRef, duration_secs: i32) -> Result<(), kube::Error> {
    let name = node.name.clone();
    let now = MicroTime(Timestamp::now());
    let patch = serde_json::json!({ "spec": { "renewTime": now, "holderIdentity": name, "leaseDurationSeconds": duration_secs } });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e),
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            owner_references: node.uid.clone().map(|uid| {
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
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()), // raced with ourselves; next round renews
        Err(e) => Err(e),
    }
}

/// A node's name and UID (the Lease's owner).
#[derive(Clone, Debug)]
pub struct NodeRef {
    /// Node name (also the Lease name and holder).
    pub name: String,
    /// Node UID, for the owner reference.
    pub uid: Option<String>,
}

impl From<&Node> for NodeRef {
    fn from(n: &Node) -> NodeRef {
        NodeRef {
            name: n.metadata.name.clone().unwrap_or_default(),
            uid: n.metadata.uid.clone(),
        }
    }
}

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
