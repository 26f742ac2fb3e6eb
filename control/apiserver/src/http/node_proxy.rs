//! `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward`: the API
//! server reaches the pod's node daemon.
//!
//! A `GET .../pods/{name}/log` is checked here (the pod exists, is bound to a
//! node, the container belongs to it, the options are valid) and then proxied
//! to the node daemon's log endpoint,
//! `https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/{ns}/{pod}/{container}`,
//! with the same options. The node's answer streams straight through, so
//! `follow=true` keeps the connection open for as long as the client reads.
//!
//! `exec`, `attach` and `portforward` are checked the same way (container
//! defaulting, at least one of stdin/stdout/stderr, ports) and then sent to
//! the node daemon as the kubelet's `/exec|attach/{ns}/{pod}/{container}`
//! and `/portForward/{ns}/{pod}` with the client's upgrade headers; after
//! the node's 101 the two upgraded connections are joined byte for byte, so
//! every protocol the node speaks (WebSocket `v5`/`v4.channel.k8s.io`,
//! SPDY/3.1, SPDY tunnelled in WebSocket) passes through unchanged.
//!
//! `nodes/{name}/proxy/{path}` sends any request to that node daemon's port
//! at `/{path}` with the client's query, method, body and content headers,
//! and streams the node's answer back unchanged (status, type, body): this
//! is how `kubectl get --raw /api/v1/nodes/n1/proxy/metrics` and the
//! dashboard's live flows (`/dataplane/flows?follow=true`) reach a node.
//!
//! The connection to the node is [`KubeletClient`]'s: the API server's
//! client certificate one way, and the node's serving certificate verified
//! against the cluster CA and the dialed address the other.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::http::request::Query;
use crate::kinds;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};

pub use crate::http::kubelet_client::KubeletClient;

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

/// Where the node daemon of `node` listens (logs, streams, proxy).
fn node_address(node: &Value) -> ApiResult<SocketAddr> {
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
    let pod = state.registry().get(&pods, Some(ns), name).await?.object;
    let container = select_container(&pod, name, q.get("container"))?;
    validate_options(q)?;
    let (node_name, addr) = pod_node(state, &pod, name).await?;
    let node_name = node_name.as_str();
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

/// The node a pod is bound to and where its node daemon listens.
async fn pod_node(state: &impl NodeAccess, pod: &Value, name: &str) -> ApiResult<(String, SocketAddr)> {
    let nodes = kinds::Kind::Builtin(&kinds::node::Nodes);
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
    Ok((node_name.to_string(), node_address(&node)?))
}

/// The pod subresources that stream over an upgraded connection.
pub const STREAM_SUBRESOURCES: &[&str] = &["exec", "attach", "portforward"];

/// Request headers carried to the node on an upgrade (the user's own
/// credentials never are: the API server authenticates to the node itself).
const UPGRADE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "user-agent",
];

/// The node daemon's path and query for a streaming subresource, from the
/// `PodExecOptions` / `PodAttachOptions` / `PodPortForwardOptions` in `q`,
/// as the kubelet names them (`input`, `output`, `error`, `tty`, `command`,
/// `port`).
pub fn stream_location(pod: &Value, ns: &str, name: &str, sub: &str, q: &Query) -> ApiResult<String> {
    let mut params: Vec<(&str, String)> = Vec::new();
    let path = match sub {
        "exec" | "attach" => {
            let container = select_container(pod, name, q.get("container"))?;
            let (stdin, stdout, stderr, tty) = (q.flag("stdin"), q.flag("stdout"), q.flag("stderr"), q.flag("tty"));
            if !stdin && !stdout && !stderr {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            for (on, key) in [(stdin, "input"), (stdout, "output"), (stderr, "error"), (tty, "tty")] {
                if on {
                    params.push((key, "1".to_string()));
                }
            }
            if sub == "exec" {
                for c in q.all("command") {
                    params.push(("command", c.to_string()));
                }
            }
            format!("/{sub}/{ns}/{name}/{container}")
        }
        "portforward" => {
            // `ports=80&ports=443` or `ports=80,443` (kube-rs) alike.
            for value in q.all("ports") {
                for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match p.parse::<u16>() {
                        Ok(n) if n > 0 => params.push(("port", n.to_string())),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid port {p:?}: must be an integer between 1 and 65535"
                            )))
                        }
                    }
                }
            }
            format!("/portForward/{ns}/{name}")
        }
        other => return Err(ApiError::path_not_found(other)),
    };
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    Ok(if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    })
}

