//! A StatefulSet's `volumeClaimTemplates`, as Kubernetes' StatefulSet
//! controller handles them: ordinal `i` of set `s` gets, per template `t`,
//! the claim `<t>-<s>-<i>` (the template's labels plus the selector's
//! `matchLabels`, its annotations and spec), created before the pod if
//! missing and never updated afterwards; the pod gets a
//! `persistentVolumeClaim` volume named after the template (replacing a
//! template volume of that name).
//!
//! `persistentVolumeClaimRetentionPolicy` decides the claims' owner
//! references (Kubernetes' `updateClaimOwnerRefForSetAndPod`):
//! `whenDeleted: Delete` makes the set an owner (the garbage collector
//! deletes the claims with the set); `whenScaled: Delete` makes a condemned
//! pod (ordinal out of range after a scale-down) the owner of its claims
//! just before it is deleted, so they go with it. `Retain` leaves no such
//! reference.

use crate::cached_pod::CachedPod;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::{Context, Error};

/// The claim of template `template` for ordinal `ordinal` of `set`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.volume_claim_templates.as_deref().unwrap_or(&[])
}

/// `(whenDeleted, whenScaled)` with their `Retain` defaults.
fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set.spec.persistent_volume_claim_retention_policy.as_ref();
    (
        p.and_then(|p| p.when_deleted.as_deref()) == Some("Delete"),
        p.and_then(|p| p.when_scaled.as_deref()) == Some("Delete"),
    )
}

fn set_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.name_any(),
        uid: set.uid().unwrap_or_default(),
        ..Default::default()
    }
}

fn pod_ref(pod: &CachedPod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        ..Default::default()
    }
}

