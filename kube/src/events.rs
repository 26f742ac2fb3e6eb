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

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identical Events closer together than this are counted, not written.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// A repeat older than this starts a new Event (the API server expires Events after an hour).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

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

#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<Key, Seen>,
}

impl Correlator {
    fn observe(&mut self, key: Key, name: &str, now: Instant, stamp: Timestamp) -> (Action, i32, Timestamp) {
        if self.seen.len() > 4096 {
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.written) < FORGET_AFTER);
        }
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
        let key = (
            reference.uid.clone().unwrap_or_else(|| object.clone()),
            reference.field_path.clone().unwrap_or_default(),
            type_.as_str(),
            reason.to_string(),
            message.clone(),
        );
        let (decision, count, first) =
            self.correlator
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(key, &fresh_name, Instant::now(), now);
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
        tokio::spawn(async move {
            if let Action::Update { .. } = decision {
                let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now) });
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
