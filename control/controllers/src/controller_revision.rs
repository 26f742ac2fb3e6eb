//! ControllerRevisions: the template history of DaemonSets and StatefulSets
//! (Kubernetes' `controller/history`), what `kubectl rollout history|undo`
//! read.
//!
//! A revision holds the owner's pod template as the strategic merge patch
//! kubectl applies on undo (`{"spec":{"template":{..., "$patch":"replace"}}}`),
//! is named `<owner>-<hash>` (the template hash Deployments use, with the
//! owner's `collisionCount`), carries the template's labels (so the owner's
//! selector finds it) plus a hash label, and a `revision` number. When the
//! owner's template equals an older revision (a rollback), that revision is
//! renumbered to the next number rather than duplicated. Revisions no pod
//! uses beyond `revisionHistoryLimit` are deleted oldest first.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde_json::{json, Value};

use crate::deployment::{equal_ignore_hash, pod_template_hash};
use crate::pods::{controller_of, controller_ref};
use crate::{Context, Error};

/// Label on a DaemonSet's pods and revisions (the template hash), and on a
/// StatefulSet's pods (the revision name).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Label with the hash on a StatefulSet's revisions.
pub const STATEFULSET_REVISION_HASH: &str = "controller.kubernetes.io/hash";

/// The `data` of a revision of `template`: the patch kubectl applies on undo.
pub fn patch_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision holds.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Whether `rev` holds `template`.
pub fn holds(rev: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(rev).is_some_and(|t| equal_ignore_hash(&t, template))
}

/// The revisions in `store` controlled by `owner`, oldest revision first.
pub fn owned<K: Resource>(store: &Store<ControllerRevision>, owner: &K) -> Vec<Arc<ControllerRevision>> {
    let ns = owner.meta().namespace.clone();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut revs: Vec<Arc<ControllerRevision>> = store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace == ns && r.metadata.deletion_timestamp.is_none())
        .filter(|r| controller_of(&**r).is_some_and(|c| c.uid == uid))
        .collect();
    revs.sort_by_key(|r| (revision(r), r.name_any()));
    revs
}

/// The owner's revisions ([`owned`]) after adopting orphans whose labels
/// its selector matches, as Kubernetes' `ClaimControllerRevisions` does (a
/// set deleted with `--cascade=orphan` and created again keeps its history,
/// so its pods do not roll).
pub async fn claim<K>(
    ctx: &Context,
    store: &Store<ControllerRevision>,
    owner: &K,
    selector: &kube::core::Selector,
) -> Result<Vec<Arc<ControllerRevision>>, Error>
where
    K: Resource<DynamicType = ()>,
{
    let ns = owner.meta().namespace.clone();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns.as_deref().unwrap_or_default());
    let orphans: Vec<Arc<ControllerRevision>> = store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace == ns && r.metadata.deletion_timestamp.is_none())
        .filter(|r| controller_of(&**r).is_none() && crate::pods::selects(selector, r.labels()))
        .collect();
    let mut revs = owned(store, owner);
    if owner.meta().deletion_timestamp.is_some() {
        return Ok(revs);
    }
    for orphan in orphans {
        crate::pods::adopt(&api, &*orphan, owner).await?;
        let mut adopted = (*orphan).clone();
        adopted.metadata.owner_references = Some(vec![controller_ref(owner)]);
        revs.push(Arc::new(adopted));
    }
    revs.sort_by_key(|r| (revision(r), r.name_any()));
    Ok(revs)
}

/// What [`ensure`] found.
pub enum Ensured {
    /// The revision holding the owner's current template, newest of all.
    Current(Box<ControllerRevision>),
    /// Another object already has the name: bump `collisionCount` and retry.
    Collision,
}

/// How the owner labels its revisions.
pub struct Naming<'a> {
    /// The owner's pod template.
    pub template: &'a PodTemplateSpec,
    /// The owner's `status.collisionCount`.
    pub collision_count: i32,
    /// Label carrying the hash on the revision.
    pub hash_label: &'a str,
}

