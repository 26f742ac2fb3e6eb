//! `kubectl exec`, `attach`, `port-forward` (and `cp`, tar over exec) on the
//! node: the kubelet's streaming endpoints, served beside the log endpoint.
//!
//! `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}` (query
//! `input`, `output`, `error`, `tty`, `command` as the API server sends
//! them) and `/portForward/{ns}/{pod}` (query `port`), to the same clients
//! as logs (the API server's identity or `system:masters`).
//!
//! **Shape: CRI streaming.** The pod must be bound to this node; its running
//! container (or ready sandbox) is found through CRI and the request is
//! prepared with CRI `Exec`/`Attach`/`PortForward`, whose answer is a URL of
//! containerd's streaming server. That server runs the process (the same
//! code as the kubelet's: stdin close, TTY and resize, stderr apart,
//! exit codes as `NonZeroExitCode` Status) and enters the sandbox's network
//! namespace for port-forward. It speaks SPDY/3.1 and the WebSocket
//! protocols up to `v4.channel.k8s.io`, so:
//! - SPDY/3.1 upgrades, and WebSocket upgrades offering only older
//!   protocols (e.g. kube-rs' port-forward), pass through byte for byte
//!   ([`upstream::pass_through`]);
//! - WebSocket `v5.channel.k8s.io` (kubectl 1.30+, kube-rs) exec/attach is
//!   bridged by [`remotecommand`] to a SPDY session with containerd, which
//!   is how `v5`'s stdin CLOSE signal becomes a stream half-close;
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl port-forward since
//!   1.30) is unwrapped by [`tunnel`] into a SPDY connection to containerd.

pub mod remotecommand;
pub mod spdy;
pub mod tunnel;
pub mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::cri::{api, Cri};
use crate::labels;

/// WebSocket subprotocol of remote commands with the stdin CLOSE signal.
pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
/// WebSocket subprotocol carrying SPDY port-forward (kubectl 1.30+).
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// What the streaming endpoints need.
pub struct Streaming {
    /// The API (to read the pod).
    pub client: kube::Client,
    /// This node's name (the pod must be bound to it).
    pub node_name: String,
    /// The runtime.
    pub cri: Cri,
}

/// The streaming routes, for the node daemon's HTTPS server.
/// `authorized` decides from a request whether its client may use them.
pub fn routes(state: Arc<Streaming>, authorized: fn(&Request) -> Result<(), String>) -> Router {
    let exec = move |s: State<Arc<Streaming>>, p: UrlPath<(String, String, String)>, req: Request| async move {
        match authorized(&req) {
            Ok(()) => remote_command(s, p, req, Verb::Exec).await,
            Err(e) => refuse(StatusCode::FORBIDDEN, &e),
        }
    };
    let attach = move |s: State<Arc<Streaming>>, p: UrlPath<(String, String, String)>, req: Request| async move {
        match authorized(&req) {
            Ok(()) => remote_command(s, p, req, Verb::Attach).await,
            Err(e) => refuse(StatusCode::FORBIDDEN, &e),
        }
    };
    let forward = move |s: State<Arc<Streaming>>, p: UrlPath<(String, String)>, req: Request| async move {
        match authorized(&req) {
            Ok(()) => port_forward(s, p, req).await,
            Err(e) => refuse(StatusCode::FORBIDDEN, &e),
        }
    };
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route("/attach/{namespace}/{pod}/{container}", get(attach).post(attach))
        .route("/portForward/{namespace}/{pod}", get(forward).post(forward))
        .with_state(state)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Exec,
    Attach,
}

/// The streams a remote command asked for (the kubelet's query names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// `input=1`.
    pub stdin: bool,
    /// `output=1`.
    pub stdout: bool,
    /// `error=1` (dropped with a TTY, as the kubelet does: a terminal has one output).
    pub stderr: bool,
    /// `tty=1`.
    pub tty: bool,
}

impl StreamOptions {
    /// Parse the query as the kubelet does (`1` means yes).
    pub fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let on = |k: &str| query.iter().any(|(key, v)| key == k && v == "1");
        let tty = on("tty");
        let o = StreamOptions {
            stdin: on("input"),
            stdout: on("output"),
            stderr: on("error") && !tty,
            tty,
        };
        if !o.stdin && !o.stdout && !o.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(o)
    }
}

/// A refused request: its status code and message (answered by [`refuse`]).
#[derive(Debug)]
pub struct Refusal {
    code: StatusCode,
    message: String,
}

