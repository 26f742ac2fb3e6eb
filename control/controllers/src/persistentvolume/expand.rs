//! Volume expansion: Kubernetes' `persistentvolume-expander` controller and
//! the protocol its external resizers follow, shared by every resizer Sluice
//! runs (the `local-path` one in `local_path_provisioner::resize`).
//!
//! A user grows a Bound claim by raising `spec.resources.requests.storage`
//! (the API server's `PersistentVolumeClaimResize` admission allows it only
//! when the claim's class has `allowVolumeExpansion: true`). Then, as in
//! Kubernetes 1.32 with `RecoverVolumeExpansionFailure`:
//!
//! 1. **The expander** ([`sync`]) sees the request exceed `status.capacity`,
//!    names the resizer on the claim (`volume.kubernetes.io/storage-resizer`:
//!    the volume's CSI driver, or for Sluice's own volumes the provisioner in
//!    the volume's `pv.kubernetes.io/provisioned-by`) and records the
//!    Warning `ExternalExpanding` "waiting for an external controller to
//!    expand this PVC". No in-tree plugin expands anything here.
//! 2. **The resizer** named there follows [`plan`]: it marks the claim
//!    ([`Step::Start`]: condition `Resizing`, `status.allocatedResources`
//!    the new size, `status.allocatedResourceStatuses.storage:
//!    ControllerResizeInProgress`, event `Resizing` "External resizer is
//!    resizing volume <pv>"), grows the volume ([`Step::GrowVolume`]: the
//!    PV's `spec.capacity.storage`) and, needing no file-system step on the
//!    node, finishes ([`Step::Finish`]: `status.capacity` the new size, the
//!    resize conditions and the storage resource status dropped, annotation
//!    `volume.kubernetes.io/node-expansion-not-required: "true"`, event
//!    `VolumeResizeSuccessful` "Resize volume succeeded"), as
//!    external-resizer does for a driver without node expansion.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_kube::quantity::parse_value;

use super::{phase_of_claim, volume_name, Shared, ANN_PROVISIONED_BY};
use crate::events::EventType;
use crate::{Context, Error};

/// The name Kubernetes' controller-manager gives the expander.
pub const NAME: &str = "persistentvolume-expander";
/// Claim annotation: the resizer that is to expand the claim's volume.
pub const ANN_STORAGE_RESIZER: &str = "volume.kubernetes.io/storage-resizer";
/// Claim annotation: the resize needs no step on the node.
pub const ANN_NODE_EXPANSION_NOT_REQUIRED: &str = "volume.kubernetes.io/node-expansion-not-required";
/// The `allocatedResourceStatuses` value while the controller side resizes.
pub const CONTROLLER_RESIZE_IN_PROGRESS: &str = "ControllerResizeInProgress";

fn storage_of(
    map: Option<&std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<i64> {
    map.and_then(|m| m.get("storage")).and_then(|q| parse_value(&q.0).ok())
}

/// The storage the claim asks for, in bytes.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<i64> {
    storage_of(claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref())
}

/// The storage the claim has, in bytes (`status.capacity`).
pub fn capacity(claim: &PersistentVolumeClaim) -> Option<i64> {
    storage_of(claim.status.as_ref()?.capacity.as_ref())
}

/// The volume's size, in bytes.
pub fn volume_size(pv: &PersistentVolume) -> Option<i64> {
    storage_of(pv.spec.as_ref()?.capacity.as_ref())
}

/// Whether a Bound claim asks for more than it has (`pvcNeedResize`).
pub fn wants_more(claim: &PersistentVolumeClaim) -> bool {
    phase_of_claim(claim) == "Bound"
        && !volume_name(claim).is_empty()
        && matches!((requested(claim), capacity(claim)), (Some(r), Some(c)) if r > c)
}

/// Who expands `pv`: its CSI driver, else the provisioner that made it.
pub fn resizer_of(pv: &PersistentVolume) -> Option<String> {
    if let Some(csi) = pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
        return Some(csi.driver.clone());
    }
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .filter(|p| !p.is_empty())
        .cloned()
}

/// What a resizer does next for a claim it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// Mark the claim as being resized to this many bytes (the quantity as
    /// the user wrote it).
    Start(String),
    /// Grow the volume to this quantity.
    GrowVolume(String),
    /// Record the new size on the claim: the resize is done.
    Finish(String),
}

/// The resizer's next step for `claim` on its volume `pv` (`None` when the
/// volume is unknown), as external-resizer's `expandAndRecover` orders it
/// for a driver that needs no node expansion.
pub fn plan(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Step {
    let bound_here = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| {
        r.uid.as_deref() == claim.metadata.uid.as_deref()
            && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
    });
    if !wants_more(claim) || !bound_here {
        return Step::Idle;
    }
    let Some(quantity) = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
    else {
        return Step::Idle;
    };
    let status = claim.status.as_ref();
    let allocated = storage_of(status.and_then(|s| s.allocated_resources.as_ref()));
    let in_progress = status
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|m| m.get("storage"))
        .is_some_and(|s| s == CONTROLLER_RESIZE_IN_PROGRESS);
    let want = requested(claim);
    if !in_progress || allocated != want {
        return Step::Start(quantity);
    }
    match (volume_size(pv), want) {
        (Some(have), Some(want)) if have >= want => Step::Finish(quantity),
        _ => Step::GrowVolume(quantity),
    }
}

