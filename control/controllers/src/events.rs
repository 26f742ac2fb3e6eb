//! Records core/v1 Events (what `kubectl describe` and `kubectl get events` show).
//!
//! kube-runtime's recorder writes `events.k8s.io/v1` Events; Sluice serves the
//! core/v1 Event that kubectl describe reads, so this small recorder writes
//! those. Recording is fire-and-forget: a failed Event is logged, never fatal.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};

/// Severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or needs attention.
    Warning,
}

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    component: String,
    instance: String,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl EventRecorder {
    /// A recorder reporting as `component`.
    pub fn new(client: Client, component: &str) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Self {
            client,
            component: component.into(),
            instance: format!("{host}_{}", std::process::id()),
        }
    }

    /// Records an Event about `obj` (in its namespace, or `default` for cluster-scoped objects).
    pub fn record<K>(&self, obj: &K, type_: EventType, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object_reference(obj);
        let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.{:x}{:x}",
            reference.name.clone().unwrap_or_default(),
            now.as_nanosecond(),
            seq
        );
        tracing::debug!(object = %reference.name.clone().unwrap_or_default(), reason, %message, "event");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: reference,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some(reason.into()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(err) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %err, "could not record event");
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
