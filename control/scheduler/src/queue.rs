//! The scheduling queue: pods waiting for a node, in three sub-queues like kube-scheduler.
//!
//! - *active*: ready to be scheduled, highest `spec.priority` first, then oldest first;
//! - *backoff*: failed recently, waiting `initial * 2^(attempts-1)` (capped) before going active;
//! - *unschedulable*: fit nowhere; moved back (to backoff or active) when the cluster changes
//!   in a way that may help (node added/changed, a bound pod went away) or after
//!   `max_unschedulable` at the latest.
//!
//! A pod popped for scheduling is *in flight*; if a cluster change happened while it was,
//! a failure sends it to backoff rather than unschedulable so the change is not missed.
//! Entries are keyed by namespace/name and hold the newest pod object from the informer,
//! as its JSON: a burst of creates leaves thousands of pods waiting at once, and a
//! k8s-openapi `Pod` holds every API field inline (2.4 KB, and 2.3 KB per container,
//! however trimmed), where the JSON of a pod as the informer queues it
//! ([`crate::cache::pending_copy`]) is 1 to 2 KB. A pod is decoded again when popped.

use k8s_openapi::api::core::v1::Pod;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::error;

/// A pod's queue key.
pub type PodKey = kube::runtime::reflector::ObjectRef<Pod>;

/// Back-off and retry timing.
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    /// Back-off after the first failure.
    pub initial_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
    /// Longest stay in the unschedulable queue without any cluster change.
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Active { seq: u64 },
    Backoff { seq: u64 },
    Unschedulable { since: Instant },
    InFlight { cycle: u64 },
}

struct Entry {
    /// The pod, as JSON ([`pack`]).
    pod: Arc<[u8]>,
    /// Its `spec.priority`.
    priority: i32,
    location: Location,
    attempts: u32,
    last_failure: Option<Instant>,
}

/// A heap entry ordered by `ord` only (keys are not ordered; `ord` holds a unique seq).
struct Keyed<O> {
    ord: O,
    key: PodKey,
}

impl<O: Ord> PartialEq for Keyed<O> {
    fn eq(&self, other: &Self) -> bool {
        self.ord == other.ord
    }
}
impl<O: Ord> Eq for Keyed<O> {}
impl<O: Ord> PartialOrd for Keyed<O> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<O: Ord> Ord for Keyed<O> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ord.cmp(&other.ord)
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<PodKey, Entry>,
    /// Pods of ours waiting for their scheduling gates to be removed: in no
    /// sub-queue, counted only (kube-scheduler's `gated` pending pods).
    gated: HashSet<PodKey>,
    /// (priority, Reverse(seq)): max-heap gives highest priority, then lowest seq.
    active: BinaryHeap<Keyed<(i32, Reverse<u64>)>>,
    /// Min-heap on ready time.
    backoff: BinaryHeap<Reverse<Keyed<(Instant, u64)>>>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

/// Queue statistics, for logs and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLengths {
    /// Pods ready to schedule.
    pub active: usize,
    /// Pods backing off.
    pub backoff: usize,
    /// Pods that fit nowhere for now.
    pub unschedulable: usize,
    /// Pods being scheduled or bound.
    pub in_flight: usize,
    /// Pods waiting for their scheduling gates to be removed.
    pub gated: usize,
}

/// The scheduling queue; cheap to share behind an `Arc`.
pub struct SchedulingQueue {
    state: Mutex<State>,
    notify: Notify,
    config: QueueConfig,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A pod as the queue holds it. Encoding a `Pod` cannot fail: serde_json
/// fails only on map keys that are not strings, and a pod's maps are keyed
/// by strings.
fn pack(pod: &Pod) -> Result<Arc<[u8]>, serde_json::Error> {
    serde_json::to_vec(pod).map(Vec::into_boxed_slice).map(Arc::from)
}

/// A pod the queue held, decoded again.
fn unpack(json: &[u8]) -> Result<Pod, serde_json::Error> {
    serde_json::from_slice(json)
}

/// Whether an update from `old` to `new` may let an unschedulable pod fit:
/// a change of its spec, labels or annotations (for example new
/// tolerations). Status-only updates (our own condition write) change
/// nothing. A held pod that does not decode counts as changed.
fn relevant_change(old: &[u8], new: &Pod) -> bool {
    unpack(old).map_or(true, |old| {
        old.spec != new.spec
            || old.metadata.labels != new.metadata.labels
            || old.metadata.annotations != new.metadata.annotations
    })
}

impl State {
    fn push_active(&mut self, key: PodKey) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.entries.get_mut(&key) {
            e.location = Location::Active { seq };
            self.active.push(Keyed {
                ord: (e.priority, Reverse(seq)),
                key,
            });
        }
    }

