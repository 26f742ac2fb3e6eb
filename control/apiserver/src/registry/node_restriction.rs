//! NodeRestriction admission, as Kubernetes' `noderestriction` plugin: the
//! Node authorizer lets every node write Nodes, Pods, Leases and CSINodes in
//! general (it cannot see the object); this step, run on every create,
//! update and delete of a request made by a node (`system:node:<name>` in
//! `system:nodes`), keeps the node to its own:
//!
//! - Nodes: only the Node named as the node may be created, updated,
//!   patched or deleted (`node "n1" is not allowed to modify node "n2"`);
//!   it may not set or change labels under `node-restriction.kubernetes.io/`
//!   nor `kubernetes.io`/`k8s.io` labels other than the kubelet's own
//!   (hostname, os, arch, instance type, topology, `kubelet.kubernetes.io/`,
//!   `node.kubernetes.io/`), nor change its taints or set a `configSource`.
//! - Pods: only mirror pods (annotation `kubernetes.io/config.mirror`) bound
//!   to the node, owned by its Node and referencing no service account,
//!   secret, configmap or claim may be created; only pods bound to the node
//!   may be deleted (an eviction ends in that delete) or have their status
//!   updated, and a status update may not change labels.
//! - Leases: the node's own, in `kube-node-lease`; CSINodes: its own.
//!
//! Denials are 403 with Kubernetes' words, e.g. `nodes "n2" is forbidden:
//! node "n1" is not allowed to modify node "n2"`. The API server's own
//! writes and every other user pass untouched. [`check_token_request`] is
//! the same check for `serviceaccounts/token` (a node may only ask for
//! tokens bound to a pod bound to it), for the TokenRequest handler to call.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::kinds::{self, Kind, Resource};
use crate::registry::{Registry, UpdateMode};
use crate::status::{ApiError, ApiResult};

/// The group of node client certificates.
pub const NODES: &str = "system:nodes";
/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node name of a node user, as Kubernetes' node identifier finds it
/// (`system:node:<name>` in `system:nodes`).
pub fn node_name(user: &crate::registry::rbac::User) -> Option<&str> {
    if !user.in_group(NODES) {
        return None;
    }
    user.name.strip_prefix("system:node:")
}

/// The annotation of mirror pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The label namespace only administrators may set on Nodes.
pub const NODE_RESTRICTION_LABELS: &str = "node-restriction.kubernetes.io";

/// Labels a kubelet sets on its own Node (Kubernetes' `IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
/// Label namespaces a kubelet may use freely.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The requesting node's name, when the request is a node's.
fn requesting_node() -> Option<String> {
    let user = crate::registry::admission::requesting_user()?;
    node_name(&user).map(String::from)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or_default()
}

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain || ns.ends_with(&format!(".{domain}"))
}

