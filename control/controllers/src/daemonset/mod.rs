//! DaemonSet controller: one pod per eligible node.
//!
//! Each reconcile finds the revision of the current template
//! ([`crate::controller_revision`]; pods carry its hash in
//! `controller-revision-hash`), decides per node with [`placement::fit`]
//! whether it should run the pod, and then, as Kubernetes' `manage`: creates
//! a pod (pinned to the node by required node affinity and placed by the
//! scheduler) where one is missing, deletes failed and succeeded pods (they
//! come back next round), extra pods, and pods on nodes that may no longer
//! run them. With `RollingUpdate` it then takes one step of [`rolling`];
//! `OnDelete` only replaces pods users delete. Status counts per node the
//! oldest pod, as Kubernetes does.

pub mod placement;
pub mod rolling;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cached_pod::CachedPod;
use crate::controller_revision::{self, Ensured, Naming, CONTROLLER_REVISION_HASH};
use crate::deployment::scaled_value;
use crate::events::EventType;
use crate::expectations::Expectations;
use crate::pods::{self, controller_of, is_terminated};
use crate::status::omit_zero;
use crate::{runner, Context, Error};

/// Most pods created in one reconcile (Kubernetes' burstReplicas).
const BURST_REPLICAS: usize = 250;
/// Back-off before a failed daemon pod on a node is replaced again
/// (Kubernetes' failedPodsBackoff: 1 s doubling to 15 min).
const FAILED_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// The next back-off after `previous` (none: the initial one).
pub fn next_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(FAILED_BACKOFF_INITIAL, |d| (d * 2).min(FAILED_BACKOFF_MAX))
}

/// State shared by the DaemonSet reconciles.
#[derive(Default)]
struct State {
    expectations: Expectations,
    /// `ns/ds/node` → (when failed pods may be replaced again, last delay).
    failed_backoff: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Duration)>>,
}

impl State {
    /// Whether a failed pod on `node` may be deleted now (starting the next
    /// back-off), else how long to wait.
    fn may_replace_failed(&self, key: &str) -> Result<(), Duration> {
        let mut map = self.failed_backoff.lock().expect("backoff lock");
        let now = std::time::Instant::now();
        let previous = match map.get(key) {
            Some((until, _)) if *until > now => return Err(*until - now),
            Some((_, delay)) => Some(*delay),
            None => None,
        };
        let delay = next_backoff(previous);
        map.insert(key.to_string(), (now + delay, delay));
        Ok(())
    }
}

/// Subscribes the DaemonSet controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.daemonsets.store();
    let own = ctx
        .informers
        .daemonsets
        .trigger(|ds: &DaemonSet| Some(ObjectRef::from_obj(ds)));
    let from_pods = ctx.informers.pods.trigger(|pod: &CachedPod| owner_ref(pod));
    let from_revisions = ctx
        .informers
        .controllerrevisions
        .trigger(|rev: &ControllerRevision| owner_ref(rev));
    let ds_store = store.clone();
    let from_nodes = ctx.informers.nodes.trigger(move |_node: &Node| all(&ds_store));
    let state = Arc::new(State::default());
    runner::run_batched(
        "daemonset",
        ctx,
        store,
        vec![
            own.boxed(),
            from_pods.boxed(),
            from_revisions.boxed(),
            from_nodes.boxed(),
        ],
        Duration::from_millis(50),
        move |ds, ctx| reconcile(ds, ctx, state.clone()),
    )
}

/// The DaemonSet controlling `obj`, if one does.
fn owner_ref<K: kube::Resource>(obj: &K) -> Option<ObjectRef<DaemonSet>> {
    let owner = controller_of(obj).filter(|r| r.kind == "DaemonSet")?;
    Some(ObjectRef::new(&owner.name).within(&obj.meta().namespace.clone().unwrap_or_default()))
}

fn all(store: &Store<DaemonSet>) -> Vec<ObjectRef<DaemonSet>> {
    store.state().iter().map(|ds| ObjectRef::from_obj(&**ds)).collect()
}

/// Whether `ds` rolls with RollingUpdate (the default).
fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete")
}

