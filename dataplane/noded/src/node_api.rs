//! The kubelet's monitoring endpoints on the node's HTTPS port (beside
//! [`crate::log_server`]'s logs and streaming):
//! - `GET /metrics/resource`: [`crate::resource_metrics`] (what metrics-server scrapes);
//! - `GET /stats/summary`: [`crate::stats::summary`] (`statsapi.Summary` JSON);
//! - `GET /metrics`: [`crate::kubelet_metrics`], followed by the data plane's
//!   `sluice_datapath_*` series ([`crate::network::metrics`]) when it is on;
//! - `GET /dataplane/flows`: the recent flow events ([`crate::network::flows`])
//!   as JSON lines, `?follow=true` to keep streaming new ones, `limit`, and
//!   the filters `namespace`, `service`, `pod`, `verdict`
//!   ([`sluice_datapath::flow_filter`]) (authorized as the kubelet
//!   authorizes paths it has no name for: `nodes/proxy`).
//!
//! **Who may read: the kubelet's webhook authorization.** The TLS layer has
//! already verified the client certificate against the cluster CA; its CN is
//! the user and its O values the groups (plus `system:authenticated`). noded
//! then asks the API server with a `SubjectAccessReview` whether that user may
//! `get` `nodes` with subresource `metrics` (`/metrics*`) or `stats`
//! (`/stats*`) on this node's name, and answers `403 Forbidden (user=...,
//! verb=get, resource=nodes, subresource=...)` otherwise, or `500
//! Authorization error (...)` when the API server cannot answer. Answers
//! are cached as the kubelet caches them (allowed 5 minutes, denied 30
//! seconds). Cluster admins (`system:masters`), the API server's kubelet
//! client and anyone bound to `system:kubelet-api-admin` may read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use tracing::Instrument;

use crate::log_server::Peer;
use crate::stats::Collector;
use sluice_datapath::flow_filter::{FlowFilter, Unnamed};

