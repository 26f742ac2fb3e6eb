//! Deployment controller: rolls pod templates out through ReplicaSets.
//!
//! Each distinct pod template gets one ReplicaSet named
//! `<deployment>-<pod-template-hash>` and labelled `pod-template-hash`; the
//! ReplicaSet whose template equals the Deployment's (ignoring that label) is
//! the *new* one, all others are *old*. A reconcile picks the strategy
//! ([`rolling`] or [`recreate`]), scales ReplicaSets one step, prunes history
//! ([`history`]) and writes status and conditions ([`progress`]). Rollback is
//! client-side, as on Kubernetes: `kubectl rollout undo` copies an old
//! ReplicaSet's template into the Deployment ([`rollback`]), which makes that
//! ReplicaSet the new one again with the next revision number.

pub mod history;
pub mod progress;
pub mod recreate;
pub mod rollback;
pub mod rolling;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cached_pod::CachedPod;
use crate::events::EventType;
use crate::expectations::Freshness;
use crate::pods::{self, controller_of, controller_ref, selects};
use crate::{runner, Context, Error};

/// Label carrying the template hash on ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Revision of a ReplicaSet (and of its Deployment: the new ReplicaSet's).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a reused ReplicaSet had (comma-separated).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when it last scaled the ReplicaSet.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `replicas + maxSurge` when the Deployment last scaled the ReplicaSet.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// State shared by the Deployment reconciles.
#[derive(Default)]
pub struct DeploymentState {
    /// ReplicaSets this controller wrote, so it never acts on an older cache.
    pub written: Freshness,
}

/// Subscribes the Deployment controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.deployments.store();
    let own = ctx
        .informers
        .deployments
        .trigger(|d: &Deployment| Some(ObjectRef::from_obj(d)));
    let d_store = store.clone();
    let from_rs = ctx
        .informers
        .replicasets
        .trigger(move |rs: &ReplicaSet| deployments_for_replicaset(&d_store, rs));
    // Recreate waits for old pods to be gone: pod changes reach the Deployment through their ReplicaSet.
    let rs_store = ctx.informers.replicasets.store();
    let d_store = store.clone();
    let from_pods = ctx.informers.pods.trigger(move |pod: &CachedPod| {
        let owner = controller_of(pod).filter(|r| r.kind == "ReplicaSet")?;
        let ns = pod.namespace().unwrap_or_default();
        let rs = rs_store.get(&ObjectRef::new(&owner.name).within(&ns))?;
        let d_ref = controller_of(&*rs).filter(|r| r.kind == "Deployment")?;
        let d = d_store.get(&ObjectRef::new(&d_ref.name).within(&ns))?;
        is_recreate(&d).then(|| ObjectRef::from_obj(&*d))
    });
    let state = Arc::new(DeploymentState::default());
    runner::run(
        "deployment",
        ctx,
        store,
        vec![own.boxed(), from_rs.boxed(), from_pods.boxed()],
        move |d, ctx| reconcile(d, ctx, state.clone()),
    )
}

fn is_recreate(d: &Deployment) -> bool {
    Some(&d.spec)
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn deployments_for_replicaset(store: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(rs) {
        return if owner.kind == "Deployment" {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            vec![]
        };
    }
    store
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            pods::selector(Some(&d.spec).map(|s| &s.selector), "")
                .map(|s| selects(&s, rs.labels()))
                .unwrap_or(false)
        })
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// Everything one reconcile of a Deployment works with.
pub struct Sync<'a> {
    /// The controller context.
    pub ctx: &'a Context,
    /// Shared Deployment state.
    pub state: &'a DeploymentState,
    /// The Deployment as cached.
    pub d: &'a Deployment,
    /// ReplicaSet API in the Deployment's namespace.
    pub rs_api: Api<ReplicaSet>,
    /// Progressing condition decided while finding the new ReplicaSet.
    pub pending_condition: Option<(&'static str, String)>,
}

