//! client-go's work queue metrics for the controllers' queues, with
//! Kubernetes' names and buckets and one `name` label per queue:
//! `workqueue_depth`, `workqueue_adds_total`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`,
//! `workqueue_retries_total`, `workqueue_unfinished_work_seconds` and
//! `workqueue_longest_running_processor_seconds`.
//!
//! The queues are kube-runtime's (see [`crate::runner`]), so the metrics
//! follow client-go's rules from the outside: a key emitted by a trigger is
//! *added* unless it is already waiting (client-go's dirty set: repeats of a
//! waiting key are one add), it waits until its reconcile starts (*queue
//! duration*; depth counts the waiting keys), the reconcile is the *work
//! duration*, and a failed reconcile is a *retry* (client-go's
//! `AddRateLimited`). A requeue kube-runtime schedules itself (after a
//! failure or a reconcile's `Action::requeue`) is added when it runs, with no
//! wait, and a key whose object is gone when its turn comes leaves the queue
//! unreconciled. Queues are named as Kubernetes names them where there is a
//! Kubernetes counterpart ([`kubernetes_name`]).
//!
//! One process-wide set ([`metrics`]), as every controller of the manager
//! records into it; served on the secure port (`sluice_kube::secure_serving`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `name` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueName {
    /// The queue's name.
    pub name: String,
}

fn duration_histogram() -> Histogram {
    // Kubernetes: ExponentialBuckets(10e-7, 10, 10), 1µs to 1000s.
    Histogram::new(exponential_buckets(1e-6, 10.0, 10))
}

type Seconds = Gauge<f64, AtomicU64>;

/// The work queue metrics of every queue.
pub struct WorkQueueMetrics {
    registry: Registry,
    depth: Family<QueueName, Gauge>,
    adds: Family<QueueName, Counter>,
    queue_duration: Family<QueueName, Histogram, fn() -> Histogram>,
    work_duration: Family<QueueName, Histogram, fn() -> Histogram>,
    retries: Family<QueueName, Counter>,
    unfinished: Family<QueueName, Seconds>,
    longest_running: Family<QueueName, Seconds>,
    queues: Mutex<Vec<Arc<Queue>>>,
}

