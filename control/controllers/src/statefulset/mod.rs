//! StatefulSet controller: pods with stable names and identities.
//!
//! Pod `<set>-<ordinal>` gets `hostname` = its name and `subdomain` =
//! `serviceName` (so cluster DNS answers `<pod>.<service>`), the labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash` (the name of its revision). Each reconcile
//! finds the update revision (the current template's,
//! [`crate::controller_revision`]) and the current revision
//! (`status.currentRevision`), takes the steps [`plan::plan`] decides, prunes
//! history and writes status; when every pod is at the update revision and
//! ready, the update revision becomes the current one.
//!
//! `volumeClaimTemplates` ([`claims`]): a pod's claims are created before
//! it, the pod mounts them, and `persistentVolumeClaimRetentionPolicy`
//! decides their owners (a condemned pod takes its claims with it under
//! `whenScaled: Delete`).

pub mod claims;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cached_pod::CachedPod;
use crate::controller_revision::{self, Ensured, Naming, CONTROLLER_REVISION_HASH, STATEFULSET_REVISION_HASH};
use crate::deployment::scaled_value;
use crate::events::EventType;
use crate::expectations::Expectations;
use crate::pods::{self, controller_of, controller_ref, is_terminated};
use crate::status::omit_zero;
use crate::{runner, Context, Error};
use plan::{PodView, SetView, Step};

/// Label with the pod's own name (for per-pod Services).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Subscribes the StatefulSet controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.statefulsets.store();
    let own = ctx
        .informers
        .statefulsets
        .trigger(|s: &StatefulSet| Some(ObjectRef::from_obj(s)));
    let from_pods = ctx.informers.pods.trigger(|pod: &CachedPod| owner_ref(pod));
    let from_revisions = ctx
        .informers
        .controllerrevisions
        .trigger(|rev: &ControllerRevision| owner_ref(rev));
    let expectations = Arc::new(Expectations::default());
    runner::run_batched(
        "statefulset",
        ctx,
        store,
        vec![own.boxed(), from_pods.boxed(), from_revisions.boxed()],
        Duration::from_millis(50),
        move |set, ctx| reconcile(set, ctx, expectations.clone()),
    )
}

fn owner_ref<K: kube::Resource>(obj: &K) -> Option<ObjectRef<StatefulSet>> {
    let owner = controller_of(obj).filter(|r| r.kind == "StatefulSet")?;
    Some(ObjectRef::new(&owner.name).within(&obj.meta().namespace.clone().unwrap_or_default()))
}

/// The set's spec as the plan sees it.
fn view(set: &StatefulSet, current: &str, update: &str) -> SetView {
    let spec = &set.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let ru = strategy.rolling_update.unwrap_or_default();
    let one = IntOrString::Int(1);
    SetView {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0),
        replicas,
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        rolling: strategy.type_.as_deref() != Some("OnDelete"),
        partition: ru.partition.unwrap_or(0).max(0),
        max_unavailable: scaled_value(Some(ru.max_unavailable.as_ref().unwrap_or(&one)), 0, replicas, true).max(1),
        current_revision: current.into(),
        update_revision: update.into(),
    }
}