/// The expander's reconcile of one claim: name its resizer.
pub(super) async fn sync(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    if !wants_more(&claim) || claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(pv) = shared.volumes.get(&ObjectRef::new(volume_name(&claim))) else {
        return Ok(Action::await_change());
    };
    let Some(resizer) = resizer_of(&pv) else {
        shared.recorder.record(
            &*claim,
            EventType::Warning,
            "ExternalExpanding",
            "waiting for an external controller to expand this PVC".to_string(),
        );
        return Ok(Action::await_change());
    };
    let named = claim.annotations().get(ANN_STORAGE_RESIZER);
    if named == Some(&resizer) {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let patch = json!({"metadata": {
        "resourceVersion": claim.resource_version(),
        "annotations": {ANN_STORAGE_RESIZER: resizer},
    }});
    match api
        .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(claim = %claim.name_any(), %resizer, "waiting for the resizer");
            shared.recorder.record(
                &*claim,
                EventType::Warning,
                "ExternalExpanding",
                "waiting for an external controller to expand this PVC".to_string(),
            );
            Ok(Action::await_change())
        }
        // A cache behind our own write: look again shortly.
        Err(e) if super::stale(&e) => Ok(Action::requeue(std::time::Duration::from_secs(1))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeSpec, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn q(v: &str) -> BTreeMap<String, Quantity> {
        BTreeMap::from([("storage".to_string(), Quantity(v.into()))])
    }

    fn claim(request: &str, capacity: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: Some("pvc-u1".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(q(request)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: Some("Bound".into()),
                capacity: Some(q(capacity)),
                ..Default::default()
            }),
        }
    }

    fn volume(size: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-u1".into()),
                annotations: Some(BTreeMap::from([(
                    ANN_PROVISIONED_BY.to_string(),
                    "sluice.dev/local-path".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(q(size)),
                claim_ref: Some(ObjectReference {
                    namespace: Some("default".into()),
                    name: Some("data".into()),
                    uid: Some("u1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn only_a_bound_claim_asking_for_more_wants_a_resize() {
        assert!(wants_more(&claim("2Gi", "1Gi")));
        assert!(!wants_more(&claim("1Gi", "1Gi")));
        assert!(!wants_more(&claim("1024Mi", "1Gi")));
        let mut pending = claim("2Gi", "1Gi");
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(!wants_more(&pending));
    }

    #[test]
    fn the_resizer_is_the_csi_driver_or_the_provisioner() {
        assert_eq!(resizer_of(&volume("1Gi")).as_deref(), Some("sluice.dev/local-path"));
        let mut csi = volume("1Gi");
        csi.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: "hostpath.csi.example".into(),
            volume_handle: "v".into(),
            ..Default::default()
        });
        assert_eq!(resizer_of(&csi).as_deref(), Some("hostpath.csi.example"));
        let mut static_pv = volume("1Gi");
        static_pv.metadata.annotations = None;
        assert_eq!(resizer_of(&static_pv), None);
    }

    #[test]
    fn a_resize_starts_grows_the_volume_then_finishes() {
        let mut c = claim("2Gi", "1Gi");
        let mut pv = volume("1Gi");
        assert_eq!(plan(&c, &pv), Step::Start("2Gi".into()));
        let st = c.status.as_mut().unwrap();
        st.allocated_resources = Some(q("2Gi"));
        st.allocated_resource_statuses = Some(BTreeMap::from([(
            "storage".to_string(),
            CONTROLLER_RESIZE_IN_PROGRESS.to_string(),
        )]));
        assert_eq!(plan(&c, &pv), Step::GrowVolume("2Gi".into()));
        pv.spec.as_mut().unwrap().capacity = Some(q("2Gi"));
        assert_eq!(plan(&c, &pv), Step::Finish("2Gi".into()));
        c.status.as_mut().unwrap().capacity = Some(q("2Gi"));
        assert_eq!(plan(&c, &pv), Step::Idle);
    }

    #[test]
    fn a_request_raised_again_mid_resize_starts_over_at_the_new_size() {
        let mut c = claim("3Gi", "1Gi");
        let st = c.status.as_mut().unwrap();
        st.allocated_resources = Some(q("2Gi"));
        st.allocated_resource_statuses = Some(BTreeMap::from([(
            "storage".to_string(),
            CONTROLLER_RESIZE_IN_PROGRESS.to_string(),
        )]));
        assert_eq!(plan(&c, &volume("2Gi")), Step::Start("3Gi".into()));
    }

    #[test]
    fn a_volume_bound_elsewhere_is_not_resized() {
        let c = claim("2Gi", "1Gi");
        let mut pv = volume("1Gi");
        pv.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("other".into());
        assert_eq!(plan(&c, &pv), Step::Idle);
    }
}
