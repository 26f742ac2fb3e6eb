//! Node IPAM: gives every Node a `spec.podCIDR`/`podCIDRs` carved from
//! `--cluster-cidr` (`--node-cidr-mask-size`, /24 by default).
//!
//! A range is never handed out twice: the allocator is rebuilt from the
//! CIDRs existing Nodes already have (so restarts and leader changes keep
//! it), and ranges handed out but not yet seen in the cache stay reserved.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::{runner, Context, Error};

/// Hands out subnets of the cluster CIDR.
pub struct CidrAllocator {
    subnets: Vec<Ipv4Net>,
    /// Node name -> CIDR handed out and not yet seen on the Node in the cache.
    in_flight: Mutex<HashMap<String, Ipv4Net>>,
}

impl CidrAllocator {
    /// An allocator of `/mask` subnets of `cluster`.
    pub fn new(cluster: Ipv4Net, mask: u8) -> Result<Self, Error> {
        let subnets: Vec<Ipv4Net> = cluster
            .subnets(mask)
            .map_err(|e| Error::Invalid {
                object: format!("--cluster-cidr {cluster}"),
                reason: e.to_string(),
            })?
            .collect();
        Ok(Self {
            subnets,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The first subnet not used by `nodes` (name, podCIDR) nor in flight, reserved for `node`.
    pub fn allocate(&self, node: &str, nodes: &[(String, Option<String>)]) -> Option<Ipv4Net> {
        let mut in_flight = self.in_flight.lock().expect("ipam lock");
        let present: HashMap<&str, Option<&str>> = nodes.iter().map(|(n, c)| (n.as_str(), c.as_deref())).collect();
        // Settle reservations the cache now shows on their Node.
        in_flight.retain(|n, _| !matches!(present.get(n.as_str()), Some(Some(_))));
        if let Some(existing) = in_flight.get(node) {
            return Some(*existing);
        }
        let used: BTreeSet<Ipv4Net> = nodes
            .iter()
            .filter_map(|(_, c)| c.as_deref()?.parse().ok())
            .chain(in_flight.values().copied())
            .collect();
        let free = self.subnets.iter().copied().find(|s| !used.contains(s))?;
        in_flight.insert(node.to_string(), free);
        Some(free)
    }
}

/// Subscribes the node IPAM controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.nodes.store();
    let own = ctx.informers.nodes.trigger(|n: &Node| Some(ObjectRef::from_obj(n)));
    let allocator = match CidrAllocator::new(ctx.config.cluster_cidr, ctx.config.node_cidr_mask_size) {
        Ok(a) => Arc::new(a),
        Err(err) => {
            tracing::error!(error = %err, "node IPAM disabled");
            return Box::pin(futures::future::pending());
        }
    };
    runner::run("node-ipam", ctx, store, vec![own.boxed()], move |node, ctx| {
        reconcile(node, ctx, allocator.clone())
    })
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>, allocator: Arc<CidrAllocator>) -> Result<Action, Error> {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some_and(|c| !c.is_empty());
    if has_cidr || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let nodes: Vec<(String, Option<String>)> = ctx
        .informers
        .nodes
        .store()
        .state()
        .iter()
        .map(|n| {
            (
                n.name_any(),
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.clone())
                    .filter(|c| !c.is_empty()),
            )
        })
        .collect();
    let Some(cidr) = allocator.allocate(&node.name_any(), &nodes) else {
        ctx.recorder.record(
            &*node,
            EventType::Warning,
            "CIDRNotAvailable",
            "No pod CIDR left in the cluster CIDR".into(),
        );
        return Ok(Action::requeue(std::time::Duration::from_secs(30)));
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.recorder.record(
        &*node,
        EventType::Normal,
        "CIDRAssignmentSucceeded",
        format!("Assigned pod CIDR {cidr}"),
    );
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_a_range_twice() {
        let a = CidrAllocator::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        let existing = vec![
            ("n0".to_string(), Some("10.244.0.0/24".to_string())),
            ("n1".to_string(), None),
            ("n2".to_string(), None),
        ];
        let c1 = a.allocate("n1", &existing).unwrap();
        assert_eq!(c1.to_string(), "10.244.1.0/24");
        // Cache has not seen n1's CIDR yet: n2 must get another one, n1 the same again.
        let c2 = a.allocate("n2", &existing).unwrap();
        assert_eq!(c2.to_string(), "10.244.2.0/24");
        assert_eq!(a.allocate("n1", &existing), Some(c1));
        let small = CidrAllocator::new("10.0.0.0/23".parse().unwrap(), 24).unwrap();
        let full = vec![
            ("a".to_string(), Some("10.0.0.0/24".to_string())),
            ("b".to_string(), Some("10.0.1.0/24".to_string())),
        ];
        assert_eq!(small.allocate("c", &full), None);
    }
}