/// The revision holding the owner's template, created (or renumbered to be
/// the newest) when needed. `revisions` are the owner's, from [`owned`].
pub async fn ensure<K>(
    ctx: &Context,
    owner: &K,
    naming: &Naming<'_>,
    revisions: &[Arc<ControllerRevision>],
) -> Result<Ensured, Error>
where
    K: Resource<DynamicType = ()>,
{
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let next = next_revision(revisions);
    let equal: Vec<&Arc<ControllerRevision>> = revisions.iter().filter(|r| holds(r, naming.template)).collect();
    if let Some(newest) = equal.last() {
        if revision(newest) + 1 == next {
            return Ok(Ensured::Current(Box::new((***newest).clone())));
        }
        let patch = json!({"revision": next});
        let updated = api
            .patch(&newest.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(Ensured::Current(Box::new(updated)));
    }
    let hash = pod_template_hash(naming.template, naming.collision_count);
    let name = format!("{}-{}", owner.meta().name.clone().unwrap_or_default(), hash);
    let mut labels: BTreeMap<String, String> = naming
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(naming.hash_label.into(), hash);
    let rev = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns),
            labels: Some(labels),
            annotations: owner.meta().annotations.clone(),
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        data: RawExtension(patch_data(naming.template)),
        revision: Some(next),
    };
    match api.create(&PostParams::default(), &rev).await {
        Ok(created) => Ok(Ensured::Current(Box::new(created))),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = controller_of(&existing).is_some_and(|c| Some(&c.uid) == owner.meta().uid.as_ref());
            if ours && holds(&existing, naming.template) {
                Ok(Ensured::Current(Box::new(existing)))
            } else {
                Ok(Ensured::Collision)
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// A revision's number (0 when unset).
pub fn revision(rev: &ControllerRevision) -> i64 {
    rev.revision.unwrap_or(0)
}

/// The number the next revision gets: one more than the highest.
pub fn next_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| revision(r)).max().unwrap_or(0) + 1
}

/// The revisions to delete: those not in `live` beyond `limit`, oldest first.
pub fn to_prune(revisions: &[Arc<ControllerRevision>], live: &HashSet<String>, limit: usize) -> Vec<String> {
    let mut idle: Vec<&Arc<ControllerRevision>> = revisions.iter().filter(|r| !live.contains(&r.name_any())).collect();
    if idle.len() <= limit {
        return Vec::new();
    }
    idle.sort_by_key(|r| revision(r));
    idle[..idle.len() - limit].iter().map(|r| r.name_any()).collect()
}

/// Deletes the revisions named (already gone is fine).
pub async fn prune(ctx: &Context, namespace: &str, names: &[String]) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), namespace);
    for name in names {
        delete(&api, name).await?;
    }
    Ok(())
}

async fn delete(api: &Api<ControllerRevision>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Writes `status.collisionCount` of `owner` (through `/status`) one higher.
pub async fn bump_collision_count<K>(ctx: &Context, owner: &K, current: i32) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.meta().namespace.clone().unwrap_or_default());
    let patch = json!({"status": {"collisionCount": current + 1}});
    api.patch_status(
        &owner.meta().name.clone().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .expect("template")
    }

    fn rev(name: &str, revision: i64, image: &str) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: RawExtension(patch_data(&template(image))),
            revision: Some(revision),
        })
    }

    #[test]
    fn data_is_kubectls_undo_patch_and_round_trips() {
        let t = template("nginx:1");
        let data = patch_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1");
        let r = rev("web-1", 1, "nginx:1");
        assert!(holds(&r, &t));
        assert!(!holds(&r, &template("nginx:2")));
    }

    #[test]
    fn numbering_and_pruning_keep_live_and_newest() {
        let revs = vec![rev("a", 1, "1"), rev("b", 2, "2"), rev("c", 3, "3"), rev("d", 4, "4")];
        assert_eq!(next_revision(&revs), 5);
        assert_eq!(next_revision(&[]), 1);
        let live: HashSet<String> = ["d".to_string(), "a".to_string()].into();
        assert_eq!(to_prune(&revs, &live, 1), ["b"]);
        assert_eq!(to_prune(&revs, &live, 0), ["b", "c"]);
        assert!(to_prune(&revs, &live, 2).is_empty());
    }
}
