//! CSR approving controller (Kubernetes' `csrapproving`): approves node
//! client certificate requests whose requester may have them, as a
//! SubjectAccessReview says.
//!
//! A pending request (neither Approved nor Denied, no certificate) of signer
//! `kubernetes.io/kube-apiserver-client-kubelet` whose PEM request is a
//! kubelet client request (subject `system:node:<name>` in organization
//! `system:nodes` only, no subjectAltNames, client usages: the csrsigning
//! rules) is recognized as
//!
//! - `selfnodeclient` when `spec.username` is the request's common name (a
//!   node renewing its own certificate), checked first, then
//! - `nodeclient` (a bootstrapper asking for a node's first certificate).
//!
//! For each recognized kind in that order the controller asks the API server
//! (a `SubjectAccessReview` for the requester's `spec.username`, `spec.uid`,
//! `spec.groups` and `spec.extra`) whether it may `create`
//! `certificatesigningrequests/<kind>` in group `certificates.k8s.io`; the
//! first allowed one adds the condition `Approved` with reason
//! `AutoApproved` and Kubernetes' message, written through `/approval`.
//! Nothing allowed: the request stays Pending for a human (`kubectl
//! certificate approve`), logged. Requests of other signers, serving
//! requests included, are left alone, as Kubernetes does. The default
//! policy grants `nodeclient` to `system:bootstrappers` and `selfnodeclient`
//! to `system:nodes`.
//!
//! Sluice's bootstrap tokens may be bound to one node (group
//! `system:bootstrappers:sluice:node:<name>`): such a requester's request
//! for another node is not approved.
//!
//! Keyed by request name, triggered by the CSR watch (no polling).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::csr_signing::KUBELET_CLIENT;
use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The controller's name (`--controllers`).
pub const NAME: &str = "csrapproving";

/// Prefix of the group Sluice gives a bootstrap token bound to one node.
const BOUND_NODE_GROUP_PREFIX: &str = "system:bootstrappers:sluice:node:";

/// A kind of request the controller recognizes: the subresource the
/// requester needs `create` on, and the approval message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recognized {
    /// `selfnodeclient` or `nodeclient`.
    pub subresource: &'static str,
    /// The `Approved` condition's message.
    pub message: &'static str,
}

/// A node renewing its own client certificate.
pub const SELF_NODE_CLIENT: Recognized = Recognized {
    subresource: "selfnodeclient",
    message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
};

/// A node client certificate asked for by someone else (a bootstrapper).
pub const NODE_CLIENT: Recognized = Recognized {
    subresource: "nodeclient",
    message: "Auto approving kubelet client certificate after SubjectAccessReview.",
};

/// Whether `csr` is still waiting for a decision.
fn pending(csr: &CertificateSigningRequest) -> bool {
    let Some(status) = &csr.status else {
        return true;
    };
    if status.certificate.as_ref().is_some_and(|c| !c.0.is_empty()) {
        return false;
    }
    !status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
}

/// The common name of a PEM certificate request, if it parses.
fn common_name(params: &rcgen::CertificateParams) -> Option<String> {
    params
        .distinguished_name
        .iter()
        .find(|(k, _)| **k == rcgen::DnType::CommonName)
        .and_then(|(_, v)| match v {
            rcgen::DnValue::Utf8String(s) => Some(s.clone()),
            rcgen::DnValue::PrintableString(s) => Some(s.to_string()),
            _ => None,
        })
}

/// What `csr` is recognized as, in the order they are checked (Kubernetes'
/// `isSelfNodeClientCert`, then `isNodeClientCert`); empty for anything
/// else. Also refuses a bound bootstrap token's request for another node.
pub fn recognize(csr: &CertificateSigningRequest) -> Vec<Recognized> {
    if csr.spec.signer_name != KUBELET_CLIENT {
        return Vec::new();
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0);
    let Ok(parsed) = rcgen::CertificateSigningRequestParams::from_pem(&pem) else {
        return Vec::new();
    };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if crate::csr_signing::check_signer_rules(KUBELET_CLIENT, &parsed.params, &usages).is_err() {
        return Vec::new();
    }
    let Some(cn) = common_name(&parsed.params) else {
        return Vec::new();
    };
    let node = cn.strip_prefix("system:node:").unwrap_or_default();
    let groups = csr.spec.groups.clone().unwrap_or_default();
    let bound_elsewhere = groups
        .iter()
        .filter_map(|g| g.strip_prefix(BOUND_NODE_GROUP_PREFIX))
        .any(|bound| bound != node);
    if bound_elsewhere {
        return Vec::new();
    }
    let mut out = Vec::new();
    if csr.spec.username.as_deref() == Some(cn.as_str()) {
        out.push(SELF_NODE_CLIENT);
    }
    out.push(NODE_CLIENT);
    out
}

