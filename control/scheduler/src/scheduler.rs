//! The scheduler loop: pop a pod, decide (filter/score against the cache), assume,
//! and bind in the background with a bounded number of binding requests in flight.
//!
//! Decisions are made one at a time under the cache lock (tens of microseconds each);
//! the slow part, the API calls, runs concurrently. The next decision already sees the
//! previous pods as assumed, so concurrency never overcommits a node.

use crate::algorithm::schedule_pod;
use crate::binder;
use crate::cache::Cache;
use crate::events::SchedulingRecorder;
use crate::framework::plugins::default_preemption::{self, Candidate};
use crate::framework::plugins::volume_binding;
use crate::framework::{Framework, PodInfo};
use crate::informers::{
    run_namespace_informer, run_node_informer, run_pod_informer, run_selector_informers, run_volume_informers,
    InformerTargets,
};
use crate::metrics::{AttemptResult, SchedulerMetrics};
use crate::queue::{QueueConfig, SchedulingQueue};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, info_span, warn, Instrument};

/// Scheduler settings (command-line flags of the `scheduler` binary).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// Share of nodes to examine per pod in large clusters; 0 = adaptive like kube-scheduler.
    pub percentage_of_nodes_to_score: u32,
    /// Binding requests allowed in flight at once.
    pub max_in_flight_bindings: usize,
    /// Back-off and retry timing.
    pub queue: QueueConfig,
    /// This instance's name, in Events.
    pub identity: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            max_in_flight_bindings: 64,
            queue: QueueConfig::default(),
            identity: "sluice-scheduler".into(),
        }
    }
}

/// Counters for logs.
#[derive(Default)]
pub struct Metrics {
    /// Pods bound.
    pub bound: AtomicU64,
    /// Attempts that found no node.
    pub unschedulable: AtomicU64,
    /// Binding requests that failed.
    pub bind_errors: AtomicU64,
}

/// A running scheduler's shared state.
pub struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    framework: Framework,
    cache: Arc<Mutex<Cache>>,
    queue: Arc<SchedulingQueue>,
    recorder: SchedulingRecorder,
    bind_slots: Arc<Semaphore>,
    failure_slots: Arc<Semaphore>,
    /// Counters, for progress logs.
    pub metrics: Metrics,
    /// Kubernetes' scheduler metrics, for `/metrics`.
    prometheus: SchedulerMetrics,
}

