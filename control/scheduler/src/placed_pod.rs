//! What the scheduler keeps of a pod placed on a node (bound, or assumed by
//! its own decision): what its plugins read of a pod already there, and
//! nothing else.
//!
//! The cache holds one of these for every placed pod of the cluster, so its
//! size is most of the scheduler's memory at scale. A k8s-openapi `Pod` holds
//! every field of the API inline (2,464 bytes before anything it points to),
//! whatever it is trimmed to; a cache of trimmed `Pod`s grew by about 5 KB per
//! pod at 5,000 simulated nodes. What the plugins read of a placed pod:
//! - InterPodAffinity and PodTopologySpread: its namespace and labels, and
//!   whether it is being deleted (the cache keeps its affinity terms
//!   resolved beside it, from the whole pod, as it arrives);
//! - DefaultPreemption: its priority and start time (which victims go
//!   first), its name, namespace and labels (disruption budgets), and its
//!   identity for the eviction and the `Preempted` event (name, namespace,
//!   uid, resourceVersion);
//! - NodeResourcesFit and NodePorts: its requests and host ports, which the
//!   cache counts from the whole pod as it arrives and keeps beside it.
//!
//! A plugin that comes to read more of a placed pod must be given it here:
//! code that reads a field left out does not compile. The scheduler never
//! writes a placed pod back whole (victims are patched and deleted by name),
//! so nothing left out is lost.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// A pod placed on a node, as the scheduler's cache keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacedPod {
    /// Its name, namespace, uid, resourceVersion, labels and
    /// deletionTimestamp; no other field of its metadata is kept.
    pub metadata: ObjectMeta,
    /// `spec.priority`.
    pub priority: Option<i32>,
    /// `status.startTime`.
    pub start_time: Option<Time>,
}

impl PlacedPod {
    /// What is kept of `pod`.
    pub fn of(pod: &Pod) -> PlacedPod {
        let m = &pod.metadata;
        PlacedPod {
            metadata: ObjectMeta {
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                resource_version: m.resource_version.clone(),
                labels: m.labels.clone(),
                deletion_timestamp: m.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            priority: pod.spec.as_ref().and_then(|s| s.priority),
            start_time: pod.status.as_ref().and_then(|s| s.start_time.clone()),
        }
    }

    /// Its priority (0 when admission gave none).
    pub fn priority(&self) -> i32 {
        self.priority.unwrap_or(0)
    }

    /// Whether it is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
}

// A placed pod is a Pod to kube: events name it as one.
sluice_kube::pod_resource!(PlacedPod);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, Container, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    #[test]
    fn keeps_what_the_plugins_read_and_nothing_else() {
        let started = Time(k8s_openapi::jiff::Timestamp::now());
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                resource_version: Some("42".into()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                deletion_timestamp: Some(started.clone()),
                annotations: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
                generate_name: Some("web-".into()),
                owner_references: Some(vec![OwnerReference {
                    name: "web".into(),
                    ..Default::default()
                }]),
                finalizers: Some(vec!["f".into()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(7),
                node_name: Some("n1".into()),
                affinity: Some(Affinity::default()),
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                start_time: Some(started.clone()),
                ..Default::default()
            }),
        };
        let kept = PlacedPod::of(&pod);
        let m = &kept.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("web-1"), Some("shop"), Some("u1"))
        );
        assert_eq!(m.resource_version.as_deref(), Some("42"));
        assert_eq!(m.labels, pod.metadata.labels);
        assert!(kept.is_terminating());
        assert_eq!(
            (&m.annotations, &m.generate_name, &m.owner_references, &m.finalizers),
            (&None, &None, &None, &None)
        );
        assert_eq!((kept.priority(), kept.start_time.clone()), (7, Some(started)));
        // A pod admission gave no priority counts as 0.
        assert_eq!(PlacedPod::of(&Pod::default()).priority(), 0);
        let reference = sluice_kube::events::object_reference(&kept);
        assert_eq!(
            (reference.kind.as_deref(), reference.api_version.as_deref()),
            (Some("Pod"), Some("v1"))
        );
    }

    #[test]
    fn is_much_smaller_than_a_pod() {
        assert!(std::mem::size_of::<PlacedPod>() * 4 < std::mem::size_of::<Pod>());
    }
}
