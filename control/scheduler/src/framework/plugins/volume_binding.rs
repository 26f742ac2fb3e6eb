//! VolumeBinding: a pod's PersistentVolumeClaims must be usable on the node.
//!
//! As kube-scheduler's plugin of the same name:
//!
//! - PreFilter reads the pod's claims (`persistentVolumeClaim` volumes and the
//!   claims of `ephemeral` volumes, `<pod>-<volume>`) from the cache once. A
//!   missing claim, a claim being deleted, or an unbound claim of a class
//!   binding `Immediate` make the pod unschedulable on every node (the PV
//!   controller binds those without the scheduler).
//! - Filter: a bound claim's PersistentVolume `nodeAffinity` must match the
//!   node (`node(s) had volume node affinity conflict`); an unbound claim of a
//!   `WaitForFirstConsumer` class needs, on the node, either an Available
//!   volume it could bind (class, access modes, volume mode, capacity,
//!   selector, node affinity) or a provisioner that can provision there (for
//!   `sluice.dev/local-path`: the node publishes its storage root; the class's
//!   `allowedTopologies` must match), else `node(s) didn't find available
//!   persistent volumes to bind`.
//! - PreBind (run by the scheduler before the binding is posted, in the
//!   binding task so other pods keep being scheduled): an unbound claim gets
//!   the smallest matching Available volume of the chosen node pre-bound
//!   (`spec.claimRef`, as kube-scheduler's `BindPodVolumes`), or else the
//!   annotation `volume.kubernetes.io/selected-node: <node>`, which tells the
//!   PV controller and the provisioner where to provision; then it waits (at
//!   most [`BIND_TIMEOUT`]) until every claim is Bound.
//!
//! Claims, volumes and classes come from the scheduler's own informers
//! ([`Volumes`] in the cache). Not done: assuming volume bindings in the
//! cache between PreBind and the PV controller's binding (two pods placed at
//! once may pick the same Available volume; the second then waits for the
//! timeout and is retried), CSI storage capacity and volume limits.

use crate::cache::Cache;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Unfit};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use sluice_kube::storage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Plugin name.
pub const NAME: &str = "VolumeBinding";
/// A bound claim's volume cannot be used on the node.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// An unbound claim finds neither a volume nor a provisioner on the node.
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// The pod waits for the PV controller to bind an Immediate claim.
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub use sluice_kube::local_path::{
    ANN_DEFAULT_CLASS, ANN_ROOT as ANN_LOCAL_PATH_ROOT, ANN_SELECTED_NODE, PROVISIONER as LOCAL_PATH_PROVISIONER,
};
/// How long PreBind waits for the pod's claims to be bound.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(60);

/// The claims, volumes and classes the scheduler knows (fed by informers).
#[derive(Debug, Default)]
pub struct Volumes {
    claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    volumes: HashMap<String, Arc<PersistentVolume>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

fn ns_name(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Volumes {
    /// Add or update (`present`) or remove a claim.
    pub fn upsert_claim(&mut self, claim: &PersistentVolumeClaim, present: bool) {
        let key = ns_name(&claim.metadata);
        if present {
            let mut claim = claim.clone();
            claim.metadata.managed_fields = None;
            self.claims.insert(key, Arc::new(claim));
        } else {
            self.claims.remove(&key);
        }
    }

    /// Add or update (`present`) or remove a volume.
    pub fn upsert_volume(&mut self, pv: &PersistentVolume, present: bool) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        if present {
            let mut pv = pv.clone();
            pv.metadata.managed_fields = None;
            self.volumes.insert(name, Arc::new(pv));
        } else {
            self.volumes.remove(&name);
        }
    }

    /// Add or update (`present`) or remove a class.
    pub fn upsert_class(&mut self, class: &StorageClass, present: bool) {
        let name = class.metadata.name.clone().unwrap_or_default();
        if present {
            self.classes.insert(name, Arc::new(class.clone()));
        } else {
            self.classes.remove(&name);
        }
    }

    /// One claim.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&(namespace.to_string(), name.to_string()))
    }

