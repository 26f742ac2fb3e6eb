//! The API server's Prometheus metrics, with Kubernetes' names and labels:
//! - `apiserver_request_total` and `apiserver_request_duration_seconds`, by
//!   verb (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`,
//!   `DELETECOLLECTION`, `CONNECT`), group, version, resource, subresource,
//!   scope and (for the total) code;
//! - `apiserver_longrunning_requests`: watches and connections open now;
//! - `etcd_request_duration_seconds`, by operation and type (the resource a
//!   key belongs to);
//! - `apiserver_cache_list_total`, `apiserver_cache_list_fetched_objects_total`
//!   and `apiserver_cache_list_returned_objects_total`: lists the watch cache
//!   served, by resource prefix (`/pods`, `/deployments.apps`).
//!
//! Every layer records into the one process-wide set ([`metrics`]); the HTTP
//! layer serves it at `/metrics` (`http::metrics`), to users RBAC allows to
//! `get` that non-resource URL. Built on `prometheus-client`, in the
//! OpenMetrics text format Prometheus scrapes.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Kubernetes' buckets for `apiserver_request_duration_seconds` (seconds).
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];

/// Kubernetes' buckets for `etcd_request_duration_seconds` (seconds).
const ETCD_BUCKETS: [f64; 19] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
];

/// What a request was, as Kubernetes labels it.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, ... (Kubernetes' reported verb).
    pub verb: String,
    /// `true` for `?dryRun=All`.
    pub dry_run: String,
    /// API group (`""` for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (empty for non-resource URLs).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// `resource` (one object), `namespace`, `cluster`, or empty.
    pub scope: String,
    /// Always `apiserver`.
    pub component: String,
}

/// [`RequestLabels`] plus the response code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestCodeLabels {
    /// The request.
    #[prometheus(flatten)]
    pub request: RequestLabels,
    /// HTTP status code.
    pub code: String,
}

/// An etcd request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EtcdLabels {
    /// `get`, `list`, `create`, `update`, `delete`, `watch`, ...
    pub operation: String,
    /// The resource its key belongs to (`pods`, `deployments.apps`, ...).
    pub r#type: String,
}

/// A list served from the watch cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheListLabels {
    /// The index used (always empty: lists scan the resource's objects).
    pub index: String,
    /// `/` and the resource (`/pods`, `/deployments.apps`).
    pub resource_prefix: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The API server's metrics.
pub struct Metrics {
    registry: Registry,
    /// `apiserver_request_total`.
    pub requests: Family<RequestCodeLabels, Counter>,
    /// `apiserver_request_duration_seconds`.
    pub request_duration: HistogramFamily<RequestLabels>,
    /// `apiserver_longrunning_requests`.
    pub longrunning: Family<RequestLabels, Gauge>,
    /// `etcd_request_duration_seconds`.
    pub etcd_duration: HistogramFamily<EtcdLabels>,
    /// `apiserver_cache_list_total`.
    pub cache_lists: Family<CacheListLabels, Counter>,
    /// `apiserver_cache_list_fetched_objects_total`.
    pub cache_list_fetched: Family<CacheListLabels, Counter>,
    /// `apiserver_cache_list_returned_objects_total`.
    pub cache_list_returned: Family<CacheListLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestCodeLabels, Counter>::default();
        let request_duration: HistogramFamily<RequestLabels> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        let longrunning = Family::<RequestLabels, Gauge>::default();
        let etcd_duration: HistogramFamily<EtcdLabels> = Family::new_with_constructor(|| Histogram::new(ETCD_BUCKETS));
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            request_duration.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component",
            longrunning.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type",
            etcd_duration.clone(),
        );
        let cache_lists = Family::<CacheListLabels, Counter>::default();
        let cache_list_fetched = Family::<CacheListLabels, Counter>::default();
        let cache_list_returned = Family::<CacheListLabels, Counter>::default();
        registry.register(
            "apiserver_cache_list",
            "Number of LIST requests served from watch cache",
            cache_lists.clone(),
        );
        registry.register(
            "apiserver_cache_list_fetched_objects",
            "Number of objects read from watch cache in the course of serving a LIST request",
            cache_list_fetched.clone(),
        );
        registry.register(
            "apiserver_cache_list_returned_objects",
            "Number of objects returned for a LIST request from watch cache",
            cache_list_returned.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            longrunning,
            etcd_duration,
            cache_lists,
            cache_list_fetched,
            cache_list_returned,
        }
    }

    /// The text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The resource an etcd key belongs to: `/registry/core/pods/ns/name` →
/// `pods`, `/registry/apps/deployments/...` → `deployments.apps`.
fn key_type(key: &str) -> String {
    let rest = key.strip_prefix("/registry/").unwrap_or(key);
    let mut segs = rest.split('/');
    match (segs.next(), segs.next()) {
        (Some("core"), Some(resource)) if !resource.is_empty() => resource.to_string(),
        (Some(group), Some(resource)) if !resource.is_empty() => format!("{resource}.{group}"),
        (Some(first), _) => first.to_string(),
        (None, _) => String::new(),
    }
}

/// Count a list the watch cache served: `fetched` objects looked at, `returned` in the answer.
pub fn cache_list(prefix: &str, fetched: usize, returned: usize) {
    let labels = CacheListLabels {
        index: String::new(),
        resource_prefix: format!("/{}", key_type(prefix)),
    };
    let m = metrics();
    m.cache_lists.get_or_create(&labels).inc();
    m.cache_list_fetched.get_or_create(&labels).inc_by(fetched as u64);
    m.cache_list_returned.get_or_create(&labels).inc_by(returned as u64);
}

/// Times one etcd request; observed when dropped.
#[derive(Debug)]
pub struct EtcdTimer {
    labels: EtcdLabels,
    start: Instant,
}

impl Drop for EtcdTimer {
    fn drop(&mut self) {
        metrics()
            .etcd_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// Start timing the etcd `operation` on `key`.
pub fn etcd_timer(operation: &str, key: &str) -> EtcdTimer {
    EtcdTimer {
        labels: EtcdLabels {
            operation: operation.to_string(),
            r#type: key_type(key),
        },
        start: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_kubernetes_names_and_labels() {
        let m = Metrics::new();
        let request = RequestLabels {
            verb: "LIST".into(),
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            scope: "namespace".into(),
            component: "apiserver".into(),
            ..RequestLabels::default()
        };
        m.requests
            .get_or_create(&RequestCodeLabels {
                request: request.clone(),
                code: "200".into(),
            })
            .inc();
        m.request_duration.get_or_create(&request).observe(0.03);
        m.etcd_duration
            .get_or_create(&EtcdLabels {
                operation: "list".into(),
                r#type: key_type("/registry/apps/deployments/default/web"),
            })
            .observe(0.001);
        let text = m.encode();
        assert!(
            text.contains(r#"apiserver_request_total{verb="LIST",dry_run="",group="apps",version="v1",resource="deployments",subresource="",scope="namespace",component="apiserver",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"apiserver_request_duration_seconds_bucket{le="0.05",verb="LIST""#),
            "{text}"
        );
        assert!(
            text.contains(r#"etcd_request_duration_seconds_count{operation="list",type="deployments.apps"} 1"#),
            "{text}"
        );
    }
}