impl Refusal {
    fn new(code: StatusCode, message: &str) -> Self {
        Self {
            code,
            message: message.to_string(),
        }
    }
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Response {
        refuse(r.code, &r.message)
    }
}

/// An error answer in the kubelet's shape: a Status object.
pub fn refuse(code: StatusCode, message: &str) -> Response {
    let reason = match code.as_u16() {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn query_of(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The WebSocket subprotocols a request offers (one header, comma separated, or several).
fn offered_protocols(req: &Request) -> Vec<String> {
    req.headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn is_upgrade(req: &Request) -> bool {
    req.headers().contains_key(http::header::UPGRADE)
}

impl Streaming {
    /// Pod `ns/name` if it is bound to this node.
    async fn bound_pod(&self, ns: &str, name: &str) -> Result<Pod, Refusal> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match pods.get_opt(name).await {
            Ok(Some(p)) if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node_name.as_str()) => {
                Ok(p)
            }
            Ok(_) => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                &format!("pod \"{ns}/{name}\" not found on node {:?}", self.node_name),
            )),
            Err(err) => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reading pod: {err}"),
            )),
        }
    }

    /// The uid of pod `ns/name` if it is bound to this node.
    async fn pod_uid(&self, ns: &str, name: &str) -> Result<String, Refusal> {
        Ok(self.bound_pod(ns, name).await?.metadata.uid.unwrap_or_default())
    }

    /// The id of the running container `container` of pod `uid`.
    async fn running_container(&self, uid: &str, container: &str) -> Result<String, Refusal> {
        let all = self
            .cri
            .list_containers(None)
            .await
            .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &e.runtime_message()))?;
        all.into_iter()
            .filter(|c| {
                c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                    && c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container)
                    && c.state == api::ContainerState::ContainerRunning as i32
            })
            .max_by_key(|c| c.created_at)
            .map(|c| c.id)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    &format!("container not found ({container:?}): it is not running"),
                )
            })
    }

    /// The id of pod `uid`'s ready sandbox.
    async fn ready_sandbox(&self, uid: &str) -> Result<String, Refusal> {
        let all = self
            .cri
            .list_pod_sandboxes(&[(labels::POD_UID, uid)])
            .await
            .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &e.runtime_message()))?;
        all.into_iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at)
            .map(|s| s.id)
            .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "pod sandbox not found: the pod is not running"))
    }
}

async fn remote_command(
    State(s): State<Arc<Streaming>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
    verb: Verb,
) -> Response {
    let query = query_of(&req);
    let opts = match StreamOptions::parse(&query) {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e),
    };
    if !is_upgrade(&req) {
        return refuse(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let bound = match s.bound_pod(&ns, &pod).await {
        Ok(p) => p,
        Err(r) => return r.into(),
    };
    let uid = bound.metadata.uid.clone().unwrap_or_default();
    // Attach joins the process as it was started: whether it has a terminal
    // is the container's, not the request's, and a terminal has no stderr
    // (as the kubelet asks the runtime; containerd would otherwise wait for
    // a stderr that never ends).
    let opts = match verb {
        Verb::Attach => attach_options(opts, container_has_tty(&bound, &container)),
        Verb::Exec => opts,
    };
    let id = match s.running_container(&uid, &container).await {
        Ok(id) => id,
        Err(r) => return r.into(),
    };
    let url = match verb {
        Verb::Exec => {
            let cmd: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            if cmd.is_empty() {
                return refuse(StatusCode::BAD_REQUEST, "you must specify a command to execute");
            }
            s.cri
                .exec(api::ExecRequest {
                    container_id: id,
                    cmd,
                    tty: opts.tty,
                    stdin: opts.stdin,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                })
                .await
        }
        Verb::Attach => {
            s.cri
                .attach(api::AttachRequest {
                    container_id: id,
                    stdin: opts.stdin,
                    tty: opts.tty,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                })
                .await
        }
    };
    let url = match url {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.runtime_message()),
    };
    tracing::info!(pod = %format!("{ns}/{pod}"), container, ?verb, ?opts, websocket = is_websocket(&req), "streaming");
    if is_websocket(&req) && offered_protocols(&req).iter().any(|p| p == V5_PROTOCOL) {
        return remotecommand::serve_v5(&url, opts, req).await;
    }
    upstream::pass_through(&url, "", req).await
}

/// The streams of an attach to a container started with (or without) a terminal.
fn attach_options(requested: StreamOptions, tty: bool) -> StreamOptions {
    StreamOptions {
        tty,
        stderr: requested.stderr && !tty,
        ..requested
    }
}