impl Sync<'_> {
    /// `spec.replicas` (default 1).
    pub fn replicas(&self) -> i32 {
        Some(&self.d.spec).and_then(|s| s.replicas).unwrap_or(1)
    }

    /// Sets a ReplicaSet's `spec.replicas` (and the desired/max annotations),
    /// recording a ScalingReplicaSet event. Returns the updated ReplicaSet.
    pub async fn scale(&self, rs: &ReplicaSet, to: i32) -> Result<ReplicaSet, Error> {
        let from = rs_replicas(rs);
        let max = self.replicas() + max_surge(self.d);
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: self.replicas().to_string(), MAX_REPLICAS: max.to_string()}},
            "spec": {"replicas": to},
        });
        let updated = self
            .rs_api
            .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.state
            .written
            .wrote(&pods::key_of(rs), updated.metadata.resource_version.as_deref());
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            self.ctx.recorder.record(
                self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {verb} replica set {} from {from} to {to}", rs.name_any()),
            );
        }
        Ok(updated)
    }

    /// The new ReplicaSet (template equal to the Deployment's), with its
    /// revision brought up to date; created with `create_replicas` replicas if
    /// missing and `create_replicas` is given.
    pub async fn new_replicaset(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &[Arc<ReplicaSet>],
        create_replicas: Option<i32>,
    ) -> Result<Option<ReplicaSet>, Error> {
        let max_old = old.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let new_revision = max_old + 1;
        let template = Some(&self.d.spec).map(|s| s.template.clone()).unwrap_or_default();
        if let Some(rs) = new_rs {
            let current = revision(rs);
            let mut rs = rs.clone();
            // The Deployment's annotations (e.g. `kubernetes.io/change-cause`)
            // follow onto its new ReplicaSet, as `rollout history` shows them.
            let mut annotations: serde_json::Map<String, serde_json::Value> = annotations_to_copy(self.d, &rs)
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            if current < new_revision {
                // A reused ReplicaSet (rollback): next revision, remember the old one.
                let mut history: Vec<String> = rs
                    .annotations()
                    .get(REVISION_HISTORY)
                    .map(|h| h.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
                    .unwrap_or_default();
                if current > 0 {
                    history.push(current.to_string());
                }
                annotations.insert(REVISION.into(), new_revision.to_string().into());
                annotations.insert(
                    REVISION_HISTORY.into(),
                    if history.is_empty() {
                        serde_json::Value::Null
                    } else {
                        history.join(",").into()
                    },
                );
                self.pending_condition = Some((
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{}\"", rs.name_any()),
                ));
            }
            if !annotations.is_empty() {
                let patch = json!({"metadata": {"annotations": annotations}});
                rs = self
                    .rs_api
                    .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                self.state
                    .written
                    .wrote(&pods::key_of(&rs), rs.metadata.resource_version.as_deref());
            }
            self.set_deployment_revision(revision(&rs)).await?;
            return Ok(Some(rs));
        }
        let Some(replicas) = create_replicas else {
            return Ok(None);
        };
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let hash = pod_template_hash(&template, collision_count);
        let name = format!("{}-{}", self.d.name_any(), hash);
        let rs = self.replicaset_for(&template, &name, &hash, replicas, new_revision);
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.state
                    .written
                    .wrote(&pods::key_of(&created), created.metadata.resource_version.as_deref());
                self.ctx.recorder.record(
                    self.d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {replicas}"),
                );
                self.pending_condition = Some(("NewReplicaSetCreated", format!("Created new replica set \"{name}\"")));
                self.set_deployment_revision(new_revision).await?;
                Ok(Some(created))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self.rs_api.get(&name).await?;
                let ours = controller_of(&existing).is_some_and(|r| Some(&r.uid) == self.d.uid().as_ref());
                let same = Some(&existing.spec)
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &template));
                if ours && same {
                    // Our cache was behind; use it next time.
                    Ok(None)
                } else {
                    // Hash collision: bump collisionCount so the next hash differs.
                    let d_api: Api<Deployment> =
                        Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
                    let patch = json!({"status": {"collisionCount": collision_count + 1}});
                    d_api
                        .patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    Ok(None)
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    fn replicaset_for(
        &self,
        template: &PodTemplateSpec,
        name: &str,
        hash: &str,
        replicas: i32,
        revision: i64,
    ) -> ReplicaSet {
        let d = self.d;
        let spec = d.spec.clone();
        let mut template = template.clone();
        let mut meta = template.metadata.take().unwrap_or_default();
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.into());
        let labels = meta.labels.clone();
        template.metadata = Some(meta);
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.into());
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| copies_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), self.replicas().to_string());
        annotations.insert(MAX_REPLICAS.into(), (self.replicas() + max_surge(d)).to_string());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: d.namespace(),
                labels,
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        }
    }

    async fn set_deployment_revision(&self, rev: i64) -> Result<(), Error> {
        if self.d.annotations().get(REVISION).map(String::as_str) == Some(rev.to_string().as_str()) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {REVISION: rev.to_string()}}});
        api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>, state: Arc<DeploymentState>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let key = pods::key_of(&*d);
    let spec = d.spec.clone();
    let selector = pods::selector(Some(&spec.selector), &key)?;
    if selector.selects_all() {
        ctx.recorder.record(
            &*d,
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(Action::await_change());
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = d.uid().unwrap_or_default();

    // ReplicaSets owned by the Deployment; adopt matching orphans.
    let mut owned: Vec<Arc<ReplicaSet>> = Vec::new();
    for rs in ctx.informers.replicasets.store().state() {
        if rs.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        match controller_of(&*rs) {
            Some(r) if r.uid == uid => owned.push(rs),
            None if selects(&selector, rs.labels()) && rs.metadata.deletion_timestamp.is_none() => {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref(&*d));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.resource_version()}});
                rs_api
                    .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            _ => {}
        }
    }
    // Never decide on a cache older than our own last write.
    if owned.iter().any(|rs| {
        !state
            .written
            .is_fresh(&pods::key_of(&**rs), rs.metadata.resource_version.as_deref())
    }) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    owned.sort_by_key(|rs| {
        rs.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or(0)
    });
    let template = spec.template.clone();
    let new_rs = owned
        .iter()
        .find(|rs| {
            Some(&rs.spec)
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        })
        .cloned();
    let old: Vec<Arc<ReplicaSet>> = owned
        .iter()
        .filter(|rs| Some(rs.uid()) != new_rs.as_ref().map(|n| n.uid()))
        .cloned()
        .collect();

    let mut sync = Sync {
        ctx: &ctx,
        state: &state,
        d: &d,
        rs_api,
        pending_condition: None,
    };
    let paused = spec.paused.unwrap_or(false);
    let new_rs = if paused {
        // Paused: no rollout step; only keep the scale of a finished rollout in line.
        if let Some(rs) = new_rs.as_deref() {
            if old.iter().all(|o| rs_replicas(o) == 0) && rs_replicas(rs) != sync.replicas() {
                sync.scale(rs, sync.replicas()).await?;
            }
        }
        new_rs.map(|rs| (*rs).clone())
    } else if is_recreate(&d) {
        recreate::sync(&mut sync, new_rs.as_deref(), &old).await?
    } else {
        rolling::sync(&mut sync, new_rs.as_deref(), &old).await?
    };
    history::cleanup(&sync, &old).await?;
    let requeue = progress::sync_status(&sync, new_rs.as_ref(), &owned).await?;
    Ok(Action::requeue(requeue.unwrap_or(ctx.config.resync_period)))
}

