//! ReplicaSet controller: keeps `spec.replicas` active pods matching the
//! selector. The same logic serves ReplicationControllers (Kubernetes runs
//! one controller for both): it works on any kind implementing
//! [`Replicated`], and `crate::replicationcontroller` only says how an RC
//! reads as one.
//!
//! Claims pods like Kubernetes: adopts matching orphans, releases owned pods
//! whose labels stopped matching, creates missing pods (slow-start batches)
//! and deletes extras in Kubernetes' order (unscheduled, then not ready, then
//! newest). Status counts replicas, fully labelled, ready and available
//! (ready for `minReadySeconds`) pods; a failed create or delete sets the
//! `ReplicaFailure` condition (`FailedCreate`/`FailedDelete` with the API
//! server's message), removed by the next reconcile that manages without
//! error.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::cached_pod::CachedPod;
use crate::events::EventType;
use crate::expectations::Expectations;
use crate::informer::Informer;
use crate::pods::{self, adopt, controller_of, controller_ref, is_active, release, selects};
use crate::status::omit_zero;
use crate::{runner, Context, Error};

/// Most pods created or deleted in one reconcile (Kubernetes' burstReplicas).
const BURST_REPLICAS: usize = 500;

/// The condition a failed create or delete sets.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status a replica controller reports (ReplicaSetStatus and
/// ReplicationControllerStatus have the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    /// Pods owned and active.
    pub replicas: i32,
    /// Of those, pods carrying every template label.
    pub fully_labeled: i32,
    /// Of those, Ready pods.
    pub ready: i32,
    /// Of those, pods Ready for `minReadySeconds`.
    pub available: i32,
    /// The generation these counts were computed for.
    pub observed_generation: i64,
    /// `status.conditions` as JSON (each with type, status,
    /// lastTransitionTime, reason, message).
    pub conditions: Vec<Value>,
}

/// A kind whose controller keeps `spec.replicas` pods from a template
/// (ReplicaSet, ReplicationController): what the shared logic reads of it.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// `spec.replicas` (defaulted to 1 by the API server).
    fn replicas(&self) -> i32;
    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;
    /// The pod selector as a label selector.
    fn label_selector(&self) -> LabelSelector;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// What `status` says now.
    fn current_status(&self) -> ReplicaStatus;
}

impl Replicated for ReplicaSet {
    fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }
    fn label_selector(&self) -> LabelSelector {
        self.spec.selector.clone()
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.template.as_ref()
    }
    fn current_status(&self) -> ReplicaStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled: s.fully_labeled_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: conditions_json(&s.conditions),
        }
    }
}

/// A typed conditions list as JSON values.
pub fn conditions_json<T: serde::Serialize>(conditions: &Option<Vec<T>>) -> Vec<Value> {
    conditions
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect()
}

/// Subscribes the ReplicaSet controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let informer = &ctx.informers.replicasets;
    run_for(ctx.clone(), "replicaset", informer)
}

