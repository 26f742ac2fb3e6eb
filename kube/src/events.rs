//! Recording core/v1 Events (what `kubectl describe` and `kubectl get
//! events` show) for every component: the controller-manager, noded, and
//! whoever else reports on objects.
//!
//! kube-runtime's recorder writes `events.k8s.io/v1` Events; kubectl
//! describe reads core/v1 ones, so this recorder writes those. Recording is
//! fire-and-forget: an Event is written in the background and a failed
//! write is only logged, never fatal, never blocking.
//!
//! Like client-go's event correlator, a repeat of an identical Event (same
//! object, field path, type, reason and message) bumps the first one's
//! `count` and `lastTimestamp` instead of creating another, and repeats
//! within [`REPEAT_WINDOW`] are only counted (a loop that retries every
//! second would otherwise write an Event per second); `kubectl describe`
//! then shows `(x5 over 2m)`.
//!
//! Like client-go's aggregator, Events about one object with the same type
//! and reason but different messages are combined once there are
//! [`AGGREGATE_MAX`] of them within [`AGGREGATE_WINDOW`]: the rest go into
//! one Event whose message starts with `(combined from similar events): `
//! and ends with the latest message (a ReplicaSet creating a thousand pods
//! writes ten Events, not a thousand). And like client-go's spam filter, a
//! recorder writes at most [`SPAM_BURST`] Events about one object at once,
//! refilled by one every [`SPAM_REFILL`]; the writes it holds back are still
//! counted, so the next one written carries the whole count.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identical Events closer together than this are counted, not written.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// A repeat older than this starts a new Event (the API server expires Events after an hour).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Distinct messages of one object, type and reason written as they are
/// before the rest are combined (client-go: 10).
pub const AGGREGATE_MAX: usize = 10;

/// How long similar Events are remembered for combining (client-go: 10 minutes).
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);

/// How a combined Event's message starts, as client-go words it.
pub const AGGREGATE_PREFIX: &str = "(combined from similar events): ";

/// Events written about one object at once (client-go's spam filter burst: 25).
pub const SPAM_BURST: f64 = 25.0;

/// One more Event about an object is allowed this often (client-go: 1 per 5 minutes).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);

/// Entries the correlator, the aggregator and the spam filter each keep of
/// the most recently seen (client-go's LRU: 4096); see [`forget_least_recent`].
const REMEMBERED: usize = 4096;

/// Bound a remembered map as client-go's LRU bounds it, amortized: past
/// twice [`REMEMBERED`] entries, keep the [`REMEMBERED`] most recently seen
/// (by `seen`). What is forgotten is as if never seen, as with client-go's
/// LRU: a repeat written anew, a message not combined, an object's spam
/// allowance full again.
/// Scanning the map on every insert past the bound (what this did before)
/// cost a pass over thousands of entries per Event once more objects than
/// that were recent, as for a scheduler binding thousands of pods.
fn forget_least_recent<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, seen: impl Fn(&V) -> Instant) {
    if map.len() <= 2 * REMEMBERED {
        return;
    }
    let mut times: Vec<Instant> = map.values().map(&seen).collect();
    let at = times.len() - REMEMBERED;
    let cutoff = *times.select_nth_unstable(at).1;
    map.retain(|_, v| seen(v) >= cutoff);
}

/// Severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// (object uid or name, field path, type, reason, message).
type Key = (String, String, &'static str, String, String);

#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
    first: Timestamp,
    written: Instant,
}

/// What to do with an Event, given the ones seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Write a new Event.
    Create,
    /// Bump the Event `name` to `count`.
    Update { name: String, count: i32 },
    /// Only counted; a later write carries the count.
    Skip,
}

/// Messages seen of one (object, type, reason).
#[derive(Debug)]
struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