impl std::fmt::Debug for WorkQueueMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueueMetrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WorkQueueMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let depth = Family::<QueueName, Gauge>::default();
        let adds = Family::<QueueName, Counter>::default();
        let queue_duration =
            Family::<QueueName, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let work_duration = Family::<QueueName, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let retries = Family::<QueueName, Counter>::default();
        let unfinished = Family::<QueueName, Seconds>::default();
        let longest_running = Family::<QueueName, Seconds>::default();
        registry.register("workqueue_depth", "Current depth of workqueue", depth.clone());
        // prometheus-client adds `_total` to counters itself.
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            work_duration.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            retries.clone(),
        );
        registry.register(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
            unfinished.clone(),
        );
        registry.register(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            longest_running.clone(),
        );
        WorkQueueMetrics {
            registry,
            depth,
            adds,
            queue_duration,
            work_duration,
            retries,
            unfinished,
            longest_running,
            queues: Mutex::default(),
        }
    }

    /// A new queue named `name` (its series start at 0).
    pub fn queue(&'static self, name: &str) -> Arc<Queue> {
        let label = QueueName { name: name.into() };
        let _ = self.depth.get_or_create(&label);
        let _ = self.adds.get_or_create(&label);
        let _ = self.retries.get_or_create(&label);
        let _ = self.queue_duration.get_or_create(&label);
        let _ = self.work_duration.get_or_create(&label);
        let queue = Arc::new(Queue {
            metrics: self,
            label,
            waiting: Mutex::default(),
            working: Mutex::default(),
        });
        lock(&self.queues).push(queue.clone());
        queue
    }

    /// The text exposition (OpenMetrics) of every queue, the in-progress gauges as of now.
    pub fn encode(&self) -> String {
        let now = Instant::now();
        let mut by_name: HashMap<QueueName, (f64, f64)> = HashMap::new();
        for q in lock(&self.queues).iter() {
            let (sum, longest) = by_name.entry(q.label.clone()).or_default();
            for started in lock(&q.working).values().flatten() {
                let secs = now.saturating_duration_since(*started).as_secs_f64();
                *sum += secs;
                *longest = longest.max(secs);
            }
        }
        for (label, (sum, longest)) in by_name {
            self.unfinished.get_or_create(&label).set(sum);
            self.longest_running.get_or_create(&label).set(longest);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One controller's queue, as the metrics see it (keys are `namespace/name`).
pub struct Queue {
    metrics: &'static WorkQueueMetrics,
    label: QueueName,
    /// Keys added and not yet started, with when they were added.
    waiting: Mutex<HashMap<String, Instant>>,
    /// Keys being reconciled, with when each reconcile started (kube-runtime
    /// never runs one key twice at once).
    working: Mutex<HashMap<String, Option<Instant>>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.label.name)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// A trigger asked for `key`.
    pub fn added(&self, key: &str) {
        let mut waiting = lock(&self.waiting);
        if waiting.contains_key(key) {
            return;
        }
        waiting.insert(key.to_string(), Instant::now());
        self.metrics.adds.get_or_create(&self.label).inc();
        self.metrics.depth.get_or_create(&self.label).inc();
    }

    /// The reconcile of `key` starts.
    pub fn started(&self, key: &str) {
        let now = Instant::now();
        let waited = match lock(&self.waiting).remove(key) {
            Some(at) => {
                self.metrics.depth.get_or_create(&self.label).dec();
                now.saturating_duration_since(at).as_secs_f64()
            }
            None => {
                // A requeue kube-runtime scheduled itself: added as it runs.
                self.metrics.adds.get_or_create(&self.label).inc();
                0.0
            }
        };
        self.metrics.queue_duration.get_or_create(&self.label).observe(waited);
        lock(&self.working).insert(key.to_string(), Some(now));
    }

    /// The reconcile of `key` ended; `failed` ones are retried.
    pub fn finished(&self, key: &str, failed: bool) {
        if let Some(Some(started)) = lock(&self.working).remove(key) {
            self.metrics
                .work_duration
                .get_or_create(&self.label)
                .observe(started.elapsed().as_secs_f64());
        }
        if failed {
            self.metrics.retries.get_or_create(&self.label).inc();
        }
    }

    /// `key`'s object was gone when its turn came: it leaves the queue.
    pub fn dropped(&self, key: &str) {
        if lock(&self.waiting).remove(key).is_some() {
            self.metrics.depth.get_or_create(&self.label).dec();
        }
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static WorkQueueMetrics {
    static METRICS: OnceLock<WorkQueueMetrics> = OnceLock::new();
    METRICS.get_or_init(WorkQueueMetrics::new)
}

/// Kubernetes' name of the work queue of the controller (or loop) Sluice
/// calls `name`, where kube-controller-manager has one; else `name`.
pub fn kubernetes_name(name: &str) -> &str {
    match name {
        "replicationcontroller" => "replicationmanager",
        "endpointslice" => "endpoint_slice",
        "endpoints" => "endpoint",
        "ttl-after-finished" => "ttl_jobs_to_delete",
        "horizontal-pod-autoscaler" => "horizontalpodautoscaler",
        "resourcequota" => "resourcequota_primary",
        "root-ca-certificate-publisher" => "root_ca_cert_publisher",
        "clusterrole-aggregation" => "ClusterRoleAggregator",
        "persistentvolume-binder" => "claims",
        "persistentvolume-binder-volumes" => "volumes",
        "csrsigning" | "csrapproving" => "certificate",
        "service-lb" => "service",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(text: &str, want: &str) -> bool {
        text.lines().any(|l| l == want)
    }

    #[test]
    fn a_queue_counts_adds_waits_work_and_retries_as_client_go() {
        let m: &'static WorkQueueMetrics = Box::leak(Box::new(WorkQueueMetrics::new()));
        let q = m.queue("replicaset");
        q.added("default/a");
        q.added("default/a"); // already waiting: one add
        q.added("default/b");
        let text = m.encode();
        assert!(has(&text, "workqueue_adds_total{name=\"replicaset\"} 2"), "{text}");
        assert!(has(&text, "workqueue_depth{name=\"replicaset\"} 2"), "{text}");
        q.started("default/a");
        let text = m.encode();
        assert!(has(&text, "workqueue_depth{name=\"replicaset\"} 1"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("workqueue_unfinished_work_seconds{name=\"replicaset\"}")),
            "{text}"
        );
        q.finished("default/a", true);
        q.dropped("default/b");
        q.started("default/a"); // kube-runtime's own retry
        q.finished("default/a", false);
        let text = m.encode();
        for want in [
            "workqueue_adds_total{name=\"replicaset\"} 3",
            "workqueue_depth{name=\"replicaset\"} 0",
            "workqueue_retries_total{name=\"replicaset\"} 1",
            "workqueue_queue_duration_seconds_count{name=\"replicaset\"} 2",
            "workqueue_work_duration_seconds_count{name=\"replicaset\"} 2",
            "workqueue_longest_running_processor_seconds{name=\"replicaset\"} 0.0",
        ] {
            assert!(has(&text, want), "missing {want:?} in\n{text}");
        }
        assert!(
            text.contains("workqueue_work_duration_seconds_bucket{le=\"1000.0000000000001\"")
                || text.contains("le=\"1000.0\""),
            "buckets up to 1000 s:\n{text}"
        );
    }

    #[test]
    fn queues_take_kubernetes_names() {
        assert_eq!(kubernetes_name("endpointslice"), "endpoint_slice");
        assert_eq!(kubernetes_name("deployment"), "deployment");
        assert_eq!(kubernetes_name("replicaset"), "replicaset");
    }
}