/// The SubjectAccessReview asking whether the requester of `csr` may
/// `create` `certificatesigningrequests/<subresource>`.
pub fn review(csr: &CertificateSigningRequest, subresource: &str) -> SubjectAccessReview {
    let extra = csr.spec.extra.as_ref().map(|e| {
        e.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra,
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                version: Some("*".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Subscribes the controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let csrs = Arc::new(Informer::<CertificateSigningRequest>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default(),
    ));
    let own = csrs.trigger(|c: &CertificateSigningRequest| Some(ObjectRef::from_obj(c)));
    let store = csrs.store();
    async move {
        csrs.start();
        csrs.wait_synced().await;
        runner::run(NAME, ctx, store, vec![own.boxed()], reconcile).await
    }
    .boxed()
}

#[tracing::instrument(skip_all, fields(csr = %csr.name_any()))]
async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !pending(&csr) {
        return Ok(Action::await_change());
    }
    let recognized = recognize(&csr);
    if recognized.is_empty() {
        return Ok(Action::await_change());
    }
    let reviews: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    for r in &recognized {
        let answer = reviews
            .create(&PostParams::default(), &review(&csr, r.subresource))
            .await?;
        if !answer.status.as_ref().is_some_and(|s| s.allowed) {
            continue;
        }
        let mut next = (*csr).clone();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        next.status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(r.message.into()),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            });
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        match api
            .replace_subresource("approval", &csr.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                tracing::info!(requester = ?csr.spec.username, kind = r.subresource, "approved a node client certificate request");
            }
            // Changed or deleted meanwhile: the watch brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    let tried: Vec<&str> = recognized.iter().map(|r| r.subresource).collect();
    tracing::info!(
        requester = ?csr.spec.username,
        ?tried,
        "recognized a node client certificate request but the SubjectAccessReview was not approved; left Pending"
    );
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestSpec, CertificateSigningRequestStatus};

    fn request(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap().into_bytes()
    }

    fn csr(cn: &str, orgs: &[&str], user: &str, groups: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(request(cn, orgs)),
                signer_name: KUBELET_CLIENT.into(),
                usages: Some(vec!["digital signature".into(), "client auth".into()]),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_node_renewing_is_self_then_node_client_and_a_bootstrapper_is_node_client() {
        let own = csr("system:node:n1", &["system:nodes"], "system:node:n1", &["system:nodes"]);
        assert_eq!(recognize(&own), vec![SELF_NODE_CLIENT, NODE_CLIENT]);
        let boot = csr(
            "system:node:n1",
            &["system:nodes"],
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
        );
        assert_eq!(recognize(&boot), vec![NODE_CLIENT]);
        let sar = review(&boot, "nodeclient");
        let attrs = sar.spec.resource_attributes.unwrap();
        assert_eq!(sar.spec.user.as_deref(), Some("system:bootstrap:abcdef"));
        assert_eq!(attrs.subresource.as_deref(), Some("nodeclient"));
        assert_eq!(attrs.verb.as_deref(), Some("create"));
        assert_eq!(attrs.group.as_deref(), Some("certificates.k8s.io"));
    }

    #[test]
    fn other_subjects_signers_bound_tokens_and_decided_requests_are_left_alone() {
        assert!(recognize(&csr("jane", &["system:nodes"], "admin", &[])).is_empty());
        assert!(recognize(&csr("system:node:n1", &["qa"], "admin", &[])).is_empty());
        let mut serving = csr("system:node:n1", &["system:nodes"], "system:node:n1", &[]);
        serving.spec.signer_name = "kubernetes.io/kubelet-serving".into();
        assert!(recognize(&serving).is_empty());
        let bound = csr(
            "system:node:n2",
            &["system:nodes"],
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "system:bootstrappers:sluice:node:n1"],
        );
        assert!(recognize(&bound).is_empty());
        let mut decided = csr("system:node:n1", &["system:nodes"], "system:node:n1", &[]);
        assert!(pending(&decided));
        decided.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(!pending(&decided));
    }
}
