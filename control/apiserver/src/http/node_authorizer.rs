//! The Node authorizer (`--authorization-mode=Node`), with Kubernetes'
//! semantics: a node is a user `system:node:<name>` in group
//! `system:nodes`; what it may do depends on the objects of the pods bound
//! to it, looked up in the in-memory graph ([`crate::registry::node_graph`]).
//!
//! - Secrets and ConfigMaps: get/list/watch of one named object in a
//!   namespace, when a pod bound to the node uses it.
//! - PersistentVolumeClaims: get when a pod uses it, update/patch of its
//!   `status`; PersistentVolumes: get when a claim of such a pod is bound to
//!   it; ServiceAccounts: only `create` of `serviceaccounts/token` for the
//!   account of such a pod; VolumeAttachments: get of those naming the node.
//! - Leases: get/create/update/patch/delete in `kube-node-lease`, named as
//!   the node (create is checked by NodeRestriction); CSINodes: the same for
//!   the CSINode named as the node.
//! - Everything else: Kubernetes' static node rules (`system:node` and,
//!   since noded is also the service proxy, `system:node-proxier`): nodes,
//!   pods, services, endpoints, events, CSRs… Writes to Nodes and Pods are
//!   narrowed further by NodeRestriction admission.
//!
//! Sluice's noded needs three more things Kubernetes' kubelet does not, kept
//! as narrow as they can be:
//! - cluster DNS: create/get/update/patch of the Service `kube-system/
//!   kube-dns`, and writes to EndpointSlices in `kube-system` whose name is
//!   `kube-dns-<node>` (create carries no name in the request: allowed in
//!   `kube-system` only);
//! - local-path volumes: list/watch of PersistentVolumes (noded watches
//!   them to find its released volumes) and delete of a `Released`
//!   `sluice.dev/local-path` volume pinned to the node.
//!
//! What is not allowed is "no opinion" with Kubernetes' reason (`no
//! relationship found between node 'n1' and this object`); the request
//! then goes on to RBAC, as in Kubernetes.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::http::auth::RequestAttributes;
use crate::registry::node_graph::{NodeGraph, Vertex};
pub use crate::registry::node_restriction::{node_name, NODES, NODE_LEASE_NAMESPACE};
use crate::registry::rbac::bootstrap::{node_proxier_rules, node_rules};
use crate::registry::rbac::rules;
use crate::registry::rbac::User;

/// Cluster DNS Service noded maintains (namespace, name).
pub const CLUSTER_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// A Node authorizer decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Not decided here (the reason, often empty); RBAC decides.
    NoOpinion(String),
}