impl Scheduler {
    /// A scheduler with the default plugins; nothing runs until [`Scheduler::start_informers`].
    pub fn new(client: Client, config: SchedulerConfig) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            recorder: SchedulingRecorder::new(client.clone(), &config.scheduler_name, &config.identity),
            bind_slots: Arc::new(Semaphore::new(config.max_in_flight_bindings.max(1))),
            failure_slots: Arc::new(Semaphore::new(8)),
            framework: crate::framework::plugins::registry(),
            cache: Arc::new(Mutex::new(Cache::new())),
            queue: Arc::new(SchedulingQueue::new(config.queue)),
            metrics: Metrics::default(),
            prometheus: SchedulerMetrics::new(&config.scheduler_name),
            client,
            config,
        })
    }

    /// The Prometheus text of Kubernetes' scheduler metrics (pending pods as of now).
    pub fn encode_metrics(&self) -> String {
        self.prometheus.encode(self.queue.lengths())
    }

    /// Start the node and pod informers and the queue housekeeping; resolves once both
    /// caches have synced. Standby instances run this too, so a takeover starts warm.
    pub async fn start_informers(self: &Arc<Self>) {
        let targets = InformerTargets {
            cache: self.cache.clone(),
            queue: self.queue.clone(),
            scheduler_name: self.config.scheduler_name.clone(),
        };
        let (node_tx, mut node_rx) = watch::channel(false);
        let (pod_tx, mut pod_rx) = watch::channel(false);
        tokio::spawn(run_node_informer(self.client.clone(), targets.clone(), node_tx));
        tokio::spawn(run_namespace_informer(self.client.clone(), targets.clone()));
        tokio::spawn(run_selector_informers(self.client.clone(), targets.clone()));
        tokio::spawn(run_volume_informers(self.client.clone(), targets.clone()));
        tokio::spawn(run_pod_informer(self.client.clone(), targets, pod_tx));
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_expiry = Instant::now();
            loop {
                tick.tick().await;
                let now = Instant::now();
                me.queue.flush(now);
                if now.duration_since(last_expiry) > Duration::from_secs(5) {
                    last_expiry = now;
                    let expired = me.cache.lock().unwrap_or_else(|e| e.into_inner()).expire_assumed(now);
                    if expired > 0 {
                        warn!(expired, "assumed pods never seen bound; forgot them");
                        me.queue.move_all_unschedulable(now);
                    }
                }
            }
        });
        let _ = node_rx.wait_for(|s| *s).await;
        let _ = pod_rx.wait_for(|s| *s).await;
        info!("informer caches synced");
    }

    /// Schedule pods forever (call only while leading).
    pub async fn run(self: Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let bound = me.metrics.bound.load(Ordering::Relaxed);
                if bound != last {
                    let l = me.queue.lengths();
                    info!(
                        bound,
                        per_second = (bound - last) / 10,
                        active = l.active,
                        backoff = l.backoff,
                        unschedulable = l.unschedulable,
                        in_flight = l.in_flight,
                        "scheduling progress"
                    );
                    last = bound;
                }
            }
        });
        loop {
            let (key, pod, cycle) = self.queue.pop().await;
            let started = Instant::now();
            let attempt = self.queue.attempts(&key) + 1;
            let span = info_span!("schedule_pod", pod = %key, cycle);
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let info = PodInfo::new(pod);
            let decision = {
                let _enter = span.enter();
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.contains_pod(&uid) {
                    // Already assumed or bound (a late event re-queued it).
                    drop(cache);
                    self.queue.remove(&key);
                    continue;
                }
                let decision = schedule_pod(
                    &self.framework,
                    &mut cache,
                    &info,
                    self.config.percentage_of_nodes_to_score,
                );
                if let Ok(node) = &decision {
                    cache.assume_pod(&uid, node, &info);
                }
                decision
            };
            match decision {
                Ok(node) => {
                    let permit = self
                        .bind_slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    let me = self.clone();
                    let pod = info.pod.clone();
                    tokio::spawn(
                        async move {
                            me.bind(key, &pod, &uid, &node, started, attempt).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(mut diagnosis) => {
                    self.metrics.unschedulable.fetch_add(1, Ordering::Relaxed);
                    let preemption = {
                        let _enter = span.enter();
                        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                        default_preemption::preempt(&self.framework, &cache, &info)
                    };
                    self.prometheus
                        .preemption(preemption.as_ref().ok().map(|c| c.victims.len()));
                    self.prometheus.attempt(AttemptResult::Unschedulable, started.elapsed());
                    match preemption {
                        Ok(candidate) => {
                            diagnosis.post_filter = Some(String::new());
                            let me = self.clone();
                            let preemptor = info.pod.clone();
                            tokio::spawn(
                                async move { me.evict_victims(&preemptor, candidate).await }.instrument(span.clone()),
                            );
                        }
                        Err(Some(why)) => diagnosis.post_filter = Some(why.to_string()),
                        Err(None) => {}
                    }
                    let message = diagnosis.message();
                    self.queue.done_unschedulable(key, cycle, Instant::now());
                    span.in_scope(|| info!(%message, "pod is unschedulable"));
                    let Ok(permit) = self.failure_slots.clone().try_acquire_owned() else {
                        span.in_scope(|| warn!("too many failure reports in flight; skipping this one"));
                        continue;
                    };
                    let me = self.clone();
                    tokio::spawn(
                        async move {
                            if let Err(e) = me.recorder.record(&info.pod, &message).await {
                                warn!(error = %e, "could not record FailedScheduling");
                            }
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
            }
        }
    }

    /// Carry out a preemption as kube-scheduler's `PrepareCandidate`: the
    /// preemptor is nominated to the node; each victim gets the
    /// `DisruptionTarget` condition, is deleted gracefully and gets a
    /// `Preempted` event. The preemptor is scheduled once they are gone.
    async fn evict_victims(&self, preemptor: &Pod, candidate: Candidate) {
        let ns = preemptor.metadata.namespace.as_deref().unwrap_or("default");
        let name = preemptor.metadata.name.as_deref().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let nominate = serde_json::json!({"status": {"nominatedNodeName": candidate.node}});
        if let Err(e) = pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&nominate))
            .await
        {
            warn!(error = %e, "could not nominate the preemptor's node");
            return;
        }
        for victim in &candidate.victims {
            let vns = victim.metadata.namespace.as_deref().unwrap_or("default");
            let vname = victim.metadata.name.as_deref().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), vns);
            let condition = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": format!("{}: preempting to accommodate a higher priority pod", self.config.scheduler_name),
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            if let Err(e) = api
                .patch_status(vname, &PatchParams::default(), &Patch::Strategic(&condition))
                .await
            {
                debug!(victim = vname, error = %e, "could not mark the victim");
            }
            match api.delete(vname, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => {
                    warn!(victim = vname, error = %e, "could not delete the victim");
                    continue;
                }
            }
            self.recorder.record_preempted(victim, preemptor, &candidate.node);
        }
        info!(node = %candidate.node, victims = candidate.victims.len(), "preempted lower-priority pods");
    }

    /// PreBind and bind `pod` to `node`: the end of the attempt number
    /// `attempt` that began at `started`.
    async fn bind(&self, key: crate::queue::PodKey, pod: &Pod, uid: &str, node: &str, started: Instant, attempt: u32) {
        // PreBind: VolumeBinding's claims bound (or provisioned) for this node first.
        if let Err(e) = volume_binding::pre_bind(&self.client, &self.cache, pod, node).await {
            self.prometheus.attempt(AttemptResult::Error, started.elapsed());
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).forget(uid);
            self.queue.move_all_unschedulable(Instant::now());
            let message = e.to_string();
            warn!(node, %message, "PreBind failed; will retry");
            self.queue.done_error(key, Instant::now());
            if let Err(e) = self.recorder.record(pod, &message).await {
                warn!(error = %e, "could not record FailedScheduling");
            }
            return;
        }
        let ns = key.namespace.as_deref().unwrap_or("default");
        match binder::bind(&self.client, ns, &key.name, uid, node).await {
            Ok(()) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .finish_binding(uid, Instant::now());
                self.queue.done_bound(&key);
                self.metrics.bound.fetch_add(1, Ordering::Relaxed);
                self.prometheus.attempt(AttemptResult::Scheduled, started.elapsed());
                self.prometheus.pod_scheduled(attempt);
                self.recorder.record_scheduled(pod, node);
                debug!(node, "pod bound to node");
            }
            Err(e) => {
                self.metrics.bind_errors.fetch_add(1, Ordering::Relaxed);
                self.prometheus.attempt(AttemptResult::Error, started.elapsed());
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).forget(uid);
                // The freed capacity may help pods that were waiting.
                self.queue.move_all_unschedulable(Instant::now());
                if binder::pod_is_gone(&e) {
                    self.queue.remove(&key);
                } else {
                    warn!(node, error = %e, "binding failed; will retry");
                    self.queue.done_error(key, Instant::now());
                }
            }
        }
    }
}
