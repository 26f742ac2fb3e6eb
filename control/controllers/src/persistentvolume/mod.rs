//! The PersistentVolume controller (`persistentvolume-binder`), as
//! Kubernetes' `pkg/controller/volume/persistentvolume` with its
//! `pvc-protection` and `pv-protection` companions.
//!
//! Three work queues over the manager's shared PersistentVolume and
//! PersistentVolumeClaim informers and this controller's own StorageClass one:
//!
//! - **claims** (`syncClaim`): an unbound claim gets the volume
//!   [`sluice_kube::storage::best_match`] picks (a volume pre-bound to it through
//!   `claimRef`, else the smallest fitting `Available` one); binding writes
//!   the volume's `claimRef` (+ `pv.kubernetes.io/bound-by-controller`), the
//!   volume `Bound`, the claim's `volumeName` (+ `pv.kubernetes.io/bind-completed`
//!   and, when the controller chose the volume, `bound-by-controller`) and the
//!   claim `Bound` with the volume's capacity and access modes, each write
//!   guarded by the object's resourceVersion. Without a match: a claim
//!   without class gets the default class if one appeared since (retroactive
//!   default), a `WaitForFirstConsumer` claim without
//!   `volume.kubernetes.io/selected-node` waits (`WaitForFirstConsumer` /
//!   `WaitForPodScheduled` events), a claim whose class has a provisioner is
//!   annotated `volume.kubernetes.io/storage-provisioner` (and the beta
//!   annotation) for that provisioner (`ExternalProvisioning` event), and a
//!   claim without class gets `FailedBinding`. A claim whose `volumeName` a
//!   user set binds only to that volume (`VolumeMismatch`, `FailedBinding`
//!   otherwise); a bound claim whose volume is gone or taken is `Lost`.
//! - **volumes** (`syncVolume`): a volume without `claimRef` (or pre-bound
//!   without uid) is `Available`; bound to an existing claim it is `Bound`;
//!   when its claim is gone it is `Released` and reclaimed per its policy:
//!   `Retain` keeps it, `Delete` of a `sluice.dev/local-path` volume is left
//!   to that node's noded (which removes the directory and the object), of a
//!   volume of another external provisioner to that provisioner, and of any
//!   other volume fails (`Failed`, `VolumeFailedDelete`, Kubernetes' message:
//!   no deleter runs here). A volume this controller bound to a claim that
//!   went to another volume is unbound.
//!
//! - **expansion** ([`expand`], Kubernetes' `persistentvolume-expander`): a
//!   Bound claim asking for more storage than it has is handed to its
//!   resizer through `volume.kubernetes.io/storage-resizer`.
//!
//! Protection ([`protection`]): a deleting claim loses
//! `kubernetes.io/pvc-protection` once no scheduled, unterminated pod uses
//! it; a deleting volume loses `kubernetes.io/pv-protection` once it is not
//! `Bound`. The API server adds both finalizers on create.

pub mod expand;
pub mod protection;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::cached_pod::CachedPod;
use crate::events::{EventRecorder, EventType};
use crate::informer::Informer;
use crate::{runner, Context, Error};

use protection::{claim_releasable, volume_releasable, PVC_PROTECTION, PV_PROTECTION};
use sluice_kube::storage::{best_match, claim_class, claim_names, is_bound_to, unsatisfied, Search};

/// The name Kubernetes' controller-manager gives this controller.
pub const NAME: &str = "persistentvolume-binder";

/// Annotation: the controller completed the claim's binding.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Annotation: the controller (not a user) chose the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Annotation: the provisioner that is to provision the claim's volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta form of [`ANN_STORAGE_PROVISIONER`], still written.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Annotation: the node the scheduler chose for a delayed claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Annotation: the provisioner that created a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The local-path provisioner, whose volumes noded deletes.
pub const LOCAL_PATH_PROVISIONER: &str = "sluice.dev/local-path";
/// The annotation marking the default StorageClass.
const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// How often a claim still waiting is looked at again (Kubernetes' PV
/// controller resyncs every 15 s).
const PENDING_RESYNC: Duration = Duration::from_secs(15);

