//! Telling users where a pod went and why a pod waits: the `Scheduled`
//! Event of a bound pod, the FailedScheduling Event and the pod's
//! `PodScheduled=False` condition with reason `Unschedulable`; and the
//! `Preempted` Event of a victim.
//!
//! Events go through the shared recorder (`sluice_kube::events`), which
//! counts repeats of the same message into one Event's `count` and
//! `lastTimestamp` instead of creating an Event per attempt; the condition
//! is written only when it changes, so a pod that waits long costs few API
//! writes.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use sluice_kube::events::{object_reference, EventRecorder, EventType};

use crate::placed_pod::PlacedPod;

/// The Event reason kube-scheduler uses.
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";
/// The Event reason of a bound pod.
pub const REASON_SCHEDULED: &str = "Scheduled";
/// The PodScheduled condition reason for pods that fit nowhere.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// Writes Scheduled, FailedScheduling and Preempted Events and PodScheduled conditions.
pub struct SchedulingRecorder {
    client: Client,
    events: EventRecorder,
}

impl SchedulingRecorder {
    /// A recorder reporting as `component` (the scheduler name) from `instance`.
    pub fn new(client: Client, component: &str, instance: &str) -> SchedulingRecorder {
        SchedulingRecorder {
            events: EventRecorder::with_instance(client.clone(), component, instance),
            client,
        }
    }

    /// Record that `pod` fits nowhere, with kube-scheduler's message.
    pub async fn record(&self, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        self.events.record_full(
            object_reference(pod),
            None,
            EventType::Warning,
            REASON_FAILED_SCHEDULING,
            "Scheduling",
            message.into(),
        );
        self.set_condition(pod, message).await
    }

    /// The `Scheduled` event of a pod bound to `node`, as kube-scheduler
    /// words it (`kubectl describe pod` shows it first).
    pub fn record_scheduled(&self, pod: &Pod, node: &str) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.events.record_full(
            object_reference(pod),
            None,
            EventType::Normal,
            REASON_SCHEDULED,
            "Binding",
            format!("Successfully assigned {ns}/{name} to {node}"),
        );
    }

    /// The `Preempted` event of a pod evicted for `preemptor`, as
    /// kube-scheduler words it.
    pub fn record_preempted(&self, victim: &PlacedPod, preemptor: &Pod, node: &str) {
        let preemptor_uid = preemptor.metadata.uid.as_deref().unwrap_or_default();
        let related = ObjectReference {
            field_path: None,
            resource_version: None,
            ..object_reference(preemptor)
        };
        self.events.record_full(
            object_reference(victim),
            Some(related),
            EventType::Normal,
            "Preempted",
            "Preempting",
            format!("Preempted by pod {preemptor_uid} on node {node}"),
        );
    }

    async fn set_condition(&self, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c.type_ == "PodScheduled") {
            if c.status == "False"
                && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
                && c.message.as_deref() == Some(message)
            {
                return Ok(());
            }
        }
        let condition = k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some(REASON_UNSCHEDULABLE.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        // A strategic merge patch (conditions merge by type), as kube-scheduler
        // sends: conditions others wrote meanwhile (an eviction's
        // DisruptionTarget) are kept, not replaced by our cached list.
        let patch = serde_json::json!({ "status": { "conditions": [condition] } });
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        Ok(())
    }
}
