//! The pod the controller-manager caches: the fields its controllers read,
//! decoded straight from the watch, and nothing else.
//!
//! The shared pod informer is most of the manager's memory: at 5,000 nodes
//! and 14,000 pods its pods took about 200 MB (heaptrack), most of it
//! k8s-openapi's structs holding every field of the API inline (a `Pod` is
//! 2,464 bytes before anything it points to, each `Container` 2,336, each
//! `Volume` 3,280). Kubernetes' controller-manager caches whole pods minus
//! their managedFields; this one keeps the pod's metadata as it is and, of
//! its spec and status, what some controller reads, with the same field
//! names and shapes, so controller code reads a [`CachedPod`] as it would a
//! `Pod`. A field left out cannot be read by mistake: code that reads it
//! does not compile. The volumes are only the claims the storage controllers
//! read ([`sluice_kube::storage::names_a_claim`]).
//!
//! No controller writes a cached pod back whole: their writes to pods are
//! patches of metadata or status, deletions and evictions, so nothing left
//! out here is ever lost.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ContainerPort, ContainerState, PodCondition, Toleration, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;

/// A pod as the controller-manager caches it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedPod {
    /// As the API has it (less managedFields, which the informer drops).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the controllers read of the spec.
    pub spec: Option<CachedPodSpec>,
    /// What the controllers read of the status.
    pub status: Option<CachedPodStatus>,
}

/// The fields of a `PodSpec` some controller reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodSpec {
    pub active_deadline_seconds: Option<i64>,
    pub affinity: Option<Affinity>,
    #[serde(default)]
    pub containers: Vec<CachedContainer>,
    pub hostname: Option<String>,
    pub init_containers: Option<Vec<CachedContainer>>,
    pub node_name: Option<String>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub overhead: Option<BTreeMap<String, Quantity>>,
    pub priority: Option<i32>,
    pub priority_class_name: Option<String>,
    pub restart_policy: Option<String>,
    pub scheduler_name: Option<String>,
    pub subdomain: Option<String>,
    pub tolerations: Option<Vec<Toleration>>,
    /// Only the volumes that name a claim.
    pub volumes: Option<Vec<Volume>>,
}

/// The fields of a `Container` some controller reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainer {
    pub name: String,
    pub image: Option<String>,
    pub ports: Option<Vec<ContainerPort>>,
    pub resources: Option<CachedResources>,
    pub restart_policy: Option<String>,
}

/// What a controller reads of a container's `resources`: its requests (the
/// autoscaler's utilization is measured against them). No controller reads
/// the limits or claims.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedResources {
    pub requests: Option<Requests>,
}

/// Resource names and their quantities, as a `requests` map reads them, in
/// a vector: the map's `BTreeMap` allocates a whole B-tree leaf (about 540
/// bytes) for a pod's one or two requests, 10.8 MB of the manager's 144 MB
/// heap at 19,000 pods (heaptrack, 5,000-node scheduler bench).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests(Vec<(String, Quantity)>);

impl Requests {
    /// The quantity requested of `resource`.
    pub fn get(&self, resource: &str) -> Option<&Quantity> {
        self.0.iter().find(|(name, _)| name == resource).map(|(_, q)| q)
    }
}

impl<'de> Deserialize<'de> for Requests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Quantity>::deserialize(d)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// The fields of a `PodStatus` some controller reads. A `PodStatus` is 616
/// bytes inline and each `ContainerStatus` 752, and with its conditions'
/// and containers' strings a running pod's status took about 1.8 KB of the
/// heap besides (heaptrack, 5,000-node scheduler bench); the host IPs, the
/// QoS class and the containers' images and IDs are read by no controller.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodStatus {
    pub conditions: Option<Vec<PodCondition>>,
    pub container_statuses: Option<Vec<CachedContainerStatus>>,
    pub init_container_statuses: Option<Vec<CachedContainerStatus>>,
    pub phase: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    pub start_time: Option<Time>,
}

/// The fields of a `ContainerStatus` some controller reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CachedContainerStatus {
    pub name: String,
    #[serde(default)]
    pub restart_count: i32,
    pub state: Option<ContainerState>,
}

sluice_kube::pod_resource!(CachedPod);

sluice_kube::pod_parts!(CachedPod);

#[cfg(test)]
impl CachedPod {
    /// What the cache would hold of `pod`: the controllers' tests build
    /// whole pods and read them as the cache has them.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        let json = serde_json::to_value(pod).expect("a pod encodes");
        let mut cached = serde_json::from_value(json).expect("a pod decodes as a cached pod");
        keep_claims(&mut cached);
        cached
    }
}

