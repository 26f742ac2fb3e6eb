//! Telling users why a pod waits: the FailedScheduling Event and the pod's
//! `PodScheduled=False` condition with reason `Unschedulable`.
//!
//! Repeated failures with the same message update one Event's `count` and
//! `lastTimestamp` instead of creating a new Event per attempt, and the condition is
//! written only when it changes, so a pod that waits long costs few API writes.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use std::collections::HashMap;
use std::sync::Mutex;

/// The Event reason kube-scheduler uses.
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";
/// The PodScheduled condition reason for pods that fit nowhere.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

struct Recorded {
    event_name: String,
    message: String,
    count: i32,
}

/// Writes FailedScheduling Events and PodScheduled conditions.
pub struct FailureRecorder {
    client: Client,
    component: String,
    instance: String,
    recorded: Mutex<HashMap<String, Recorded>>,
}

impl FailureRecorder {
    /// A recorder reporting as `component` (the scheduler name) from `instance`.
    pub fn new(client: Client, component: &str, instance: &str) -> FailureRecorder {
        FailureRecorder {
            client,
            component: component.into(),
            instance: instance.into(),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Forget a pod's event series (it was bound or deleted).
    pub fn forget(&self, uid: &str) {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    /// Record that `pod` fits nowhere, with kube-scheduler's message.
    pub async fn record(&self, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        self.record_event(pod, message).await?;
        self.set_condition(pod, message).await
    }

    async fn record_event(&self, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let now = Timestamp::now();
        let repeat = {
            let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
            match recorded.get_mut(&uid) {
                Some(r) if r.message == message => {
                    r.count += 1;
                    Some((r.event_name.clone(), r.count))
                }
                _ => None,
            }
        };
        if let Some((event_name, count)) = repeat {
            let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now) });
            match api
                .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {} // expired: create a new one
                Err(e) => return Err(e),
            }
        }
        let event_name = format!("{name}.{:x}", now.as_nanosecond());
        let event = self.event_for(
            pod,
            &event_name,
            ("Warning", REASON_FAILED_SCHEDULING, "Scheduling"),
            message,
            now,
        );
        api.create(&PostParams::default(), &event).await?;
        self.recorded.lock().unwrap_or_else(|e| e.into_inner()).insert(
            uid,
            Recorded {
                event_name,
                message: message.into(),
                count: 1,
            },
        );
        Ok(())
    }

    /// The `Preempted` event of a pod evicted for `preemptor`, as
    /// kube-scheduler words it.
    pub async fn record_preempted(&self, victim: &Pod, preemptor: &Pod, node: &str) -> Result<(), kube::Error> {
        let ns = victim.metadata.namespace.as_deref().unwrap_or("default");
        let name = victim.metadata.name.as_deref().unwrap_or_default();
        let now = Timestamp::now();
        let preemptor_uid = preemptor.metadata.uid.as_deref().unwrap_or_default();
        let mut event = self.event_for(
            victim,
            &format!("{name}.{:x}", now.as_nanosecond()),
            ("Normal", "Preempted", "Preempting"),
            &format!("Preempted by pod {preemptor_uid} on node {node}"),
            now,
        );
        event.related = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: preemptor.metadata.namespace.clone(),
            name: preemptor.metadata.name.clone(),
            uid: preemptor.metadata.uid.clone(),
            ..Default::default()
        });
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }

    /// An Event about `pod` from this scheduler: (type, reason, action) and message.
    fn event_for(
        &self,
        pod: &Pod,
        event_name: &str,
        (type_, reason, action): (&str, &str, &str),
        message: &str,
        now: Timestamp,
    ) -> Event {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        Event {
            metadata: ObjectMeta {
                name: Some(event_name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(ns.into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            action: Some(action.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
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