/// What both queues share.
struct Shared {
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    recorder: EventRecorder,
}

/// Subscribes the PV controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let cfg = watcher::Config::default;
    let volumes = &ctx.informers.persistentvolumes;
    let claims = &ctx.informers.persistentvolumeclaims;
    let classes = Arc::new(Informer::<StorageClass>::new(Api::all(ctx.client.clone()), cfg()));
    let shared = Arc::new(Shared {
        volumes: volumes.store(),
        claims: claims.store(),
        classes: classes.store(),
        recorder: EventRecorder::new(ctx.client.clone(), "persistentvolume-controller"),
    });

    // Claim queue: the claim itself, its volume, the pods using it, its class.
    let claim_own = claims.trigger(|c: &PersistentVolumeClaim| Some(ObjectRef::from_obj(c)));
    let claim_from_volume = volumes.trigger(|v: &PersistentVolume| claim_of_volume(v));
    let claim_from_pod = ctx.informers.pods.trigger(|p: &CachedPod| {
        let ns = p.namespace().unwrap_or_default();
        claim_names(p)
            .into_iter()
            .map(move |c| ObjectRef::<PersistentVolumeClaim>::new(&c).within(&ns))
            .collect::<Vec<_>>()
    });
    let pending = shared.claims.clone();
    let claim_from_class = classes.trigger(move |_: &StorageClass| {
        pending
            .state()
            .iter()
            .filter(|c| volume_name(c).is_empty())
            .map(|c| ObjectRef::from_obj(&**c))
            .collect::<Vec<_>>()
    });

    // Expander queue: the claim and the claim of a changed volume.
    let expand_own = claims.trigger(|c: &PersistentVolumeClaim| Some(ObjectRef::from_obj(c)));
    let expand_from_volume = volumes.trigger(|v: &PersistentVolume| claim_of_volume(v));

    // Volume queue: the volume itself and the volume of a changed claim.
    let volume_own = volumes.trigger(|v: &PersistentVolume| Some(ObjectRef::from_obj(v)));
    let all_volumes = shared.volumes.clone();
    let volume_from_claim = claims.trigger(move |c: &PersistentVolumeClaim| {
        let mut keys: Vec<ObjectRef<PersistentVolume>> = Vec::new();
        if !volume_name(c).is_empty() {
            keys.push(ObjectRef::new(volume_name(c)));
        }
        for v in all_volumes.state() {
            let named = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| {
                r.name.as_deref() == c.metadata.name.as_deref()
                    && r.namespace.as_deref() == c.metadata.namespace.as_deref()
            });
            if named && v.name_any() != volume_name(c) {
                keys.push(ObjectRef::from_obj(&*v));
            }
        }
        keys
    });

    async move {
        classes.start();
        classes.wait_synced().await;
        let s1 = shared.clone();
        let claim_loop = runner::run(
            NAME,
            ctx.clone(),
            shared.claims.clone(),
            vec![
                claim_own.boxed(),
                claim_from_volume.boxed(),
                claim_from_pod.boxed(),
                claim_from_class.boxed(),
            ],
            move |c, ctx| sync_claim(c, ctx, s1.clone()),
        );
        let s2 = shared.clone();
        let volume_loop = runner::run(
            "persistentvolume-binder-volumes",
            ctx.clone(),
            shared.volumes.clone(),
            vec![volume_own.boxed(), volume_from_claim.boxed()],
            move |v, ctx| sync_volume(v, ctx, s2.clone()),
        );
        let s3 = shared.clone();
        let expand_loop = runner::run(
            expand::NAME,
            ctx.clone(),
            shared.claims.clone(),
            vec![expand_own.boxed(), expand_from_volume.boxed()],
            move |c, ctx| expand::sync(c, ctx, s3.clone()),
        );
        futures::future::join3(claim_loop, volume_loop, expand_loop).await;
    }
    .boxed()
}

