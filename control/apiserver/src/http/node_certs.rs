//! Node client certificates: the exchange a joining node makes with its
//! bootstrap token.
//!
//! Kubernetes' path is a stored CertificateSigningRequest approved by a
//! controller and signed by another. Sluice serves the same request shape
//! (`POST /apis/certificates.k8s.io/v1/certificatesigningrequests`, signer
//! `kubernetes.io/kube-apiserver-client-kubelet`) but approves and signs it
//! synchronously, in the API server that holds the cluster CA, and answers the
//! CSR with `status.certificate` already set. Nothing is stored: there is no
//! CSR to list or approve by hand afterwards.
//!
//! Auto-approval rules (those of Kubernetes' csrapproving controller for node
//! client certificates): the subject must be exactly CN `system:node:<name>`,
//! O `system:nodes`; the requester must be a bootstrap-token user
//! (`system:bootstrappers`), the node itself renewing (`system:node:<name>`),
//! or an administrator (`system:masters`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use crate::http::auth::UserInfo;
use crate::http::bootstrap_token::BOOTSTRAPPERS;
use crate::pki::ClusterCa;
use crate::status::{ApiError, ApiResult};

/// The only signer served.
pub const NODE_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Group every node certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// Path of the CSR collection.
pub const PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// Validity of a node certificate when the request does not ask for less.
pub const DEFAULT_VALIDITY_SECONDS: i64 = 365 * 24 * 3600;

/// Signs node client certificates with the cluster CA.
pub struct NodeCertSigner {
    ca: ClusterCa,
}

impl NodeCertSigner {
    /// Load the cluster CA from `cert_dir`.
    pub fn load(cert_dir: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            ca: ClusterCa::load_or_create(cert_dir)?,
        })
    }
}

/// The CSR routes (merged under the authentication layer).
pub fn routes(signer: Arc<NodeCertSigner>) -> Router {
    Router::new()
        .route(
            PATH,
            post(create).fallback(|| async {
                ApiError::method_not_allowed(
                    "certificatesigningrequests are only created (signed at once, never stored)",
                )
                .into_response()
            }),
        )
        .with_state(signer)
}

/// The node name a CSR's subject asks for, if it is a node client subject.
pub fn node_subject(csr_der: &[u8]) -> Result<String, String> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;
    let (_, csr) =
        X509CertificationRequest::from_der(csr_der).map_err(|e| format!("invalid certificate request: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let cns: Vec<&str> = subject.iter_common_name().filter_map(|c| c.as_str().ok()).collect();
    let orgs: Vec<&str> = subject.iter_organization().filter_map(|o| o.as_str().ok()).collect();
    let node = match cns.as_slice() {
        [cn] => cn.strip_prefix("system:node:").filter(|n| !n.is_empty()),
        _ => None,
    };
    let Some(node) = node else {
        return Err(format!(
            "subject common name must be \"system:node:<nodeName>\", got {cns:?}"
        ));
    };
    if orgs != [NODES_GROUP] {
        return Err(format!(
            "subject organization must be exactly [\"{NODES_GROUP}\"], got {orgs:?}"
        ));
    }
    Ok(node.to_string())
}

fn invalid(name: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "CertificateSigningRequest.certificates.k8s.io {name:?} is invalid: {field}: {}",
            message.into()
        ),
        details: Some(json!({"name": name, "group": "certificates.k8s.io", "kind": "CertificateSigningRequest"})),
    }
}

async fn create(State(signer): State<Arc<NodeCertSigner>>, req: Request) -> Response {
    match create_inner(&signer, req).await {
        Ok(v) => {
            let mut resp = (http::StatusCode::CREATED, serde_json::to_vec(&v).unwrap_or_default()).into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// Largest CertificateSigningRequest body read (the limit of every API body).
const MAX_CSR_BYTES: usize = 3 * 1024 * 1024;

async fn create_inner(signer: &NodeCertSigner, req: Request) -> ApiResult<Value> {
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    let body: Body = req.into_body();
    let bytes = axum::body::to_bytes(body, MAX_CSR_BYTES)
        .await
        .map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
    let mut csr: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    let name = match csr.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match csr.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) => format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..5]),
            None => {
                return Err(invalid(
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        },
    };
    let signer_name = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if signer_name != NODE_CLIENT_SIGNER {
        return Err(invalid(
            &name,
            "spec.signerName",
            format!("Unsupported value: {signer_name:?}: supported values: \"{NODE_CLIENT_SIGNER}\""),
        ));
    }
    let request_b64 = csr.pointer("/spec/request").and_then(Value::as_str).unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            invalid(
                &name,
                "spec.request",
                "Invalid value: must be a base64-encoded PEM certificate request",
            )
        })?;
    let der = rustls_pemfile::csr(&mut pem.as_bytes()).ok().flatten().ok_or_else(|| {
        invalid(
            &name,
            "spec.request",
            "Invalid value: no PEM \"CERTIFICATE REQUEST\" block",
        )
    })?;
    let node = node_subject(der.as_ref()).map_err(|e| invalid(&name, "spec.request", e))?;
    let may = user.groups.iter().any(|g| g == BOOTSTRAPPERS || g == "system:masters")
        || user.name == format!("system:node:{node}");
    if !may {
        return Err(ApiError::access_denied(format!(
            "certificatesigningrequests.certificates.k8s.io is forbidden: User {:?} may not request a client certificate for node {node:?}",
            user.name
        )));
    }
    let seconds = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map(|s| s.clamp(600, DEFAULT_VALIDITY_SECONDS))
        .unwrap_or(DEFAULT_VALIDITY_SECONDS);
    let cert_pem = signer
        .ca
        .sign_node_client(&pem, &node, seconds)
        .map_err(|e| invalid(&name, "spec.request", format!("Invalid value: {e:#}")))?;
    tracing::info!(node, requester = %user.name, "signed a node client certificate");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    csr["apiVersion"] = json!("certificates.k8s.io/v1");
    csr["kind"] = json!("CertificateSigningRequest");
    csr["metadata"]["name"] = json!(name);
    csr["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    csr["metadata"]["creationTimestamp"] = json!(now);
    csr["spec"]["username"] = json!(user.name);
    csr["spec"]["groups"] = json!(user.groups);
    csr["status"] = json!({
        "conditions": [{
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "Auto approving node client certificate requested with a bootstrap token or by the node itself",
            "lastUpdateTime": now, "lastTransitionTime": now,
        }],
        "certificate": base64::engine::general_purpose::STANDARD.encode(cert_pem),
    });
    Ok(csr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn only_node_subjects_are_accepted() {
        assert_eq!(
            node_subject(&request("system:node:n1", &["system:nodes"])).unwrap(),
            "n1"
        );
        assert!(node_subject(&request("admin", &["system:nodes"])).is_err());
        assert!(node_subject(&request("system:node:n1", &["system:nodes", "system:masters"])).is_err());
        assert!(node_subject(&request("system:node:", &["system:nodes"])).is_err());
        assert!(node_subject(b"garbage").is_err());
    }
}
