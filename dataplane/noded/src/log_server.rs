//! The node's log endpoint: the API server reads container logs here.
//!
//! `GET /containerLogs/{namespace}/{pod}/{container}` over HTTPS (default port
//! 10250, as the kubelet), with kubectl's options: `follow`, `previous`,
//! `timestamps`, `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`.
//!
//! - **Who may read.** TLS requires a client certificate signed by the
//!   cluster CA (the one in noded's kubeconfig); the request is then allowed
//!   only for the API server's identity (CN `kube-apiserver-kubelet-client`)
//!   or an administrator (O `system:masters`). Nodes and users cannot read
//!   other pods' logs here.
//! - **Serving certificate.** Signed by the cluster CA at start
//!   ([`crate::serving_cert`]: a `kubernetes.io/kubelet-serving` request for
//!   the node's name and IP); the API server verifies it against the cluster
//!   CA and the address it dials; it is renewed while serving. When the API
//!   server will not sign one, the endpoint serves a self-signed
//!   certificate, which the API server refuses (said loudly here).
//! - **Where logs are.** The runtime writes each container attempt to
//!   `<state>/pods/<uid>/logs/<container>/<attempt>.log` (see
//!   [`crate::pod_spec`]) in the CRI format `<RFC3339Nano> <stream> <P|F> <text>`.
//!   The Pod (from the API, and it must be bound to this node) gives the uid;
//!   the highest attempt is the current container, the one below it is
//!   `previous`. The CRI prefix is stripped (kept as `<time> ` with
//!   `timestamps`), partial (`P`) lines are joined.
//! - **follow** polls the file and ends when the container has terminated
//!   (Pod status), a newer attempt starts, or the pod's logs go away.
//!
//! The same port serves the kubelet's monitoring endpoints
//! ([`crate::node_api`]: `/metrics`, `/metrics/resource`, `/stats/summary`),
//! authorized by the API server per request rather than by the rule above.
//!
//! noded also reports the port in `Node.status.daemonEndpoints.kubeletEndpoint`
//! ([`advertise_port`]), which is where the API server looks for it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tower::ServiceExt;

/// The kubelet's port, used when `--log-port` is not given.
pub const DEFAULT_PORT: u16 = 10250;
/// Certificate CN of the API server's client identity towards nodes.
pub const API_SERVER_USER: &str = "kube-apiserver-kubelet-client";
/// How often a followed log file is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a follower checks whether its container is still running.
const FOLLOW_LIVENESS: Duration = Duration::from_secs(2);

/// Errors starting the log server.
#[derive(Debug, thiserror::Error)]
pub enum LogServerError {
    /// The serving certificate could not be made.
    #[error("serving certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// TLS configuration failed (e.g. no usable client CA).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The cluster CA could not be read from the kubeconfig.
    #[error("reading the cluster CA from the kubeconfig: {0}")]
    Kubeconfig(String),
    /// The port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// noded's flags for the log endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// HTTPS port the API server reads container logs from (reported in the Node's daemonEndpoints).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub log_port: u16,
}

/// What the log server needs.
pub struct LogServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub addr: SocketAddr,
    /// This node's name (pods must be bound to it).
    pub node_name: String,
    /// noded's state directory (pod logs live below it).
    pub state_dir: PathBuf,
    /// CAs whose client certificates are accepted (the cluster CA, DER).
    pub client_ca: Vec<Vec<u8>>,
    /// The serving certificate.
    pub serving: ServingIdentity,
    /// The runtime, for exec/attach/port-forward ([`crate::streaming`]); none: not served.
    pub cri: Option<crate::cri::Cri>,
}

/// What the endpoint presents to its clients.
#[derive(Debug, Clone)]
pub enum ServingIdentity {
    /// The certificate the cluster CA signed for this node (for these names
    /// and IPs), renewed while the endpoint runs.
    Issued(crate::serving_cert::ServingCert, Vec<String>),
    /// A self-signed certificate for these names and IPs (no API server trusts it).
    SelfSigned(Vec<String>),
}

/// A running log server.
pub struct LogServer {
    /// Where it listens.
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for LogServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
    }
}