/// A new pod `<set>-<ordinal>` from `template`, at `revision`.
pub fn pod_for(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    claims::add_claim_volumes(set, &mut pod, ordinal);
    pod
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>, expectations: Arc<Expectations>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = format!("{ns}/{name}");
    let selector = pods::selector(Some(&set.spec.selector), &key)?;
    if selector.selects_all() {
        return Ok(Action::await_change());
    }
    let pod_store = ctx.informers.pods.store();
    let exists = |n: &str| pod_store.get(&ObjectRef::new(n).within(&ns)).is_some();
    let live = |n: &str| {
        pod_store
            .get(&ObjectRef::new(n).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    };
    if !expectations.satisfied(&key, exists, live) {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }

    // Revisions: update = the template's; current = the status's, if kept.
    let revisions =
        controller_revision::claim(&ctx, &ctx.informers.controllerrevisions.store(), &*set, &selector).await?;
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let naming = Naming {
        template: &set.spec.template,
        collision_count,
        hash_label: STATEFULSET_REVISION_HASH,
    };
    let update = match controller_revision::ensure(&ctx, &*set, &naming, &revisions).await? {
        Ensured::Current(rev) => *rev,
        Ensured::Collision => {
            controller_revision::bump_collision_count(&ctx, &*set, collision_count).await?;
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    };
    let update_name = update.name_any();
    let status_current = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = status_current
        .as_ref()
        .and_then(|c| revisions.iter().find(|r| &r.name_any() == c))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    let current_name = current.name_any();
    let current_template = controller_revision::template_of(&current).unwrap_or_else(|| set.spec.template.clone());

    // The set's pods, by ordinal.
    let uid = set.uid().unwrap_or_default();
    let now = Timestamp::now();
    let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned: Vec<Arc<CachedPod>> = Vec::new();
    // Only the set's own pods and the namespace's orphans can change hands.
    for pod in ctx.informers.pods.claimable(&uid, &ns) {
        // Claim as Kubernetes does: release owned pods that stopped
        // matching, adopt matching orphans named like the set's pods.
        let matches = pods::selects(&selector, pod.labels());
        match controller_of(&*pod) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    pods::release(&pods_api, &*pod, &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches && pods::is_active(&pod) && plan::ordinal_of(&name, &pod.name_any()).is_some() {
                    pods::adopt(&pods_api, &*pod, &*set).await?;
                    owned.push(pod);
                }
            }
        }
    }
    let views: Vec<PodView> = owned
        .iter()
        .filter_map(|p| {
            let ordinal = plan::ordinal_of(&name, &p.name_any())?;
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let running_ready = running && pods::is_ready(p);
            Some(PodView {
                ordinal,
                name: p.name_any(),
                revision: p.labels().get(CONTROLLER_REVISION_HASH).cloned().unwrap_or_default(),
                running_ready,
                available: running_ready && pods::availability(p, min_ready, now).is_ok(),
                terminating: p.metadata.deletion_timestamp.is_some(),
                finished: is_terminated(p),
            })
        })
        .collect();
    let set_view = view(&set, &current_name, &update_name);
    let steps = plan::plan(&set_view, &views);

    let mut wrote = false;
    for step in &steps {
        match step {
            Step::Create { ordinal, revision } => {
                let template = if *revision == current_name {
                    &current_template
                } else {
                    &set.spec.template
                };
                let pod = pod_for(&set, template, *ordinal, revision);
                let pod_name = pod.name_any();
                claims::ensure(&ctx, &set, *ordinal, &pod_name).await?;
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        expectations.expect_create(&key, pod_name.clone());
                        wrote = true;
                        ctx.recorder.record(
                            &*set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        );
                    }
                    // Still in the store (the old pod of that name is not gone yet).
                    Err(kube::Error::Api(s)) if s.code == 409 => wrote = true,
                    Err(err) => {
                        ctx.recorder.record(
                            &*set,
                            EventType::Warning,
                            "FailedCreate",
                            format!("create Pod {pod_name} in StatefulSet {name} failed error: {err}"),
                        );
                        return Err(err.into());
                    }
                }
            }
            Step::Delete(pod_name) => {
                if let (Some(pod), Some(ordinal)) = (
                    owned.iter().find(|p| &p.name_any() == pod_name),
                    plan::ordinal_of(&name, pod_name),
                ) {
                    let in_range = ordinal >= set_view.start && ordinal < set_view.start + set_view.replicas;
                    claims::update_owners(&ctx, &set, pod, ordinal, in_range).await?;
                }
                expectations.expect_delete(&key, pod_name.clone());
                wrote = true;
                match pods_api.delete(pod_name, &DeleteParams::default()).await {
                    Ok(_) => ctx.recorder.record(
                        &*set,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
            }
            Step::WaitFor(pod_name) => {
                tracing::debug!(pod = %pod_name, "waiting for pod to be Running and Ready");
            }
        }
    }

    // Status from the pods seen.
    let mut st = Counts::default();
    let mut requeue: Option<Duration> = None;
    for p in &owned {
        st.replicas += 1;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running && pods::is_ready(p) {
            st.ready += 1;
            match pods::availability(p, min_ready, now) {
                Ok(()) => st.available += 1,
                Err(Some(wait)) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
                Err(None) => {}
            }
        }
        if p.metadata.deletion_timestamp.is_none() {
            let rev = p.labels().get(CONTROLLER_REVISION_HASH);
            if rev == Some(&current_name) {
                st.current += 1;
            }
            if rev == Some(&update_name) {
                st.updated += 1;
            }
        }
    }
    let (mut current_rev, mut current_count) = (current_name.clone(), st.current);
    if st.updated == st.replicas && st.ready == st.replicas && st.replicas == set_view.replicas {
        current_rev = update_name.clone();
        current_count = st.updated;
    }
    let status_revisions = Revisions {
        current: &current_rev,
        current_replicas: current_count,
        update: &update_name,
        collision_count,
    };
    write_status(&ctx, &set, &st, &status_revisions).await?;

    // History: revisions neither current, update, nor used by a pod.
    let mut live_revisions: HashSet<String> = HashSet::from([current_rev, update_name]);
    live_revisions.extend(
        owned
            .iter()
            .filter_map(|p| p.labels().get(CONTROLLER_REVISION_HASH).cloned()),
    );
    let limit = set.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let prune = controller_revision::to_prune(&revisions, &live_revisions, limit);
    controller_revision::prune(&ctx, &ns, &prune).await?;

    if wrote {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(requeue.map_or_else(|| Action::requeue(ctx.config.resync_period), Action::requeue))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    replicas: i32,
    ready: i32,
    available: i32,
    current: i32,
    updated: i32,
}

/// What the status says of revisions.
struct Revisions<'a> {
    current: &'a str,
    current_replicas: i32,
    update: &'a str,
    collision_count: i32,
}

async fn write_status(ctx: &Context, set: &StatefulSet, st: &Counts, revs: &Revisions<'_>) -> Result<(), Error> {
    let old = set.status.clone().unwrap_or_default();
    let generation = set.metadata.generation.unwrap_or(0);
    let unchanged = old.replicas == st.replicas
        && old.ready_replicas.unwrap_or(0) == st.ready
        && old.available_replicas.unwrap_or(0) == st.available
        && old.current_replicas.unwrap_or(0) == revs.current_replicas
        && old.updated_replicas.unwrap_or(0) == st.updated
        && old.current_revision.as_deref() == Some(revs.current)
        && old.update_revision.as_deref() == Some(revs.update)
        && old.collision_count == Some(revs.collision_count)
        && old.observed_generation == Some(generation);
    if unchanged {
        return Ok(());
    }
    let patch = status_patch(st, revs, generation);
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    match api
        .patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The status merge patch, as Kubernetes' StatefulSet controller writes
/// it: `replicas` and `availableReplicas` always, `collisionCount` always
/// (the controller sets it on every update), the other counts only when not
/// zero (`omitempty`; a zero removes an earlier value). No condition is ever
/// set (Kubernetes' StatefulSet controller sets none).
fn status_patch(st: &Counts, revs: &Revisions<'_>, generation: i64) -> serde_json::Value {
    json!({"status": {
        "replicas": st.replicas,
        "readyReplicas": omit_zero(st.ready),
        "availableReplicas": st.available,
        "currentReplicas": omit_zero(revs.current_replicas),
        "updatedReplicas": omit_zero(st.updated),
        "currentRevision": revs.current,
        "updateRevision": revs.update,
        "collisionCount": revs.collision_count,
        "observedGeneration": generation,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_has_kubernetes_fields_with_zero_counts_omitted() {
        let st = Counts {
            replicas: 3,
            ready: 2,
            available: 0,
            current: 1,
            updated: 0,
        };
        let revs = Revisions {
            current: "db-1",
            current_replicas: 3,
            update: "db-2",
            collision_count: 0,
        };
        assert_eq!(
            status_patch(&st, &revs, 4),
            json!({"status": {
                "replicas": 3, "readyReplicas": 2, "availableReplicas": 0, "currentReplicas": 3,
                "updatedReplicas": null, "currentRevision": "db-1", "updateRevision": "db-2",
                "collisionCount": 0, "observedGeneration": 4,
            }})
        );
    }

    #[test]
    fn pods_get_stable_identity() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "db-headless", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        }))
        .expect("set");
        let pod = pod_for(&set, &set.spec.template, 2, "db-abc");
        assert_eq!(pod.name_any(), "db-2");
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        let labels = pod.labels();
        assert_eq!(labels[POD_NAME_LABEL], "db-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[CONTROLLER_REVISION_HASH], "db-abc");
        assert_eq!(labels["app"], "db");
        let v = view(&set, "db-abc", "db-def");
        assert_eq!((v.replicas, v.start, v.partition, v.max_unavailable), (1, 0, 0, 1));
        assert!(v.rolling && !v.parallel);
    }
}
