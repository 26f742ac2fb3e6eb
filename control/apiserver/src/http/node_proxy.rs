//! `pods/log`: the API server reads container logs from the node daemon.
//!
//! A `GET .../pods/{name}/log` is checked here (the pod exists, is bound to a
//! node, the container belongs to it, the options are valid) and then proxied
//! to the node daemon's log endpoint,
//! `https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}`,
//! with the same options. The node's answer streams straight through, so
//! `follow=true` keeps the connection open for as long as the client reads.
//!
//! The API server authenticates to the node with a client certificate it
//! issues itself from the cluster CA at start (CN `kube-apiserver-kubelet-client`,
//! O `system:masters`, as kubeadm names it); noded accepts only that.
//! The node's serving certificate is self-signed and not verified — what
//! Kubernetes does when `--kubelet-certificate-authority` is unset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::http::request::Query;
use crate::kinds;
use crate::pki::ClusterCa;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};

/// User name of the API server's client certificate towards node daemons.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// Port of the node daemon's log endpoint when the Node does not report one.
pub const DEFAULT_NODE_PORT: u16 = 10250;

/// Query parameters of `pods/log` passed on to the node unchanged.
const LOG_OPTIONS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// How the API server connects to node daemons (TLS client identity).
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl KubeletClient {
    /// Issue the API server's node client certificate from the CA in `cert_dir`.
    pub fn from_cert_dir(cert_dir: &std::path::Path) -> Result<Self> {
        let ca = ClusterCa::load_or_create(cert_dir)?;
        let (cert_pem, key_pem) = ca.issue_client(KUBELET_CLIENT_USER, &["system:masters".to_string()])?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("issued key missing")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::pki::AcceptAnyServerCert::new(provider)))
            .with_client_auth_cert(certs, key)?;
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// GET `path_and_query` from the node daemon at `addr`; the response body streams.
    async fn get(
        &self,
        addr: SocketAddr,
        path_and_query: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| "dial tcp: i/o timeout".to_string())?
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(addr.ip().into());
        let tls = tokio::time::timeout(Duration::from_secs(10), self.tls.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timeout".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "node log connection ended");
            }
        });
        let req = http::Request::get(path_and_query)
            .header(http::header::HOST, addr.to_string())
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| "timeout awaiting response headers".to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The container a log request is for: the one named, or the pod's only one.
pub fn select_container(pod: &Value, name: &str, requested: Option<&str>) -> ApiResult<String> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Check the `PodLogOptions` as Kubernetes validates them.
pub fn validate_options(q: &Query) -> ApiResult<()> {
    let positive = |key: &str, min: i64| -> ApiResult<()> {
        match q.get(key) {
            None | Some("") => Ok(()),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= min => Ok(()),
                Ok(_) if min == 0 => Err(ApiError::bad_request(format!(
                    "{key}: Invalid value: {v}: must be greater than or equal to 0"
                ))),
                Ok(_) => Err(ApiError::bad_request(format!(
                    "{key}: Invalid value: {v}: must be greater than 0"
                ))),
                Err(_) => Err(ApiError::bad_request(format!(
                    "{key}: Invalid value: {v:?}: must be an integer"
                ))),
            },
        }
    };
    positive("tailLines", 0)?;
    positive("limitBytes", 1)?;
    positive("sinceSeconds", 1)?;
    if q.get("sinceSeconds").is_some() && q.get("sinceTime").is_some() {
        return Err(ApiError::bad_request(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    Ok(())
}

/// Where the node daemon of `node` serves logs.
fn node_log_address(node: &Value) -> ApiResult<SocketAddr> {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|kind| {
        addresses
            .iter()
            .filter(|a| a["type"] == *kind)
            .find_map(|a| a["address"].as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()))
    });
    let Some(ip) = ip else {
        return Err(ApiError::bad_request(format!(
            "node {name:?} reports no address to reach its node daemon at"
        )));
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .map(|p| p as u16)
        .unwrap_or(DEFAULT_NODE_PORT);
    Ok(SocketAddr::new(ip, port))
}

/// A non-2xx answer of the node as a `Status` (its body is the message).
fn node_error(code: StatusCode, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body).trim().to_string();
    // The node answers Status JSON; fall back to its text.
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or(text);
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    ApiError {
        code: code.as_u16(),
        reason,
        message,
        details: None,
    }
}

/// What `pods/log` needs from the server (the server's `AppState`).
pub trait NodeAccess {
    /// The registry, to read the pod and its node.
    fn registry(&self) -> &Registry;
    /// The client towards node daemons.
    fn kubelet(&self) -> &KubeletClient;
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn pod_log(state: &impl NodeAccess, ns: &str, name: &str, q: &Query) -> ApiResult<Response> {
    let pods = kinds::Kind::Builtin(&kinds::pod::Pods);
    let nodes = kinds::Kind::Builtin(&kinds::node::Nodes);
    let pod = state.registry().get(&pods, Some(ns), name).await?.object;
    let container = select_container(&pod, name, q.get("container"))?;
    validate_options(q)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = state.registry().get(&nodes, None, node_name).await?.object;
    let addr = node_log_address(&node)?;
    let mut query = form_query(q);
    if !query.is_empty() {
        query.insert(0, '?');
    }
    let path = format!("/containerLogs/{ns}/{name}/{container}{query}");
    tracing::info!(node = node_name, %addr, container, "proxying logs from the node");
    let resp = state
        .kubelet()
        .get(addr, &path)
        .await
        .map_err(|e| ApiError::unavailable(format!("Get \"https://{addr}{path}\": {e} (node {node_name:?})")))?;
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        use http_body_util::BodyExt;
        let limited = http_body_util::Limited::new(body, 64 * 1024);
        let bytes = match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            _ => bytes::Bytes::new(),
        };
        return Err(node_error(parts.status, &bytes));
    }
    let mut out = Response::new(Body::new(body));
    out.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    out.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(out)
}

/// The log options of `q` as a query string (without `?`).
fn form_query(q: &Query) -> String {
    let pairs: Vec<(&str, &str)> = LOG_OPTIONS.iter().filter_map(|k| q.get(k).map(|v| (*k, v))).collect();
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaults_to_the_only_one_and_names_choices_otherwise() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(select_container(&one, "p", None).unwrap(), "web");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = select_container(&two, "p", None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(select_container(&two, "p", Some("i")).unwrap(), "i");
        let e = select_container(&two, "p", Some("zz")).unwrap_err();
        assert_eq!(e.message, "container zz is not valid for pod p");
    }

    #[test]
    fn options_are_validated() {
        assert!(validate_options(&Query::parse(Some("tailLines=0&limitBytes=1&follow=true"))).is_ok());
        assert_eq!(
            validate_options(&Query::parse(Some("tailLines=-2"))).unwrap_err().code,
            400
        );
        assert!(validate_options(&Query::parse(Some("limitBytes=0"))).is_err());
        assert!(validate_options(&Query::parse(Some("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"))).is_err());
    }

    #[test]
    fn node_address_prefers_internal_ip_and_reported_port() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}}}});
        assert_eq!(node_log_address(&node).unwrap(), "10.0.0.7:10555".parse().unwrap());
        let bare = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.8"}]}});
        assert_eq!(node_log_address(&bare).unwrap().port(), DEFAULT_NODE_PORT);
        assert_eq!(
            node_log_address(&json!({"metadata": {"name": "n"}})).unwrap_err().code,
            400
        );
    }
}