    /// The class a claim uses: its `storageClassName`, or the default class
    /// when it has none (what the DefaultStorageClass admission step sets);
    /// `""` is "no class".
    pub fn class_name_of(&self, claim: &PersistentVolumeClaim) -> String {
        match claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()) {
            Some(name) => name,
            None => self.default_class().unwrap_or_default(),
        }
    }

    /// The default class's name (the newest, as Kubernetes picks among several).
    fn default_class(&self) -> Option<String> {
        self.classes
            .values()
            .filter(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_DEFAULT_CLASS))
                    .map(String::as_str)
                    == Some("true")
            })
            .max_by(|a, b| {
                (&a.metadata.creation_timestamp, &a.metadata.name)
                    .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
            })
            .and_then(|c| c.metadata.name.clone())
    }
}

/// Whether the class binds when the first pod is scheduled.
pub fn waits_for_first_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// An unbound claim of a WaitForFirstConsumer class.
#[derive(Clone, Debug)]
pub struct UnboundClaim {
    /// The claim.
    pub claim: Arc<PersistentVolumeClaim>,
    /// The volumes of its class (those it could bind are chosen among them
    /// per node by [`storage::best_match`]).
    pub candidates: Vec<Arc<PersistentVolume>>,
    /// Its class.
    pub class: Option<Arc<StorageClass>>,
}

impl UnboundClaim {
    /// The volume the claim would bind on the node: the smallest Available
    /// one that matches it (or one pre-bound to it) and admits the node.
    pub fn volume_for(&self, node: &Node) -> Option<&Arc<PersistentVolume>> {
        let search = storage::Search {
            delay_binding: true,
            node: Some(node),
        };
        let best = storage::best_match(&self.claim, self.candidates.iter().map(|pv| pv.as_ref()), &search)?;
        self.candidates.iter().find(|pv| std::ptr::eq(pv.as_ref(), best))
    }

    /// Whether the class's provisioner can make a volume on the node.
    pub fn can_provision(&self, node: &Node) -> bool {
        let Some(class) = &self.class else { return false };
        if class.provisioner.is_empty() || class.provisioner == "kubernetes.io/no-provisioner" {
            return false;
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let selected = self
            .claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        if selected.is_some_and(|s| s != name) {
            return false;
        }
        let labels = node.metadata.labels.as_ref();
        let topology_ok = match class.allowed_topologies.as_deref() {
            None | Some([]) => true,
            Some(terms) => terms.iter().any(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .all(|e| labels.and_then(|l| l.get(&e.key)).is_some_and(|v| e.values.contains(v)))
            }),
        };
        if !topology_ok {
            return false;
        }
        if class.provisioner == LOCAL_PATH_PROVISIONER {
            return node
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANN_LOCAL_PATH_ROOT));
        }
        true
    }
}

/// What PreFilter found about the pod's claims.
#[derive(Clone, Debug, Default)]
pub struct PreFilterState {
    /// Why the pod fits no node at all (missing, deleting or unbound Immediate claim).
    pub error: Option<String>,
    /// The volumes of the pod's bound claims.
    pub bound: Vec<Arc<PersistentVolume>>,
    /// The pod's unbound WaitForFirstConsumer claims.
    pub unbound: Vec<UnboundClaim>,
}