fn no(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

/// The static rules every node holds for what the graph does not decide.
pub fn static_rules() -> Vec<PolicyRule> {
    let mut r = node_rules();
    r.extend(node_proxier_rules());
    r
}

/// Decide a node's request.
pub fn authorize(graph: &NodeGraph, user: &User, a: &RequestAttributes) -> Decision {
    let Some(node) = node_name(user) else {
        return no("");
    };
    if node.is_empty() {
        return no(format!("unknown node for user {:?}", user.name));
    }
    if a.path.is_none() {
        let sub = a.subresource.as_deref().unwrap_or_default();
        match (a.group.as_str(), a.resource.as_str()) {
            ("", "secrets") => return read_namespaced(graph, node, Vertex::Secret, a),
            ("", "configmaps") => return read_namespaced(graph, node, Vertex::ConfigMap, a),
            ("", "persistentvolumeclaims") if sub == "status" => {
                if !matches!(a.verb.as_str(), "update" | "patch") {
                    return no("can only get/update/patch this type");
                }
                return related(graph, node, Vertex::Claim, a);
            }
            ("", "persistentvolumeclaims") => return get(graph, node, Vertex::Claim, a),
            ("", "persistentvolumes") => {
                if sub.is_empty() && matches!(a.verb.as_str(), "list" | "watch") {
                    return Decision::Allow; // noded's local-path reclaimer
                }
                if sub.is_empty() && a.verb == "delete" {
                    let name = a.name.as_deref().unwrap_or_default();
                    return if graph.released_local_path_of(node, name) {
                        Decision::Allow
                    } else {
                        no(format!(
                            "node '{node}' can only delete released local-path volumes pinned to it"
                        ))
                    };
                }
                return get(graph, node, Vertex::Volume, a);
            }
            ("storage.k8s.io", "volumeattachments") => return get(graph, node, Vertex::Attachment, a),
            ("", "serviceaccounts") => {
                if a.verb != "create" || a.name.is_none() {
                    return no("can only create tokens for individual service accounts");
                }
                if sub != "token" {
                    return no("can only create token subresource of serviceaccount");
                }
                return related(graph, node, Vertex::ServiceAccount, a);
            }
            ("coordination.k8s.io", "leases") => return own_object(node, a, "node lease", Some(NODE_LEASE_NAMESPACE)),
            ("storage.k8s.io", "csinodes") => {
                if !sub.is_empty() {
                    return no("cannot authorize CSINode subresources");
                }
                return own_object(node, a, "CSINode", None);
            }
            ("", "services") if cluster_dns_service(a) => return Decision::Allow,
            ("discovery.k8s.io", "endpointslices") if cluster_dns_slice(node, a) => return Decision::Allow,
            _ => {}
        }
    }
    if rules::any_allows(&static_rules(), a) {
        Decision::Allow
    } else {
        no("")
    }
}

fn cluster_dns_service(a: &RequestAttributes) -> bool {
    a.subresource.is_none()
        && a.namespace.as_deref() == Some(CLUSTER_DNS.0)
        && match (a.verb.as_str(), a.name.as_deref()) {
            ("create", None) => true,
            ("create" | "get" | "update" | "patch", Some(name)) => name == CLUSTER_DNS.1,
            _ => false,
        }
}

fn cluster_dns_slice(node: &str, a: &RequestAttributes) -> bool {
    let own = format!("{}-{node}", CLUSTER_DNS.1);
    a.subresource.is_none()
        && a.namespace.as_deref() == Some(CLUSTER_DNS.0)
        && match (a.verb.as_str(), a.name.as_deref()) {
            ("create", None) => true,
            ("get" | "update" | "patch" | "delete", Some(name)) => name == own,
            _ => false,
        }
}

fn read_namespaced(graph: &NodeGraph, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
    if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
        return no("can only read resources of this type");
    }
    if a.subresource.is_some() {
        return no("cannot read subresource");
    }
    if a.namespace.is_none() {
        return no("can only read namespaced object of this type");
    }
    related(graph, node, v, a)
}

fn get(graph: &NodeGraph, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
    if a.verb != "get" {
        return no("can only get individual resources of this type");
    }
    if a.subresource.is_some() {
        return no("cannot get subresource");
    }
    related(graph, node, v, a)
}

fn related(graph: &NodeGraph, node: &str, v: Vertex, a: &RequestAttributes) -> Decision {
    let Some(name) = a.name.as_deref() else {
        return no("No Object name found");
    };
    if graph.related(node, v, a.namespace.as_deref().unwrap_or_default(), name) {
        Decision::Allow
    } else {
        no(format!("no relationship found between node '{node}' and this object"))
    }
}

