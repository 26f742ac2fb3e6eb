//! The `local-path` resizer: what external-resizer does for a CSI driver,
//! for the volumes of `sluice.dev/local-path`.
//!
//! A claim is ours when the expander (`persistentvolume::expand`) named
//! `sluice.dev/local-path` in its `volume.kubernetes.io/storage-resizer`
//! annotation. The steps are [`crate::persistentvolume::expand::plan`]'s:
//! mark the claim `Resizing`, set the volume's `spec.capacity.storage`,
//! then record the new size on the claim with `VolumeResizeSuccessful`.
//! **Nothing happens on the node:** a local-path volume is a directory whose
//! size is not enforced, so growing it is bookkeeping — the claim, the
//! volume and the scheduler then agree on the larger size, and no
//! file-system resize is pending (`node-expansion-not-required`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use sluice_kube::local_path::PROVISIONER;

use super::Caches;
use crate::events::EventType;
use crate::persistentvolume::expand::{
    plan, Step, ANN_NODE_EXPANSION_NOT_REQUIRED, ANN_STORAGE_RESIZER, CONTROLLER_RESIZE_IN_PROGRESS,
};
use crate::{Context, Error};

/// The controller name of the resizer's loop.
pub const NAME: &str = "local-path-resizer";

/// When a claim mid-resize is looked at again without a new event.
const STEP_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The claim's conditions without the resize ones, plus `extra`.
fn conditions_with(claim: &PersistentVolumeClaim, extra: Option<Value>) -> Value {
    let mut out: Vec<Value> = claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !matches!(c.type_.as_str(), "Resizing" | "FileSystemResizePending"))
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    out.extend(extra);
    Value::Array(out)
}

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

/// One reconcile of a claim the expander handed to us.
pub(super) async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
    caches: Arc<Caches>,
) -> Result<Action, Error> {
    if claim.annotations().get(ANN_STORAGE_RESIZER).map(String::as_str) != Some(PROVISIONER) {
        return Ok(Action::await_change());
    }
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let Some(pv) = caches.volumes.get(&ObjectRef::new(&volume)) else {
        return Ok(Action::await_change());
    };
    let ns = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let name = claim.name_any();
    let params = PatchParams::default();
    let step = plan(&claim, &pv);
    let result = match &step {
        Step::Idle => return Ok(Action::await_change()),
        Step::Start(size) => {
            let status = json!({
                "metadata": {"resourceVersion": claim.resource_version()},
                "status": {
                    "conditions": conditions_with(&claim, Some(json!({
                        "type": "Resizing", "status": "True", "lastTransitionTime": now(),
                    }))),
                    "allocatedResources": {"storage": size},
                    "allocatedResourceStatuses": {"storage": CONTROLLER_RESIZE_IN_PROGRESS},
                },
            });
            let marked = claims.patch_status(&name, &params, &Patch::Merge(&status)).await;
            if marked.is_ok() {
                caches.resize_events.record(
                    &*claim,
                    EventType::Normal,
                    "Resizing",
                    format!("External resizer is resizing volume {volume}"),
                );
                if claim.annotations().contains_key(ANN_NODE_EXPANSION_NOT_REQUIRED) {
                    let drop = json!({"metadata": {"annotations": {ANN_NODE_EXPANSION_NOT_REQUIRED: null}}});
                    claims.patch(&name, &params, &Patch::Merge(&drop)).await.map(|_| ())
                } else {
                    Ok(())
                }
            } else {
                marked.map(|_| ())
            }
        }
        Step::GrowVolume(size) => {
            let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
            let grow = json!({
                "metadata": {"resourceVersion": pv.resource_version()},
                "spec": {"capacity": {"storage": size}},
            });
            volumes.patch(&volume, &params, &Patch::Merge(&grow)).await.map(|_| ())
        }
        Step::Finish(size) => {
            let status = json!({
                "metadata": {"resourceVersion": claim.resource_version()},
                "status": {
                    "capacity": {"storage": size},
                    "conditions": conditions_with(&claim, None),
                    "allocatedResourceStatuses": {"storage": null},
                },
            });
            let done = claims.patch_status(&name, &params, &Patch::Merge(&status)).await;
            if done.is_ok() {
                let mark = json!({"metadata": {"annotations": {ANN_NODE_EXPANSION_NOT_REQUIRED: "true"}}});
                claims.patch(&name, &params, &Patch::Merge(&mark)).await?;
                tracing::info!(claim = %name, %volume, %size, "resized a local-path volume");
                caches.resize_events.record(
                    &*claim,
                    EventType::Normal,
                    "VolumeResizeSuccessful",
                    "Resize volume succeeded".into(),
                );
            }
            done.map(|_| ())
        }
    };
    match result {
        // The next step follows on the write's own watch event; the requeue
        // covers a reconcile that ran on a cache not yet showing that write
        // (its precondition then failed with a conflict).
        Ok(()) => Ok(Action::requeue(STEP_RECHECK)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(STEP_RECHECK)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => {
            caches.resize_events.record(
                &*claim,
                EventType::Warning,
                "VolumeResizeFailed",
                format!("resize volume {volume:?} by resizer {PROVISIONER:?} failed: {e}"),
            );
            Err(e.into())
        }
    }
}