/// maxSurge and maxUnavailable against `desired` nodes, rounded up.
fn fenceposts(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let one = IntOrString::Int(1);
    let surge = scaled_value(ru.max_surge.as_ref(), 0, desired, true);
    let unavailable = scaled_value(Some(ru.max_unavailable.as_ref().unwrap_or(&one)), 0, desired, true);
    rolling::resolve(surge, unavailable)
}

/// Daemon pods by creation time, oldest first (ties: ready first).
fn oldest_first(pods: &mut [Arc<CachedPod>]) {
    pods.sort_by_key(|p| {
        (
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond())
                .unwrap_or(0),
            !pods::is_ready(p),
            p.name_any(),
        )
    });
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>, state: Arc<State>) -> Result<Action, Error> {
    let expectations = &state.expectations;
    if ds.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods and revisions.
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let selector = pods::selector(Some(&ds.spec.selector), &key)?;
    if selector.selects_all() {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
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

    // The revision of the current template.
    let revisions =
        controller_revision::claim(&ctx, &ctx.informers.controllerrevisions.store(), &*ds, &selector).await?;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let naming = Naming {
        template: &ds.spec.template,
        collision_count,
        hash_label: CONTROLLER_REVISION_HASH,
    };
    let current = match controller_revision::ensure(&ctx, &*ds, &naming, &revisions).await? {
        Ensured::Current(rev) => *rev,
        Ensured::Collision => {
            controller_revision::bump_collision_count(&ctx, &*ds, collision_count).await?;
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    };
    let hash = current
        .labels()
        .get(CONTROLLER_REVISION_HASH)
        .cloned()
        .unwrap_or_default();

    // Daemon pods by the node they are meant for (terminal ones included).
    let uid = ds.uid().unwrap_or_default();
    let mut by_node: BTreeMap<String, Vec<Arc<CachedPod>>> = BTreeMap::new();
    // Only the set's own pods and the namespace's orphans can change hands.
    for pod in ctx.informers.pods.claimable(&uid, &ns) {
        // Claim as Kubernetes does: release owned pods that stopped
        // matching, adopt matching orphans.
        let matches = pods::selects(&selector, pod.labels());
        match controller_of(&*pod) {
            Some(r) if r.uid == uid => {
                if !matches {
                    if pod.metadata.deletion_timestamp.is_none() {
                        pods::release(&pods_api, &*pod, &uid).await?;
                    }
                    continue;
                }
            }
            Some(_) => continue,
            None => {
                if !matches || !pods::is_active(&pod) {
                    continue;
                }
                pods::adopt(&pods_api, &*pod, &*ds).await?;
            }
        }
        if let Some(node) = placement::target_node(&pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    for list in by_node.values_mut() {
        oldest_first(list);
    }
    let nodes: Vec<Arc<Node>> = {
        let mut n = ctx.informers.nodes.store().state();
        n.sort_by_key(|n| n.name_any());
        n
    };
    let fits: Vec<(Arc<Node>, placement::Fit)> = nodes
        .into_iter()
        .map(|n| {
            let f = placement::fit(&ds.spec.template, &n);
            (n, f)
        })
        .collect();

    let now = Timestamp::now();
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &CachedPod| pods::availability(p, min_ready, now).is_ok();
    let is_new = |p: &CachedPod| p.labels().get(CONTROLLER_REVISION_HASH) == Some(&hash);
    let desired = fits.iter().filter(|(_, f)| f.should_run).count() as i32;
    let (max_surge, max_unavailable) = fenceposts(&ds, desired);

    // Manage: what each node is missing or has too much of.
    let mut create: Vec<String> = Vec::new();
    let mut delete: Vec<(String, &'static str)> = Vec::new();
    let mut rolling_nodes: Vec<rolling::NodePods> = Vec::new();
    let mut backoff: Option<Duration> = None;
    for (node, fit) in &fits {
        let node_name = node.name_any();
        let here = by_node.get(&node_name).cloned().unwrap_or_default();
        if fit.should_run {
            if here.is_empty() {
                create.push(node_name);
                continue;
            }
            let mut running: Vec<Arc<CachedPod>> = Vec::new();
            for pod in here.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                if is_terminated(pod) {
                    let failed = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
                    if failed {
                        if let Err(wait) = state.may_replace_failed(&format!("{key}/{node_name}")) {
                            backoff = Some(backoff.map_or(wait, |b: Duration| b.min(wait)));
                            continue;
                        }
                    }
                    let why = if failed {
                        ctx.recorder.record(
                            &*ds,
                            EventType::Warning,
                            "FailedDaemonPod",
                            format!(
                                "Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it",
                                pod.name_any()
                            ),
                        );
                        "failed"
                    } else {
                        "succeeded"
                    };
                    delete.push((pod.name_any(), why));
                } else {
                    running.push(pod.clone());
                }
            }
            // Keep the oldest pod (with surge: the oldest of each revision).
            let mut kept_new = false;
            let mut kept_old = false;
            let mut node_pods = rolling::NodePods {
                node: node_name.clone(),
                ..Default::default()
            };
            for pod in &running {
                let new = is_new(pod);
                let keep = if max_surge == 0 {
                    let first = !kept_new && !kept_old;
                    kept_new |= first;
                    first
                } else if new {
                    !std::mem::replace(&mut kept_new, true)
                } else {
                    !std::mem::replace(&mut kept_old, true)
                };
                if !keep {
                    delete.push((pod.name_any(), "extra"));
                    continue;
                }
                let state = rolling::PodState {
                    name: pod.name_any(),
                    available: available(pod),
                };
                if new {
                    node_pods.new.push(state);
                } else {
                    node_pods.old.push(state);
                }
            }
            rolling_nodes.push(node_pods);
        } else if !fit.should_continue_running {
            for pod in here.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                delete.push((pod.name_any(), "misscheduled"));
            }
        }
    }
    // Pods meant for nodes that are gone are the pod GC's.

    if is_rolling(&ds) && create.is_empty() && delete.is_empty() {
        let plan = rolling::plan(&rolling_nodes, max_surge, max_unavailable);
        create.extend(plan.create);
        delete.extend(plan.delete.into_iter().map(|p| (p, "rolling update")));
    }

    create.truncate(BURST_REPLICAS);
    let wrote = !create.is_empty() || !delete.is_empty();
    create_pods(&ctx, &ds, &pods_api, &create, &hash, &key, expectations).await?;
    for (pod_name, why) in &delete {
        expectations.expect_delete(&key, pod_name.clone());
        tracing::debug!(pod = %pod_name, reason = why, "deleting daemon pod");
        match pods_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => ctx.recorder.record(
                &*ds,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {pod_name}"),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }

    // History: revisions no pod uses, beyond the limit.
    let mut live_revisions: HashSet<String> = HashSet::from([current.name_any()]);
    let used_hashes: HashSet<&String> = by_node
        .values()
        .flatten()
        .filter_map(|p| p.labels().get(CONTROLLER_REVISION_HASH))
        .collect();
    for rev in &revisions {
        if rev
            .labels()
            .get(CONTROLLER_REVISION_HASH)
            .is_some_and(|h| used_hashes.contains(h))
        {
            live_revisions.insert(rev.name_any());
        }
    }
    let limit = ds.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let prune = controller_revision::to_prune(&revisions, &live_revisions, limit);
    controller_revision::prune(&ctx, &ns, &prune).await?;

    // Status, from the oldest live pod on each node.
    let mut st = Counts::default();
    let mut requeue: Option<Duration> = None;
    for (node, fit) in &fits {
        let live_pods: Vec<&Arc<CachedPod>> = by_node
            .get(&node.name_any())
            .map(|v| v.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect())
            .unwrap_or_default();
        if !fit.should_run {
            if !live_pods.is_empty() {
                st.misscheduled += 1;
            }
            continue;
        }
        st.desired += 1;
        let Some(pod) = live_pods.first() else { continue };
        st.current += 1;
        if pods::is_ready(pod) {
            st.ready += 1;
            match pods::availability(pod, min_ready, now) {
                Ok(()) => st.available += 1,
                Err(Some(wait)) => requeue = Some(requeue.map_or(wait, |r| r.min(wait))),
                Err(None) => {}
            }
        }
        if is_new(pod) {
            st.updated += 1;
        }
    }
    write_status(&ctx, &ds, &st).await?;
    if wrote {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let requeue = match (requeue, backoff) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(requeue.map_or_else(|| Action::requeue(ctx.config.resync_period), Action::requeue))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    desired: i32,
    current: i32,
    ready: i32,
    available: i32,
    updated: i32,
    misscheduled: i32,
}

async fn write_status(ctx: &Context, ds: &DaemonSet, st: &Counts) -> Result<(), Error> {
    let status = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation.unwrap_or(0);
    let old = Counts {
        desired: status.desired_number_scheduled,
        current: status.current_number_scheduled,
        ready: status.number_ready,
        available: status.number_available.unwrap_or(0),
        updated: status.updated_number_scheduled.unwrap_or(0),
        misscheduled: status.number_misscheduled,
    };
    if old == *st && status.observed_generation == Some(generation) {
        return Ok(());
    }
    let patch = status_patch(st, generation);
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    match api
        .patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The status merge patch for these counts, as Kubernetes'
/// `storeDaemonSetStatus` writes them: the four counts Go always encodes,
/// and `numberAvailable`, `numberUnavailable` (desired − available) and
/// `updatedNumberScheduled` only when not zero (`omitempty`; a zero removes
/// an earlier value). `collisionCount` is written only on a collision, and no
/// condition is ever set (Kubernetes' DaemonSet controller sets none).
fn status_patch(st: &Counts, generation: i64) -> serde_json::Value {
    json!({"status": {
        "desiredNumberScheduled": st.desired,
        "currentNumberScheduled": st.current,
        "numberReady": st.ready,
        "numberAvailable": omit_zero(st.available),
        "numberUnavailable": omit_zero(st.desired - st.available),
        "updatedNumberScheduled": omit_zero(st.updated),
        "numberMisscheduled": st.misscheduled,
        "observedGeneration": generation,
    }})
}

/// Creates a daemon pod on each of `nodes`, all at once; the first failure
/// is returned after the others were tried.
async fn create_pods(
    ctx: &Context,
    ds: &DaemonSet,
    api: &Api<Pod>,
    nodes: &[String],
    hash: &str,
    key: &str,
    expectations: &Expectations,
) -> Result<(), Error> {
    let creates = nodes.iter().map(|node| {
        let pod = placement::pod_for_node(ds, node, hash);
        async move {
            let name = pod.name_any();
            (name, api.create(&PostParams::default(), &pod).await)
        }
    });
    let mut failed = None;
    for (pod_name, result) in futures::future::join_all(creates).await {
        match result {
            Ok(_) => {
                expectations.expect_create(key, pod_name.clone());
                ctx.recorder.record(
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {pod_name}"),
                );
            }
            Err(err) => {
                ctx.recorder
                    .record(ds, EventType::Warning, "FailedCreate", format!("Error creating: {err}"));
                failed = Some(err);
            }
        }
    }
    match failed {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_has_kubernetes_fields_with_zero_counts_omitted() {
        let st = Counts {
            desired: 3,
            current: 2,
            ready: 2,
            available: 0,
            updated: 2,
            misscheduled: 0,
        };
        assert_eq!(
            status_patch(&st, 5),
            json!({"status": {
                "desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberReady": 2,
                "numberAvailable": null, "numberUnavailable": 3, "updatedNumberScheduled": 2,
                "numberMisscheduled": 0, "observedGeneration": 5,
            }})
        );
    }

    #[test]
    fn failed_pods_back_off_doubling_to_fifteen_minutes() {
        assert_eq!(next_backoff(None), Duration::from_secs(1));
        assert_eq!(next_backoff(Some(Duration::from_secs(4))), Duration::from_secs(8));
        assert_eq!(next_backoff(Some(Duration::from_secs(600))), Duration::from_secs(900));
        let state = State::default();
        assert_eq!(state.may_replace_failed("ns/ds/n1"), Ok(()));
        assert!(state.may_replace_failed("ns/ds/n1").is_err(), "within the back-off");
        assert_eq!(state.may_replace_failed("ns/ds/n2"), Ok(()), "per node");
    }
}
