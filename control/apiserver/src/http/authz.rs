//! The authorizer chain every request passes, as Kubernetes' union of
//! authorizers (`--authorization-mode=Node,RBAC` plus the privileged group):
//!
//! 1. `system:masters` is always allowed (Kubernetes' privileged group
//!    authorizer, before any other).
//! 2. The Node authorizer ([`crate::http::node_authorizer`]): a client in
//!    group `system:nodes` named `system:node:<name>` may reach the Secrets,
//!    ConfigMaps, claims, volumes and service accounts of the pods bound to
//!    it (the graph of [`crate::registry::node_graph`]) and what Kubernetes'
//!    static node rules grant; NodeRestriction admission
//!    (`registry::node_restriction`) then limits its writes to its own Node,
//!    Lease and pods.
//! 3. RBAC over the in-memory snapshot of roles and bindings
//!    (`registry::rbac`), kept current by a watch. What the Node authorizer
//!    does not allow falls through to it, as in Kubernetes.
//!
//! A denial becomes Kubernetes' 403 ([`forbidden`]): `pods is forbidden:
//! User "alice" cannot list resource "pods" in API group "" in the namespace
//! "default"`, with the authorizers' reasons appended when they have some
//! (`... : no relationship found between node 'n1' and this object`).

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::http::auth::{Authorizer, RequestAttributes, UserInfo};
use crate::http::node_authorizer::{self, Decision};
use crate::registry::node_graph;
use crate::registry::rbac::rules::{self, rule};
use crate::registry::rbac::{User, AUTHENTICATED, MASTERS};
use crate::registry::Registry;
use crate::status::ApiError;

/// The group of node client certificates.
pub const NODES: &str = node_authorizer::NODES;

/// The user as authorization sees it: `system:authenticated` added, as
/// Kubernetes' authenticators add it.
pub fn subject(user: &UserInfo) -> User {
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.into());
    }
    User {
        name: user.name.clone(),
        groups,
    }
}

/// Whether the Node authorizer allows the request (a node's request
/// it does not allow may still be allowed by RBAC).
pub fn node_allows(user: &User, attrs: &RequestAttributes) -> bool {
    node_authorizer::authorize(node_graph::graph(), user, attrs) == Decision::Allow
}

/// The whole chain for `user`: `Ok`, or the reason RBAC gives (often empty).
pub fn decide(registry: &Registry, user: &User, attrs: &RequestAttributes) -> Result<(), String> {
    if user.in_group(MASTERS) {
        return Ok(());
    }
    let node_reason = match node_authorizer::authorize(node_graph::graph(), user, attrs) {
        Decision::Allow => return Ok(()),
        Decision::NoOpinion(reason) => reason,
    };
    registry.rbac.snapshot().authorize(user, attrs).map_err(|rbac| {
        // Kubernetes' union authorizer joins the reasons it was given.
        match (node_reason.is_empty(), rbac.is_empty()) {
            (true, _) => rbac,
            (false, true) => node_reason,
            (false, false) => format!("{node_reason}, {rbac}"),
        }
    })
}

/// The rules `user` holds in `namespace` through the chain, and whether
/// the list is incomplete (an error resolving some binding).
pub fn rules_for(registry: &Registry, user: &User, namespace: Option<&str>) -> (Vec<PolicyRule>, Vec<String>) {
    let mut out = Vec::new();
    if user.in_group(MASTERS) {
        out.push(rule(&["*"], &["*"], &["*"]));
        out.push(rules::url_rule(&["*"], &["*"]));
    }
    let (rbac, mut errors) = registry.rbac.snapshot().rules_for(user, namespace);
    if node_authorizer::node_name(user).is_some() {
        // As Kubernetes': a node's graph-decided rights cannot be listed.
        out.extend(node_authorizer::static_rules());
        errors.push("node authorizer does not support user rule resolution".to_string());
    }
    out.extend(rbac);
    (out, errors)
}

/// Kubernetes' 403 for a denied request.
pub fn forbidden(user: &str, attrs: &RequestAttributes, reason: &str) -> ApiError {
    let what = match &attrs.path {
        Some(path) => format!("User {user:?} cannot {} path {path:?}", attrs.verb),
        None => {
            let scope = match &attrs.namespace {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".to_string(),
            };
            format!(
                "User {user:?} cannot {} resource {:?} in API group {:?} {scope}",
                attrs.verb,
                attrs.combined_resource(),
                attrs.group
            )
        }
    };
    let why = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    ApiError::forbidden_request(
        &attrs.group,
        &attrs.resource,
        attrs.name.as_deref().unwrap_or_default(),
        why,
    )
}

/// The chain as the HTTP layer's [`Authorizer`].
pub struct Chain(pub std::sync::Arc<Registry>);

impl Authorizer for Chain {
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes) -> Result<(), String> {
        decide(&self.0, &subject(user), attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_and_details_are_kubernetes() {
        let list = RequestAttributes::resource("list", "", "pods", Some("default"), None);
        let e = forbidden("alice", &list, "");
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(e.code, 403);
        let st = e.to_status();
        assert_eq!(st["reason"], "Forbidden");
        assert_eq!(st["details"], serde_json::json!({"kind": "pods"}));
        let get = RequestAttributes::resource("get", "apps", "deployments/scale", None, Some("web"));
        assert_eq!(
            forbidden("bob", &get, "RBAC: x").message,
            r#"deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments/scale" in API group "apps" at the cluster scope: RBAC: x"#
        );
        let path = RequestAttributes::non_resource("get", "/metrics");
        let e = forbidden("bob", &path, "");
        assert_eq!(e.message, r#"forbidden: User "bob" cannot get path "/metrics""#);
        assert_eq!(e.to_status()["details"], serde_json::json!({}));
    }

    #[test]
    fn nodes_get_the_node_rules_and_others_do_not() {
        let node = User {
            name: "system:node:n1".into(),
            groups: vec![NODES.into(), AUTHENTICATED.into()],
        };
        let status = RequestAttributes::resource("patch", "", "nodes/status", None, Some("n1"));
        assert!(node_allows(&node, &status));
        let secrets = RequestAttributes::resource("delete", "", "secrets", Some("default"), Some("s"));
        assert!(!node_allows(&node, &secrets));
        let impostor = User {
            name: "mallory".into(),
            groups: vec![NODES.into()],
        };
        assert!(!node_allows(&impostor, &status));
    }
}
