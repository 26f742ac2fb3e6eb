//! Node certificates: the requests a joining node makes with its bootstrap
//! token, and the serving certificate of a node's HTTPS endpoint (logs,
//! exec, attach, port-forward).
//!
//! CertificateSigningRequests are stored objects (`kinds::certificatesigningrequest`:
//! `kubectl get csr`, `kubectl certificate approve|deny`, the `/approval` and
//! `/status` subresources). Every request goes to the generic handlers
//! (passed in by the server) and stays Pending for the controller-manager —
//! csrapproving approves node client requests whose requester may have them
//! (a SubjectAccessReview for `certificatesigningrequests/nodeclient`, a
//! node joining with a bootstrap token, or `/selfnodeclient`, a node
//! renewing its own), csrsigning signs approved requests of the built-in
//! signers — or for a human, as in Kubernetes. This module adds two things
//! in front of that create:
//!
//! - A bootstrap token bound to a node name (see `bootstrap_token`) may
//!   only ask for that node's client certificate: 403 otherwise.
//! - A `kubernetes.io/kubelet-serving` request is decided in this POST:
//!   checked against the rules below, signed with the cluster CA the API
//!   server holds and stored already `Approved` (reason `AutoApproved`)
//!   with `status.certificate` set, answering with it. Kubernetes has no
//!   built-in approver for serving requests (a human or an external
//!   approver decides); Sluice approves the node's own, so a node's HTTPS
//!   endpoint comes up with it.
//!
//! Serving rules: exactly CN `system:node:<name>`, O `system:nodes`
//! (Kubernetes' `IsKubeletServingCSR`), only DNS and IP SANs (at least
//! one), usages within digital signature, key encipherment and server auth
//! (server auth required), and the requester must be the node itself or an
//! administrator — a bootstrap token cannot get one. The SANs are not
//! checked against the Node's addresses (a node could claim another node's
//! address).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use crate::http::auth::UserInfo;
use crate::http::bootstrap_token::{self, BOOTSTRAPPERS};
use crate::http::state::AppState;
use crate::kinds::Kind;
use crate::pki::ClusterCa;
use crate::registry::{UpdateMode, WriteOptions};
use crate::status::{ApiError, ApiResult};

/// The signer of node client certificates.
pub const NODE_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of node serving certificates.
pub const NODE_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Usages a serving certificate request may ask for.
const SERVING_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];
/// Group every node certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// Path of the CSR collection.
pub const PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// Validity of a node certificate when the request does not ask for less.
pub const DEFAULT_VALIDITY_SECONDS: i64 = 365 * 24 * 3600;

/// Signs node client and serving certificates with the cluster CA.
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

/// The CSR collection's POST (merged under the authentication layer): node
/// signers are answered here, every other request goes to `generic` (the
/// server's resource handlers, serving the stored
/// `certificatesigningrequests` kind), passed in so that this module does
/// not depend on the handlers.
pub fn routes<H, T>(state: AppState, generic: H) -> Router
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let fallback = generic.clone();
    Router::new()
        .route(
            PATH,
            post(move |State(state): State<AppState>, req: Request| create(state, req, generic)).fallback(fallback),
        )
        .with_state(state)
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

/// The subject alternative names of a serving certificate request, checked
/// as Kubernetes checks `kubernetes.io/kubelet-serving` requests: DNS names
/// and IP addresses only, at least one.
pub fn serving_sans(csr_der: &[u8]) -> Result<Vec<rcgen::SanType>, String> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, csr) =
        X509CertificationRequest::from_der(csr_der).map_err(|e| format!("invalid certificate request: {e}"))?;
    let mut sans = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(names) = ext else {
            continue;
        };
        for name in &names.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    let dns = rcgen::string::Ia5String::try_from(dns.to_string())
                        .map_err(|e| format!("invalid DNS subjectAltName {dns:?}: {e}"))?;
                    sans.push(rcgen::SanType::DnsName(dns));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default()),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default()),
                        _ => return Err("invalid IP subjectAltName".into()),
                    };
                    sans.push(rcgen::SanType::IpAddress(ip));
                }
                GeneralName::RFC822Name(_) => return Err("Email subjectAltNames are not allowed".into()),
                GeneralName::URI(_) => return Err("URI subjectAltNames are not allowed".into()),
                _ => return Err("only DNS and IP subjectAltNames are allowed".into()),
            }
        }
    }
    if sans.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    Ok(sans)
}

