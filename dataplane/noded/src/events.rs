//! The kubelet's Events about pods: what `kubectl describe pod` lists.
//!
//! The pod worker reports each step of a container's life (image present,
//! created, started, stopping, back-off, probe failures) as a core/v1 Event
//! on the Pod, with this node as the source host, through the shared
//! recorder (`sluice_kube::events`: written in the background, a failed
//! write only logged, identical repeats counted — the pod loop syncs every
//! second, so a pod in back-off would otherwise write an Event per second;
//! `kubectl describe` shows `(x5 over 2m)`). What is the kubelet's own here
//! is naming the container an Event is about.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use sluice_kube::events::{EventRecorder, EventType};

/// The component name Events carry (as the kubelet's `kubelet`).
pub const COMPONENT: &str = "noded";

/// Writes Events about Pods on behalf of one node.
#[derive(Clone)]
pub struct PodEvents {
    recorder: EventRecorder,
}

impl PodEvents {
    /// A recorder for node `node`.
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self {
            recorder: EventRecorder::for_node(client, COMPONENT, node),
        }
    }

    /// A `Normal` event about container `container` of `pod`.
    pub fn normal(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        self.record(pod, container, EventType::Normal, reason, message);
    }

    /// A `Warning` event about container `container` of `pod`.
    pub fn warning(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        self.record(pod, container, EventType::Warning, reason, message);
    }

    fn record(&self, pod: &Pod, container: &str, type_: EventType, reason: &str, message: String) {
        let reference = ObjectReference {
            field_path: (!container.is_empty()).then(|| container_field_path(pod, container)),
            ..sluice_kube::events::object_reference(pod)
        };
        self.recorder.record_reference(reference, type_, reason, message);
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
}
