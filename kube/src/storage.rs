//! PersistentVolumes and the claims that bind them (Kubernetes'
//! `findMatchingVolume` and `checkVolumeSatisfyClaim`), one implementation
//! for the PV controller (which binds) and the scheduler's VolumeBinding
//! (which places pods where their claims can bind).
//!
//! A volume pre-bound to the claim (its `claimRef` names the claim, with
//! the claim's uid or none) wins if it fits the node; otherwise the smallest
//! `Available` volume without a `claimRef` whose class equals the claim's,
//! whose capacity is at least the request, whose access modes include the
//! claim's, whose labels match the claim's `selector`, whose `volumeMode`
//! equals the claim's and which is not being deleted. A claim of a
//! `WaitForFirstConsumer` class takes unbound volumes only once a node is
//! selected, and then only volumes whose node affinity admits that node.
//! [`claim_names`] lists the claims a pod uses.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Volume};
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;

/// Whether a pod's volume is backed by a claim: a `persistentVolumeClaim`
/// volume, or an `ephemeral` one (whose claim Kubernetes creates). These are
/// the volumes [`claim_names`] reads; the caches that drop a pod's other
/// volumes keep these.
pub fn names_a_claim(v: &Volume) -> bool {
    v.persistent_volume_claim.is_some() || v.ephemeral.is_some()
}

/// The names of the claims `pod` uses, in volume order: its
/// `persistentVolumeClaim` volumes' claims, and `<pod>-<volume>` for an
/// `ephemeral` volume (the claim Kubernetes creates for it).
pub fn claim_names(pod: &impl crate::pods::PodParts) -> Vec<String> {
    let pod_name = pod.metadata().name.as_deref().unwrap_or_default();
    pod.volumes()
        .iter()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            (None, None) => None,
        })
        .collect()
}

/// A storage quantity in bytes (`None`: absent or not a quantity).
pub fn bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| crate::quantity::parse_value(&q.0).ok())
}

/// The claim's requested storage in bytes.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<i64> {
    bytes(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

/// The volume's storage capacity in bytes.
pub fn capacity(volume: &PersistentVolume) -> Option<i64> {
    bytes(
        volume
            .spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

/// A claim's class (`spec.storageClassName`, or the beta annotation).
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            claim
                .annotations()
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned()
        })
        .unwrap_or_default()
}

/// A volume's class (`spec.storageClassName`, or the beta annotation).
pub fn volume_class(volume: &PersistentVolume) -> String {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            volume
                .annotations()
                .get("volume.beta.kubernetes.io/storage-class")
                .cloned()
        })
        .unwrap_or_default()
}

fn volume_mode_of(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether the volume and claim ask for different `volumeMode`s.
pub fn volume_mode_mismatch(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    volume_mode_of(volume.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
        != volume_mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_supported(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| offered.contains(m))
}

/// Whether the volume's `claimRef` names this claim (Kubernetes'
/// `IsVolumeBoundToClaim`: same namespace and name, and the claim's uid or
/// none).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == claim.metadata.uid)
}

/// Whether the volume's required node affinity admits `node` (no affinity
/// admits every node).
pub fn node_admits(volume: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let name = node.name_any();
    required
        .node_selector_terms
        .iter()
        .any(|t| crate::node_selector::term_matches(t, node.metadata.labels.as_ref(), &name))
}

/// Whether the claim's selector (none: everything) matches the volume.
fn selector_matches(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    match claim.spec.as_ref().and_then(|s| s.selector.clone()) {
        None => true,
        Some(sel) => Selector::try_from(sel).is_ok_and(|s| s.matches(volume.labels())),
    }
}

/// How the claim may be matched.
pub struct Search<'a> {
    /// The claim's class delays binding (`WaitForFirstConsumer`).
    pub delay_binding: bool,
    /// The node the scheduler selected for the claim, when it did.
    pub node: Option<&'a Node>,
}

/// Kubernetes' `findMatchingVolume`: the volume the claim binds to, if any.
pub fn best_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    search: &Search<'_>,
) -> Option<&'v PersistentVolume> {
    let wanted = requested(claim)?;
    let class = claim_class(claim);
    let mut best: Option<(i64, &PersistentVolume)> = None;
    for v in volumes {
        let Some(size) = capacity(v) else { continue };
        if size < wanted || volume_mode_mismatch(v, claim) || v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node_ok = search.node.is_none_or(|n| node_admits(v, n));
        if is_bound_to(v, claim) {
            return node_ok.then_some(v);
        }
        if search.node.is_none() && search.delay_binding {
            continue;
        }
        let available = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        let unclaimed = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none();
        if !available
            || !unclaimed
            || !selector_matches(v, claim)
            || volume_class(v) != class
            || !node_ok
            || !access_modes_supported(v, claim)
        {
            continue;
        }
        let smaller = match best {
            None => true,
            Some((s, b)) => size < s || (size == s && v.name_any() < b.name_any()),
        };
        if smaller {
            best = Some((size, v));
        }
    }
    best.map(|(_, v)| v)
}

