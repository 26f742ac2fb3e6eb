//! kube-scheduler's Prometheus metrics, with Kubernetes' names, labels and
//! buckets, for what this scheduler does:
//! - `scheduler_schedule_attempts_total{result,profile}`: every scheduling
//!   attempt by its end, `scheduled` (bound), `unschedulable` (no node fits)
//!   or `error` (PreBind or the binding failed);
//! - `scheduler_scheduling_attempt_duration_seconds{result,profile}`: from
//!   popping the pod to that end (the algorithm and the binding, as
//!   Kubernetes times it);
//! - `scheduler_pending_pods{queue}`: the sub-queues' lengths at scrape time,
//!   `active`, `backoff`, `unschedulable` and `gated` (pods of this
//!   scheduler waiting for their scheduling gates to be removed); pods in
//!   flight are in none, as in Kubernetes;
//! - `scheduler_pod_scheduling_attempts`: attempts a pod took until bound;
//! - `scheduler_preemption_attempts_total` and `scheduler_preemption_victims`.
//!
//! One set per [`Scheduler`](crate::scheduler::Scheduler) (tests run several
//! in a process), served on the secure port by `sluice_kube::secure_serving`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::QueueLengths;

/// How a scheduling attempt ended (`result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The pod was bound.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// Something else failed (PreBind, the binding).
    Error,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

/// `result` and `profile` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
    profile: String,
}

/// `queue` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

fn attempt_histogram() -> Histogram {
    // Kubernetes: ExponentialBuckets(0.001, 2, 15).
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The scheduler's metrics.
pub struct SchedulerMetrics {
    registry: Registry,
    profile: String,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<AttemptLabels, Histogram, fn() -> Histogram>,
    pending: Family<QueueLabels, Gauge>,
    pod_attempts: Histogram,
    preemption_attempts: Counter,
    preemption_victims: Histogram,
}

impl std::fmt::Debug for SchedulerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerMetrics").finish_non_exhaustive()
    }
}

impl SchedulerMetrics {
    /// The metrics of the profile (`spec.schedulerName`) `profile`.
    pub fn new(profile: &str) -> SchedulerMetrics {
        let mut registry = Registry::default();
        let attempts = Family::<AttemptLabels, Counter>::default();
        let attempt_duration =
            Family::<AttemptLabels, Histogram, fn() -> Histogram>::new_with_constructor(attempt_histogram);
        let pending = Family::<QueueLabels, Gauge>::default();
        // Kubernetes: ExponentialBuckets(1, 2, 5).
        let pod_attempts = Histogram::new(exponential_buckets(1.0, 2.0, 5));
        let preemption_attempts = Counter::default();
        // Kubernetes: ExponentialBuckets(1, 2, 7).
        let preemption_victims = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        // prometheus-client adds `_total` to counters itself.
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            attempt_duration.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            pending.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            pod_attempts.clone(),
        );
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            preemption_attempts.clone(),
        );
        registry.register(
            "scheduler_preemption_victims",
            "Number of selected preemption victims",
            preemption_victims.clone(),
        );
        let metrics = SchedulerMetrics {
            registry,
            profile: profile.to_string(),
            attempts,
            attempt_duration,
            pending,
            pod_attempts,
            preemption_attempts,
            preemption_victims,
        };
        // Every series exists from the start, at 0, as a scraper expects.
        for result in [
            AttemptResult::Scheduled,
            AttemptResult::Unschedulable,
            AttemptResult::Error,
        ] {
            let _ = metrics.attempts.get_or_create(&metrics.labels(result));
        }
        metrics.set_pending(QueueLengths::default());
        metrics
    }

    fn labels(&self, result: AttemptResult) -> AttemptLabels {
        AttemptLabels {
            result: result.label(),
            profile: self.profile.clone(),
        }
    }

    /// An attempt ended with `result` after `took`.
    pub fn attempt(&self, result: AttemptResult, took: Duration) {
        let labels = self.labels(result);
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A pod was bound at its `attempts`-th attempt.
    pub fn pod_scheduled(&self, attempts: u32) {
        self.pod_attempts.observe(f64::from(attempts.max(1)));
    }

    /// Preemption was tried; `victims` when it found a node.
    pub fn preemption(&self, victims: Option<usize>) {
        self.preemption_attempts.inc();
        if let Some(n) = victims {
            self.preemption_victims.observe(n as f64);
        }
    }

    fn set_pending(&self, lengths: QueueLengths) {
        for (queue, n) in [
            ("active", lengths.active),
            ("backoff", lengths.backoff),
            ("unschedulable", lengths.unschedulable),
            ("gated", lengths.gated),
        ] {
            self.pending
                .get_or_create(&QueueLabels { queue })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition (OpenMetrics), with the pending gauges of `lengths`.
    pub fn encode(&self, lengths: QueueLengths) -> String {
        self.set_pending(lengths);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn attempts_are_counted_and_timed_by_result_and_profile() {
        let m = SchedulerMetrics::new("default-scheduler");
        m.attempt(AttemptResult::Scheduled, Duration::from_millis(3));
        m.attempt(AttemptResult::Scheduled, Duration::from_millis(5));
        m.attempt(AttemptResult::Unschedulable, Duration::from_micros(500));
        m.pod_scheduled(2);
        let text = m.encode(QueueLengths {
            active: 1,
            backoff: 2,
            unschedulable: 3,
            in_flight: 4,
            gated: 5,
        });
        for want in [
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"} 1",
            "scheduler_schedule_attempts_total{result=\"error\",profile=\"default-scheduler\"} 0",
            "scheduler_scheduling_attempt_duration_seconds_count{result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.001\",result=\"unschedulable\",profile=\"default-scheduler\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.004\",result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_pending_pods{queue=\"active\"} 1",
            "scheduler_pending_pods{queue=\"backoff\"} 2",
            "scheduler_pending_pods{queue=\"unschedulable\"} 3",
            "scheduler_pending_pods{queue=\"gated\"} 5",
            "scheduler_pod_scheduling_attempts_count 1",
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want:?} in\n{text}");
        }
        assert!(line(&text, "scheduler_preemption_attempts_total 0").is_some(), "{text}");
    }
}
