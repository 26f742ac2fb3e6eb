//! ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector.
//!
//! Claims pods like Kubernetes: adopts matching orphans, releases owned pods
//! whose labels stopped matching, creates missing pods (slow-start batches)
//! and deletes extras in Kubernetes' order (unscheduled, then not ready, then
//! newest). Status counts replicas, fully labelled, ready and available
//! (ready for `minReadySeconds`) pods.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::expectations::Expectations;
use crate::pods::{self, adopt, controller_of, controller_ref, is_active, release, selects};
use crate::{runner, Context, Error};

/// Most pods created or deleted in one reconcile (Kubernetes' burstReplicas).
const BURST_REPLICAS: usize = 500;

/// Subscribes the ReplicaSet controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.replicasets.store();
    let own = ctx
        .informers
        .replicasets
        .trigger(|rs: &ReplicaSet| Some(ObjectRef::from_obj(rs)));
    let rs_store = store.clone();
    let from_pods = ctx
        .informers
        .pods
        .trigger(move |pod: &Pod| replicasets_for_pod(&rs_store, pod));
    let expectations = Arc::new(Expectations::default());
    runner::run(
        "replicaset",
        ctx,
        store,
        vec![own.boxed(), from_pods.boxed()],
        move |rs, ctx| reconcile(rs, ctx, expectations.clone()),
    )
}

/// The ReplicaSets a pod change concerns: its controller, or for an orphan
/// every ReplicaSet in its namespace whose selector matches it.
fn replicasets_for_pod(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            pods::selector(Some(&rs.spec).map(|s| &s.selector), "")
                .map(|sel| selects(&sel, pod.labels()))
                .unwrap_or(false)
        })
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>, expectations: Arc<Expectations>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{ns}/{name}");
    let uid = rs.uid().unwrap_or_default();
    let spec = rs.spec.clone();
    let selector = pods::selector(Some(&spec.selector), &key)?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_store = ctx.informers.pods.store();

    // Claim pods: keep owned matching ones, release owned non-matching, adopt orphans.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in pod_store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
    {
        let matches = selects(&selector, pod.labels());
        match controller_of(&*pod) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    release(&pods_api, &pod, &uid).await?;
                    ctx.recorder.record(
                        &*rs,
                        EventType::Normal,
                        "ReleasedPod",
                        format!("Released pod: {}", pod.name_any()),
                    );
                }
            }
            Some(_) => {}
            None => {
                if matches && is_active(&pod) && rs.metadata.deletion_timestamp.is_none() {
                    adopt(&pods_api, &pod, &*rs).await?;
                    owned.push(pod);
                }
            }
        }
    }
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();

    let exists = |n: &str| pod_store.get(&ObjectRef::new(n).within(&ns)).is_some();
    let live = |n: &str| {
        pod_store
            .get(&ObjectRef::new(n).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    };
    let mut requeue: Option<Duration> = None;
    let mut deleted: Vec<String> = Vec::new();
    if rs.metadata.deletion_timestamp.is_none() && expectations.satisfied(&key, exists, live) {
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let namespace_terminating = ctx
            .informers
            .namespaces
            .store()
            .get(&ObjectRef::new(&ns))
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some());
        if active.len() < want && namespace_terminating {
            // New content is refused in a terminating namespace; its objects are going anyway.
        } else if active.len() < want {
            let missing = (want - active.len()).min(BURST_REPLICAS);
            create_pods(&ctx, &rs, &pods_api, missing, &key, &expectations).await?;
        } else if active.len() > want {
            let extra = (active.len() - want).min(BURST_REPLICAS);
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            for pod in victims.into_iter().take(extra) {
                let pod_name = pod.name_any();
                expectations.expect_delete(&key, pod_name.clone());
                deleted.push(pod_name.clone());
                match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => ctx.recorder.record(
                        &*rs,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {pod_name}"),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
    } else if rs.metadata.deletion_timestamp.is_none() {
        // The cache predates our own writes: neither act nor report on it.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // Status from the pods this reconcile saw, minus the ones it just deleted
    // (so a status carrying the new observedGeneration never over-counts).
    let active: Vec<Arc<Pod>> = active
        .into_iter()
        .filter(|p| !deleted.contains(&p.name_any()))
        .collect();
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut ready = 0;
    let mut available = 0;
    let mut fully_labeled = 0;
    for pod in &active {
        if template_labels.iter().all(|(k, v)| pod.labels().get(k) == Some(v)) {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
        }
        match pods::availability(pod, min_ready, now) {
            Ok(()) => available += 1,
            Err(Some(wait)) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
            Err(None) => {}
        }
    }
    let status = rs.status.clone().unwrap_or_default();
    let generation = rs.metadata.generation.unwrap_or(0);
    let new = (active.len() as i32, fully_labeled, ready, available, generation);
    let old = (
        status.replicas,
        status.fully_labeled_replicas.unwrap_or(0),
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
        status.observed_generation.unwrap_or(0),
    );
    if new != old {
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"status": {
            "replicas": new.0, "fullyLabeledReplicas": new.1, "readyReplicas": new.2,
            "availableReplicas": new.3, "observedGeneration": new.4,
        }});
        match rs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(requeue.map_or_else(|| Action::requeue(ctx.config.resync_period), Action::requeue))
}

/// Creates `count` pods from the template in slow-start batches (1, 2, 4 ...),
/// stopping at the first failure like Kubernetes.
async fn create_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    api: &Api<Pod>,
    count: usize,
    key: &str,
    expectations: &Expectations,
) -> Result<(), Error> {
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let n = batch.min(remaining);
        let creates = (0..n).map(|_| {
            let pod = pod_from_template(rs);
            async move {
                (
                    pod.metadata.name.clone().unwrap_or_default(),
                    api.create(&PostParams::default(), &pod).await,
                )
            }
        });
        let results = futures::future::join_all(creates).await;
        let mut failed = None;
        for (pod_name, result) in results {
            match result {
                Ok(_) => {
                    expectations.expect_create(key, pod_name.clone());
                    ctx.recorder.record(
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {pod_name}"),
                    );
                }
                Err(err) => {
                    ctx.recorder
                        .record(rs, EventType::Warning, "FailedCreate", format!("Error creating: {err}"));
                    failed = Some(err);
                }
            }
        }
        if let Some(err) = failed {
            return Err(err.into());
        }
        remaining -= n;
        batch *= 2;
    }
    Ok(())
}