/// An object's allowance of Event writes.
#[derive(Debug)]
struct Allowance {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
    /// (object, type, reason) → the distinct messages seen lately.
    similar: HashMap<(String, &'static str, String), Similar>,
    /// Object → its allowance.
    allowance: HashMap<String, Allowance>,
}

impl Correlator {
    /// The message to write for a new Event about `object`: `message`
    /// itself, or the combined form once [`AGGREGATE_MAX`] distinct
    /// messages of the same type and reason were seen. The second value is
    /// the message to dedupe by (the same for every combined one).
    fn aggregate(
        &mut self,
        object: &str,
        type_: &'static str,
        reason: &str,
        message: String,
        now: Instant,
    ) -> (String, String) {
        forget_least_recent(&mut self.similar, |s| s.last);
        let entry = self
            .similar
            .entry((object.to_string(), type_, reason.to_string()))
            .or_insert_with(|| Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.saturating_duration_since(entry.last) > AGGREGATE_WINDOW {
            entry.messages.clear();
        }
        entry.last = now;
        if entry.messages.len() < AGGREGATE_MAX {
            entry.messages.insert(message.clone());
        }
        if entry.messages.len() < AGGREGATE_MAX {
            (message.clone(), message)
        } else {
            (format!("{AGGREGATE_PREFIX}{message}"), AGGREGATE_PREFIX.to_string())
        }
    }

    /// Whether one more write about `object` is allowed now (a token bucket
    /// of [`SPAM_BURST`], refilled by one every [`SPAM_REFILL`]).
    fn allow(&mut self, object: &str, now: Instant) -> bool {
        forget_least_recent(&mut self.allowance, |a| a.at);
        let a = self.allowance.entry(object.to_string()).or_insert(Allowance {
            tokens: SPAM_BURST,
            at: now,
        });
        let refilled = now.saturating_duration_since(a.at).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        a.tokens = (a.tokens + refilled).min(SPAM_BURST);
        a.at = now;
        if a.tokens >= 1.0 {
            a.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn observe(&mut self, key: Key, name: &str, now: Instant, stamp: Timestamp) -> (Action, i32, Timestamp) {
        forget_least_recent(&mut self.seen, |s| s.written);
        match self.seen.get_mut(&key) {
            Some(seen) if now.saturating_duration_since(seen.written) < FORGET_AFTER => {
                seen.count += 1;
                if now.saturating_duration_since(seen.written) < REPEAT_WINDOW {
                    return (Action::Skip, seen.count, seen.first);
                }
                seen.written = now;
                let update = Action::Update {
                    name: seen.name.clone(),
                    count: seen.count,
                };
                (update, seen.count, seen.first)
            }
            _ => {
                let seen = Seen {
                    name: name.to_string(),
                    count: 1,
                    first: stamp,
                    written: now,
                };
                self.seen.insert(key, seen);
                (Action::Create, 1, stamp)
            }
        }
    }
}

/// Writes Events on behalf of one component instance.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    host: Option<String>,
    instance: String,
    correlator: Arc<Mutex<Correlator>>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl EventRecorder {
    /// A recorder reporting as `component` from this process
    /// (`reportingInstance` `<hostname>_<pid>`).
    pub fn new(client: Client, component: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            client,
            component: component.into(),
            host: None,
            instance: format!("{host}_{}", std::process::id()),
            correlator: Arc::default(),
        }
    }

    /// A recorder reporting as `component` from `instance`.
    pub fn with_instance(client: Client, component: &str, instance: &str) -> Self {
        Self {
            instance: instance.into(),
            ..Self::new(client, component)
        }
    }

    /// A recorder of a node's agent: `source.host` and `reportingInstance`
    /// are the node's name, as the kubelet reports them.
    pub fn for_node(client: Client, component: &str, node: &str) -> Self {
        Self {
            host: Some(node.into()),
            instance: node.into(),
            ..Self::new(client, component)
        }
    }

    /// Record an Event about `obj` (in its namespace, or `default` for
    /// cluster-scoped objects).
    pub fn record<K>(&self, obj: &K, type_: EventType, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.record_reference(object_reference(obj), type_, reason, message);
    }

    /// Record an Event about the object `reference` names (with a
    /// `fieldPath`, e.g. one container of a pod).
    pub fn record_reference(&self, reference: ObjectReference, type_: EventType, reason: &str, message: String) {
        self.record_full(reference, None, type_, reason, reason, message);
    }

    /// Record an Event with its `action` (what was being done, e.g.
    /// kube-scheduler's `Scheduling`) and a `related` object (e.g. the pod a
    /// victim was preempted for).
    pub fn record_full(
        &self,
        reference: ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let object = reference.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let fresh_name = format!(
            "{object}.{:x}{:x}",
            now.as_nanosecond(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        // The object, as client-go's spam key names it (the source is this recorder).
        let identity = format!(
            "{}/{}/{}/{}/{}",
            reference.kind.as_deref().unwrap_or_default(),
            namespace,
            object,
            reference.uid.as_deref().unwrap_or_default(),
            reference.api_version.as_deref().unwrap_or_default(),
        );
        let clock = Instant::now();
        let (decision, count, first, message) = {
            let mut correlator = self.correlator.lock().unwrap_or_else(|e| e.into_inner());
            let (message, dedupe_by) = correlator.aggregate(&identity, type_.as_str(), reason, message, clock);
            let key = (
                reference.uid.clone().unwrap_or_else(|| object.clone()),
                reference.field_path.clone().unwrap_or_default(),
                type_.as_str(),
                reason.to_string(),
                dedupe_by,
            );
            let (decision, count, first) = correlator.observe(key, &fresh_name, clock, now);
            if decision != Action::Skip && !correlator.allow(&identity, clock) {
                tracing::trace!(%object, reason, "event held back: too many about this object");
                return;
            }
            (decision, count, first, message)
        };
        let event_name = match &decision {
            Action::Skip => return,
            Action::Create => fresh_name,
            Action::Update { name, .. } => name.clone(),
        };
        tracing::debug!(%object, reason, %message, count, "event");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: reference,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.as_str().into()),
            count: Some(count),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(action.into()),
            related,
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let latest = event.message.clone();
        tokio::spawn(async move {
            if let Action::Update { .. } = decision {
                // A combined Event shows the latest message.
                let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now), "message": latest });
                if events
                    .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            if let Err(err) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(%err, "could not record an event");
            }
        });
    }
}

/// An ObjectReference naming `obj`.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into()),
        kind: Some(K::kind(&()).into()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.uid(),
        resource_version: obj.resource_version(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(message: &str) -> Key {
        ("uid".into(), "c".into(), "Warning", "BackOff".into(), message.into())
    }

    #[test]
    fn repeats_are_counted_and_written_at_most_once_per_window() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let stamp = Timestamp::now();
        assert_eq!(c.observe(key("m"), "e1", t, stamp).0, Action::Create);
        assert_eq!(
            c.observe(key("m"), "e2", t + Duration::from_secs(1), stamp).0,
            Action::Skip
        );
        assert_eq!(c.observe(key("other"), "e3", t, stamp).0, Action::Create);
        let (action, count, first) = c.observe(key("m"), "e4", t + Duration::from_secs(11), stamp);
        assert_eq!(
            action,
            Action::Update {
                name: "e1".into(),
                count: 3
            }
        );
        assert_eq!((count, first), (3, stamp));
        let later = t + Duration::from_secs(11) + FORGET_AFTER;
        assert_eq!(c.observe(key("m"), "e5", later, stamp).0, Action::Create);
    }

    #[test]
    fn similar_events_are_combined_after_ten_messages() {
        let mut c = Correlator::default();
        let t = Instant::now();
        for i in 0..AGGREGATE_MAX - 1 {
            let m = format!("Created pod: web-{i}");
            assert_eq!(
                c.aggregate("rs", "Normal", "SuccessfulCreate", m.clone(), t),
                (m.clone(), m)
            );
        }
        let (shown, by) = c.aggregate("rs", "Normal", "SuccessfulCreate", "Created pod: web-9".into(), t);
        assert_eq!(shown, "(combined from similar events): Created pod: web-9");
        assert_eq!(by, AGGREGATE_PREFIX);
        let (shown, by2) = c.aggregate("rs", "Normal", "SuccessfulCreate", "Created pod: web-10".into(), t);
        assert_eq!(shown, "(combined from similar events): Created pod: web-10");
        assert_eq!(by2, by, "every combined one dedupes into one Event");
        // Another reason, or another object, is counted on its own.
        let m = "Deleted pod: web-0".to_string();
        assert_eq!(c.aggregate("rs", "Normal", "SuccessfulDelete", m.clone(), t).0, m);
        assert_eq!(c.aggregate("rs2", "Normal", "SuccessfulCreate", "x".into(), t).0, "x");
        // After a quiet window, messages are written as they are again.
        let later = t + AGGREGATE_WINDOW + Duration::from_secs(1);
        let m = "Created pod: web-11".to_string();
        assert_eq!(c.aggregate("rs", "Normal", "SuccessfulCreate", m.clone(), later).0, m);
    }

    #[test]
    fn an_object_gets_twenty_five_writes_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        let t = Instant::now();
        for _ in 0..25 {
            assert!(c.allow("pod-a", t));
        }
        assert!(!c.allow("pod-a", t), "the 26th write at once is held back");
        assert!(c.allow("pod-b", t), "another object has its own allowance");
        assert!(!c.allow("pod-a", t + Duration::from_secs(299)));
        assert!(c.allow("pod-a", t + Duration::from_secs(300) + Duration::from_millis(10)));
        assert!(!c.allow("pod-a", t + Duration::from_secs(301)));
    }