/// Kubernetes' PreFilter: sort the pod's claims into bound and unbound, or say
/// why the pod cannot be scheduled. `None` when the pod uses no claim.
pub fn pre_filter_state(pod: &Pod, volumes: &Volumes) -> Option<PreFilterState> {
    let names = storage::claim_names(pod);
    if names.is_empty() {
        return None;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut state = PreFilterState::default();
    let mut unbound_immediate = false;
    for name in names {
        let Some(claim) = volumes.claim(ns, &name) else {
            state.error = Some(format!("persistentvolumeclaim {name:?} not found"));
            return Some(state);
        };
        if claim.metadata.deletion_timestamp.is_some() {
            state.error = Some(format!("persistentvolumeclaim {name:?} is being deleted"));
            return Some(state);
        }
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        if !volume_name.is_empty() {
            let Some(pv) = volumes.volumes.get(volume_name) else {
                state.error = Some(format!("pvc {ns}/{name} bound to non-existent pv {volume_name}"));
                return Some(state);
            };
            state.bound.push(pv.clone());
            continue;
        }
        let class_name = volumes.class_name_of(claim);
        let class = volumes.classes.get(&class_name).cloned();
        if !class_name.is_empty() && class.is_none() {
            state.error = Some(format!("storageclass.storage.k8s.io {class_name:?} not found"));
            return Some(state);
        }
        if !waits_for_first_consumer(class.as_deref()) {
            unbound_immediate = true;
            continue;
        }
        let claim_class = storage::claim_class(claim);
        let candidates: Vec<Arc<PersistentVolume>> = volumes
            .volumes
            .values()
            .filter(|pv| storage::volume_class(pv) == claim_class)
            .cloned()
            .collect();
        state.unbound.push(UnboundClaim {
            claim: claim.clone(),
            candidates,
            class,
        });
    }
    if unbound_immediate {
        state.error = Some(REASON_UNBOUND_IMMEDIATE.to_string());
    }
    Some(state)
}

/// Kubernetes' Filter on one node.
pub fn fits_node(state: &PreFilterState, node: &Node) -> Result<(), Unfit> {
    if let Some(error) = &state.error {
        return Err(Unfit::unresolvable(error.clone()));
    }
    if !state.bound.iter().all(|pv| storage::node_admits(pv, node)) {
        return Err(Unfit::unresolvable(REASON_NODE_CONFLICT));
    }
    if !state
        .unbound
        .iter()
        .all(|c| c.volume_for(node).is_some() || c.can_provision(node))
    {
        return Err(Unfit::unresolvable(REASON_BIND_CONFLICT));
    }
    Ok(())
}

/// The VolumeBinding filter (and PreBind, [`pre_bind`]).
pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        state.volume_binding = pre_filter_state(&pod.pod, &cache.volumes);
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match &pod.cycle.volume_binding {
            None => Ok(()),
            Some(state) => fits_node(state, &node.node),
        }
    }
}

/// Why PreBind failed: the FailedScheduling message.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    /// A write to the API server failed.
    #[error("running PreBind plugin \"VolumeBinding\": binding volumes: {0}")]
    Api(#[from] kube::Error),
    /// The claims were not bound in time.
    #[error("running PreBind plugin \"VolumeBinding\": binding volumes: context deadline exceeded")]
    Timeout,
    /// A claim went away meanwhile.
    #[error("running PreBind plugin \"VolumeBinding\": binding volumes: persistentvolumeclaim {0:?} not found")]
    ClaimGone(String),
}

fn claim_is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
        && claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|v| !v.is_empty())
}