/// A serving request's `spec.usages`: within [`SERVING_USAGES`], with server auth.
fn check_serving_usages(csr: &Value) -> Result<(), String> {
    let usages: Vec<&str> = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|u| u.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !usages.contains(&"server auth") || usages.iter().any(|u| !SERVING_USAGES.contains(u)) {
        return Err(format!("usages did not match {SERVING_USAGES:?}: got {usages:?}"));
    }
    Ok(())
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

async fn create<H, T>(state: AppState, req: Request, generic: H) -> Response
where
    H: Handler<T, AppState>,
{
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_CSR_BYTES).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("error reading request body: {e}")).into_response(),
    };
    let signer = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        v.pointer("/spec/signerName")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let Some(user) = parts.extensions.get::<UserInfo>().cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let bootstrapper = user.groups.iter().any(|g| g == BOOTSTRAPPERS);
    if signer.as_deref() == Some(NODE_CLIENT_SIGNER) && bootstrapper {
        // A node joining: its token may be bound to one node name.
        if let Err(e) = check_bound_node(&user, &bytes) {
            return e.into_response();
        }
    }
    if signer.as_deref() != Some(NODE_SERVING_SIGNER) {
        // A plain create of the stored kind, left Pending for the
        // controllers (csrapproving, csrsigning) or a human.
        let req = Request::from_parts(parts, Body::from(bytes));
        return generic.call(req, state).await;
    }
    match create_inner(&state, user, &bytes).await {
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

/// The PEM request of a CSR body and its DER, or a 422 on `spec.request`.
fn request_pem(csr: &Value, name: &str) -> ApiResult<(String, Vec<u8>)> {
    let request_b64 = csr.pointer("/spec/request").and_then(Value::as_str).unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            invalid(
                name,
                "spec.request",
                "Invalid value: must be a base64-encoded PEM certificate request",
            )
        })?;
    let der = rustls_pemfile::csr(&mut pem.as_bytes()).ok().flatten().ok_or_else(|| {
        invalid(
            name,
            "spec.request",
            "Invalid value: no PEM \"CERTIFICATE REQUEST\" block",
        )
    })?;
    Ok((pem, der.as_ref().to_vec()))
}

/// A bootstrap-token user's node client request: 403 when its token is
/// bound to another node (see `bootstrap_token`). Anything else (a
/// malformed body, a subject that is no node) is left to the create and to
/// the controllers, which never approve it.
fn check_bound_node(user: &UserInfo, bytes: &[u8]) -> ApiResult<()> {
    let Some(bound) = bootstrap_token::bound_node(&user.groups) else {
        return Ok(());
    };
    let Ok(csr) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    let Ok((_, der)) = request_pem(&csr, "") else {
        return Ok(());
    };
    let Ok(node) = node_subject(&der) else {
        return Ok(());
    };
    if node == bound {
        return Ok(());
    }
    tracing::info!(node, bound, requester = %user.name, "refused a node client certificate request for another node");
    Err(ApiError::access_denied(format!(
        "certificatesigningrequests.certificates.k8s.io is forbidden: User {:?} may not request a client certificate for node {node:?}: its bootstrap token is bound to node {bound:?}",
        user.name
    )))
}