/// Subscribes a replica controller for kind `K` (its objects from
/// `informer`) and returns its loop.
pub fn run_for<K: Replicated>(ctx: Arc<Context>, name: &'static str, informer: &Informer<K>) -> BoxFuture<'static, ()> {
    let store = informer.store();
    let own = informer.trigger(|o: &K| Some(ObjectRef::from_obj(o)));
    let owners = store.clone();
    let from_pods = ctx
        .informers
        .pods
        .trigger(move |pod: &CachedPod| owners_of_pod(&owners, pod));
    let expectations = Arc::new(Expectations::default());
    runner::run(name, ctx, store, vec![own.boxed(), from_pods.boxed()], move |o, ctx| {
        reconcile(o, ctx, expectations.clone())
    })
}

/// The owners of kind `K` a pod change concerns: its controller, or for an
/// orphan every one in its namespace whose selector matches it.
fn owners_of_pod<K: Replicated>(store: &Store<K>, pod: &CachedPod) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod) {
        if owner.kind == K::kind(&()) {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| {
            pods::selector(Some(&o.label_selector()), "")
                .map(|sel| selects(&sel, pod.labels()))
                .unwrap_or(false)
        })
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

/// A create or delete that failed while managing replicas.
struct ManageError {
    /// `FailedCreate` or `FailedDelete`.
    reason: &'static str,
    error: kube::Error,
}

impl ManageError {
    /// The condition message: the API server's own words when it answered.
    fn message(&self) -> String {
        match &self.error {
            kube::Error::Api(s) => s.message.clone(),
            other => other.to_string(),
        }
    }
}

async fn reconcile<K: Replicated>(
    rs: Arc<K>,
    ctx: Arc<Context>,
    expectations: Arc<Expectations>,
) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{ns}/{name}");
    let uid = rs.uid().unwrap_or_default();
    let selector = pods::selector(Some(&rs.label_selector()), &key)?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_store = ctx.informers.pods.store();
    let deleting = rs.meta().deletion_timestamp.is_some();

    // Claim pods: keep owned matching ones, release owned non-matching, adopt
    // orphans. Only those two groups can change hands here, so they come
    // from the pod informer's owner index rather than a scan of every pod.
    let mut owned: Vec<Arc<CachedPod>> = Vec::new();
    for pod in ctx.informers.pods.claimable(&uid, &ns) {
        let matches = selects(&selector, pod.labels());
        match controller_of(&*pod) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    release(&pods_api, &*pod, &uid).await?;
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
                if matches && is_active(&pod) && !deleting {
                    adopt(&pods_api, &*pod, &*rs).await?;
                    owned.push(pod);
                }
            }
        }
    }
    let active: Vec<Arc<CachedPod>> = owned.iter().filter(is_active).cloned().collect();

    let exists = |n: &str| pod_store.get(&ObjectRef::new(n).within(&ns)).is_some();
    let live = |n: &str| {
        pod_store
            .get(&ObjectRef::new(n).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    };
    let mut requeue: Option<Duration> = None;
    let mut deleted: Vec<String> = Vec::new();
    let mut manage_err: Option<ManageError> = None;
    if !deleting && expectations.satisfied(&key, exists, live) {
        let want = rs.replicas().max(0) as usize;
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
            if let Err(error) = create_pods(&ctx, &*rs, &pods_api, missing, &key, &expectations).await {
                manage_err = Some(ManageError {
                    reason: "FailedCreate",
                    error,
                });
            }
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
                    Err(error) => {
                        ctx.recorder.record(
                            &*rs,
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {error}"),
                        );
                        deleted.pop();
                        manage_err = Some(ManageError {
                            reason: "FailedDelete",
                            error,
                        });
                        break;
                    }
                }
            }
        }
    } else if !deleting {
        // The cache predates our own writes: neither act nor report on it.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // Status from the pods this reconcile saw, minus the ones it just deleted
    // (so a status carrying the new observedGeneration never over-counts).
    let active: Vec<Arc<CachedPod>> = active
        .into_iter()
        .filter(|p| !deleted.contains(&p.name_any()))
        .collect();
    let now = Timestamp::now();
    let min_ready = rs.min_ready_seconds();
    let template_labels = rs
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let old = rs.current_status();
    let mut new = ReplicaStatus {
        replicas: active.len() as i32,
        observed_generation: rs.meta().generation.unwrap_or(0),
        conditions: failure_conditions(&old.conditions, manage_err.as_ref(), now),
        ..Default::default()
    };
    for pod in &active {
        if template_labels.iter().all(|(k, v)| pod.labels().get(k) == Some(v)) {
            new.fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            new.ready += 1;
        }
        match pods::availability(pod, min_ready, now) {
            Ok(()) => new.available += 1,
            Err(Some(wait)) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
            Err(None) => {}
        }
    }
    if new != old {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let conditions = if new.conditions.is_empty() {
            Value::Null
        } else {
            json!(new.conditions)
        };
        // `replicas` is always encoded; the other counts are `omitempty`.
        let patch = json!({"status": {
            "replicas": new.replicas, "fullyLabeledReplicas": omit_zero(new.fully_labeled),
            "readyReplicas": omit_zero(new.ready), "availableReplicas": omit_zero(new.available),
            "observedGeneration": new.observed_generation, "conditions": conditions,
        }});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(e) = manage_err {
        return Err(e.error.into());
    }
    Ok(requeue.map_or_else(|| Action::requeue(ctx.config.resync_period), Action::requeue))
}

/// The conditions after managing replicas, as Kubernetes' `calculateStatus`:
/// a failure adds `ReplicaFailure` (unless one is there already, which is
/// kept as it is), success removes it; other conditions are kept.
fn failure_conditions(old: &[Value], err: Option<&ManageError>, now: Timestamp) -> Vec<Value> {
    let is_failure = |c: &Value| c.get("type").and_then(Value::as_str) == Some(REPLICA_FAILURE);
    let mut conditions = old.to_vec();
    match err {
        Some(e) if !old.iter().any(is_failure) => conditions.push(json!({
            "type": REPLICA_FAILURE,
            "status": "True",
            "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "reason": e.reason,
            "message": e.message(),
        })),
        Some(_) => {}
        None => conditions.retain(|c| !is_failure(c)),
    }
    conditions
}

/// Creates `count` pods from the template in slow-start batches (1, 2, 4 ...),
/// stopping at the first failure like Kubernetes.
async fn create_pods<K: Replicated>(
    ctx: &Context,
    rs: &K,
    api: &Api<Pod>,
    count: usize,
    key: &str,
    expectations: &Expectations,
) -> Result<(), kube::Error> {
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
            return Err(err);
        }
        remaining -= n;
        batch *= 2;
    }
    Ok(())
}

/// A new pod for `rs`: its template, a generated name, and `rs` as controller.
pub fn pod_from_template<K: Replicated>(rs: &K) -> Pod {
    let template = rs.template().cloned().unwrap_or_default();
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
pub fn deletion_rank(pod: &CachedPod) -> (bool, u8, bool, Reverse<i64>, Reverse<i32>, Reverse<i64>) {
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
pub fn template_labels<K: Replicated>(rs: &K) -> BTreeMap<String, String> {
    rs.template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created_s: i64) -> CachedPod {
        CachedPod::of(&whole_pod(name, node, phase, ready, created_s))
    }

    fn whole_pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created_s: i64) -> Pod {
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
    fn a_failed_create_sets_replica_failure_until_a_clean_reconcile() {
        let status = kube::core::Status::failure("pods \"web-x\" is forbidden: quota", "Forbidden").with_code(403);
        let err = ManageError {
            reason: "FailedCreate",
            error: kube::Error::Api(status.boxed()),
        };
        let other = json!({"type": "Other", "status": "True"});
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let set = failure_conditions(std::slice::from_ref(&other), Some(&err), now);
        assert_eq!(set.len(), 2);
        assert_eq!(
            set[1],
            json!({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": "2027-01-15T08:00:00Z",
                   "reason": "FailedCreate", "message": "pods \"web-x\" is forbidden: quota"})
        );
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        assert_eq!(
            failure_conditions(&set, Some(&err), later),
            set,
            "an existing failure is kept as it is"
        );
        assert_eq!(failure_conditions(&set, None, later), vec![other], "success removes it");
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
