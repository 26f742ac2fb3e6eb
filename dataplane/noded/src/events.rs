//! The kubelet's Events about pods: what `kubectl describe pod` lists.
//!
//! The pod worker reports each step of a container's life (image present,
//! created, started, stopping, back-off, probe failures) as a core/v1 Event
//! on the Pod, with this node as the source host. Recording never blocks or
//! fails a sync: Events are written in the background and a failed write is
//! only logged.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use std::sync::atomic::{AtomicU64, Ordering};

/// The component name Events carry (as the kubelet's `kubelet`).
pub const COMPONENT: &str = "noded";

/// Writes Events about Pods on behalf of one node.
#[derive(Clone)]
pub struct PodEvents {
    client: kube::Client,
    node: String,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl PodEvents {
    /// A recorder for node `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_string(),
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
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{name}.{:x}{:x}",
                    now.as_nanosecond(),
                    SEQUENCE.fetch_add(1, Ordering::Relaxed)
                )),
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
                field_path: (!container.is_empty()).then(|| format!("spec.containers{{{container}}}")),
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
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
            if let Err(err) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(%err, "could not record an event");
            }
        });
    }
}