/// Leases and CSINodes: only the node's own (create is checked by
/// NodeRestriction, which sees the name). `what` is "node lease" or "CSINode".
fn own_object(node: &str, a: &RequestAttributes, what: &str, namespace: Option<&str>) -> Decision {
    if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no(format!("can only get, create, update, patch, or delete a {what}"));
    }
    if let Some(ns) = namespace {
        if a.namespace.as_deref() != Some(ns) {
            return no(format!("can only access leases in the {ns:?} system namespace"));
        }
    }
    if a.verb != "create" && a.name.as_deref() != Some(node) {
        return no(format!(
            "can only access {what} with the same name as the requesting node"
        ));
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::rbac::AUTHENTICATED;
    use serde_json::json;

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![NODES.into(), AUTHENTICATED.into()],
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> RequestAttributes {
        RequestAttributes::resource(verb, group, resource, ns, name)
    }

    fn graph() -> NodeGraph {
        let g = NodeGraph::default();
        let pod = json!({"metadata": {"name": "web", "namespace": "app"}, "spec": {"nodeName": "n1",
            "containers": [{"name": "c"}],
            "volumes": [{"name": "s", "secret": {"secretName": "used"}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}});
        g.set_pod(("app".into(), "web".into()), Some(&pod));
        g.set_claim(
            ("app".into(), "data".into()),
            Some(&json!({"spec": {"volumeName": "pv-1"}})),
        );
        g
    }

    #[test]
    fn secrets_only_through_the_nodes_pods() {
        let g = graph();
        let get = |n: &str, s: &str| authorize(&g, &node(n), &attrs("get", "", "secrets", Some("app"), Some(s)));
        assert_eq!(get("n1", "used"), Decision::Allow);
        assert_eq!(
            get("n1", "unused"),
            no("no relationship found between node 'n1' and this object")
        );
        assert_eq!(
            get("n2", "used"),
            no("no relationship found between node 'n2' and this object")
        );
        let list_all = authorize(&g, &node("n1"), &attrs("list", "", "secrets", Some("app"), None));
        assert_eq!(list_all, no("No Object name found"));
        let write = authorize(
            &g,
            &node("n1"),
            &attrs("update", "", "secrets", Some("app"), Some("used")),
        );
        assert_eq!(write, no("can only read resources of this type"));
    }

    #[test]
    fn volumes_through_claims_and_tokens_for_pod_accounts() {
        let g = graph();
        let n1 = node("n1");
        assert_eq!(
            authorize(
                &g,
                &n1,
                &attrs("get", "", "persistentvolumeclaims", Some("app"), Some("data"))
            ),
            Decision::Allow
        );
        assert_eq!(
            authorize(&g, &n1, &attrs("get", "", "persistentvolumes", None, Some("pv-1"))),
            Decision::Allow
        );
        assert!(matches!(
            authorize(&g, &n1, &attrs("get", "", "persistentvolumes", None, Some("pv-2"))),
            Decision::NoOpinion(_)
        ));
        assert!(matches!(
            authorize(&g, &n1, &attrs("delete", "", "persistentvolumes", None, Some("pv-1"))),
            Decision::NoOpinion(_)
        ));
        let token = attrs("create", "", "serviceaccounts/token", Some("app"), Some("default"));
        assert_eq!(authorize(&g, &n1, &token), Decision::Allow);
        assert!(matches!(authorize(&g, &node("n2"), &token), Decision::NoOpinion(_)));
        assert_eq!(
            authorize(
                &g,
                &n1,
                &attrs("get", "", "serviceaccounts", Some("app"), Some("default"))
            ),
            no("can only create tokens for individual service accounts")
        );
    }

    #[test]
    fn leases_static_rules_and_non_nodes() {
        let g = graph();
        let n1 = node("n1");
        let lease = |verb: &str, name: Option<&str>| {
            attrs(verb, "coordination.k8s.io", "leases", Some(NODE_LEASE_NAMESPACE), name)
        };
        assert_eq!(authorize(&g, &n1, &lease("update", Some("n1"))), Decision::Allow);
        assert_eq!(authorize(&g, &n1, &lease("create", None)), Decision::Allow);
        assert_eq!(
            authorize(&g, &n1, &lease("update", Some("n2"))),
            no("can only access node lease with the same name as the requesting node")
        );
        assert_eq!(
            authorize(&g, &n1, &attrs("patch", "", "nodes/status", None, Some("n1"))),
            Decision::Allow
        );
        assert_eq!(
            authorize(&g, &n1, &attrs("watch", "", "pods", None, None)),
            Decision::Allow
        );
        assert_eq!(
            authorize(&g, &n1, &attrs("delete", "apps", "deployments", Some("app"), Some("x"))),
            no("")
        );
        assert_eq!(
            authorize(
                &g,
                &n1,
                &attrs("patch", "", "services", Some("kube-system"), Some("kube-dns"))
            ),
            Decision::Allow
        );
        assert_eq!(
            authorize(&g, &n1, &attrs("patch", "", "services", Some("app"), Some("web"))),
            no("")
        );
        let slice = |name: &str| {
            attrs(
                "update",
                "discovery.k8s.io",
                "endpointslices",
                Some("kube-system"),
                Some(name),
            )
        };
        assert_eq!(authorize(&g, &n1, &slice("kube-dns-n1")), Decision::Allow);
        assert_eq!(authorize(&g, &n1, &slice("kube-dns-n2")), no(""));
        let impostor = User {
            name: "system:node:n1".into(),
            groups: vec![AUTHENTICATED.into()],
        };
        assert_eq!(
            authorize(&g, &impostor, &attrs("get", "", "secrets", Some("app"), Some("used"))),
            no("")
        );
    }
}