fn claim_of_volume(v: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

/// Whether a write failed only because the object changed or went away
/// (the next reconcile, on fresh state, decides again).
fn stale(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

async fn merge<K>(api: &Api<K>, name: &str, patch: &Value, status: bool) -> Result<Option<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::default();
    let r = if status {
        api.patch_status(name, &pp, &Patch::Merge(patch)).await
    } else {
        api.patch(name, &pp, &Patch::Merge(patch)).await
    };
    match r {
        Ok(o) => Ok(Some(o)),
        Err(e) if stale(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_default_class(sc: &StorageClass) -> bool {
    [ANN_DEFAULT_CLASS, ANN_BETA_DEFAULT_CLASS]
        .iter()
        .any(|a| sc.annotations().get(*a).map(String::as_str) == Some("true"))
}

/// The default class: annotated default, the newest when several are.
fn default_class(classes: &Store<StorageClass>) -> Option<String> {
    classes
        .state()
        .into_iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
        .map(|c| c.name_any())
}

// ---------------------------------------------------------------- claims

async fn sync_claim(
    cached: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    // The claim as it is now: binding decisions must not rest on a stale copy.
    let Some(claim) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if claim.metadata.deletion_timestamp.is_some() {
        let pods = ctx.informers.pods.store().state();
        if claim_releasable(&claim, pods.iter().map(|p| &**p)) {
            remove_finalizer(
                &api,
                &claim.name_any(),
                claim.finalizers(),
                PVC_PROTECTION,
                claim.resource_version(),
            )
            .await?;
        }
        return Ok(Action::await_change());
    }
    if volume_name(&claim).is_empty() {
        sync_unbound_claim(&claim, &api, &ctx, &shared).await
    } else {
        sync_bound_claim(&claim, &api, &ctx, &shared).await
    }
}

async fn remove_finalizer(
    api: &Api<impl kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>,
    name: &str,
    finalizers: &[String],
    finalizer: &str,
    rv: Option<String>,
) -> Result<(), Error> {
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    merge(
        api,
        name,
        &json!({"metadata": {"finalizers": kept, "resourceVersion": rv}}),
        false,
    )
    .await?;
    Ok(())
}

async fn set_claim_pending(api: &Api<PersistentVolumeClaim>, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    if phase_of_claim(claim) != "Pending" {
        merge(api, &claim.name_any(), &json!({"status": {"phase": "Pending"}}), true).await?;
    }
    Ok(())
}

async fn sync_unbound_claim(
    claim: &PersistentVolumeClaim,
    api: &Api<PersistentVolumeClaim>,
    ctx: &Context,
    shared: &Shared,
) -> Result<Action, Error> {
    let class_name = claim_class(claim);
    let class = (!class_name.is_empty())
        .then(|| shared.classes.get(&ObjectRef::new(&class_name)))
        .flatten();
    let delay = class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
    let selected = claim.annotations().get(ANN_SELECTED_NODE).cloned();
    let node = selected
        .as_ref()
        .and_then(|n| ctx.informers.nodes.store().get(&ObjectRef::new(n)));
    let volumes = shared.volumes.state();
    let search = Search {
        delay_binding: delay,
        node: node.as_deref(),
    };
    if let Some(volume) = best_match(claim, volumes.iter().map(|v| &**v), &search) {
        bind(volume, claim, api, ctx).await?;
        return Ok(Action::await_change());
    }
    let no_class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_ref())
        .is_none()
        && !claim
            .annotations()
            .contains_key("volume.beta.kubernetes.io/storage-class");
    if no_class {
        if let Some(default) = default_class(&shared.classes) {
            // Retroactive default StorageClass assignment.
            merge(
                api,
                &claim.name_any(),
                &json!({"metadata": {"resourceVersion": claim.resource_version()}, "spec": {"storageClassName": default}}),
                false,
            )
            .await?;
            return Ok(Action::await_change());
        }
    }
    if delay && selected.is_none() {
        let waiting: Vec<String> = ctx
            .informers
            .pods
            .store()
            .state()
            .iter()
            .filter(|p| p.namespace() == claim.namespace())
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("")
                    .is_empty()
            })
            .filter(|p| claim_names(p).contains(&claim.name_any()))
            .map(|p| p.name_any())
            .collect();
        let (reason, message) = match waiting.as_slice() {
            [] => (
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            ),
            [one] => ("WaitForPodScheduled", format!("waiting for pod {one} to be scheduled")),
            many => (
                "WaitForPodScheduled",
                format!("waiting for pods {} to be scheduled", many.join(",")),
            ),
        };
        shared.recorder.record(claim, EventType::Normal, reason, message);
    } else if !class_name.is_empty() {
        provision(claim, class.as_deref(), &class_name, api, shared).await?;
    } else {
        shared.recorder.record(
            claim,
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        );
    }
    set_claim_pending(api, claim).await?;
    Ok(Action::requeue(PENDING_RESYNC))
}

/// Kubernetes' `provisionClaim` for external provisioners: annotate the
/// claim for the class's provisioner and say so.
async fn provision(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    class_name: &str,
    api: &Api<PersistentVolumeClaim>,
    shared: &Shared,
) -> Result<(), Error> {
    let Some(class) = class else {
        shared.recorder.record(
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        );
        return Ok(());
    };
    let provisioner = class.provisioner.clone();
    if provisioner.starts_with("kubernetes.io/") {
        // In-tree volume plugins do not exist here.
        shared.recorder.record(
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("no volume plugin matched name: {provisioner}"),
        );
        return Ok(());
    }
    let ann = claim.annotations();
    if ann.get(ANN_STORAGE_PROVISIONER) != Some(&provisioner)
        || ann.get(ANN_BETA_STORAGE_PROVISIONER) != Some(&provisioner)
    {
        let patch = json!({"metadata": {"resourceVersion": claim.resource_version(), "annotations": {
            ANN_STORAGE_PROVISIONER: provisioner,
            ANN_BETA_STORAGE_PROVISIONER: provisioner,
        }}});
        if merge(api, &claim.name_any(), &patch, false).await?.is_none() {
            return Ok(());
        }
    }
    shared.recorder.record(
        claim,
        EventType::Normal,
        "ExternalProvisioning",
        format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
        ),
    );
    Ok(())
}