/// Annotations a Deployment does not pass on to its ReplicaSets (Kubernetes'
/// `annotationsToSkip`): the revision bookkeeping, which each ReplicaSet keeps
/// for itself, and kubectl's last applied configuration.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Whether a Deployment's annotation `key` goes onto its ReplicaSets.
fn copies_annotation(key: &str) -> bool {
    !NOT_COPIED.contains(&key)
}

/// The Deployment's annotations its new ReplicaSet lacks or holds with
/// another value (added or overwritten, never removed: Kubernetes'
/// `copyDeploymentAnnotationsToReplicaSet`).
pub fn annotations_to_copy(d: &Deployment, rs: &ReplicaSet) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, v)| copies_annotation(k) && rs.annotations().get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `spec.replicas` of a ReplicaSet (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    Some(&rs.spec).and_then(|s| s.replicas).unwrap_or(1)
}

/// Available replicas a ReplicaSet reports, never more than it is scaled to.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        .min(rs_replicas(rs))
}

/// Whether a ReplicaSet's status reflects its current spec.
pub fn rs_status_current(rs: &ReplicaSet) -> bool {
    rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) >= rs.metadata.generation.unwrap_or(0)
}

/// The revision annotation of a ReplicaSet (0 when missing).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations().get(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Kubernetes' pod-template-hash: FNV-32a of the template (its canonical
/// JSON here) plus the collision count, digits mapped to the safe alphabet.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(&canonical(template)).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    pods::safe_encode_string(&pods::fnv1a32(&bytes).to_string())
}

fn strip_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    t
}

/// Whether two templates are equal apart from the pod-template-hash label,
/// treating empty and absent fields alike (as Kubernetes' semantic equality
/// does for Go structs: `resources: {}` equals no `resources`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    canonical(a) == canonical(b)
}

