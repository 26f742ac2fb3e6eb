//! The `metrics.k8s.io/v1beta1` API over HTTPS, as an aggregated API server.
//!
//! - **Authentication** as Kubernetes' request-header authenticator: the
//!   caller must present a client certificate signed by the request-header
//!   CA (`--requestheader-client-ca-file`) whose CN is one of
//!   `--requestheader-allowed-names` (`front-proxy-client`: the API
//!   server's aggregator); the user is then `X-Remote-User`, its groups
//!   every `X-Remote-Group`, its extra `X-Remote-Extra-*`. Anything else is
//!   401. `/healthz`, `/livez` and `/readyz` need nothing.
//! - **Authorization** as Kubernetes' delegated authorizer: a
//!   `SubjectAccessReview` to the API server for the request's attributes
//!   (`get`/`list` on `nodes`/`pods` in group `metrics.k8s.io`, namespace and
//!   name; discovery as a non-resource `get` of the path), answers cached
//!   10 s. Denied is 403 with Kubernetes' message.
//! - **Resources**: NodeMetrics (`nodes`, cluster-scoped) and PodMetrics
//!   (`pods`, namespaced), `get` and `list` only (no watch, as
//!   metrics-server), lists with `labelSelector` and `fieldSelector`
//!   (`metadata.name`, `metadata.namespace`), and the `APIResourceList`
//!   for discovery.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::selector::{FieldSelector, LabelSelector};
use crate::storage::{cpu_quantity, memory_quantity, PodUsage, Usage};

/// The group served.
pub const GROUP: &str = "metrics.k8s.io";
/// The version served.
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// How long a SubjectAccessReview answer is reused.
const AUTHZ_TTL: Duration = Duration::from_secs(10);

/// A node's metrics as served.
#[derive(Debug, Clone)]
pub struct NodeMetric {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Usage.
    pub usage: Usage,
}

/// A pod's metrics as served.
#[derive(Debug, Clone)]
pub struct PodMetric {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// Usage.
    pub usage: PodUsage,
}

/// What the last scrape cycle produced.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// By name.
    pub nodes: Vec<NodeMetric>,
    /// By namespace and name.
    pub pods: Vec<PodMetric>,
}

/// Who sent a request, from the request headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// `X-Remote-User`.
    pub name: String,
    /// `X-Remote-Group`s.
    pub groups: Vec<String>,
    /// `X-Remote-Uid`.
    pub uid: Option<String>,
    /// `X-Remote-Extra-<key>`s.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the request asks, for authorization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A resource request.
    Resource {
        /// get or list.
        verb: String,
        /// nodes or pods.
        resource: String,
        /// Namespace of a namespaced request.
        namespace: Option<String>,
        /// Name of a get.
        name: Option<String>,
    },
    /// A non-resource request (discovery).
    NonResource {
        /// The path.
        path: String,
    },
}

/// Answers a SubjectAccessReview question (the API server, or a test double).
pub trait Authorizer: Send + Sync {
    /// Whether `user` may do `attrs`.
    fn allowed<'a>(
        &'a self,
        user: &'a User,
        attrs: &'a Attributes,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>>;
}

/// Asks the API server with SubjectAccessReviews, caching answers.
pub struct Delegated {
    client: kube::Client,
    cache: Mutex<HashMap<(User, Attributes), (bool, Instant)>>,
}