    #[test]
    fn past_twice_the_bound_the_least_recently_seen_are_forgotten() {
        let t = Instant::now();
        let mut map: HashMap<usize, Instant> = HashMap::new();
        for i in 0..2 * REMEMBERED {
            map.insert(i, t + Duration::from_millis(i as u64));
            forget_least_recent(&mut map, |at| *at);
        }
        assert_eq!(map.len(), 2 * REMEMBERED, "nothing is forgotten up to twice the bound");
        map.insert(usize::MAX, t + Duration::from_secs(3600));
        forget_least_recent(&mut map, |at| *at);
        assert_eq!(map.len(), REMEMBERED);
        assert!(map.contains_key(&usize::MAX), "the most recent stays");
        assert!(!map.contains_key(&REMEMBERED), "the least recent go");
        assert!(map.contains_key(&(REMEMBERED + 1)));
    }

    #[test]
    fn a_reference_names_the_object_and_its_kind() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7"}
        }))
        .unwrap();
        let r = object_reference(&pod);
        assert_eq!(
            (r.api_version.as_deref(), r.kind.as_deref(), r.name.as_deref()),
            (Some("v1"), Some("Pod"), Some("web"))
        );
        assert_eq!((r.namespace.as_deref(), r.uid.as_deref()), (Some("shop"), Some("u1")));
    }
}