/// The template as JSON without the hash label and without empty values.
fn canonical(t: &PodTemplateSpec) -> serde_json::Value {
    fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::Object(m) => {
                let m: serde_json::Map<String, serde_json::Value> =
                    m.into_iter().filter_map(|(k, v)| prune(v).map(|v| (k, v))).collect();
                (!m.is_empty()).then_some(serde_json::Value::Object(m))
            }
            serde_json::Value::Array(a) => {
                let a: Vec<serde_json::Value> = a
                    .into_iter()
                    .map(|v| prune(v).unwrap_or(serde_json::Value::Null))
                    .collect();
                (!a.is_empty()).then_some(serde_json::Value::Array(a))
            }
            other => Some(other),
        }
    }
    serde_json::to_value(strip_hash(t))
        .ok()
        .and_then(prune)
        .unwrap_or(serde_json::Value::Null)
}

/// Resolves an int-or-percent against `total`, rounding up or down.
pub fn scaled_value(v: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    let percent = match v {
        Some(IntOrString::Int(i)) => return (*i).max(0),
        Some(IntOrString::String(s)) => s.trim_end_matches('%').parse::<i32>().unwrap_or(default_percent),
        None => default_percent,
    };
    let product = i64::from(percent) * i64::from(total);
    let v = if round_up { (product + 99) / 100 } else { product / 100 };
    v.max(0) as i32
}

/// (maxSurge, maxUnavailable) of a Deployment as Kubernetes resolves them:
/// surge rounds up, unavailable rounds down, and both 0 means unavailable 1.
/// Recreate has no surge and no tolerated unavailability for conditions.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone();
    if is_recreate(d) {
        return (0, 0);
    }
    let replicas = spec.replicas.unwrap_or(1);
    let ru = spec.strategy.and_then(|s| s.rolling_update).unwrap_or_default();
    let surge = scaled_value(ru.max_surge.as_ref(), 25, replicas, true);
    let mut unavailable = scaled_value(ru.max_unavailable.as_ref(), 25, replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// maxSurge resolved.
pub fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn fenceposts_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(fenceposts(&deployment(10, pct("25%"), pct("25%"))), (3, 2));
        assert_eq!(fenceposts(&deployment(3, pct("25%"), pct("25%"))), (1, 0));
        assert_eq!(
            fenceposts(&deployment(3, IntOrString::Int(0), IntOrString::Int(0))),
            (0, 1)
        );
        assert_eq!(
            fenceposts(&deployment(4, IntOrString::Int(2), IntOrString::Int(0))),
            (2, 0)
        );
        assert_eq!(fenceposts(&deployment(1, pct("50%"), pct("50%"))), (1, 0));
    }

    #[test]
    fn deployment_annotations_follow_onto_the_new_replicaset_but_not_revision_bookkeeping() {
        let meta = |pairs: &[(&str, &str)]| ObjectMeta {
            annotations: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        };
        let d = Deployment {
            metadata: meta(&[
                ("kubernetes.io/change-cause", "limit memory"),
                ("team", "payments"),
                (REVISION, "4"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                (DESIRED_REPLICAS, "3"),
            ]),
            ..Default::default()
        };
        let rs = ReplicaSet {
            metadata: meta(&[(REVISION, "3"), ("team", "payments"), ("kept", "yes")]),
            ..Default::default()
        };
        assert_eq!(
            annotations_to_copy(&d, &rs),
            BTreeMap::from([("kubernetes.io/change-cause".to_string(), "limit memory".to_string())])
        );
        let same = ReplicaSet {
            metadata: meta(&[("kubernetes.io/change-cause", "limit memory"), ("team", "payments")]),
            ..Default::default()
        };
        assert!(
            annotations_to_copy(&d, &same).is_empty(),
            "nothing to write when in step"
        );
    }

    #[test]
    fn template_hash_is_stable_and_ignores_its_own_label() {
        let mut t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            }),
            spec: None,
        };
        let h1 = pod_template_hash(&t, 0);
        assert_eq!(h1, pod_template_hash(&t.clone(), 0));
        assert_ne!(h1, pod_template_hash(&t, 1));
        let plain = t.clone();
        t.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), h1.clone());
        assert_eq!(h1, pod_template_hash(&t, 0));
        assert!(equal_ignore_hash(&t, &plain));
        let mut with_empty = plain.clone();
        with_empty.spec = Some(Default::default());
        assert!(
            equal_ignore_hash(&with_empty, &plain),
            "empty and absent fields are equal"
        );
        assert!(h1.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