impl Delegated {
    /// Over `client`.
    pub fn new(client: kube::Client) -> Self {
        Delegated {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Authorizer for Delegated {
    fn allowed<'a>(
        &'a self,
        user: &'a User,
        attrs: &'a Attributes,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let key = (user.clone(), attrs.clone());
            if let Some((allowed, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
                if at.elapsed() < AUTHZ_TTL {
                    return Ok(*allowed);
                }
            }
            let mut spec = SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: user.uid.clone(),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                ..Default::default()
            };
            match attrs {
                Attributes::Resource {
                    verb,
                    resource,
                    namespace,
                    name,
                } => {
                    spec.resource_attributes = Some(ResourceAttributes {
                        verb: Some(verb.clone()),
                        group: Some(GROUP.into()),
                        version: Some(VERSION.into()),
                        resource: Some(resource.clone()),
                        namespace: namespace.clone(),
                        name: name.clone(),
                        ..Default::default()
                    })
                }
                Attributes::NonResource { path } => {
                    spec.non_resource_attributes = Some(NonResourceAttributes {
                        verb: Some("get".into()),
                        path: Some(path.clone()),
                    })
                }
            }
            let sar = SubjectAccessReview {
                spec,
                ..Default::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = api
                .create(&PostParams::default(), &sar)
                .await
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
            let allowed = answer.status.is_some_and(|s| s.allowed && !s.denied.unwrap_or(false));
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() > 4096 {
                cache.retain(|_, (_, at)| at.elapsed() < AUTHZ_TTL);
            }
            cache.insert(key, (allowed, Instant::now()));
            Ok(allowed)
        })
    }
}

/// The server's state.
#[derive(Clone)]
pub struct AppState {
    /// The latest metrics.
    pub snapshot: Arc<RwLock<Snapshot>>,
    /// Who may read them.
    pub authorizer: Arc<dyn Authorizer>,
    /// CNs accepted as the front proxy (empty: any).
    pub allowed_names: Arc<Vec<String>>,
}

/// The CN of the verified front-proxy certificate of a connection, if any.
#[derive(Debug, Clone)]
pub struct ProxyCn(pub Option<String>);

fn status(code: StatusCode, reason: &str, message: String, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The user from the request headers, if a verified front proxy sent them.
pub fn user_from(headers: &HeaderMap, cn: Option<&str>, allowed: &[String]) -> Option<User> {
    let cn = cn?;
    if !allowed.is_empty() && !allowed.iter().any(|a| a == cn) {
        return None;
    }
    let name = headers.get("x-remote-user")?.to_str().ok()?.to_string();
    if name.is_empty() {
        return None;
    }
    let groups = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let uid = headers
        .get("x-remote-uid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let (Some(key), Ok(v)) = (k.as_str().strip_prefix("x-remote-extra-"), v.to_str()) {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    Some(User {
        name,
        groups,
        uid,
        extra,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path under `/apis/metrics.k8s.io/v1beta1` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The APIResourceList.
    Discovery,
    /// NodeMetrics, one or all.
    Nodes(Option<String>),
    /// PodMetrics: namespace (all when `None`), name.
    Pods(Option<String>, Option<String>),
}

/// Parse a request path.
pub fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/apis/metrics.k8s.io/v1beta1")?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    Some(match segs.as_slice() {
        [] => Target::Discovery,
        ["nodes"] => Target::Nodes(None),
        ["nodes", n] => Target::Nodes(Some(n.to_string())),
        ["pods"] => Target::Pods(None, None),
        ["namespaces", ns, "pods"] => Target::Pods(Some(ns.to_string()), None),
        ["namespaces", ns, "pods", n] => Target::Pods(Some(ns.to_string()), Some(n.to_string())),
        _ => return None,
    })
}

/// A window as Go prints a `time.Duration` (`15.012s`, `1m0.5s`).
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let (mins, rest) = (ms / 60_000, ms % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let s = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", s.trim_end_matches('0'))
    };
    if mins > 0 {
        let (h, m) = (mins / 60, mins % 60);
        if h > 0 {
            format!("{h}h{m}m{secs}")
        } else {
            format!("{m}m{secs}")
        }
    } else {
        secs
    }
}

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)})
}

/// A NodeMetrics object.
pub fn node_json(n: &NodeMetric, now_ms: i64) -> Value {
    json!({
        "kind": "NodeMetrics", "apiVersion": API_VERSION,
        "metadata": {"name": n.name, "creationTimestamp": rfc3339(now_ms), "labels": n.labels},
        "timestamp": rfc3339(n.usage.timestamp_ms),
        "window": go_duration(n.usage.window_ms),
        "usage": usage_json(&n.usage),
    })
}