async fn sync_bound_claim(
    claim: &PersistentVolumeClaim,
    api: &Api<PersistentVolumeClaim>,
    ctx: &Context,
    shared: &Shared,
) -> Result<Action, Error> {
    let name = volume_name(claim).to_string();
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let volume = match shared.volumes.get(&ObjectRef::new(&name)) {
        Some(v) => Some((*v).clone()),
        None => pv_api.get_opt(&name).await?,
    };
    let completed = claim.annotations().get(ANN_BIND_COMPLETED).is_some();
    if !completed {
        // A user asked for this volume by name.
        let Some(volume) = volume else {
            set_claim_pending(api, claim).await?;
            return Ok(Action::requeue(PENDING_RESYNC));
        };
        let free = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none();
        if free || is_bound_to(&volume, claim) {
            if let Some(why) = unsatisfied(&volume, claim) {
                shared.recorder.record(claim, EventType::Warning, "VolumeMismatch", why);
                set_claim_pending(api, claim).await?;
                return Ok(Action::requeue(PENDING_RESYNC));
            }
            bind(&volume, claim, api, ctx).await?;
            return Ok(Action::await_change());
        }
        shared.recorder.record(
            claim,
            EventType::Warning,
            "FailedBinding",
            format!("volume {name:?} already bound to a different claim."),
        );
        set_claim_pending(api, claim).await?;
        return Ok(Action::requeue(PENDING_RESYNC));
    }
    match volume {
        None => {
            if phase_of_claim(claim) != "Lost" {
                merge(api, &claim.name_any(), &json!({"status": {"phase": "Lost"}}), true).await?;
                shared.recorder.record(
                    claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!".into(),
                );
            }
        }
        Some(volume) => {
            let claim_ref_uid = volume
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .map(|r| r.uid.clone().unwrap_or_default());
            match claim_ref_uid {
                None => bind(&volume, claim, api, ctx).await?,
                Some(uid) if Some(&uid) == claim.metadata.uid.as_ref() => bind(&volume, claim, api, ctx).await?,
                Some(_) => {
                    if phase_of_claim(claim) != "Lost" {
                        merge(api, &claim.name_any(), &json!({"status": {"phase": "Lost"}}), true).await?;
                        shared.recorder.record(
                            claim,
                            EventType::Warning,
                            "ClaimMisbound",
                            "Two claims are bound to the same volume, this one is bound incorrectly".into(),
                        );
                    }
                }
            }
        }
    }
    Ok(Action::await_change())
}