/// Trims what [`CachedPod`] keeps of a pod's volumes to the claims.
pub fn keep_claims(pod: &mut CachedPod) {
    if let Some(volumes) = pod.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
        volumes.retain(sluice_kube::storage::names_a_claim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    /// A pod as the API sends it, with the fields a cached pod drops.
    fn full() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1", "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                                              "uid": "s1", "controller": true}]},
            "spec": {
                "nodeName": "n1", "hostname": "web-0", "subdomain": "web", "priority": 5,
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute"}],
                "containers": [{"name": "web", "image": "nginx", "command": ["nginx"],
                                "env": [{"name": "A", "value": "b"}],
                                "ports": [{"name": "http", "containerPort": 80}],
                                "resources": {"requests": {"memory": "64Mi", "cpu": "100m"},
                                              "limits": {"memory": "128Mi"}},
                                "livenessProbe": {"httpGet": {"port": 80}},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "initContainers": [{"name": "log", "image": "busybox", "restartPolicy": "Always"}],
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                ],
                "securityContext": {"runAsUser": 1000},
                "dnsPolicy": "ClusterFirst",
            },
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                       "hostIP": "192.168.0.2", "qosClass": "Burstable", "startTime": "2026-12-07T18:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": "2026-12-07T18:00:05Z"}],
                       "initContainerStatuses": [{"name": "log", "image": "busybox", "imageID": "sha256:1",
                                                  "ready": true, "restartCount": 0,
                                                  "state": {"running": {"startedAt": "2026-12-07T18:00:01Z"}}}],
                       "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "sha256:2",
                                              "containerID": "containerd://c1", "ready": true, "started": true,
                                              "restartCount": 2,
                                              "state": {"terminated": {"exitCode": 3,
                                                                       "finishedAt": "2026-12-07T18:00:09Z"}},
                                              "lastState": {"terminated": {"exitCode": 1}}}]},
        })
    }

    /// A cached pod reads as the whole pod does where it keeps a field, and
    /// keeps of its volumes only the claims.
    #[test]
    fn a_cached_pod_keeps_what_the_controllers_read() {
        let mut cached: CachedPod = serde_json::from_value(full()).expect("a cached pod");
        let whole: Pod = serde_json::from_value(full()).expect("a pod");
        keep_claims(&mut cached);
        assert_eq!(cached.metadata, whole.metadata);
        let (status, full_status) = (
            cached.status.as_ref().expect("status"),
            whole.status.as_ref().expect("status"),
        );
        assert_eq!(status.phase, full_status.phase);
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(status.start_time, full_status.start_time);
        assert_eq!(status.conditions, full_status.conditions);
        let kept = |c: &CachedContainerStatus| (c.name.clone(), c.restart_count, c.state.clone());
        let whole_kept =
            |c: &k8s_openapi::api::core::v1::ContainerStatus| (c.name.clone(), c.restart_count, c.state.clone());
        for (cs, full_cs) in [
            (&status.container_statuses, &full_status.container_statuses),
            (&status.init_container_statuses, &full_status.init_container_statuses),
        ] {
            let cs: Vec<_> = cs.iter().flatten().map(kept).collect();
            let full_cs: Vec<_> = full_cs.iter().flatten().map(whole_kept).collect();
            assert_eq!(cs, full_cs);
            assert_eq!(cs.len(), 1);
        }
        assert_eq!(
            sluice_kube::pods::condition(&cached, "Ready"),
            sluice_kube::pods::condition(&whole, "Ready")
        );
        assert!(!sluice_kube::pods::is_terminated(&cached));
        let (spec, full_spec) = (cached.spec.as_ref().expect("spec"), whole.spec.as_ref().expect("spec"));
        assert_eq!(spec.node_name, full_spec.node_name);
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert_eq!(spec.priority, Some(5));
        assert_eq!(spec.tolerations, full_spec.tolerations);
        assert_eq!(spec.containers[0].ports, full_spec.containers[0].ports);
        let requests = |r: Option<&BTreeMap<String, Quantity>>| {
            r.into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let kept = spec.containers[0].resources.as_ref().and_then(|r| r.requests.as_ref());
        let whole_requests = full_spec.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref());
        assert_eq!(kept.map(|r| r.0.clone()), Some(requests(whole_requests)));
        assert_eq!(
            kept.and_then(|r| r.get("cpu")),
            whole_requests.and_then(|r| r.get("cpu"))
        );
        assert_eq!(
            kept.and_then(|r| r.get("memory")),
            whole_requests.and_then(|r| r.get("memory"))
        );
        assert_eq!(kept.and_then(|r| r.get("nvidia.com/gpu")), None);
        let init = &spec.init_containers.as_ref().expect("init containers")[0];
        assert_eq!(init.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            sluice_kube::storage::claim_names(&cached),
            sluice_kube::storage::claim_names(&whole)
        );
        assert_eq!(
            sluice_kube::storage::claim_names(&cached),
            ["data-web-0", "web-0-scratch"]
        );
        assert!(sluice_kube::pods::is_ready(&cached));
        assert_eq!(
            spec.volumes
                .iter()
                .flatten()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["data", "scratch"]
        );
    }

    /// What a cached pod costs inline, against the whole one (a guard
    /// against a large field slipping in).
    #[test]
    fn a_cached_pod_is_a_fraction_of_a_pod_inline() {
        // The metadata is kept whole.
        assert!(std::mem::size_of::<CachedPod>() * 2 < std::mem::size_of::<Pod>());
        assert!(
            std::mem::size_of::<CachedPodStatus>() * 3 < std::mem::size_of::<k8s_openapi::api::core::v1::PodStatus>()
        );
        assert!(
            std::mem::size_of::<CachedContainerStatus>() * 3
                < std::mem::size_of::<k8s_openapi::api::core::v1::ContainerStatus>()
        );
        assert!(
            std::mem::size_of::<CachedContainer>() * 8 < std::mem::size_of::<k8s_openapi::api::core::v1::Container>()
        );
    }
}