/// A PodMetrics object.
pub fn pod_json(p: &PodMetric, now_ms: i64) -> Value {
    let containers: Vec<Value> = p
        .usage
        .containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": usage_json(u)}))
        .collect();
    json!({
        "kind": "PodMetrics", "apiVersion": API_VERSION,
        "metadata": {"name": p.name, "namespace": p.namespace, "creationTimestamp": rfc3339(now_ms), "labels": p.labels},
        "timestamp": rfc3339(p.usage.timestamp_ms),
        "window": go_duration(p.usage.window_ms),
        "containers": containers,
    })
}

fn discovery() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

fn forbidden(user: &str, attrs: &Attributes) -> Response {
    let message = match attrs {
        Attributes::Resource {
            verb,
            resource,
            namespace,
            name,
        } => {
            let what = match name {
                Some(n) => format!("{resource}.{GROUP} \"{n}\""),
                None => format!("{resource}.{GROUP}"),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            format!("{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{GROUP}\" {scope}")
        }
        Attributes::NonResource { path } => format!("forbidden: User \"{user}\" cannot get path \"{path}\""),
    };
    let details = match attrs {
        Attributes::Resource { resource, name, .. } => {
            let mut d = json!({"group": GROUP, "kind": resource});
            if let Some(n) = name {
                d["name"] = json!(n);
            }
            Some(d)
        }
        Attributes::NonResource { .. } => None,
    };
    status(StatusCode::FORBIDDEN, "Forbidden", message, details)
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind}.{GROUP} \"{name}\" not found"),
        Some(json!({"name": name, "group": GROUP, "kind": kind})),
    )
}

