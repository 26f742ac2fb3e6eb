//! The kubelet's own Prometheus metrics (`/metrics` on the node's HTTPS
//! port), with Kubernetes' names, for what noded measures itself:
//! - `kubelet_pod_start_duration_seconds`: from the pod loop first seeing a
//!   pod to the first time its status says Running (pods already Running when
//!   first seen, e.g. adopted after a noded restart, are not counted), as the
//!   kubelet's `SyncPod` records it: when the worker posts that status, or
//!   the loop sees it (a status another noded posted);
//! - `kubelet_pleg_relist_duration_seconds` and
//!   `kubelet_pleg_relist_interval_seconds`: the runtime relist of
//!   [`crate::pleg`] each tick;
//! - `kubelet_running_pods` (pods with a ready sandbox) and
//!   `kubelet_running_containers` by `container_state` (`created`,
//!   `running`, `exited`, `unknown`), from the same relist;
//! - `kubelet_runtime_operations_duration_seconds`,
//!   `kubelet_runtime_operations_total` and
//!   `kubelet_runtime_operations_errors_total` by `operation_type`
//!   (`run_podsandbox`, `create_container`, `start_container`, ...): every
//!   CRI call of [`crate::cri`], timed as the kubelet's instrumented runtime
//!   service times them (where a pod's start goes: sandbox with CNI, create,
//!   start).
//!
//! One process-wide set ([`metrics`]), as the API server's `metrics`; built
//! on `prometheus-client`, served in the OpenMetrics text format.

use crate::lock;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cri::api;
use crate::pleg::Snapshot;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Kubernetes' buckets for `kubelet_pod_start_duration_seconds`.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0,
    600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Prometheus' default buckets (the kubelet's PLEG histograms use them).
const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The kubelet's buckets for `kubelet_runtime_operations_duration_seconds`
/// (exponential from 5 ms, factor 2.5, 14 buckets).
fn runtime_operation_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.5, 14)
}

/// The runtime-operation metrics' label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The kubelet's name of the CRI call (`run_podsandbox`, `create_container`, ...).
    pub operation_type: &'static str,
}

/// The kubelet's `operation_type` of a CRI method.
fn operation_type(method: &'static str) -> &'static str {
    match method {
        "Version" => "version",
        "Status" => "status",
        "RunPodSandbox" => "run_podsandbox",
        "StopPodSandbox" => "stop_podsandbox",
        "RemovePodSandbox" => "remove_podsandbox",
        "PodSandboxStatus" => "podsandbox_status",
        "ListPodSandbox" => "list_podsandbox",
        "CreateContainer" => "create_container",
        "StartContainer" => "start_container",
        "StopContainer" => "stop_container",
        "RemoveContainer" => "remove_container",
        "ListContainers" => "list_containers",
        "ContainerStatus" => "container_status",
        "ExecSync" => "exec_sync",
        "Exec" => "exec",
        "Attach" => "attach",
        "PortForward" => "port_forward",
        "PullImage" => "pull_image",
        "ListImages" => "list_images",
        "ImageStatus" => "image_status",
        "RemoveImage" => "remove_image",
        "ImageFsInfo" => "image_fs_info",
        "ContainerStats" => "container_stats",
        "ListContainerStats" => "list_container_stats",
        "ListPodSandboxStats" => "list_podsandbox_stats",
        "UpdateContainerResources" => "update_container",
        "ReopenContainerLog" => "reopen_container_log",
        other => other,
    }
}

/// `kubelet_running_containers`' label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `created`, `running`, `exited` or `unknown`.
    pub container_state: String,
}

#[derive(Debug)]
struct Seen {
    first: Instant,
    recorded: bool,
}

impl Seen {
    /// The pod runs at `now`: its start goes into `histogram`, once.
    fn running(&mut self, histogram: &Histogram, now: Instant) {
        if !self.recorded {
            self.recorded = true;
            histogram.observe(now.saturating_duration_since(self.first).as_secs_f64());
        }
    }
}