struct Ctx {
    client: kube::Client,
    node_name: String,
    state_dir: PathBuf,
}

/// The verified client certificate's subject (CN, O values), in each request's extensions.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// The user.
    pub common_name: String,
    /// The groups.
    pub organizations: Vec<String>,
}

impl Peer {
    fn from_der(der: &[u8]) -> Peer {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Peer::default();
        };
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect();
        Peer {
            common_name,
            organizations,
        }
    }

    fn may_read_logs(&self) -> bool {
        self.common_name == API_SERVER_USER || self.organizations.iter().any(|o| o == "system:masters")
    }
}

fn tls_config(
    cfg: &LogServerConfig,
) -> Result<(rustls::ServerConfig, Arc<crate::serving_cert::Resolver>), LogServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in &cfg.client_ca {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| LogServerError::Tls(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| LogServerError::Tls(e.to_string()))?;
    let serving = match &cfg.serving {
        ServingIdentity::Issued(issued, _) => issued.clone(),
        ServingIdentity::SelfSigned(names) => {
            let mut params = rcgen::CertificateParams::new(names.clone())?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("{}@noded", cfg.node_name));
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            crate::serving_cert::ServingCert {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }
    };
    let key = crate::serving_cert::certified_key(&serving).map_err(|e| LogServerError::Tls(e.to_string()))?;
    let resolver = Arc::new(crate::serving_cert::Resolver::new(key));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LogServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tls, resolver))
}

/// Bind and serve until the returned [`LogServer`] is dropped.
pub async fn start(cfg: LogServerConfig, client: kube::Client) -> Result<LogServer, LogServerError> {
    let (tls, resolver) = tls_config(&cfg)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (cfg_serving, renewal_client, renewal_node) = (cfg.serving.clone(), client.clone(), cfg.node_name.clone());
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| LogServerError::Bind { addr: cfg.addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| LogServerError::Bind { addr: cfg.addr, source })?;
    let node_api = cfg.cri.clone().map(|cri| {
        let collector = crate::stats::Collector::new(cri, crate::stats::cgroup_root(&cfg.node_name));
        Arc::new(crate::node_api::NodeApi::new(
            client.clone(),
            cfg.node_name.clone(),
            collector,
        ))
    });
    let streaming = cfg.cri.map(|cri| crate::streaming::Streaming {
        client: client.clone(),
        node_name: cfg.node_name.clone(),
        cri,
    });
    let ctx = Arc::new(Ctx {
        client,
        node_name: cfg.node_name,
        state_dir: cfg.state_dir,
    });
    let mut app = Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .with_state(ctx);
    if let Some(streaming) = streaming {
        app = app.merge(crate::streaming::routes(Arc::new(streaming), authorize_streaming));
    }
    if let Some(node_api) = node_api {
        app = app.merge(crate::node_api::routes(node_api));
    }
    tracing::info!(addr = %local_addr, "serving container logs over HTTPS");
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(%err, "log server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(err)) => {
                        tracing::debug!(%remote, %err, "log server TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Peer::from_der(c.as_ref()))
                    .unwrap_or_default();
                let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(err) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await
                {
                    tracing::debug!(%remote, %err, "log connection ended with an error");
                }
            });
        }
    });
    let renewal = match cfg_serving {
        ServingIdentity::Issued(cert, names) => Some(tokio::spawn(crate::serving_cert::keep_fresh(
            resolver,
            renewal_client,
            renewal_node,
            names,
            cert,
        ))),
        ServingIdentity::SelfSigned(_) => None,
    };
    Ok(LogServer {
        local_addr,
        task,
        renewal,
    })
}

/// exec/attach/port-forward are for the same clients as logs.
fn authorize_streaming(req: &Request) -> Result<(), String> {
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    if peer.may_read_logs() {
        Ok(())
    } else {
        Err(format!(
            "Forbidden (user={}, verb=create, resource=nodes, subresource=proxy)",
            peer.common_name
        ))
    }
}