/// How long an allowed answer is reused (the kubelet's `cacheAuthorizedTTL`).
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied answer is reused (the kubelet's `cacheUnauthorizedTTL`).
const DENIED_TTL: Duration = Duration::from_secs(30);

type CacheKey = (String, Vec<String>, &'static str);

/// What the endpoints need.
pub struct NodeApi {
    client: kube::Client,
    node_name: String,
    collector: Collector,
    answers: Mutex<HashMap<CacheKey, (bool, Instant)>>,
}

impl NodeApi {
    /// The endpoints of node `node_name`, measuring through `collector` and
    /// authorizing through the API server of `client`.
    pub fn new(client: kube::Client, node_name: String, collector: Collector) -> NodeApi {
        NodeApi {
            client,
            node_name,
            collector,
            answers: Mutex::default(),
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<bool> {
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (allowed, at) = answers.get(key)?;
        let ttl = if *allowed { ALLOWED_TTL } else { DENIED_TTL };
        (at.elapsed() < ttl).then_some(*allowed)
    }

    /// Whether `peer` may `get` `nodes/<subresource>` of this node, per the API server.
    async fn allowed(&self, peer: &Peer, subresource: &'static str) -> Result<bool, kube::Error> {
        let mut groups = peer.organizations.clone();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        let key = (peer.common_name.clone(), groups.clone(), subresource);
        if let Some(allowed) = self.cached(&key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(peer.common_name.clone()),
                groups: Some(groups),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("get".into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.into()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|_, (allowed, at)| at.elapsed() < if *allowed { ALLOWED_TTL } else { DENIED_TTL });
        answers.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }

    /// `None` when `peer` may read `subresource`, else the refusal.
    async fn authorize(&self, peer: Peer, subresource: &'static str) -> Option<Response> {
        let attrs = format!(
            "(user={}, verb=get, resource=nodes, subresource={subresource})",
            peer.common_name
        );
        match self.allowed(&peer, subresource).await {
            Ok(true) => None,
            Ok(false) => {
                tracing::info!(code = 403, user = %peer.common_name, "request refused");
                Some(text(StatusCode::FORBIDDEN, format!("Forbidden {attrs}")))
            }
            Err(err) => {
                tracing::warn!(%err, user = %peer.common_name, "SubjectAccessReview failed");
                Some(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Authorization error {attrs}"),
                ))
            }
        }
    }
}

fn text(code: StatusCode, message: String) -> Response {
    (
        code,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The verified client of a request (set by the TLS layer).
fn peer_of(req: &Request) -> Peer {
    req.extensions().get::<Peer>().cloned().unwrap_or_default()
}

/// The routes, to merge into the node's HTTPS router.
pub fn routes(api: Arc<NodeApi>) -> Router {
    Router::new()
        .route("/metrics", get(kubelet_metrics))
        .route("/metrics/resource", get(resource_metrics))
        .route("/stats/summary", get(stats_summary))
        .route("/dataplane/flows", get(dataplane_flows))
        .with_state(api)
}

async fn kubelet_metrics(State(api): State<Arc<NodeApi>>, req: Request) -> Response {
    let span = tracing::debug_span!("metrics");
    let peer = peer_of(&req);
    async move {
        if let Some(refused) = api.authorize(peer, "metrics").await {
            return refused;
        }
        let mut body = crate::kubelet_metrics::metrics().encode_without_eof();
        if let Some(text) = datapath_series().await {
            body.push_str(&text);
        }
        body.push_str("# EOF\n");
        (
            [(http::header::CONTENT_TYPE, crate::kubelet_metrics::CONTENT_TYPE)],
            body,
        )
            .into_response()
    }
    .instrument(span)
    .await
}

async fn resource_metrics(State(api): State<Arc<NodeApi>>, req: Request) -> Response {
    let span = tracing::debug_span!("metrics_resource");
    let peer = peer_of(&req);
    async move {
        if let Some(refused) = api.authorize(peer, "metrics").await {
            return refused;
        }
        let stats = api.collector.collect().await;
        (
            [(http::header::CONTENT_TYPE, crate::resource_metrics::CONTENT_TYPE)],
            crate::resource_metrics::render(&stats),
        )
            .into_response()
    }
    .instrument(span)
    .await
}

async fn stats_summary(State(api): State<Arc<NodeApi>>, req: Request) -> Response {
    let span = tracing::debug_span!("stats_summary");
    let peer = peer_of(&req);
    async move {
        if let Some(refused) = api.authorize(peer, "stats").await {
            return refused;
        }
        let stats = api.collector.collect().await;
        let body = crate::stats::summary(&api.node_name, &stats).to_string();
        ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
    }
    .instrument(span)
    .await
}

/// The data plane's series, read from its pinned maps (off the async threads:
/// a large conntrack table takes a while to walk). `None` when it is off.
async fn datapath_series() -> Option<String> {
    let observed = crate::network::observed();
    let pin_root = observed.pin_root.get()?.clone();
    let names = observed.names.get();
    let read = tokio::task::spawn_blocking(move || {
        sluice_datapath::inspect::Inspector::open(&pin_root)
            .and_then(|i| i.snapshot())
            .map(|snapshot| crate::network::metrics::render(&snapshot, &names))
    })
    .await;
    match read {
        Ok(Ok(text)) => Some(text),
        Ok(Err(err)) => {
            tracing::warn!(%err, "data plane metrics not read");
            None
        }
        Err(err) => {
            tracing::warn!(%err, "data plane metrics not read");
            None
        }
    }
}

/// The query of `/dataplane/flows`.
#[derive(Debug, Default, PartialEq, Eq)]
struct FlowsQuery {
    /// Keep streaming new flows.
    follow: bool,
    /// At most this many of the kept flows that pass the filter (the newest), before following.
    limit: Option<usize>,
    /// Which flows (`namespace`, `service`, `pod`, `verdict`).
    filter: FlowFilter,
}

impl FlowsQuery {
    fn parse(query: Option<&str>) -> Result<FlowsQuery, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or_default()).map_err(|e| e.to_string())?;
        let mut out = FlowsQuery::default();
        for (k, v) in pairs {
            match k.as_str() {
                // Go's ParseBool, as Kubernetes reads `follow`; bare `follow` is true.
                "follow" => {
                    out.follow = v.is_empty()
                        || sluice_kube::strconv::parse_bool(&v).ok_or_else(|| format!("invalid follow {v:?}"))?
                }
                "limit" => out.limit = Some(v.parse().map_err(|_| format!("invalid limit {v:?}"))?),
                other => {
                    if !out.filter.take_param(other, &v)? {
                        return Err(format!(
                            "unknown parameter {other:?}: follow, limit, namespace, service, pod or verdict"
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Whether the node sends `flow` (a pod it cannot name may be the one asked for).
    fn wants(&self, flow: &serde_json::Value) -> bool {
        sluice_datapath::flow_filter::matches(flow, &self.filter, Unnamed::MayMatch)
    }
}

async fn dataplane_flows(State(api): State<Arc<NodeApi>>, req: Request) -> Response {
    let query = match FlowsQuery::parse(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let span = tracing::debug_span!("dataplane_flows", follow = query.follow);
    let peer = peer_of(&req);
    async move {
        if let Some(refused) = api.authorize(peer, "proxy").await {
            return refused;
        }
        if crate::network::observed().pin_root.get().is_none() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the eBPF data plane is off on this node".into(),
            );
        }
        let (mut kept, rx) = crate::network::observed().flows.snapshot_and_follow();
        let last = kept.last().map_or(0, |e| e.seq);
        kept.retain(|e| query.wants(&e.json));
        let skip = query.limit.map_or(0, |l| kept.len().saturating_sub(l));
        let mut head = String::new();
        for e in kept.into_iter().skip(skip) {
            head.push_str(&e.json.to_string());
            head.push('\n');
        }
        let content_type = [(http::header::CONTENT_TYPE, "application/jsonl")];
        if !query.follow {
            return (content_type, head).into_response();
        }
        let first = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes::Bytes::from(head)) });
        let query = Arc::new(query);
        let rest = futures::stream::unfold(rx, move |mut rx| {
            let query = query.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.seq <= last || !query.wants(&e.json) => continue,
                        Ok(e) => {
                            let line = format!("{}\n", e.json);
                            return Some((Ok(bytes::Bytes::from(line)), rx));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(lost = n, "a flow follower fell behind");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        use futures::StreamExt;
        (content_type, axum::body::Body::from_stream(first.chain(rest))).into_response()
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flows_query_reads_follow_limit_and_the_filter() {
        assert_eq!(FlowsQuery::parse(None), Ok(FlowsQuery::default()));
        for follow in ["follow", "follow=true", "follow=True", "follow=1", "follow=T"] {
            let q = FlowsQuery::parse(Some(&format!("{follow}&limit=20"))).unwrap();
            assert!(q.follow, "{follow}");
            assert_eq!(q.limit, Some(20));
        }
        assert!(!FlowsQuery::parse(Some("follow=false")).unwrap().follow);
        assert!(FlowsQuery::parse(Some("follow=yes")).is_err());
        assert!(FlowsQuery::parse(Some("limit=many")).is_err());
        let q = FlowsQuery::parse(Some("verdict=rejected&service=shop%2Fweb")).unwrap();
        assert_eq!(q.filter.verdict, Some(sluice_datapath::flows::FlowVerdict::Rejected));
        assert_eq!(q.filter.service.as_deref(), Some("shop/web"));
        assert!(FlowsQuery::parse(Some("verdict=lost"))
            .unwrap_err()
            .contains("forwarded"));
        assert!(FlowsQuery::parse(Some("node=n1"))
            .unwrap_err()
            .contains("unknown parameter"));
    }
}