/// Every request.
pub async fn handle(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return (StatusCode::OK, "ok").into_response();
    }
    let cn = req.extensions().get::<ProxyCn>().and_then(|c| c.0.clone());
    let Some(user) = user_from(req.headers(), cn.as_deref(), &state.allowed_names) else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into(), None);
    };
    let Some(target) = target(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
            None,
        );
    };
    let attrs = match &target {
        Target::Discovery => Attributes::NonResource { path: path.clone() },
        Target::Nodes(name) => Attributes::Resource {
            verb: if name.is_some() { "get" } else { "list" }.into(),
            resource: "nodes".into(),
            namespace: None,
            name: name.clone(),
        },
        Target::Pods(ns, name) => Attributes::Resource {
            verb: if name.is_some() { "get" } else { "list" }.into(),
            resource: "pods".into(),
            namespace: ns.clone(),
            name: name.clone(),
        },
    };
    match state.authorizer.allowed(&user, &attrs).await {
        Ok(true) => {}
        Ok(false) => return forbidden(&user.name, &attrs),
        Err(e) => {
            tracing::warn!(user = %user.name, %path, error = %e, "authorization failed");
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("Internal error occurred: {e}"),
                None,
            );
        }
    }
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            None,
        );
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            None,
        );
    }
    let labels = match LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e, None),
    };
    let fields = match FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e, None),
    };
    let now = crate::scraper::now_ms();
    let snap = state.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
    match target {
        Target::Discovery => ok_json(discovery()),
        Target::Nodes(Some(name)) => match snap.nodes.iter().find(|n| n.name == name) {
            Some(n) => ok_json(node_json(n, now)),
            None => not_found("nodemetrics", &name),
        },
        Target::Nodes(None) => {
            let items: Vec<Value> = snap
                .nodes
                .iter()
                .filter(|n| labels.matches(&n.labels) && fields.matches("", &n.name))
                .map(|n| node_json(n, now))
                .collect();
            ok_json(json!({"kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}))
        }
        Target::Pods(Some(ns), Some(name)) => match snap.pods.iter().find(|p| p.namespace == ns && p.name == name) {
            Some(p) => ok_json(pod_json(p, now)),
            None => not_found("podmetrics", &name),
        },
        Target::Pods(ns, _) => {
            let items: Vec<Value> = snap
                .pods
                .iter()
                .filter(|p| ns.as_ref().is_none_or(|ns| &p.namespace == ns))
                .filter(|p| labels.matches(&p.labels) && fields.matches(&p.namespace, &p.name))
                .map(|p| pod_json(p, now))
                .collect();
            ok_json(json!({"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}))
        }
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// TLS: serve `cert_pem`/`key_pem`; ask for a client certificate and
/// verify it against `client_ca_pem` when one is sent.
pub fn tls_config(cert_pem: &str, key_pem: &str, client_ca_pem: &[u8]) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &client_ca_pem[..]) {
        roots.add(ca.context("parsing the request-header CA")?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no request-header CA certificate");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("serving key missing")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// Accept connections on `listener` forever.
pub async fn serve(listener: tokio::net::TcpListener, tls: rustls::ServerConfig, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cn = ProxyCn(
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| common_name(c.as_ref())),
            );
            let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(cn.clone());
                req.map(Body::new)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(target("/apis/metrics.k8s.io/v1beta1"), Some(Target::Discovery));
        assert_eq!(
            target("/apis/metrics.k8s.io/v1beta1/nodes/n1"),
            Some(Target::Nodes(Some("n1".into())))
        );
        assert_eq!(
            target("/apis/metrics.k8s.io/v1beta1/pods"),
            Some(Target::Pods(None, None))
        );
        assert_eq!(
            target("/apis/metrics.k8s.io/v1beta1/namespaces/top/pods/burner"),
            Some(Target::Pods(Some("top".into()), Some("burner".into())))
        );
        assert_eq!(target("/apis/metrics.k8s.io/v1beta1/services"), None);
        assert_eq!(target("/api/v1/pods"), None);
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(15_012), "15.012s");
        assert_eq!(go_duration(15_000), "15s");
        assert_eq!(go_duration(10_500), "10.5s");
        assert_eq!(go_duration(60_500), "1m0.5s");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn only_a_verified_front_proxy_names_the_user() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", "jane".parse().unwrap());
        h.append("x-remote-group", "devs".parse().unwrap());
        h.append("x-remote-group", "system:authenticated".parse().unwrap());
        h.append("x-remote-extra-scopes%2fa", "x".parse().unwrap());
        let allowed = vec!["front-proxy-client".to_string()];
        let u = user_from(&h, Some("front-proxy-client"), &allowed).unwrap();
        assert_eq!(u.name, "jane");
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
        assert_eq!(u.extra["scopes/a"], ["x"]);
        assert_eq!(user_from(&h, None, &allowed), None);
        assert_eq!(user_from(&h, Some("mallory"), &allowed), None);
        assert!(user_from(&h, Some("mallory"), &[]).is_some());
    }

    #[test]
    fn objects_have_the_metrics_api_shape() {
        let u = Usage {
            timestamp_ms: 1_700_000_015_000,
            window_ms: 15_012,
            cpu_nanocores: 250_000_000,
            memory_bytes: 524_288,
        };
        let p = PodMetric {
            namespace: "top".into(),
            name: "burner".into(),
            labels: [("app".to_string(), "burn".to_string())].into(),
            usage: PodUsage {
                timestamp_ms: u.timestamp_ms,
                window_ms: u.window_ms,
                containers: vec![("burn".into(), u)],
            },
        };
        let v = pod_json(&p, 1_700_000_020_000);
        assert_eq!(v["kind"], "PodMetrics");
        assert_eq!(v["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:35Z");
        assert_eq!(v["window"], "15.012s");
        assert_eq!(
            v["containers"][0],
            json!({"name": "burn", "usage": {"cpu": "250m", "memory": "512Ki"}})
        );
        assert_eq!(v["metadata"]["labels"]["app"], "burn");
        let forbidden = forbidden(
            "jane",
            &Attributes::Resource {
                verb: "list".into(),
                resource: "pods".into(),
                namespace: Some("top".into()),
                name: None,
            },
        );
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    }
}