/// Kubernetes' `bind`: volume → claim, volume Bound, claim → volume, claim
/// Bound. Each step is skipped when already done; a step that finds its
/// object changed stops here (the change requeues the claim).
async fn bind(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    api: &Api<PersistentVolumeClaim>,
    ctx: &Context,
) -> Result<(), Error> {
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = volume.name_any();
    let mut volume = volume.clone();
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let complete_ref = claim_ref.is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
    if !complete_ref {
        let mut patch = json!({
            "metadata": {"resourceVersion": volume.resource_version()},
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": claim.namespace(),
                "name": claim.name_any(),
                "uid": claim.metadata.uid,
                "apiVersion": "v1",
                "resourceVersion": claim.resource_version(),
            }},
        });
        if claim_ref.is_none() {
            patch["metadata"]["annotations"] = json!({ANN_BOUND_BY_CONTROLLER: "yes"});
        }
        match merge(&pv_api, &pv_name, &patch, false).await? {
            Some(v) => volume = v,
            None => return Ok(()),
        }
    }
    if phase_of_volume(&volume) != "Bound" {
        let patch =
            json!({"status": {"phase": "Bound", "message": null, "reason": null, "lastPhaseTransitionTime": now()}});
        if merge(&pv_api, &pv_name, &patch, true).await?.is_none() {
            return Ok(());
        }
    }
    let mut claim = claim.clone();
    let by_controller = volume_name(&claim).is_empty();
    if volume_name(&claim) != pv_name || !claim.annotations().contains_key(ANN_BIND_COMPLETED) {
        let mut annotations = json!({ANN_BIND_COMPLETED: "yes"});
        if by_controller {
            annotations[ANN_BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({
            "metadata": {"resourceVersion": claim.resource_version(), "annotations": annotations},
            "spec": {"volumeName": pv_name},
        });
        match merge(api, &claim.name_any(), &patch, false).await? {
            Some(c) => claim = c,
            None => return Ok(()),
        }
    }
    let spec = volume.spec.as_ref();
    // As Kubernetes: the capacity is copied from the volume when the claim
    // becomes Bound, never later. A larger volume under a Bound claim is a
    // resize in progress, which its resizer finishes (`expand`), clearing its
    // conditions in the same write; copying it here first would leave them.
    let claim_capacity = claim.status.as_ref().and_then(|s| s.capacity.clone());
    let capacity = match claim_capacity {
        Some(c) if phase_of_claim(&claim) == "Bound" => Some(c),
        _ => spec.and_then(|s| s.capacity.clone()),
    };
    let want = json!({
        "phase": "Bound",
        "accessModes": spec.and_then(|s| s.access_modes.clone()),
        "capacity": capacity,
    });
    let have = json!({
        "phase": phase_of_claim(&claim),
        "accessModes": claim.status.as_ref().and_then(|s| s.access_modes.clone()),
        "capacity": claim.status.as_ref().and_then(|s| s.capacity.clone()),
    });
    if want != have {
        merge(api, &claim.name_any(), &json!({"status": want}), true).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- volumes

async fn set_volume_phase(
    api: &Api<PersistentVolume>,
    volume: &PersistentVolume,
    phase: &str,
    message: Option<String>,
) -> Result<Option<PersistentVolume>, Error> {
    let status = volume.status.as_ref();
    if phase_of_volume(volume) == phase && status.and_then(|s| s.message.clone()) == message {
        return Ok(Some(volume.clone()));
    }
    let mut st = json!({"phase": phase, "message": message});
    if phase_of_volume(volume) != phase {
        st["lastPhaseTransitionTime"] = now();
    }
    merge(api, &volume.name_any(), &json!({"status": st}), true).await
}

async fn sync_volume(cached: Arc<PersistentVolume>, ctx: Arc<Context>, shared: Arc<Shared>) -> Result<Action, Error> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let volume = (*cached).clone();
    if volume_releasable(&volume) {
        remove_finalizer(
            &api,
            &volume.name_any(),
            volume.finalizers(),
            PV_PROTECTION,
            volume.resource_version(),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        set_volume_phase(&api, &volume, "Available", None).await?;
        return Ok(Action::await_change());
    };
    let uid = claim_ref.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        // Pre-bound by a user: waiting for the claim.
        set_volume_phase(&api, &volume, "Available", None).await?;
        return Ok(Action::await_change());
    }
    let ns = claim_ref.namespace.clone().unwrap_or_default();
    let name = claim_ref.name.clone().unwrap_or_default();
    let key = ObjectRef::<PersistentVolumeClaim>::new(&name).within(&ns);
    let claim = match shared.claims.get(&key) {
        Some(c) => Some((*c).clone()),
        // Not in the cache: ask the server before deciding the claim is gone.
        None => {
            Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?
        }
    };
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
    let Some(claim) = claim else {
        // The claim is gone: release and reclaim.
        let volume = if !matches!(phase_of_volume(&volume), "Released" | "Failed") {
            match set_volume_phase(&api, &volume, "Released", None).await? {
                Some(v) => v,
                None => return Ok(Action::await_change()),
            }
        } else {
            volume
        };
        reclaim(&volume, &api, &shared).await?;
        return Ok(Action::await_change());
    };
    if volume_name(&claim).is_empty() {
        // Binding in progress; the claim's queue completes it.
        return Ok(Action::await_change());
    }
    if volume_name(&claim) == volume.name_any() {
        set_volume_phase(&api, &volume, "Bound", None).await?;
        return Ok(Action::await_change());
    }
    // The claim is bound to another volume.
    if volume.annotations().contains_key(ANN_BOUND_BY_CONTROLLER) {
        let patch = json!({
            "metadata": {"resourceVersion": volume.resource_version(), "annotations": {ANN_BOUND_BY_CONTROLLER: null}},
            "spec": {"claimRef": null},
        });
        if let Some(v) = merge(&api, &volume.name_any(), &patch, false).await? {
            set_volume_phase(&api, &v, "Available", None).await?;
        }
    }
    Ok(Action::await_change())
}

/// Kubernetes' `reclaimVolume` for a `Released` volume.
async fn reclaim(volume: &PersistentVolume, api: &Api<PersistentVolume>, shared: &Shared) -> Result<(), Error> {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    if policy != "Delete" || phase_of_volume(volume) == "Failed" {
        return Ok(());
    }
    let provisioner = volume
        .annotations()
        .get(ANN_PROVISIONED_BY)
        .cloned()
        .unwrap_or_default();
    if provisioner == LOCAL_PATH_PROVISIONER {
        // noded on the volume's node removes the directory, then the object.
        return Ok(());
    }
    if !provisioner.is_empty() && !provisioner.starts_with("kubernetes.io/") {
        // An external provisioner deletes its own volumes.
        return Ok(());
    }
    let message = format!(
        "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
        volume.name_any()
    );
    if set_volume_phase(api, volume, "Failed", Some(message.clone()))
        .await?
        .is_some()
    {
        shared
            .recorder
            .record(volume, EventType::Warning, "VolumeFailedDelete", message);
    }
    Ok(())
}