/// PreBind: pre-bind a volume or select the node for each unbound
/// WaitForFirstConsumer claim of the pod, then wait until all of the pod's
/// claims are Bound. Returns at once for pods without claims.
pub async fn pre_bind(client: &Client, cache: &Mutex<Cache>, pod: &Pod, node: &str) -> Result<(), PreBindError> {
    let names = storage::claim_names(pod);
    if names.is_empty() {
        return Ok(());
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    // What to write, decided from the cache.
    let writes: Vec<(Arc<PersistentVolumeClaim>, Option<Arc<PersistentVolume>>)> = {
        let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let Some(node_obj) = cache.node(node).map(|n| n.node.clone()) else {
            return Ok(());
        };
        let state = pre_filter_state(pod, &cache.volumes).unwrap_or_default();
        state
            .unbound
            .iter()
            .map(|c| (c.claim.clone(), c.volume_for(&node_obj).cloned()))
            .collect()
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for (claim, volume) in writes {
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        match volume {
            Some(pv) => {
                let patch = json!({
                    "metadata": {
                        "resourceVersion": pv.metadata.resource_version,
                        "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"},
                    },
                    "spec": {"claimRef": {
                        "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                        "namespace": ns, "name": claim_name,
                        "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
                    }},
                });
                let name = pv.metadata.name.clone().unwrap_or_default();
                pvs.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::debug!(claim = %claim_name, volume = %name, "volume pre-bound to the claim");
            }
            None => {
                let selected = claim
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_SELECTED_NODE));
                if selected.map(String::as_str) == Some(node) {
                    continue;
                }
                let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
                claims
                    .patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tracing::debug!(claim = %claim_name, node, "node selected for provisioning");
            }
        }
    }
    let deadline = Instant::now() + BIND_TIMEOUT;
    loop {
        {
            let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut all_bound = true;
            for name in &names {
                match cache.volumes.claim(&ns, name) {
                    None => return Err(PreBindError::ClaimGone(name.clone())),
                    Some(c) => all_bound &= claim_is_bound(c),
                }
            }
            if all_bound {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(PreBindError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Volume};
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
        PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;

    fn node(name: &str, root: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                annotations: root.then(|| [(ANN_LOCAL_PATH_ROOT.to_string(), "/var/lib/x".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn class(name: &str, mode: &str, default: bool) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: default.then(|| [(ANN_DEFAULT_CLASS.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            provisioner: LOCAL_PATH_PROVISIONER.into(),
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    fn claim(name: &str, class: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(Into::into),
                volume_name: volume.map(Into::into),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: volume.map(|_| PersistentVolumeClaimStatus {
                phase: Some("Bound".into()),
                ..Default::default()
            }),
        }
    }

    fn pv(name: &str, class: &str, size: &str, on: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some(class.into()),
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![on.into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..Default::default()
            }),
        }
    }

    fn pod_with(claims: &[&str]) -> Pod {
        let mut pod = crate::framework::testing::pod("p", "", "");
        pod.spec.as_mut().unwrap().volumes = Some(
            claims
                .iter()
                .map(|c| Volume {
                    name: format!("v-{c}"),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: c.to_string(),
                        read_only: None,
                    }),
                    ..Default::default()
                })
                .collect(),
        );
        pod
    }

    fn volumes() -> Volumes {
        let mut v = Volumes::default();
        v.upsert_class(&class("local-path", "WaitForFirstConsumer", true), true);
        v.upsert_class(&class("fast", "Immediate", false), true);
        v
    }

    #[test]
    fn pods_without_claims_are_left_alone() {
        assert!(pre_filter_state(&pod_with(&[]), &volumes()).is_none());
    }

    #[test]
    fn missing_deleting_and_unbound_immediate_claims_fit_nowhere() {
        let mut v = volumes();
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert_eq!(state.error.as_deref(), Some("persistentvolumeclaim \"data\" not found"));
        let mut deleting = claim("data", None, None);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        v.upsert_claim(&deleting, true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert_eq!(
            state.error.as_deref(),
            Some("persistentvolumeclaim \"data\" is being deleted")
        );
        v.upsert_claim(&claim("data", Some("fast"), None), true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        let err = fits_node(&state, &node("a", true)).unwrap_err();
        assert_eq!(err.reasons, vec![REASON_UNBOUND_IMMEDIATE]);
        assert!(err.unresolvable);
    }

    #[test]
    fn a_bound_volume_pins_the_pod_to_its_node() {
        let mut v = volumes();
        v.upsert_claim(&claim("data", Some("local-path"), Some("pv1")), true);
        v.upsert_volume(&pv("pv1", "local-path", "1Gi", "a"), true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert!(fits_node(&state, &node("a", true)).is_ok());
        let err = fits_node(&state, &node("b", true)).unwrap_err();
        assert_eq!(err.reasons, vec![REASON_NODE_CONFLICT]);
    }

    #[test]
    fn unbound_wait_for_first_consumer_claims_need_a_volume_or_a_provisioner() {
        let mut v = volumes();
        // No class: the default class (local-path) applies.
        v.upsert_claim(&claim("data", None, None), true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert!(state.error.is_none());
        assert!(fits_node(&state, &node("a", true)).is_ok());
        let err = fits_node(&state, &node("b", false)).unwrap_err();
        assert_eq!(err.reasons, vec![REASON_BIND_CONFLICT]);
        // An Available volume of the claim's class on node b makes b fit
        // too, the smallest first (the claim names its class, as the
        // DefaultStorageClass admission step writes it at create; volumes
        // match on the class the claim names, as the PV controller binds).
        v.upsert_claim(&claim("data", Some("local-path"), None), true);
        v.upsert_volume(&pv("big", "local-path", "5Gi", "b"), true);
        v.upsert_volume(&pv("small", "local-path", "1Gi", "b"), true);
        v.upsert_volume(&pv("tiny", "local-path", "100Mi", "b"), true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert!(fits_node(&state, &node("b", false)).is_ok());
        let chosen = state.unbound[0].volume_for(&node("b", false)).unwrap();
        assert_eq!(chosen.metadata.name.as_deref(), Some("small"));
        // A claim whose node is already selected provisions only there.
        let mut selected = claim("data", None, None);
        selected.metadata.annotations = Some([(ANN_SELECTED_NODE.to_string(), "a".to_string())].into());
        v.upsert_claim(&selected, true);
        let state = pre_filter_state(&pod_with(&["data"]), &v).unwrap();
        assert!(!state.unbound[0].can_provision(&node("c", true)));
        assert!(state.unbound[0].can_provision(&node("a", true)));
    }
}