/// The claims ordinal `ordinal` of `set` needs, as they are created.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    let (when_deleted, _) = policy(set);
    templates(set)
        .iter()
        .map(|t| {
            let mut labels: BTreeMap<String, String> = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&t.name_any(), &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: when_deleted.then(|| vec![set_ref(set)]),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Gives `pod` a `persistentVolumeClaim` volume per template (Kubernetes'
/// `updateStorage`): claim volumes first, then the pod's other volumes.
pub fn add_claim_volumes(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    if templates(set).is_empty() {
        return;
    }
    let Some(spec) = pod.spec.as_mut() else { return };
    let names: Vec<String> = templates(set).iter().map(|t| t.name_any()).collect();
    let mut volumes: Vec<Volume> = names
        .iter()
        .map(|n| Volume {
            name: n.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(n, &set.name_any(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !names.contains(&v.name)),
    );
    spec.volumes = Some(volumes);
}

/// Creates the claims of `pod_name` (ordinal `ordinal`) that do not exist
/// yet, with Kubernetes' events; a claim being deleted stops the pod's
/// creation until it is gone.
pub async fn ensure(ctx: &Context, set: &StatefulSet, ordinal: i32, pod_name: &str) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_name = set.name_any();
    for claim in claims_for(set, ordinal) {
        let name = claim.name_any();
        match api.get_opt(&name).await? {
            Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                return Err(Error::Invalid {
                    object: format!("{ns}/{set_name}"),
                    reason: format!("pvc {name} is being deleted"),
                });
            }
            Some(_) => {}
            None => match api.create(&PostParams::default(), &claim).await {
                Ok(_) => ctx.recorder.record(
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(err) => {
                    ctx.recorder.record(
                        set,
                        EventType::Warning,
                        "FailedCreate",
                        format!("create Claim {name} for Pod {pod_name} in StatefulSet {set_name} failed error: {err}"),
                    );
                    return Err(err.into());
                }
            },
        }
    }
    Ok(())
}

/// The owner references a claim of `pod` should have (Kubernetes'
/// `updateClaimOwnerRefForSetAndPod`), from its current ones.
pub fn owners_for(
    set: &StatefulSet,
    pod: &CachedPod,
    in_range: bool,
    current: &[OwnerReference],
) -> Vec<OwnerReference> {
    let (when_deleted, when_scaled) = policy(set);
    let set_uid = set.uid().unwrap_or_default();
    let pod_uid = pod.uid().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| r.uid != set_uid && r.uid != pod_uid)
        .cloned()
        .collect();
    let keep = |uid: &str| current.iter().find(|r| r.uid == uid).cloned();
    let (want_set, want_pod) = match (when_scaled, when_deleted) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, !in_range),
        (true, true) => (in_range, !in_range),
    };
    if want_set {
        refs.push(keep(&set_uid).unwrap_or_else(|| set_ref(set)));
    }
    if want_pod {
        refs.push(keep(&pod_uid).unwrap_or_else(|| pod_ref(pod)));
    }
    refs
}

/// Brings the owner references of `pod`'s claims in line with the policy
/// (before a condemned pod is deleted, its claims follow it when
/// `whenScaled` is `Delete`).
pub async fn update_owners(
    ctx: &Context,
    set: &StatefulSet,
    pod: &CachedPod,
    ordinal: i32,
    in_range: bool,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for t in templates(set) {
        let name = claim_name(&t.name_any(), &set.name_any(), ordinal);
        let Some(claim) = api.get_opt(&name).await? else {
            continue;
        };
        let current = claim.metadata.owner_references.clone().unwrap_or_default();
        let wanted = owners_for(set, pod, in_range, &current);
        if wanted == current {
            continue;
        }
        let patch = json!({"metadata": {"ownerReferences": wanted, "resourceVersion": claim.resource_version()}});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(policy: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default", "uid": "set-uid"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [], "volumes": [
                    {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}},
                ]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "disk"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                "persistentVolumeClaimRetentionPolicy": policy,
            },
        }))
        .expect("set")
    }

    fn pod() -> CachedPod {
        serde_json::from_value(json!({"metadata": {"name": "db-2", "uid": "pod-uid"}, "spec": {"containers": []}}))
            .expect("pod")
    }

    #[test]
    fn claims_are_named_and_labelled_as_kubernetes_does() {
        let s = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        let claims = claims_for(&s, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-db-2");
        assert_eq!(
            claims[0].labels(),
            &BTreeMap::from([
                ("app".to_string(), "db".to_string()),
                ("tier".to_string(), "disk".to_string())
            ])
        );
        assert!(claims[0].metadata.owner_references.is_none());
        let owned = claims_for(&set(json!({"whenDeleted": "Delete"})), 0);
        assert_eq!(
            owned[0].metadata.owner_references.as_ref().map(|r| r[0].uid.clone()),
            Some("set-uid".into())
        );
    }

    #[test]
    fn the_pod_mounts_its_claims_instead_of_template_volumes_of_that_name() {
        let s = set(json!({}));
        let mut p: Pod =
            serde_json::from_value(json!({"metadata": {"name": "db-2"}, "spec": {"containers": []}})).expect("pod");
        p.spec.as_mut().expect("spec").volumes = s.spec.template.spec.as_ref().and_then(|t| t.volumes.clone());
        add_claim_volumes(&s, &mut p, 2);
        let vols = p.spec.and_then(|s| s.volumes).unwrap_or_default();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0].name, "data");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()),
            Some("data-db-2")
        );
        assert_eq!(vols[1].name, "cfg");
    }

    #[test]
    fn retention_policy_decides_owners() {
        let uids = |refs: Vec<OwnerReference>| refs.into_iter().map(|r| r.uid).collect::<Vec<_>>();
        let other = OwnerReference {
            uid: "x".into(),
            ..Default::default()
        };
        let p = pod();
        let retain = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        assert_eq!(
            uids(owners_for(&retain, &p, false, std::slice::from_ref(&other))),
            ["x"]
        );
        let deleted = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}));
        assert_eq!(uids(owners_for(&deleted, &p, false, &[])), ["set-uid"]);
        let scaled = set(json!({"whenDeleted": "Retain", "whenScaled": "Delete"}));
        assert_eq!(uids(owners_for(&scaled, &p, false, &[])), ["pod-uid"]);
        assert!(owners_for(&scaled, &p, true, &[]).is_empty());
        let both = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}));
        assert_eq!(uids(owners_for(&both, &p, true, &[])), ["set-uid"]);
        assert_eq!(uids(owners_for(&both, &p, false, &[])), ["pod-uid"]);
    }
}