/// Start the log server of this node: listen on `node_ip` (all addresses
/// when unknown) at `port`, trust client certificates from the CA in
/// `kubeconfig`, and report the port in the Node's status.
pub async fn start_for_node(
    kubeconfig: &Path,
    client: kube::Client,
    node_name: &str,
    node_ip: Option<&str>,
    state_dir: &Path,
    port: u16,
    cri: Option<crate::cri::Cri>,
) -> Result<LogServer, LogServerError> {
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| LogServerError::Kubeconfig(e.to_string()))?;
    let parsed = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| LogServerError::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| LogServerError::Kubeconfig(e.to_string()))?;
    let client_ca = config.root_cert.unwrap_or_default();
    if client_ca.is_empty() {
        return Err(LogServerError::Kubeconfig(
            "no certificate-authority in the kubeconfig".into(),
        ));
    }
    let ip: Option<IpAddr> = node_ip.and_then(|ip| ip.parse().ok());
    let names = serving_names(node_name, &ip.into_iter().collect::<Vec<_>>());
    let cfg = LogServerConfig {
        addr: SocketAddr::new(ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)), port),
        node_name: node_name.to_string(),
        state_dir: state_dir.to_path_buf(),
        client_ca,
        serving: serving_identity(&client, node_name, names).await,
        cri,
    };
    let server = start(cfg, client.clone()).await?;
    tokio::spawn(advertise_port(client, node_name.to_string(), server.local_addr.port()));
    Ok(server)
}

/// The cluster CA's serving certificate for `names` (a few tries while the
/// API server is unavailable), or a self-signed one when it will not sign.
async fn serving_identity(client: &kube::Client, node_name: &str, names: Vec<String>) -> ServingIdentity {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match crate::serving_cert::request(client, node_name, &names).await {
            Ok(cert) => return ServingIdentity::Issued(cert, names),
            Err(err) if err.is_transient() && attempt < 5 => {
                tracing::warn!(%err, attempt, "requesting the serving certificate failed (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                tracing::error!(
                    %err,
                    "no serving certificate from the cluster CA: serving a self-signed one, which the API server \
                     refuses (kubectl logs/exec/attach/port-forward will fail for this node's pods)"
                );
                return ServingIdentity::SelfSigned(names);
            }
        }
    }
}

/// [`start_for_node`], but a node whose log port cannot be served (e.g. taken
/// by another node daemon on the same address) keeps running without logs,
/// saying so loudly.
pub async fn start_or_warn(
    kubeconfig: &Path,
    client: kube::Client,
    node_name: &str,
    node_ip: Option<&str>,
    state_dir: &Path,
    port: u16,
    cri: Option<crate::cri::Cri>,
) -> Option<LogServer> {
    match start_for_node(kubeconfig, client, node_name, node_ip, state_dir, port, cri).await {
        Ok(server) => Some(server),
        Err(err) => {
            tracing::error!(%err, "container logs are NOT served on this node (kubectl logs will fail for its pods)");
            None
        }
    }
}

/// Report `port` in this Node's `status.daemonEndpoints.kubeletEndpoint`,
/// and again whenever the Node loses it (re-registered); runs forever.
pub async fn advertise_port(client: kube::Client, node_name: String, port: u16) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        let wait = match nodes.get_opt(&node_name).await {
            Ok(Some(node)) => {
                let current = node
                    .status
                    .as_ref()
                    .and_then(|s| s.daemon_endpoints.as_ref())
                    .and_then(|d| d.kubelet_endpoint.as_ref())
                    .map(|e| e.port);
                if current == Some(i32::from(port)) {
                    Duration::from_secs(30)
                } else {
                    let patch = serde_json::json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
                    match nodes
                        .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(port, "reported the log port in the Node status");
                            Duration::from_secs(30)
                        }
                        Err(err) => {
                            tracing::warn!(%err, "reporting the log port failed (retrying)");
                            Duration::from_secs(1)
                        }
                    }
                }
            }
            // Not registered yet.
            Ok(None) => Duration::from_secs(1),
            Err(err) => {
                tracing::warn!(%err, "reading the Node failed (retrying)");
                Duration::from_secs(2)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A plain-text error answer (the API server turns it into a `Status`).
fn fail(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Options of one log request, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Read the previous attempt of the container.
    pub previous: bool,
    /// Prefix each line with its RFC3339Nano time.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parse the query parameters; `Err` names the bad one.
    pub fn parse(q: &HashMap<String, String>, now: Timestamp) -> Result<LogOptions, String> {
        let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("true" | "1"));
        let int = |k: &str| -> Result<Option<i64>, String> {
            match q.get(k).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("{k}: invalid integer {v:?}")),
            }
        };
        let mut since = None;
        if let Some(s) = int("sinceSeconds")? {
            since = Some(now - k8s_openapi::jiff::SignedDuration::from_secs(s.max(0)));
        }
        if let Some(t) = q.get("sinceTime").filter(|v| !v.is_empty()) {
            since = Some(t.parse::<Timestamp>().map_err(|e| format!("sinceTime: {e}"))?);
        }
        Ok(LogOptions {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            tail_lines: int("tailLines")?.map(|n| n.max(0) as usize),
            since,
            limit_bytes: int("limitBytes")?.filter(|n| *n > 0).map(|n| n as u64),
        })
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq)]
pub struct CriLine<'a> {
    /// The RFC3339Nano timestamp, as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// `P`: the text continues on the next line.
    pub partial: bool,
    /// The text (without the newline).
    pub text: &'a [u8],
}

