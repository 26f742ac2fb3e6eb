//! A node's heartbeat: the coordination.k8s.io Lease named after the node
//! in `kube-node-lease`, held by the node and owned by its Node (deleting
//! the Node deletes it). The node lifecycle controller reads its
//! `spec.renewTime`; a node whose Lease is older than the grace period
//! turns NotReady. noded renews its own; nodesim renews thousands.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// The namespace of node Leases.
pub const NAMESPACE: &str = "kube-node-lease";

/// A node's name and UID (the Lease's name, holder and owner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// Node name.
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

/// Renew `node`'s Lease (`api` in [`NAMESPACE`]) once, creating it when
/// missing: one merge patch of `renewTime`, holder and duration per renewal
/// (no read first: a heartbeat must stay cheap at thousands of nodes).
pub async fn renew(api: &Api<Lease>, node: &NodeRef, duration_secs: i32) -> Result<(), kube::Error> {
    let now = MicroTime(Timestamp::now());
    let patch = serde_json::json!({ "spec": {
        "renewTime": now, "holderIdentity": node.name, "leaseDurationSeconds": duration_secs,
    } });
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e),
    }
    match api
        .create(&PostParams::default(), &lease(node, duration_secs, now))
        .await
    {
        Ok(_) => Ok(()),
        // Raced with another renewal of ours: the next round renews.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new Lease for `node`, acquired and renewed `now`.
fn lease(node: &NodeRef, duration_secs: i32, now: MicroTime) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some(NAMESPACE.into()),
            owner_references: node.uid.clone().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.name.clone(),
                    uid,
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_lease_is_held_and_owned_by_its_node() {
        let node = NodeRef {
            name: "n1".into(),
            uid: Some("u1".into()),
        };
        let l = lease(&node, 40, MicroTime(Timestamp::now()));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        let owner = &l.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n1", "u1")
        );
    }
}
