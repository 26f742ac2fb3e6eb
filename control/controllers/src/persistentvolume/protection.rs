//! Storage object in-use protection (pure): Kubernetes' `pvc-protection`
//! and `pv-protection` controllers' decisions. A claim being deleted keeps
//! its `kubernetes.io/pvc-protection` finalizer while a scheduled pod that
//! has not terminated uses it (a `persistentVolumeClaim` volume, or the
//! claim `<pod>-<volume>` of an `ephemeral` volume); a volume being deleted
//! keeps `kubernetes.io/pv-protection` while it is `Bound`.

use crate::cached_pod::CachedPod;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;

/// The finalizer that keeps a claim while pods use it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Whether `pod` keeps the claim named `claim` in use: it is scheduled, has
/// not terminated, and mounts the claim.
pub fn pod_uses(pod: &CachedPod, namespace: &str, claim: &str) -> bool {
    pod.namespace().as_deref() == Some(namespace)
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
        && !sluice_kube::pods::is_terminated(pod)
        && sluice_kube::storage::claim_names(pod).iter().any(|c| c == claim)
}

/// Whether the claim's protection finalizer may go: it is being deleted,
/// holds the finalizer, and no pod uses it.
pub fn claim_releasable<'p>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'p CachedPod>) -> bool {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    claim.metadata.deletion_timestamp.is_some()
        && claim.finalizers().iter().any(|f| f == PVC_PROTECTION)
        && !pods.into_iter().any(|p| pod_uses(p, &ns, &name))
}

/// Whether the volume's protection finalizer may go: it is being deleted,
/// holds the finalizer, and is not `Bound`.
pub fn volume_releasable(volume: &PersistentVolume) -> bool {
    volume.metadata.deletion_timestamp.is_some()
        && volume.finalizers().iter().any(|f| f == PV_PROTECTION)
        && volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(node: &str, phase: &str) -> CachedPod {
        CachedPod::of(&whole_pod(node, phase))
    }

    fn whole_pod(node: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            ]},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    fn deleting_claim(name: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "deletionTimestamp": "2026-01-01T00:00:00Z",
                         "finalizers": [PVC_PROTECTION]},
        }))
        .expect("claim")
    }

    #[test]
    fn running_scheduled_pods_keep_their_claims() {
        assert!(!claim_releasable(&deleting_claim("data"), [&pod("n1", "Running")]));
        assert!(!claim_releasable(
            &deleting_claim("web-scratch"),
            [&pod("n1", "Pending")]
        ));
        assert!(claim_releasable(&deleting_claim("data"), [&pod("n1", "Succeeded")]));
        assert!(claim_releasable(&deleting_claim("data"), [&pod("", "Pending")]));
        assert!(claim_releasable(&deleting_claim("other"), [&pod("n1", "Running")]));
    }

    #[test]
    fn bound_volumes_keep_their_finalizer() {
        let mut v: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [PV_PROTECTION]},
            "status": {"phase": "Bound"},
        }))
        .expect("pv");
        assert!(!volume_releasable(&v));
        v.status = serde_json::from_value(json!({"phase": "Released"})).expect("status");
        assert!(volume_releasable(&v));
    }
}