/// Parse `<time> <stream> <tags> <text>` (without the trailing newline).
pub fn parse_cri_line(line: &[u8]) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tags = parts.next()?;
    let text = parts.next().unwrap_or_default();
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    Some(CriLine {
        time,
        stream,
        partial,
        text,
    })
}

/// A complete log message: joined partial lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Time of its first fragment.
    pub time: String,
    /// Text without the newline.
    pub text: Vec<u8>,
}

impl Message {
    /// The bytes sent to the client.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 40);
        if timestamps {
            out.extend_from_slice(self.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.text);
        out.push(b'\n');
        out
    }

    fn at_or_after(&self, since: Option<Timestamp>) -> bool {
        match (since, self.time.parse::<Timestamp>()) {
            (Some(since), Ok(t)) => t >= since,
            _ => true,
        }
    }
}

/// Turns bytes of a CRI log file into messages, across reads.
#[derive(Debug, Default)]
pub struct Assembler {
    pending_line: Vec<u8>,
    partial: Option<Message>,
}

impl Assembler {
    /// Feed newly read bytes; returns the messages completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        self.pending_line.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.pending_line[start..].iter().position(|b| *b == b'\n') {
            let line = &self.pending_line[start..start + pos];
            start += pos + 1;
            match parse_cri_line(line) {
                Some(l) => {
                    let msg = self.partial.get_or_insert_with(|| Message {
                        time: l.time.to_string(),
                        text: Vec::new(),
                    });
                    msg.text.extend_from_slice(l.text);
                    if !l.partial {
                        out.extend(self.partial.take());
                    }
                }
                // Not CRI format: pass the line through as it is.
                None => out.push(Message {
                    time: String::new(),
                    text: line.to_vec(),
                }),
            }
        }
        self.pending_line.drain(..start);
        out
    }
}

/// The log files of a container, by attempt (ascending).
fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_suffix(".log")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

fn container_names(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten().map(|c| c.name.clone());
    let eph = spec.ephemeral_containers.iter().flatten().map(|c| c.name.clone());
    spec.containers
        .iter()
        .map(|c| c.name.clone())
        .chain(init)
        .chain(eph)
        .collect()
}

/// The container's status in `pod`, if reported.
fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    [
        &status.container_statuses,
        &status.init_container_statuses,
        &status.ephemeral_container_statuses,
    ]
    .into_iter()
    .flatten()
    .flatten()
    .find(|s| s.name == container)
}