/// Whether container `name` of `pod` (a container, init container or
/// ephemeral container) was started with a terminal.
fn container_has_tty(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let regular = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    regular
        .filter(|c| c.name == name)
        .map(|c| c.tty)
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .filter(|c| c.name == name)
                .map(|c| c.tty),
        )
        .next()
        .flatten()
        .unwrap_or(false)
}

async fn port_forward(
    State(s): State<Arc<Streaming>>,
    UrlPath((ns, pod)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    if !is_upgrade(&req) {
        return refuse(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let mut ports = Vec::new();
    for (k, v) in query_of(&req) {
        if k == "port" {
            match v.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(i32::from(p)),
                _ => return refuse(StatusCode::BAD_REQUEST, &format!("invalid port {v:?}")),
            }
        }
    }
    let uid = match s.pod_uid(&ns, &pod).await {
        Ok(u) => u,
        Err(r) => return r.into(),
    };
    let sandbox = match s.ready_sandbox(&uid).await {
        Ok(id) => id,
        Err(r) => return r.into(),
    };
    let url = match s
        .cri
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: sandbox,
            port: ports.clone(),
        })
        .await
    {
        Ok(u) => u,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.runtime_message()),
    };
    tracing::info!(pod = %format!("{ns}/{pod}"), ?ports, websocket = is_websocket(&req), "port-forward");
    if is_websocket(&req) && offered_protocols(&req).iter().any(|p| p == TUNNEL_PROTOCOL) {
        return tunnel::serve(&url, req).await;
    }
    // The runtime's WebSocket port-forward reads the ports from the query.
    let extra: Vec<(&str, String)> = ports.iter().map(|p| ("port", p.to_string())).collect();
    let extra = serde_urlencoded::to_string(extra).unwrap_or_default();
    upstream::pass_through(&url, &extra, req).await
}

/// The answer to a WebSocket handshake choosing `protocol`.
pub(crate) fn websocket_accept(req: &Request, protocol: &str) -> Result<Response, Refusal> {
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert(
        http::header::SEC_WEBSOCKET_ACCEPT,
        http::HeaderValue::from_str(&accept).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, &e.to_string()))?,
    );
    h.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_str(protocol).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, &e.to_string()))?,
    );
    Ok(resp)
}

/// A SPDY upgrade to the runtime's `url` for `protocol`
/// (`v4.channel.k8s.io`, `portforward.k8s.io`): the upgraded connection.
pub(crate) async fn spdy_to_runtime(
    url: &str,
    protocol: &str,
) -> Result<impl FnOnce() -> hyper::upgrade::OnUpgrade, Refusal> {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("SPDY/3.1"));
    let version =
        http::HeaderValue::from_str(protocol).map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, &e.to_string()))?;
    headers.insert("x-stream-protocol-version", version);
    let resp = upstream::send(url, "", http::Method::POST, &headers)
        .await
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, &e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status();
        let collect = axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024);
        let body = match tokio::time::timeout(std::time::Duration::from_secs(5), collect).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).trim().to_string(),
            _ => String::new(),
        };
        return Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the runtime refused the stream ({code}): {body}"),
        ));
    }
    Ok(move || hyper::upgrade::on(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(s).unwrap()
    }

    #[test]
    fn stream_options_as_the_kubelet_reads_them() {
        let o = StreamOptions::parse(&q("input=1&output=1&error=1&command=sh")).unwrap();
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        // A terminal has one output: stderr is dropped.
        let o = StreamOptions::parse(&q("input=1&output=1&error=1&tty=1")).unwrap();
        assert!(o.tty && !o.stderr);
        assert_eq!(
            StreamOptions::parse(&q("tty=1&command=ls")).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(StreamOptions::parse(&q("output=true")).is_err());
    }

    #[test]
    fn attach_follows_the_containers_terminal() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {
            "containers": [{"name": "shell", "tty": true, "stdin": true}, {"name": "plain"}],
            "ephemeralContainers": [{"name": "debugger", "tty": true}]
        }}))
        .unwrap();
        assert!(container_has_tty(&pod, "shell"));
        assert!(container_has_tty(&pod, "debugger"));
        assert!(!container_has_tty(&pod, "plain"));
        assert!(!container_has_tty(&pod, "missing"));
        // kubectl run -it with a pipe as stdin asks without a terminal and with stderr.
        let asked = StreamOptions::parse(&q("input=1&output=1&error=1")).unwrap();
        let o = attach_options(asked, true);
        assert!(o.tty && !o.stderr && o.stdin && o.stdout);
        assert_eq!(attach_options(asked, false), asked);
    }
}