    fn push_backoff(&mut self, key: PodKey, ready: Instant) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.entries.get_mut(&key) {
            e.location = Location::Backoff { seq };
            self.backoff.push(Reverse(Keyed { ord: (ready, seq), key }));
        }
    }
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn backoff_until(&self, e: &Entry) -> Option<Instant> {
        let last = e.last_failure?;
        let exp = e.attempts.saturating_sub(1).min(16);
        let d = self
            .config
            .initial_backoff
            .saturating_mul(1 << exp)
            .min(self.config.max_backoff);
        Some(last + d)
    }

    /// Move a waiting pod to active, or to backoff if it is still backing off.
    fn requeue(&self, st: &mut State, key: PodKey, now: Instant) {
        let ready = st
            .entries
            .get(&key)
            .and_then(|e| self.backoff_until(e))
            .filter(|t| *t > now);
        match ready {
            Some(t) => st.push_backoff(key, t),
            None => st.push_active(key),
        }
    }

    /// An unscheduled pod was added or changed in the informer.
    pub fn add_or_update(&self, key: PodKey, pod: &Pod) {
        let json = match pack(pod) {
            Ok(json) => json,
            Err(e) => {
                error!(pod = %key, error = %e, "could not hold the pod in the queue");
                return;
            }
        };
        let priority = priority(pod);
        let mut st = self.lock();
        st.gated.remove(&key);
        match st.entries.get_mut(&key) {
            Some(e) => {
                // A pod that changed may fit now: retry it.
                let parked = matches!(e.location, Location::Unschedulable { .. });
                let relevant = parked && relevant_change(&e.pod, pod);
                e.pod = json;
                e.priority = priority;
                if relevant {
                    self.requeue(&mut st, key, Instant::now());
                    drop(st);
                    self.notify.notify_one();
                }
            }
            None => {
                st.entries.insert(
                    key.clone(),
                    Entry {
                        pod: json,
                        priority,
                        location: Location::Active { seq: 0 },
                        attempts: 0,
                        last_failure: None,
                    },
                );
                st.push_active(key);
                drop(st);
                self.notify.notify_one();
            }
        }
    }

    /// The pod was deleted, or bound: stop tracking it.
    pub fn remove(&self, key: &PodKey) {
        let mut st = self.lock();
        st.entries.remove(key);
        st.gated.remove(key);
    }

    /// The pod has scheduling gates: it leaves the sub-queues and is
    /// counted as gated until [`SchedulingQueue::add_or_update`] brings it
    /// back (its gates removed; the API server refuses adding any) or it goes.
    pub fn gate(&self, key: PodKey) {
        let mut st = self.lock();
        st.entries.remove(&key);
        st.gated.insert(key);
    }

    /// Whether the queue tracks this pod (waiting or in flight).
    pub fn contains(&self, key: &PodKey) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// Take the next pod to schedule, waiting until one is active.
    /// Returns the pod and its scheduling cycle number.
    pub async fn pop(&self) -> (PodKey, Arc<Pod>, u64) {
        loop {
            let notified = self.notify.notified();
            if let Some(item) = self.try_pop() {
                return item;
            }
            notified.await;
        }
    }

    /// Take the next active pod, if any. It is decoded outside the lock.
    pub fn try_pop(&self) -> Option<(PodKey, Arc<Pod>, u64)> {
        loop {
            let (key, json, cycle) = self.take_active()?;
            match unpack(&json) {
                Ok(pod) => return Some((key, Arc::new(pod), cycle)),
                Err(e) => {
                    // Not expected: the queue encoded it. The pod's next update
                    // from the informer queues it again.
                    error!(pod = %key, error = %e, "a queued pod did not decode; dropped from the queue");
                    let mut st = self.lock();
                    if st
                        .entries
                        .get(&key)
                        .is_some_and(|e| e.location == Location::InFlight { cycle })
                    {
                        st.entries.remove(&key);
                    }
                }
            }
        }
    }

    /// The next active pod as held, now in flight, with its cycle number.
    fn take_active(&self) -> Option<(PodKey, Arc<[u8]>, u64)> {
        let mut st = self.lock();
        while let Some(Keyed {
            ord: (_, Reverse(seq)),
            key,
        }) = st.active.pop()
        {
            let valid = st
                .entries
                .get(&key)
                .is_some_and(|e| e.location == Location::Active { seq });
            if !valid {
                continue; // stale heap entry: the pod moved or went away
            }
            st.cycle += 1;
            let cycle = st.cycle;
            let e = st.entries.get_mut(&key).expect("checked above");
            e.location = Location::InFlight { cycle };
            return Some((key, e.pod.clone(), cycle));
        }
        None
    }

    /// The pod fit nowhere in `cycle`: park it as unschedulable, or back it off if the
    /// cluster changed since the cycle began.
    pub fn done_unschedulable(&self, key: PodKey, cycle: u64, now: Instant) {
        let mut st = self.lock();
        let move_request_cycle = st.move_request_cycle;
        let Some(e) = st.entries.get_mut(&key) else { return };
        if e.location != (Location::InFlight { cycle }) {
            return;
        }
        e.attempts += 1;
        e.last_failure = Some(now);
        if move_request_cycle >= cycle {
            let ready = self.backoff_until(e).unwrap_or(now);
            st.push_backoff(key, ready);
        } else {
            e.location = Location::Unschedulable { since: now };
        }
    }

    /// Scheduling or binding failed for another reason: retry after back-off.
    pub fn done_error(&self, key: PodKey, now: Instant) {
        let mut st = self.lock();
        let Some(e) = st.entries.get_mut(&key) else { return };
        e.attempts += 1;
        e.last_failure = Some(now);
        let ready = self.backoff_until(e).unwrap_or(now);
        st.push_backoff(key, ready);
    }

    /// How many attempts to schedule the pod have failed so far (0 for an unknown pod).
    pub fn attempts(&self, key: &PodKey) -> u32 {
        self.lock().entries.get(key).map_or(0, |e| e.attempts)
    }

    /// The pod was bound: forget it.
    pub fn done_bound(&self, key: &PodKey) {
        self.remove(key);
    }

    /// Something changed that may let unschedulable pods fit: move them all to
    /// backoff/active, and remember the change for pods in flight.
    pub fn move_all_unschedulable(&self, now: Instant) {
        let mut st = self.lock();
        st.move_request_cycle = st.cycle;
        let keys: Vec<PodKey> = st
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.location, Location::Unschedulable { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        let moved = !keys.is_empty();
        for key in keys {
            self.requeue(&mut st, key, now);
        }
        drop(st);
        if moved {
            self.notify.notify_one();
        }
    }

    /// Periodic housekeeping: finished back-offs go active, and pods unschedulable for
    /// longer than `max_unschedulable` are retried.
    pub fn flush(&self, now: Instant) {
        let mut st = self.lock();
        let mut woke = false;
        while let Some(Reverse(Keyed { ord: (ready, seq), .. })) = st.backoff.peek() {
            if *ready > now {
                break;
            }
            let seq = *seq;
            let Reverse(Keyed { key, .. }) = st.backoff.pop().expect("peeked");
            if st
                .entries
                .get(&key)
                .is_some_and(|e| e.location == Location::Backoff { seq })
            {
                st.push_active(key);
                woke = true;
            }
        }
        let stale: Vec<PodKey> = st
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.location, Location::Unschedulable { since } if now.duration_since(since) >= self.config.max_unschedulable))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.requeue(&mut st, key, now);
            woke = true;
        }
        drop(st);
        if woke {
            self.notify.notify_one();
        }
    }

    /// Current sub-queue lengths.
    pub fn lengths(&self) -> QueueLengths {
        let st = self.lock();
        let mut l = QueueLengths::default();
        for e in st.entries.values() {
            match e.location {
                Location::Active { .. } => l.active += 1,
                Location::Backoff { .. } => l.backoff += 1,
                Location::Unschedulable { .. } => l.unschedulable += 1,
                Location::InFlight { .. } => l.in_flight += 1,
            }
        }
        l.gated = st.gated.len();
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(name: &str, prio: i32) -> (PodKey, Arc<Pod>) {
        let p = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        };
        (PodKey::from_obj(&p), Arc::new(p))
    }

    fn names(q: &SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.try_pop()).map(|(k, _, _)| k.name).collect()
    }

    #[test]
    fn active_pods_pop_by_priority_then_age() {
        let q = SchedulingQueue::new(QueueConfig::default());
        for (n, p) in [("a", 0), ("b", 10), ("c", 0), ("d", 10)] {
            let (k, pod) = pod(n, p);
            q.add_or_update(k, &pod);
        }
        assert_eq!(names(&q), ["b", "d", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_then_back_off() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let (k, p) = pod("a", 0);
        q.add_or_update(k.clone(), &p);
        let (_, _, cycle) = q.try_pop().unwrap();
        let t0 = Instant::now();
        q.done_unschedulable(k.clone(), cycle, t0);
        assert_eq!(q.lengths().unschedulable, 1);
        q.flush(t0 + Duration::from_secs(60));
        assert!(q.try_pop().is_none(), "no change, no retry before max_unschedulable");

        q.move_all_unschedulable(t0 + Duration::from_millis(100));
        assert_eq!(q.lengths().backoff, 1, "still inside its 1 s back-off");
        q.flush(t0 + Duration::from_millis(500));
        assert!(q.try_pop().is_none());
        q.flush(t0 + Duration::from_millis(1001));
        let (_, _, cycle2) = q.try_pop().expect("back-off over");

        // Second failure: back-off doubles to 2 s.
        q.done_unschedulable(k.clone(), cycle2, t0);
        q.move_all_unschedulable(t0 + Duration::from_millis(1500));
        q.flush(t0 + Duration::from_millis(1900));
        assert!(q.try_pop().is_none());
        q.flush(t0 + Duration::from_millis(2001));
        assert!(q.try_pop().is_some());
    }

    /// The queue holds a pod as JSON: it pops as it was queued, the newest
    /// update first, and only an update of its spec, labels or annotations
    /// brings an unschedulable pod back.
    #[test]
    fn a_pod_pops_as_queued_and_only_a_change_of_what_placing_reads_retries_it() {
        use k8s_openapi::api::core::v1::{Container, PodStatus, Toleration};
        let q = SchedulingQueue::new(QueueConfig::default());
        let (k, p) = pod("a", 3);
        let mut whole = (*p).clone();
        let spec = whole.spec.as_mut().unwrap();
        spec.containers = vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }];
        whole.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        q.add_or_update(k.clone(), &whole);
        whole.metadata.resource_version = Some("2".into());
        q.add_or_update(k.clone(), &whole);
        let (_, popped, cycle) = q.try_pop().unwrap();
        assert_eq!(*popped, whole, "the newest version, whole");
        let t0 = Instant::now();
        q.done_unschedulable(k.clone(), cycle, t0);

        // Our own condition write: nothing that placing reads changed.
        let mut written = whole.clone();
        written.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        q.add_or_update(k.clone(), &written);
        assert_eq!(q.lengths().unschedulable, 1);
        // A toleration added: it may fit now.
        let mut tolerant = written.clone();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        q.add_or_update(k.clone(), &tolerant);
        assert_eq!(q.lengths().unschedulable, 0);
        q.flush(t0 + Duration::from_secs(2));
        let (_, popped, _) = q.try_pop().expect("retried");
        assert_eq!(*popped, tolerant);
        assert_eq!(priority(&popped), 3);
    }

    #[test]
    fn a_change_during_the_cycle_is_not_missed() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let (k, p) = pod("a", 0);
        q.add_or_update(k.clone(), &p);
        let (_, _, cycle) = q.try_pop().unwrap();
        let t0 = Instant::now();
        q.move_all_unschedulable(t0); // a node appeared while we were filtering
        q.done_unschedulable(k, cycle, t0);
        assert_eq!(q.lengths().backoff, 1);
    }

    #[test]
    fn pods_unschedulable_too_long_are_retried() {
        let q = SchedulingQueue::new(QueueConfig {
            max_unschedulable: Duration::from_secs(5),
            ..Default::default()
        });
        let (k, p) = pod("a", 0);
        q.add_or_update(k.clone(), &p);
        let (_, _, cycle) = q.try_pop().unwrap();
        let t0 = Instant::now();
        q.done_unschedulable(k, cycle, t0);
        q.flush(t0 + Duration::from_secs(6));
        assert!(q.try_pop().is_some());
    }

    #[test]
    fn deleted_pods_leave_the_queue() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let (k, p) = pod("a", 0);
        q.add_or_update(k.clone(), &p);
        q.remove(&k);
        assert!(q.try_pop().is_none());
        assert_eq!(q.lengths(), QueueLengths::default());
    }

    #[test]
    fn gated_pods_are_counted_until_ungated_or_gone() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let (a, pa) = pod("a", 0);
        let (b, _) = pod("b", 0);
        q.add_or_update(a.clone(), &pa);
        // A gate seen on an update takes the pod out of the active queue.
        q.gate(a.clone());
        q.gate(b.clone());
        assert!(q.try_pop().is_none());
        assert_eq!(
            q.lengths(),
            QueueLengths {
                gated: 2,
                ..Default::default()
            }
        );
        // Its gates removed, it is scheduled like any other.
        q.add_or_update(a.clone(), &pa);
        assert_eq!(
            q.lengths(),
            QueueLengths {
                active: 1,
                gated: 1,
                ..Default::default()
            }
        );
        assert_eq!(q.try_pop().map(|(k, _, _)| k), Some(a));
        q.remove(&b);
        assert_eq!(q.lengths().gated, 0);
    }
}