/// Kubernetes' `checkVolumeSatisfyClaim`: why a volume the claim asked for
/// by name cannot be bound to it (the `VolumeMismatch` event), if it cannot.
pub fn unsatisfied(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    let name = volume.name_any();
    if capacity(volume).unwrap_or(0) < requested(claim).unwrap_or(0) {
        return Some(format!(
            "Cannot bind to requested volume {name:?}: requested PV is too small"
        ));
    }
    if volume_class(volume) != claim_class(claim) {
        return Some(format!(
            "Cannot bind to requested volume {name:?}: storageClassName does not match"
        ));
    }
    if volume_mode_mismatch(volume, claim) {
        return Some(format!(
            "Cannot bind to requested volume {name:?}: volumeMode does not match"
        ));
    }
    if !access_modes_supported(volume, claim) {
        return Some(format!(
            "Cannot bind to requested volume {name:?}: requested access modes are not supported by the volume"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"},
        });
        if let (Some(o), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).expect("pv")
    }

    fn pvc(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "storageClassName": ""},
        });
        if let (Some(o), Some(e)) = (c["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(c).expect("pvc")
    }

    const IMMEDIATE: Search<'static> = Search {
        delay_binding: false,
        node: None,
    };

    fn names(claim: &PersistentVolumeClaim, vols: &[PersistentVolume], s: &Search<'_>) -> Option<String> {
        best_match(claim, vols, s).map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_fitting_available_volume_wins() {
        let vols = [
            pv("big", "10Gi", json!({})),
            pv("small", "1Gi", json!({})),
            pv("tiny", "100Mi", json!({})),
            pv("rwx", "2Gi", json!({"accessModes": ["ReadWriteMany"]})),
        ];
        assert_eq!(
            names(&pvc("500Mi", json!({})), &vols, &IMMEDIATE).as_deref(),
            Some("small")
        );
        assert_eq!(names(&pvc("20Gi", json!({})), &vols, &IMMEDIATE), None);
        let rwx = pvc("1Gi", json!({"accessModes": ["ReadWriteMany"]}));
        assert_eq!(names(&rwx, &vols, &IMMEDIATE).as_deref(), Some("rwx"));
    }

    #[test]
    fn class_selector_mode_and_phase_filter() {
        let vols = [
            pv("classy", "1Gi", json!({"storageClassName": "manual"})),
            pv(
                "bound",
                "1Gi",
                json!({"claimRef": {"namespace": "x", "name": "y", "uid": "z"}}),
            ),
            pv("block", "1Gi", json!({"volumeMode": "Block"})),
        ];
        assert_eq!(names(&pvc("1Gi", json!({})), &vols, &IMMEDIATE), None);
        let manual = pvc("1Gi", json!({"storageClassName": "manual"}));
        assert_eq!(names(&manual, &vols, &IMMEDIATE).as_deref(), Some("classy"));
        let other = pvc(
            "1Gi",
            json!({"storageClassName": "manual", "selector": {"matchLabels": {"tier": "slow"}}}),
        );
        assert_eq!(names(&other, &vols, &IMMEDIATE), None);
        let expr = pvc(
            "1Gi",
            json!({"storageClassName": "manual", "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fast"]}]}}),
        );
        assert_eq!(names(&expr, &vols, &IMMEDIATE).as_deref(), Some("classy"));
    }

    #[test]
    fn pre_bound_volumes_win_and_delayed_claims_wait_for_a_node() {
        let mut pre = pv(
            "pre",
            "5Gi",
            json!({"claimRef": {"namespace": "default", "name": "data"}}),
        );
        pre.status = None;
        let vols = [pv("free", "1Gi", json!({})), pre];
        let claim = pvc("1Gi", json!({}));
        assert_eq!(names(&claim, &vols, &IMMEDIATE).as_deref(), Some("pre"));
        let free = [pv(
            "free",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}
            ]}}}),
        )];
        let delayed = Search {
            delay_binding: true,
            node: None,
        };
        assert_eq!(names(&claim, &free, &delayed), None);
        let n1: Node =
            serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}))
                .expect("node");
        let n2: Node =
            serde_json::from_value(json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}}}))
                .expect("node");
        fn on(n: &Node) -> Search<'_> {
            Search {
                delay_binding: true,
                node: Some(n),
            }
        }
        assert_eq!(names(&claim, &free, &on(&n1)).as_deref(), Some("free"));
        assert_eq!(names(&claim, &free, &on(&n2)), None);
    }

    #[test]
    fn a_pods_claims_include_its_ephemeral_volumes_claims() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            ]},
        }))
        .expect("pod");
        assert_eq!(claim_names(&pod), ["data", "web-scratch"]);
    }

    #[test]
    fn a_named_volume_must_satisfy_the_claim() {
        let claim = pvc("2Gi", json!({}));
        assert_eq!(
            unsatisfied(&pv("small", "1Gi", json!({})), &claim).as_deref(),
            Some("Cannot bind to requested volume \"small\": requested PV is too small")
        );
        assert_eq!(unsatisfied(&pv("ok", "2Gi", json!({})), &claim), None);
    }
}