async fn create_inner(state: &AppState, user: UserInfo, bytes: &[u8]) -> ApiResult<Value> {
    let signer = &state.node_certs;
    let mut csr: Value = serde_json::from_slice(bytes)
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
    let (pem, der) = request_pem(&csr, &name)?;
    let node = node_subject(der.as_ref()).map_err(|e| invalid(&name, "spec.request", e))?;
    let admin = user.groups.iter().any(|g| g == "system:masters");
    if !admin && user.name != format!("system:node:{node}") {
        return Err(ApiError::access_denied(format!(
            "certificatesigningrequests.certificates.k8s.io is forbidden: User {:?} may not request a serving certificate for node {node:?}",
            user.name,
        )));
    }
    check_serving_usages(&csr).map_err(|e| invalid(&name, "spec.usages", format!("Invalid value: {e}")))?;
    let sans = serving_sans(der.as_ref()).map_err(|e| invalid(&name, "spec.request", format!("Invalid value: {e}")))?;
    let seconds = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map(|s| s.clamp(600, DEFAULT_VALIDITY_SECONDS))
        .unwrap_or(DEFAULT_VALIDITY_SECONDS);
    let cert_pem = signer
        .ca
        .sign_node_serving(&pem, &node, sans, seconds)
        .map_err(|e| invalid(&name, "spec.request", format!("Invalid value: {e:#}")))?;
    tracing::info!(node, requester = %user.name, "signed a node serving certificate");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    csr["metadata"]["name"] = json!(name);
    if let Some(m) = csr.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("generateName");
    }
    let status = json!({
        "conditions": [{
            "type": "Approved", "status": "True", "reason": "AutoApproved",
            "message": "Auto approving node serving certificate requested by the node itself",
            "lastUpdateTime": now, "lastTransitionTime": now,
        }],
        "certificate": base64::engine::general_purpose::STANDARD.encode(cert_pem),
    });
    // Stored as the requester's (spec.username/groups), then approved and
    // issued at once by the API server itself.
    let registry = state.registry.clone();
    let kind = Kind::Builtin(&crate::kinds::certificatesigningrequest::CertificateSigningRequests);
    let store = async {
        registry.create(&kind, None, csr, WriteOptions::default()).await?;
        registry
            .update(
                &kind,
                None,
                &name,
                UpdateMode::Internal,
                WriteOptions::default(),
                |cur| {
                    let mut next = cur.clone();
                    next["status"] = status.clone();
                    Ok(next)
                },
            )
            .await
    };
    let written =
        crate::registry::admission::with_user(user.name.clone(), user.uid.clone(), user.groups.clone(), store).await?;
    Ok(written.object)
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

    fn serving_request(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().der().to_vec()
    }

    #[test]
    fn serving_requests_need_dns_or_ip_names_only() {
        let ip = rcgen::SanType::IpAddress("10.0.0.7".parse().unwrap());
        let dns = rcgen::SanType::DnsName("n1".try_into().unwrap());
        let got = serving_sans(&serving_request(vec![dns.clone(), ip.clone()])).unwrap();
        assert_eq!(got, vec![dns, ip]);
        assert_eq!(
            serving_sans(&serving_request(vec![])).unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        let email = rcgen::SanType::Rfc822Name("a@b.c".try_into().unwrap());
        assert_eq!(
            serving_sans(&serving_request(vec![email])).unwrap_err(),
            "Email subjectAltNames are not allowed"
        );
    }

    #[test]
    fn serving_usages_must_include_server_auth_only_with_signing_ones() {
        let with = |u: serde_json::Value| json!({"spec": {"usages": u}});
        assert!(check_serving_usages(&with(json!(["digital signature", "key encipherment", "server auth"]))).is_ok());
        assert!(check_serving_usages(&with(json!(["server auth"]))).is_ok());
        assert!(check_serving_usages(&with(json!(["digital signature", "client auth"]))).is_err());
        assert!(check_serving_usages(&with(json!(["server auth", "client auth"]))).is_err());
    }
}