/// A new pod for `rs`: its template, a generated name, and `rs` as controller.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = Some(&rs.spec).and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = format!("{}-{}", rs.name_any(), pods::random_suffix());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Sort key putting the pods to delete first: unscheduled, then pending before
/// running, then not ready, then ready for the shortest time, then most
/// restarts, then newest.
pub fn deletion_rank(pod: &Pod) -> (bool, u8, bool, Reverse<i64>, Reverse<i32>, Reverse<i64>) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready_since = pods::ready_since(pod);
    let ready = ready_since.is_some();
    let ready_at = ready_since.flatten().map(|t| t.as_millisecond()).unwrap_or(0);
    let restarts = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready,
        Reverse(ready_at),
        Reverse(restarts),
        Reverse(created),
    )
}

/// Labels of a pod template, for tests and other controllers.
pub fn template_labels(rs: &ReplicaSet) -> BTreeMap<String, String> {
    Some(&rs.spec)
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created_s: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created_s).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn extras_are_deleted_unscheduled_then_not_ready_then_newest() {
        let mut pods = [
            pod("old-ready", Some("n1"), "Running", true, 100),
            pod("new-ready", Some("n1"), "Running", true, 200),
            pod("unscheduled", None, "Pending", false, 50),
            pod("not-ready", Some("n1"), "Running", false, 10),
        ];
        pods.sort_by_key(deletion_rank);
        let order: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(order, ["unscheduled", "not-ready", "new-ready", "old-ready"]);
    }
}