async fn container_logs(
    State(ctx): State<Arc<Ctx>>,
    UrlPath((namespace, pod_name, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    use tracing::Instrument;
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    let span = tracing::info_span!("container_logs", pod = %format!("{namespace}/{pod_name}"), container, client = %peer.common_name);
    serve_logs(ctx, namespace, pod_name, container, query, peer)
        .instrument(span)
        .await
}

async fn serve_logs(
    ctx: Arc<Ctx>,
    namespace: String,
    pod_name: String,
    container: String,
    query: HashMap<String, String>,
    peer: Peer,
) -> Response {
    if !peer.may_read_logs() {
        tracing::info!(code = 403, "log request refused");
        return fail(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user={}, verb=get, resource=nodes, subresource=proxy)",
                peer.common_name
            ),
        );
    }
    let options = match LogOptions::parse(&query, Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod = match pods.get_opt(&pod_name).await {
        Ok(Some(p)) if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(ctx.node_name.as_str()) => p,
        Ok(_) => {
            return fail(
                StatusCode::NOT_FOUND,
                format!("pod \"{namespace}/{pod_name}\" not found on node {:?}", ctx.node_name),
            )
        }
        Err(err) => {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading pod \"{namespace}/{pod_name}\": {err}"),
            )
        }
    };
    if !container_names(&pod).contains(&container) {
        return fail(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod \"{namespace}/{pod_name}\""),
        );
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = crate::pod_spec::log_directory(&crate::volumes::pod_dir(&ctx.state_dir, &uid)).join(&container);
    let found = attempts(&dir);
    let chosen = if options.previous {
        match found.len() {
            n if n >= 2 => found[n - 2].clone(),
            _ => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod_name:?} not found"),
                )
            }
        }
    } else {
        match found.last() {
            Some(f) => f.clone(),
            None => {
                let reason = container_status(&pod, &container)
                    .and_then(|s| s.state.as_ref())
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.clone())
                    .unwrap_or_else(|| "ContainerCreating".into());
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!("container {container:?} in pod {pod_name:?} is waiting to start: {reason}"),
                );
            }
        }
    };
    // A previous attempt never grows: following it just reads it.
    let follow = options.follow && !options.previous;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let stream_ctx = StreamCtx {
        pods,
        pod_name: pod_name.clone(),
        container: container.clone(),
        uid,
        dir,
        attempt: chosen.0,
    };
    tokio::spawn(stream_log(chosen.1, options, follow, stream_ctx, tx));
    tracing::info!(attempt = chosen.0, follow, "streaming container log");
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(http::header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// What a follower checks to know when to stop.
struct StreamCtx {
    pods: Api<Pod>,
    pod_name: String,
    container: String,
    uid: String,
    dir: PathBuf,
    attempt: u32,
}

impl StreamCtx {
    /// Whether more lines may still come to this attempt's file.
    async fn may_grow(&self) -> bool {
        if attempts(&self.dir).last().is_none_or(|(n, _)| *n > self.attempt) {
            return false;
        }
        match self.pods.get_opt(&self.pod_name).await {
            Ok(Some(pod)) if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                let status = container_status(&pod, &self.container);
                let terminated = status
                    .and_then(|s| s.state.as_ref())
                    .is_some_and(|s| s.terminated.is_some());
                let this_attempt = status.is_none_or(|s| s.restart_count as u32 == self.attempt);
                !(terminated && this_attempt)
            }
            Ok(_) => false,
            // The API is briefly unreachable: keep following.
            Err(_) => true,
        }
    }
}

/// Send `path`'s messages per `options`, then (with `follow`) new ones as they come.
async fn stream_log(
    path: PathBuf,
    options: LogOptions,
    follow: bool,
    ctx: StreamCtx,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(err) => {
            let _ = tx.send(Err(err)).await;
            return;
        }
    };
    let mut assembler = Assembler::default();
    let mut budget = options.limit_bytes.unwrap_or(u64::MAX);
    // Everything written so far, then the tail of it.
    let mut existing = Vec::new();
    if let Err(err) = file.read_to_end(&mut existing).await {
        let _ = tx.send(Err(err)).await;
        return;
    }
    let mut offset = existing.len() as u64;
    let mut messages: Vec<Message> = assembler
        .feed(&existing)
        .into_iter()
        .filter(|m| m.at_or_after(options.since))
        .collect();
    drop(existing);
    if let Some(n) = options.tail_lines {
        let skip = messages.len().saturating_sub(n);
        messages.drain(..skip);
    }
    if !send(&tx, &messages, options.timestamps, &mut budget).await || !follow {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_check = tokio::time::Instant::now();
    let mut grows = ctx.may_grow().await;
    loop {
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
        };
        if n > 0 {
            offset += n as u64;
            let msgs: Vec<Message> = assembler
                .feed(&buf[..n])
                .into_iter()
                .filter(|m| m.at_or_after(options.since))
                .collect();
            if !send(&tx, &msgs, options.timestamps, &mut budget).await {
                return;
            }
            continue;
        }
        if !grows {
            return;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        if last_check.elapsed() >= FOLLOW_LIVENESS {
            last_check = tokio::time::Instant::now();
            // One more read after the container stopped picks up its last lines.
            grows = ctx.may_grow().await;
        }
        // The file may have been truncated or replaced; start over if it shrank.
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            if meta.len() < offset {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    if f.seek(std::io::SeekFrom::Start(0)).await.is_ok() {
                        file = f;
                        offset = 0;
                        assembler = Assembler::default();
                    }
                }
            }
        }
    }
}

