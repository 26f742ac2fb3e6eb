//! The kubelet's Events about pods: what `kubectl describe pod` lists.
//!
//! The pod worker reports each step of a container's life (image present,
//! created, started, stopping, back-off, probe failures) as a core/v1 Event
//! on the Pod, with this node as the source host. Recording never blocks or
//! fails a sync: Events are written in the background and a failed write is
//! only logged.
//!
//! Like the kubelet's event correlator, a repeat of an identical Event (same
//! pod, container, type, reason and message) bumps the first one's `count`
//! and `lastTimestamp` instead of creating another, and repeats within
//! [`REPEAT_WINDOW`] are only counted (the pod loop syncs every second, so a
//! pod in back-off would otherwise write an Event per second);
//! `kubectl describe` then shows `(x5 over 2m)`.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Identical Events closer together than this are counted, not written.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// A repeat older than this starts a new Event (the API server expires Events after an hour).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// (pod uid, container, type, reason, message).
type Key = (String, String, String, String, String);

#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
    first: k8s_openapi::jiff::Timestamp,
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
    fn observe(
        &mut self,
        key: Key,
        name: &str,
        now: Instant,
        stamp: k8s_openapi::jiff::Timestamp,
    ) -> (Action, i32, k8s_openapi::jiff::Timestamp) {
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
                (
                    Action::Update {
                        name: seen.name.clone(),
                        count: seen.count,
                    },
                    seen.count,
                    seen.first,
                )
            }
            _ => {
                self.seen.insert(
                    key,
                    Seen {
                        name: name.to_string(),
                        count: 1,
                        first: stamp,
                        written: now,
                    },
                );
                (Action::Create, 1, stamp)
            }
        }
    }
}

/// The component name Events carry (as the kubelet's `kubelet`).
pub const COMPONENT: &str = "noded";

/// Writes Events about Pods on behalf of one node.
#[derive(Clone)]
pub struct PodEvents {
    client: kube::Client,
    node: String,
    correlator: Arc<Mutex<Correlator>>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl PodEvents {
    /// A recorder for node `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_string(),
            correlator: Arc::default(),
        }
    }

    /// A `Normal` event about container `container` of `pod`.
    pub fn normal(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        self.record(pod, container, "Normal", reason, message);
    }

    /// A `Warning` event about container `container` of `pod`.
    pub fn warning(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        self.record(pod, container, "Warning", reason, message);
    }

    fn record(&self, pod: &Pod, container: &str, type_: &str, reason: &str, message: String) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let fresh_name = format!(
            "{name}.{:x}{:x}",
            now.as_nanosecond(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let key = (
            pod.metadata.uid.clone().unwrap_or_default(),
            container.to_string(),
            type_.to_string(),
            reason.to_string(),
            message.clone(),
        );
        let (action, count, first) =
            self.correlator
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(key, &fresh_name, Instant::now(), now);
        let event_name = match &action {
            Action::Skip => return,
            Action::Create => fresh_name,
            Action::Update { name, .. } => name.clone(),
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: (!container.is_empty()).then(|| container_field_path(pod, container)),
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            count: Some(count),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.node.clone()),
            action: Some(reason.into()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Action::Update { .. } = action {
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": Time(now),
                });
                let params = PatchParams::default();
                if events.patch(&event_name, &params, &Patch::Merge(&patch)).await.is_ok() {
                    return;
                }
            }
            if let Err(err) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(%err, "could not record an event");
            }
        });
    }
}

/// The `involvedObject.fieldPath` of an event about `container`, as the
/// kubelet names it: `spec.containers{name}`, or the init or ephemeral
/// container list it is in.
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let spec = pod.spec.as_ref();
    let list = if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container))
    {
        "ephemeralContainers"
    } else if spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container))
    {
        "initContainers"
    } else {
        "containers"
    };
    format!("spec.{list}{{{container}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_name_the_container_list() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {
            "containers": [{"name": "main"}], "ephemeralContainers": [{"name": "debugger"}]}}))
        .unwrap();
        assert_eq!(container_field_path(&pod, "main"), "spec.containers{main}");
        assert_eq!(
            container_field_path(&pod, "debugger"),
            "spec.ephemeralContainers{debugger}"
        );
    }

    fn key(message: &str) -> Key {
        (
            "uid".into(),
            "c".into(),
            "Warning".into(),
            "BackOff".into(),
            message.into(),
        )
    }

    #[test]
    fn repeats_are_counted_and_written_at_most_once_per_window() {
        let mut c = Correlator::default();
        let t = Instant::now();
        let stamp = k8s_openapi::jiff::Timestamp::now();
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
}