/// Label keys whose value differs between `new` and `old` labels (either side missing counts).
fn modified_labels(new: &Value, old: Option<&Value>) -> BTreeSet<String> {
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (labels(Some(new)), labels(old));
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(*v)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The modified labels a node may not set (Kubernetes' forbidden label set).
pub fn forbidden_labels(modified: &BTreeSet<String>) -> Vec<String> {
    modified
        .iter()
        .filter(|key| {
            let ns = label_namespace(key);
            let restricted = in_namespace(ns, NODE_RESTRICTION_LABELS);
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            let kubelets =
                KUBELET_LABELS.contains(&key.as_str()) || KUBELET_LABEL_NAMESPACES.iter().any(|d| in_namespace(ns, d));
            restricted || (kubernetes && !kubelets)
        })
        .cloned()
        .collect()
}

/// A node's write to a Node object (`old` is `None` on create, `new` `None` on delete).
pub fn check_node(node: &str, name: &str, old: Option<&Value>, new: Option<&Value>) -> Result<(), String> {
    if name != node {
        return Err(format!("node {node:?} is not allowed to modify node {name:?}"));
    }
    let Some(new) = new else { return Ok(()) };
    let config = |v: &Value| v.pointer("/spec/configSource").filter(|c| !c.is_null()).cloned();
    match old {
        None => {
            if config(new).is_some() {
                return Err(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                ));
            }
            let forbidden = forbidden_labels(&modified_labels(new, None));
            if !forbidden.is_empty() {
                return Err(format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    forbidden.join(", ")
                ));
            }
        }
        Some(old) => {
            if config(new).is_some() && config(new) != config(old) {
                return Err(format!(
                    "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                ));
            }
            let taints = |v: &Value| {
                v.pointer("/spec/taints")
                    .filter(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
                    .cloned()
            };
            if taints(new) != taints(old) {
                return Err(format!("node {node:?} is not allowed to modify taints"));
            }
            let forbidden = forbidden_labels(&modified_labels(new, Some(old)));
            if !forbidden.is_empty() {
                return Err(format!("is not allowed to modify labels: {}", forbidden.join(", ")));
            }
        }
    }
    Ok(())
}

/// A node's pod create: only a mirror pod of its own, referencing nothing.
/// `node_uid` is the uid of the node's Node object, if it exists.
pub fn check_mirror_pod(node: &str, pod: &Value, node_uid: Option<&str>) -> Result<(), String> {
    if pod
        .pointer(&format!(
            "/metadata/annotations/{}",
            MIRROR_ANNOTATION.replace('/', "~1")
        ))
        .is_none()
    {
        return Err(format!(
            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if str_at(pod, "/spec/nodeName") != node {
        return Err(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match owners.as_slice() {
        [] => {
            return Err(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ))
        }
        [owner] => {
            if str_at(owner, "/apiVersion") != "v1"
                || str_at(owner, "/kind") != "Node"
                || str_at(owner, "/name") != node
            {
                return Err(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return Err(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return Err(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                ));
            }
            let uid = str_at(owner, "/uid");
            if node_uid != Some(uid) {
                return Err(format!(
                    "node {node} UID mismatch: expected {uid} got {}",
                    node_uid.unwrap_or_default()
                ));
            }
        }
        _ => {
            return Err(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ))
        }
    }
    if !str_at(pod, "/spec/serviceAccountName").is_empty() {
        return Err(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    let mut probe = pod.clone();
    probe["spec"]["nodeName"] = Value::String(node.to_string());
    probe["spec"]["serviceAccountName"] = Value::String("-".into());
    let refs = crate::registry::node_graph::pod_refs(&probe).unwrap_or_default();
    if !refs.secrets.is_empty() {
        return Err(format!("node {node:?} can not create pods that reference secrets"));
    }
    if !refs.configmaps.is_empty() {
        return Err(format!("node {node:?} can not create pods that reference configmaps"));
    }
    let claims = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| {
            vs.iter()
                .any(|v| v.get("persistentVolumeClaim").is_some_and(|c| !c.is_null()))
        });
    if claims {
        return Err(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    Ok(())
}

/// A node's update of a pod's status: only a pod bound to it, labels unchanged.
pub fn check_pod_status(node: &str, old: &Value, new: &Value) -> Result<(), String> {
    if str_at(old, "/spec/nodeName") != node {
        return Err(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    if !modified_labels(new, Some(old)).is_empty() {
        return Err(format!("node {node:?} cannot update labels through pod status"));
    }
    Ok(())
}

/// A node's TokenRequest for a service account: `pod` is the pod its
/// `spec.boundObjectRef` names (looked up by the caller), if it exists.
pub fn check_token_request(node: &str, request: &Value, pod: Option<&Value>) -> Result<(), String> {
    let r = request.pointer("/spec/boundObjectRef").cloned().unwrap_or(Value::Null);
    if str_at(&r, "/apiVersion") != "v1" || str_at(&r, "/kind") != "Pod" || str_at(&r, "/name").is_empty() {
        return Err("node requested token not bound to a pod".into());
    }
    let uid = str_at(&r, "/uid");
    if uid.is_empty() {
        return Err("node requested token with a pod binding without a uid".into());
    }
    let Some(pod) = pod else {
        return Err(format!("pods {:?} not found", str_at(&r, "/name")));
    };
    if uid != str_at(pod, "/metadata/uid") {
        return Err(format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"));
    }
    if str_at(pod, "/spec/nodeName") != node {
        return Err("node requested token bound to a pod scheduled on a different node".into());
    }
    Ok(())
}

fn is(r: &Resource, group: &str, plural: &str) -> bool {
    r.group == group && r.plural == plural
}

impl Registry {
    /// NodeRestriction on a TokenRequest (`serviceaccounts/<name>/token`): a
    /// node may only ask for tokens bound to a pod that runs on it.
    pub(crate) async fn admit_node_token_request(&self, ns: &str, name: &str, request: &Value) -> ApiResult<()> {
        let Some(node) = requesting_node() else {
            return Ok(());
        };
        let pod_name = str_at(request, "/spec/boundObjectRef/name");
        let pod = if str_at(request, "/spec/boundObjectRef/kind") == "Pod" && !pod_name.is_empty() {
            let pods = Kind::Builtin(&kinds::pod::Pods);
            self.get(&pods, Some(ns), pod_name).await.ok().map(|p| p.object)
        } else {
            None
        };
        check_token_request(&node, request, pod.as_ref())
            .map_err(|why| ApiError::forbidden(&kinds::serviceaccount::RESOURCE, name, why))
    }

    /// NodeRestriction on create.
    pub(super) async fn admit_node_create(&self, r: &Resource, ns: Option<&str>, obj: &Value) -> ApiResult<()> {
        let Some(node) = requesting_node() else {
            return Ok(());
        };
        let name = str_at(obj, "/metadata/name");
        let verdict = if is(r, "", "nodes") {
            check_node(&node, name, None, Some(obj))
        } else if is(r, "", "pods") {
            let nodes = Kind::Builtin(&kinds::node::Nodes);
            let uid = self
                .get(&nodes, None, &node)
                .await
                .ok()
                .map(|n| str_at(&n.object, "/metadata/uid").to_string());
            check_mirror_pod(&node, obj, uid.as_deref())
        } else if is(r, "coordination.k8s.io", "leases") {
            if ns != Some(NODE_LEASE_NAMESPACE) {
                Err(format!(
                    "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                ))
            } else if name != node {
                Err("can only access node lease with the same name as the requesting node".into())
            } else {
                Ok(())
            }
        } else if is(r, "storage.k8s.io", "csinodes") && name != node {
            Err(format!("node {node:?} is not allowed to modify object {name:?}"))
        } else {
            Ok(())
        };
        verdict.map_err(|why| ApiError::forbidden(r, name, why))
    }

    /// NodeRestriction on update (main resource or status).
    pub(super) fn admit_node_update(
        &self,
        r: &Resource,
        mode: UpdateMode,
        name: &str,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()> {
        let Some(node) = requesting_node() else {
            return Ok(());
        };
        let verdict = if is(r, "", "nodes") {
            check_node(&node, name, Some(old), Some(new))
        } else if is(r, "", "pods") {
            match mode {
                UpdateMode::Status => check_pod_status(&node, old, new),
                _ if str_at(old, "/spec/nodeName") != node => Err(format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                )),
                _ => Ok(()),
            }
        } else if is(r, "storage.k8s.io", "csinodes") && name != node {
            Err(format!("node {node:?} is not allowed to modify object {name:?}"))
        } else {
            Ok(())
        };
        verdict.map_err(|why| ApiError::forbidden(r, name, why))
    }

    /// NodeRestriction on delete.
    pub(super) fn admit_node_delete(&self, r: &Resource, name: &str, cur: &Value) -> ApiResult<()> {
        let Some(node) = requesting_node() else {
            return Ok(());
        };
        let verdict = if is(r, "", "nodes") {
            check_node(&node, name, Some(cur), None)
        } else if is(r, "", "pods") && str_at(cur, "/spec/nodeName") != node {
            Err(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            ))
        } else if is(r, "storage.k8s.io", "csinodes") && name != node {
            Err(format!("node {node:?} is not allowed to modify object {name:?}"))
        } else {
            Ok(())
        };
        verdict.map_err(|why| ApiError::forbidden(r, name, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {}})
    }

    #[test]
    fn a_node_modifies_only_its_own_node_and_allowed_labels() {
        assert_eq!(
            check_node("n1", "n2", None, None).unwrap_err(),
            r#"node "n1" is not allowed to modify node "n2""#
        );
        assert!(check_node("n1", "n1", None, None).is_ok());
        let old = node_obj(json!({"kubernetes.io/hostname": "n1"}));
        let ok =
            node_obj(json!({"kubernetes.io/hostname": "n1", "node.kubernetes.io/pool": "a", "example.com/x": "y"}));
        assert!(check_node("n1", "n1", Some(&old), Some(&ok)).is_ok());
        let bad = node_obj(
            json!({"kubernetes.io/hostname": "n1", "node-restriction.kubernetes.io/secure": "yes",
            "node-role.kubernetes.io/control-plane": ""}),
        );
        assert_eq!(
            check_node("n1", "n1", Some(&old), Some(&bad)).unwrap_err(),
            "is not allowed to modify labels: node-restriction.kubernetes.io/secure, node-role.kubernetes.io/control-plane"
        );
        assert_eq!(
            check_node("n1", "n1", None, Some(&bad)).unwrap_err(),
            r#"node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/secure, node-role.kubernetes.io/control-plane"#
        );
        let mut tainted = old.clone();
        tainted["spec"]["taints"] = json!([{"key": "k", "effect": "NoSchedule"}]);
        assert_eq!(
            check_node("n1", "n1", Some(&tainted), Some(&old)).unwrap_err(),
            r#"node "n1" is not allowed to modify taints"#
        );
        let mut empty = old.clone();
        empty["spec"]["taints"] = json!([]);
        assert!(check_node("n1", "n1", Some(&old), Some(&empty)).is_ok());
    }

    fn mirror(owner_uid: &str) -> Value {
        json!({"metadata": {"name": "static-web-n1", "annotations": {MIRROR_ANNOTATION: "abc"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": owner_uid, "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
    }

    #[test]
    fn nodes_create_only_plain_mirror_pods_of_their_own() {
        assert!(check_mirror_pod("n1", &mirror("u1"), Some("u1")).is_ok());
        let mut plain = mirror("u1");
        plain["metadata"]["annotations"] = json!({});
        assert_eq!(
            check_mirror_pod("n1", &plain, Some("u1")).unwrap_err(),
            r#"pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#
        );
        assert_eq!(
            check_mirror_pod("n2", &mirror("u1"), Some("u1")).unwrap_err(),
            r#"node "n2" can only create pods with spec.nodeName set to itself"#
        );
        assert!(check_mirror_pod("n1", &mirror("u1"), Some("u2"))
            .unwrap_err()
            .contains("UID mismatch"));
        let mut secret = mirror("u1");
        secret["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
        assert_eq!(
            check_mirror_pod("n1", &secret, Some("u1")).unwrap_err(),
            r#"node "n1" can not create pods that reference secrets"#
        );
    }

    #[test]
    fn pod_status_and_tokens_only_for_pods_bound_to_the_node() {
        let pod =
            json!({"metadata": {"name": "web", "uid": "p1", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}});
        assert!(check_pod_status("n1", &pod, &pod).is_ok());
        assert_eq!(
            check_pod_status("n2", &pod, &pod).unwrap_err(),
            r#"node "n2" can only update pod status for pods with spec.nodeName set to itself"#
        );
        let mut relabelled = pod.clone();
        relabelled["metadata"]["labels"]["app"] = json!("db");
        assert!(check_pod_status("n1", &pod, &relabelled).is_err());
        let tr = |uid: &str| json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": uid}}});
        assert!(check_token_request("n1", &tr("p1"), Some(&pod)).is_ok());
        assert_eq!(
            check_token_request("n2", &tr("p1"), Some(&pod)).unwrap_err(),
            "node requested token bound to a pod scheduled on a different node"
        );
        assert!(check_token_request("n1", &tr("p0"), Some(&pod)).is_err());
        assert_eq!(
            check_token_request("n1", &json!({"spec": {}}), None).unwrap_err(),
            "node requested token not bound to a pod"
        );
    }
}