/// Send messages within the byte budget; `false` when done (client gone or budget spent).
async fn send(
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    messages: &[Message],
    timestamps: bool,
    budget: &mut u64,
) -> bool {
    if messages.is_empty() {
        return *budget > 0;
    }
    let mut chunk = Vec::new();
    for m in messages {
        chunk.extend_from_slice(&m.render(timestamps));
    }
    let exhausted = chunk.len() as u64 >= *budget;
    chunk.truncate((*budget).min(chunk.len() as u64) as usize);
    *budget -= chunk.len() as u64;
    tx.send(Ok(Bytes::from(chunk))).await.is_ok() && !exhausted
}

/// SANs for the serving certificate: the node name and its IPs (the
/// kubelet's: hostname and node addresses).
pub fn serving_names(node_name: &str, ips: &[IpAddr]) -> Vec<String> {
    let mut names = vec![node_name.to_string()];
    names.extend(ips.iter().map(IpAddr::to_string));
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_are_parsed() {
        let l = parse_cri_line(b"2024-05-01T10:00:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(
            (l.time, l.stream, l.partial, l.text),
            ("2024-05-01T10:00:00.123456789Z", "stdout", false, &b"hello world"[..])
        );
        let p = parse_cri_line(b"2024-05-01T10:00:00Z stderr P part").unwrap();
        assert!(p.partial);
        assert_eq!(parse_cri_line(b"2024-05-01T10:00:00Z stdout F ").unwrap().text, b"");
        assert!(parse_cri_line(b"garbage").is_none());
    }

    #[test]
    fn partial_lines_join_and_split_reads_are_buffered() {
        let mut a = Assembler::default();
        let first = a.feed(b"2024-05-01T10:00:00Z stdout P hel");
        assert!(first.is_empty(), "no newline yet");
        let msgs = a.feed(b"lo \n2024-05-01T10:00:01Z stdout F world\n2024-05-01T10:00:02Z stderr F second\n");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].text, b"hello world");
        assert_eq!(msgs[0].time, "2024-05-01T10:00:00Z");
        assert_eq!(msgs[1].render(true), b"2024-05-01T10:00:02Z second\n");
        assert_eq!(msgs[1].render(false), b"second\n");
    }

    #[test]
    fn options_parse_and_since_filters() {
        let now: Timestamp = "2024-05-01T10:00:10Z".parse().unwrap();
        let q: HashMap<String, String> = [
            ("follow", "true"),
            ("tailLines", "3"),
            ("sinceSeconds", "5"),
            ("limitBytes", "10"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = LogOptions::parse(&q, now).unwrap();
        assert!(o.follow && !o.previous && !o.timestamps);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.limit_bytes, Some(10));
        let old = Message {
            time: "2024-05-01T10:00:04Z".into(),
            text: vec![],
        };
        let new = Message {
            time: "2024-05-01T10:00:05Z".into(),
            text: vec![],
        };
        assert!(!old.at_or_after(o.since) && new.at_or_after(o.since));
        let bad: HashMap<String, String> = [("tailLines".to_string(), "x".to_string())].into();
        assert!(LogOptions::parse(&bad, now).is_err());
    }

    #[test]
    fn attempts_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["0.log", "10.log", "2.log", "junk.txt"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let found: Vec<u32> = attempts(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, vec![0, 2, 10]);
    }
}