/// noded's kubelet metrics.
pub struct KubeletMetrics {
    registry: Registry,
    pod_start: Histogram,
    relist_duration: Histogram,
    relist_interval: Histogram,
    running_pods: Gauge,
    running_containers: Family<StateLabels, Gauge>,
    runtime_duration: Family<OperationLabels, Histogram>,
    runtime_total: Family<OperationLabels, Counter>,
    runtime_errors: Family<OperationLabels, Counter>,
    seen: Mutex<HashMap<String, Seen>>,
    last_relist: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KubeletMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletMetrics").finish_non_exhaustive()
    }
}

impl KubeletMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let pod_start = Histogram::new(POD_START_BUCKETS);
        let relist_duration = Histogram::new(DEFAULT_BUCKETS);
        let relist_interval = Histogram::new(DEFAULT_BUCKETS);
        let running_pods = Gauge::default();
        let running_containers = Family::<StateLabels, Gauge>::default();
        let runtime_duration =
            Family::<OperationLabels, Histogram>::new_with_constructor(|| Histogram::new(runtime_operation_buckets()));
        let runtime_total = Family::<OperationLabels, Counter>::default();
        let runtime_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG.",
            relist_duration.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_interval_seconds",
            "Interval in seconds between relisting in PLEG.",
            relist_interval.clone(),
        );
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            runtime_duration.clone(),
        );
        registry.register(
            "kubelet_runtime_operations",
            "Cumulative number of runtime operations by operation type.",
            runtime_total.clone(),
        );
        registry.register(
            "kubelet_runtime_operations_errors",
            "Cumulative number of runtime operation errors by operation type.",
            runtime_errors.clone(),
        );
        KubeletMetrics {
            registry,
            pod_start,
            relist_duration,
            relist_interval,
            running_pods,
            running_containers,
            runtime_duration,
            runtime_total,
            runtime_errors,
            seen: Mutex::default(),
            last_relist: Mutex::default(),
        }
    }

    /// A relist that started at `started` produced `snapshot`.
    pub fn relisted(&self, snapshot: &Snapshot, started: Instant) {
        self.relist_duration.observe(started.elapsed().as_secs_f64());
        if let Some(previous) = lock(&self.last_relist).replace(started) {
            self.relist_interval
                .observe(started.saturating_duration_since(previous).as_secs_f64());
        }
        let ready = snapshot
            .sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .count();
        self.running_pods.set(ready as i64);
        let mut counts: HashMap<&str, i64> = [("created", 0), ("running", 0), ("exited", 0), ("unknown", 0)].into();
        for c in &snapshot.containers {
            let state = match api::ContainerState::try_from(c.state) {
                Ok(api::ContainerState::ContainerCreated) => "created",
                Ok(api::ContainerState::ContainerRunning) => "running",
                Ok(api::ContainerState::ContainerExited) => "exited",
                _ => "unknown",
            };
            *counts.entry(state).or_default() += 1;
        }
        for (state, n) in counts {
            self.running_containers
                .get_or_create(&StateLabels {
                    container_state: state.into(),
                })
                .set(n);
        }
    }

    /// CRI call `method` took `elapsed` and failed or not.
    pub fn runtime_operation(&self, method: &'static str, elapsed: std::time::Duration, failed: bool) {
        let labels = OperationLabels {
            operation_type: operation_type(method),
        };
        self.runtime_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.runtime_total.get_or_create(&labels).inc();
        if failed {
            self.runtime_errors.get_or_create(&labels).inc();
        }
    }

    /// The pod loop sees `pods` (this node's) now: start their clocks, record those now Running.
    pub fn pods_seen<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) {
        self.pods_seen_at(pods, Instant::now());
    }

    /// This node just posted pod `uid`'s status as Running: its start ends
    /// now (the pod loop would see it only with its next pass).
    pub fn posted_running(&self, uid: &str) {
        self.posted_running_at(uid, Instant::now());
    }

    fn posted_running_at(&self, uid: &str, now: Instant) {
        if let Some(entry) = lock(&self.seen).get_mut(uid) {
            entry.running(&self.pod_start, now);
        }
    }

    fn pods_seen_at<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>, now: Instant) {
        let mut seen = lock(&self.seen);
        let mut present = std::collections::HashSet::new();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.as_deref() else {
                continue;
            };
            present.insert(uid.to_string());
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let entry = seen.entry(uid.to_string()).or_insert(Seen {
                first: now,
                // Already running when first seen: its start was not watched.
                recorded: running,
            });
            if running {
                entry.running(&self.pod_start, now);
            }
        }
        seen.retain(|uid, _| present.contains(uid));
    }

    /// The text exposition without its closing `# EOF` line, for more
    /// series to follow in the same exposition.
    pub fn encode_without_eof(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
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
pub fn metrics() -> &'static KubeletMetrics {
    static METRICS: OnceLock<KubeletMetrics> = OnceLock::new();
    METRICS.get_or_init(KubeletMetrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod(uid: &str, phase: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "uid": uid},
            "status": phase.map(|p| serde_json::json!({"phase": p})).unwrap_or_default(),
        }))
        .unwrap()
    }

    #[test]
    fn pod_start_is_recorded_once_from_first_sight_to_running() {
        let m = KubeletMetrics::new();
        let t0 = Instant::now();
        m.pods_seen_at([&pod("a", None), &pod("adopted", Some("Running"))], t0);
        m.pods_seen_at(
            [&pod("a", Some("Pending")), &pod("adopted", Some("Running"))],
            t0 + Duration::from_secs(1),
        );
        m.pods_seen_at([&pod("a", Some("Running"))], t0 + Duration::from_millis(2500));
        m.pods_seen_at([&pod("a", Some("Running"))], t0 + Duration::from_secs(9));
        let text = m.encode();
        assert!(text.contains("kubelet_pod_start_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("kubelet_pod_start_duration_seconds_sum 2.5\n"), "{text}");
        assert!(
            text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"3.0\"} 1\n"),
            "{text}"
        );
        assert_eq!(lock(&m.seen).len(), 1, "pods gone from the node are forgotten");
    }

    #[test]
    fn a_posted_running_status_ends_the_start_once() {
        let m = KubeletMetrics::new();
        let t0 = Instant::now();
        m.pods_seen_at([&pod("a", None)], t0);
        m.posted_running_at("a", t0 + Duration::from_millis(1500));
        m.posted_running_at("unknown", t0 + Duration::from_secs(2));
        m.pods_seen_at([&pod("a", Some("Running"))], t0 + Duration::from_secs(3));
        let text = m.encode();
        assert!(text.contains("kubelet_pod_start_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("kubelet_pod_start_duration_seconds_sum 1.5\n"), "{text}");
    }

    #[test]
    fn runtime_operations_are_counted_under_the_kubelets_names() {
        let m = KubeletMetrics::new();
        m.runtime_operation("RunPodSandbox", Duration::from_millis(300), false);
        m.runtime_operation("RunPodSandbox", Duration::from_millis(20), true);
        m.runtime_operation("StartContainer", Duration::from_millis(40), false);
        let text = m.encode();
        assert!(
            text.contains("kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_runtime_operations_errors_total{operation_type=\"run_podsandbox\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("kubelet_runtime_operations_errors_total{operation_type=\"start_container\"}"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_runtime_operations_duration_seconds_count{operation_type=\"start_container\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_runtime_operations_duration_seconds_sum{operation_type=\"run_podsandbox\"} 0.32"),
            "{text}"
        );
    }

    #[test]
    fn relists_count_pods_and_containers_by_state() {
        let m = KubeletMetrics::new();
        let snapshot = Snapshot {
            sandboxes: vec![
                api::PodSandbox {
                    state: api::PodSandboxState::SandboxReady as i32,
                    ..Default::default()
                },
                api::PodSandbox {
                    state: api::PodSandboxState::SandboxNotready as i32,
                    ..Default::default()
                },
            ],
            containers: vec![
                api::Container {
                    state: api::ContainerState::ContainerRunning as i32,
                    ..Default::default()
                },
                api::Container {
                    state: api::ContainerState::ContainerExited as i32,
                    ..Default::default()
                },
            ],
        };
        m.relisted(&snapshot, Instant::now());
        m.relisted(&snapshot, Instant::now());
        let text = m.encode();
        for line in [
            "kubelet_running_pods 1",
            "kubelet_running_containers{container_state=\"running\"} 1",
            "kubelet_running_containers{container_state=\"exited\"} 1",
            "kubelet_running_containers{container_state=\"created\"} 0",
            "kubelet_pleg_relist_duration_seconds_count 2",
            "kubelet_pleg_relist_interval_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