/// `GET|POST /api/v1/namespaces/{ns}/pods/{name}/{exec|attach|portforward}`:
/// checked as Kubernetes checks them, then sent to the pod's node daemon with
/// the client's upgrade headers (WebSocket or SPDY). When the node agrees
/// (101), both upgraded connections are joined byte for byte; otherwise the
/// node's answer is returned as it is.
pub async fn pod_stream(
    state: &impl NodeAccess,
    ns: &str,
    name: &str,
    sub: &str,
    q: &Query,
    mut req: axum::extract::Request,
) -> ApiResult<Response> {
    let pods = kinds::Kind::Builtin(&kinds::pod::Pods);
    let pod = state.registry().get(&pods, Some(ns), name).await?.object;
    if sub != "portforward" {
        if let Some(phase @ ("Succeeded" | "Failed")) = pod.pointer("/status/phase").and_then(Value::as_str) {
            return Err(ApiError::bad_request(format!(
                "cannot {sub} into a container in a completed pod; current phase is {phase}"
            )));
        }
    }
    let path = stream_location(&pod, ns, name, sub, q)?;
    let (node_name, addr) = pod_node(state, &pod, name).await?;
    if !req.headers().contains_key(http::header::UPGRADE) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let mut forward = http::Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .header(http::header::HOST, addr.to_string());
    for (k, v) in req.headers() {
        if UPGRADE_HEADERS.contains(&k.as_str()) {
            forward = forward.header(k, v);
        }
    }
    let forward = forward
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::info!(node = %node_name, %addr, path, "proxying a stream to the node");
    let client_upgrade = hyper::upgrade::on(&mut req);
    let resp = state
        .kubelet()
        .send(addr, forward)
        .await
        .map_err(|e| ApiError::unavailable(format!("error dialing backend: {e} (node {node_name:?})")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The node's refusal (a Status, or text) goes back unchanged, so
        // clients see the same upgrade failure they would from Kubernetes.
        return Ok(node_answer(
            resp,
            &[http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH],
        ));
    }
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    tokio::spawn(async move {
        let (client, node) = match tokio::try_join!(client_upgrade, hyper::upgrade::on(resp)) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "stream upgrade failed");
                return;
            }
        };
        let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
        match tokio::io::copy_bidirectional(&mut client, &mut node).await {
            Ok((up, down)) => tracing::debug!(up, down, "stream ended"),
            Err(e) => tracing::debug!(error = %e, "stream ended with an error"),
        }
    });
    Ok(out)
}

/// Request headers carried to the node by `nodes/proxy` (never the
/// client's credentials: the API server authenticates to the node itself).
const PROXY_HEADERS: &[http::header::HeaderName] = &[
    http::header::ACCEPT,
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::USER_AGENT,
];

/// Response headers of the node passed back by `nodes/proxy`.
const PROXY_RESPONSE_HEADERS: &[http::header::HeaderName] = &[
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CACHE_CONTROL,
    http::header::CONTENT_ENCODING,
];

/// `/api/v1/nodes/{name}/proxy/{path}`: the request, as the client sent it,
/// to the node daemon's `{path}`; the node's answer streams back as it is.
pub async fn node_proxy(
    state: &impl NodeAccess,
    name: &str,
    path: &str,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let nodes = kinds::Kind::Builtin(&kinds::node::Nodes);
    let node = state.registry().get(&nodes, None, name).await?.object;
    let addr = node_address(&node)?;
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut forward = http::Request::builder()
        .method(req.method().clone())
        .uri(&path_and_query)
        .header(http::header::HOST, addr.to_string());
    for key in PROXY_HEADERS {
        if let Some(v) = req.headers().get(key) {
            forward = forward.header(key, v);
        }
    }
    let forward = forward
        .body(req.into_body())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::info!(node = name, %addr, path, "proxying to the node");
    let resp = state
        .kubelet()
        .send(addr, forward)
        .await
        .map_err(|e| ApiError::unavailable(format!("error trying to reach service: {e} (node {name:?})")))?;
    Ok(node_answer(resp, PROXY_RESPONSE_HEADERS))
}

/// The node's answer as the client's: its status, the headers named in
/// `keys`, and its body streamed through.
fn node_answer(resp: http::Response<hyper::body::Incoming>, keys: &[http::header::HeaderName]) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(body));
    *out.status_mut() = parts.status;
    for key in keys {
        if let Some(v) = parts.headers.get(key) {
            out.headers_mut().insert(key, v.clone());
        }
    }
    out
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
    fn stream_locations_use_the_kubelet_parameter_names() {
        let pod = json!({"spec": {"containers": [{"name": "web"}]}});
        let q = Query::parse(Some(
            "command=sh&command=-c&command=exit+3&stdin=true&stdout=true&tty=true",
        ));
        assert_eq!(
            stream_location(&pod, "ns", "p", "exec", &q).unwrap(),
            "/exec/ns/p/web?input=1&output=1&tty=1&command=sh&command=-c&command=exit+3"
        );
        let e = stream_location(&pod, "ns", "p", "attach", &Query::parse(Some("tty=true"))).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "you must specify at least 1 of stdin, stdout, stderr")
        );
        assert_eq!(
            stream_location(
                &pod,
                "ns",
                "p",
                "portforward",
                &Query::parse(Some("ports=80,8080&ports=9090"))
            )
            .unwrap(),
            "/portForward/ns/p?port=80&port=8080&port=9090"
        );
        assert_eq!(
            stream_location(&pod, "ns", "p", "portforward", &Query::parse(Some("ports=0")))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn node_address_prefers_internal_ip_and_reported_port() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}}}});
        assert_eq!(node_address(&node).unwrap(), "10.0.0.7:10555".parse().unwrap());
        let bare = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.8"}]}});
        assert_eq!(node_address(&bare).unwrap().port(), DEFAULT_NODE_PORT);
        assert_eq!(node_address(&json!({"metadata": {"name": "n"}})).unwrap_err().code, 400);
    }
}
