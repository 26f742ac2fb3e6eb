//! Disruption controller: the `status` of every PodDisruptionBudget, which
//! the API server's `pods/eviction` spends.
//!
//! As Kubernetes' disruption controller: the budget's pods are those its
//! selector matches in its namespace (a null selector matches none, `{}`
//! all). `desiredHealthy` comes from the bound: an integer `minAvailable` is
//! taken as is with `expectedPods` the number of pods; a percentage
//! `minAvailable` or any `maxUnavailable` is scaled (rounding up) against
//! `expectedPods`, the summed `spec.replicas` of the pods' controllers (a
//! ReplicaSet's Deployment, a ReplicaSet, a StatefulSet, or any controller
//! serving `/scale`), each counted once.
//! `currentHealthy` counts Ready pods that are not being deleted and not
//! listed in `disruptedPods` (pods the eviction handler let go; an entry older
//! than two minutes is dropped and the pod counts again). `disruptionsAllowed`
//! is `currentHealthy - desiredHealthy`, never negative and 0 while no pod is
//! expected, and the `DisruptionAllowed` condition says `SufficientPods` or
//! `InsufficientPods`. When the expected count cannot be computed (a pod
//! whose controller is unknown), the budget fails safe: `disruptionsAllowed`
//! 0 and the condition `SyncFailed` with the error. Pods that carried an
//! eviction's `DisruptionTarget=True` for two minutes without being deleted
//! get it set back to False.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DynamicObject, GroupVersionKind};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::cached_pod::CachedPod;
use crate::events::EventType;
use crate::pods::{controller_of, is_ready, key_of};
use crate::{runner, Context, Error};

/// How long a pod listed in `disruptedPods` is taken as about to be deleted
/// (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// The condition the controller keeps.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// How long a pod may carry `DisruptionTarget=True` without being deleted
/// before the condition is set back to False (Kubernetes'
/// `stalePodDisruptionTimeout`).
pub const STALE_POD_DISRUPTION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// How often pods are checked for a stale `DisruptionTarget` (Kubernetes
/// queues each pod for its own deadline; a sweep of the cache is as good).
const STALE_SWEEP_PERIOD: Duration = Duration::from_secs(10);

/// Subscribes the disruption controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.pdbs.store();
    let own = ctx
        .informers
        .pdbs
        .trigger(|pdb: &PodDisruptionBudget| Some(ObjectRef::from_obj(pdb)));
    let pdbs = store.clone();
    let from_pods = ctx
        .informers
        .pods
        .trigger(move |pod: &CachedPod| budgets_for_pod(&pdbs, pod));
    // A controller's scale is the denominator of percentages and of maxUnavailable.
    let pdbs = store.clone();
    let from_deployments = ctx
        .informers
        .deployments
        .trigger(move |d: &Deployment| budgets_in(&pdbs, d.namespace()));
    let pdbs = store.clone();
    let from_replicasets = ctx
        .informers
        .replicasets
        .trigger(move |rs: &ReplicaSet| budgets_in(&pdbs, rs.namespace()));
    let pdbs = store.clone();
    let from_statefulsets = ctx
        .informers
        .statefulsets
        .trigger(move |ss: &StatefulSet| budgets_in(&pdbs, ss.namespace()));
    let sweep_ctx = ctx.clone();
    let budgets = runner::run(
        "disruption",
        ctx,
        store,
        vec![
            own.boxed(),
            from_pods.boxed(),
            from_deployments.boxed(),
            from_replicasets.boxed(),
            from_statefulsets.boxed(),
        ],
        reconcile,
    );
    let stale = runner::every("disruption-stale-pods", STALE_SWEEP_PERIOD, move || {
        let ctx = sweep_ctx.clone();
        async move { reset_stale_disruption_targets(&ctx).await }
    });
    futures::future::join(budgets, stale).map(|_| ()).boxed()
}

/// The pod selector of a budget: `None` selects no pod (a null selector).
fn budget_selector(pdb: &PodDisruptionBudget) -> Result<Option<Selector>, Error> {
    match pdb.spec.as_ref().and_then(|s| s.selector.clone()) {
        None => Ok(None),
        Some(sel) => Selector::try_from(sel).map(Some).map_err(|e| Error::Invalid {
            object: key_of(pdb),
            reason: e.to_string(),
        }),
    }
}

/// The budgets whose selector matches `pod`.
fn budgets_for_pod(store: &Store<PodDisruptionBudget>, pod: &CachedPod) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let ns = pod.namespace();
    store
        .state()
        .iter()
        .filter(|pdb| pdb.namespace() == ns)
        .filter(|pdb| matches!(budget_selector(pdb), Ok(Some(sel)) if sel.matches(pod.labels())))
        .map(|pdb| ObjectRef::from_obj(&**pdb))
        .collect()
}

/// Every budget of a namespace (a controller's scale changed there).
fn budgets_in(store: &Store<PodDisruptionBudget>, ns: Option<String>) -> Vec<ObjectRef<PodDisruptionBudget>> {
    store
        .state()
        .iter()
        .filter(|pdb| pdb.namespace() == ns)
        .map(|pdb| ObjectRef::from_obj(&**pdb))
        .collect()
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`: an integer as is, a
/// percentage of `total` rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let percent: i64 = digits.parse().map_err(|_| {
                format!("invalid value for IntOrString: invalid value {s:?}: strconv.Atoi: parsing {digits:?}: invalid syntax")
            })?;
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(value as i32)
        }
    }
}

/// Where the expected pod count comes from.
pub struct Expected {
    /// `expectedPods`.
    pub count: i32,
    /// Pods without a controller (counted as nothing).
    pub unmanaged: Vec<String>,
}

/// `(expectedPods, desiredHealthy, unmanaged pods)` of a budget over `pods`;
/// `scale` is asked only when the bound needs the controllers' scale.
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: usize,
    scale: impl FnOnce() -> Result<Expected, String>,
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let e = scale()?;
        let max = scaled_value(max, e.count, true)?;
        return Ok((e.count, (e.count - max).max(0), e.unmanaged));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pods as i32, *n, Vec::new())),
        Some(min) => {
            let e = scale()?;
            let desired = scaled_value(min, e.count, true)?;
            Ok((e.count, desired, e.unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// `disruptionsAllowed`: never negative, and 0 while no pod is expected (so
/// a budget whose first pods just appeared is safe before it is synced).
pub fn disruptions_allowed(current_healthy: i32, desired_healthy: i32, expected: i32) -> i32 {
    let allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        0
    } else {
        allowed
    }
}

/// The group of an `apiVersion` ("" for core).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The controller of a pod and its scale, found in the caches as
/// Kubernetes' finders do: a ReplicaSet's Deployment first, then the
/// ReplicaSet, then a StatefulSet (matched by uid).
fn controller_scale(ctx: &Context, owner: &OwnerReference, ns: &str) -> Option<(String, i32)> {
    if group_of(&owner.api_version) != "apps" {
        return None;
    }
    let replicas = |r: Option<i32>| r.unwrap_or(1);
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let rs = ctx
                .informers
                .replicasets
                .store()
                .get(&ObjectRef::new(&owner.name).within(ns))
                .filter(|rs| rs.uid().as_deref() == Some(owner.uid.as_str()))?;
            if let Some(d_ref) = controller_of(&*rs).filter(|r| r.kind == "Deployment") {
                if group_of(&d_ref.api_version) != "apps" {
                    return None;
                }
                let d = ctx
                    .informers
                    .deployments
                    .store()
                    .get(&ObjectRef::new(&d_ref.name).within(ns))
                    .filter(|d| d.uid().as_deref() == Some(d_ref.uid.as_str()))?;
                return Some((d_ref.uid.clone(), replicas(d.spec.replicas)));
            }
            Some((owner.uid.clone(), replicas(rs.spec.replicas)))
        }
        "StatefulSet" => {
            let ss = ctx
                .informers
                .statefulsets
                .store()
                .get(&ObjectRef::new(&owner.name).within(ns))
                .filter(|ss| ss.uid().as_deref() == Some(owner.uid.as_str()))?;
            Some((owner.uid.clone(), replicas(ss.spec.replicas)))
        }
        _ => None,
    }
}

/// Kubernetes' `getScaleController`: any other controller, through its
/// `/scale` subresource (found by discovery; matched by uid). A kind that
/// serves no `/scale` is an error naming it.
async fn scale_subresource(ctx: &Context, owner: &OwnerReference, ns: &str) -> Result<Option<(String, i32)>, String> {
    let (group, version) = owner
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", owner.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let Ok((resource, caps)) = kube::discovery::pinned_kind(&ctx.client, &gvk).await else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    match api.get_scale(&owner.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(owner.uid.as_str()) => Ok(Some((
            owner.uid.clone(),
            scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        ))),
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            if caps.subresources.iter().any(|(r, _)| r.plural == "scale") {
                Ok(None)
            } else {
                let gr = if resource.group.is_empty() {
                    resource.plural.clone()
                } else {
                    format!("{}.{}", resource.plural, resource.group)
                };
                Err(format!("{gr} does not implement the scale subresource"))
            }
        }
        Err(err) => Err(err.to_string()),
    }
}

/// Kubernetes' `getExpectedScale`: the summed scale of the pods'
/// controllers, each once; pods without a controller are listed apart.
async fn expected_scale(ctx: &Context, pods: &[Arc<CachedPod>]) -> Result<Expected, String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(&**pod) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let found = match controller_scale(ctx, owner, &ns) {
            Some(found) => Some(found),
            None => scale_subresource(ctx, owner, &ns).await?,
        };
        match found {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
        }
    }
    Ok(Expected {
        count: scales.values().sum(),
        unmanaged,
    })
}

/// The `disruptedPods` entries still in force, and when the earliest of
/// them lapses; pods whose entry lapsed without them being deleted are
/// returned apart (Kubernetes records `NotDeleted` on them).
pub fn disrupted_pods(
    recorded: Option<&BTreeMap<String, Time>>,
    pods: &[Arc<CachedPod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<Arc<CachedPod>>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut lapsed = Vec::new();
    let Some(recorded) = recorded else {
        return (kept, recheck, lapsed);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(&pod.name_any()) else {
            continue;
        };
        let expected_deletion = at.0 + DELETION_TIMEOUT;
        if expected_deletion < now {
            lapsed.push(pod.clone());
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            kept.insert(pod.name_any(), at.clone());
        }
    }
    (kept, recheck, lapsed)
}

/// Kubernetes' `countHealthyPods`: Ready, not being deleted, not about to be.
pub fn count_healthy(pods: &[Arc<CachedPod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|at| at.0 + DELETION_TIMEOUT <= now)
        })
        .filter(is_ready)
        .count() as i32
}

/// apimachinery's `SetStatusCondition`: the condition replaces the one of
/// its type, keeping `lastTransitionTime` when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, mut cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            if old.status == cond.status {
                cond.last_transition_time = old.last_transition_time.clone();
            }
            *old = cond;
        }
        None => conditions.push(cond),
    }
}

/// The `DisruptionAllowed` condition for `status` (component-helpers'
/// `UpdateDisruptionAllowedCondition`).
pub fn update_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let (value, reason) = if status.disruptions_allowed.unwrap_or(0) > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let cond = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: value.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        last_transition_time: Time(now),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond);
}

/// component-helpers' `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else {
        return false;
    };
    let Some(cond) = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_ALLOWED))
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed.unwrap_or(0) > 0 {
        cond.status == "True" && cond.reason == "SufficientPods"
    } else {
        cond.status == "False" && cond.reason == "InsufficientPods"
    }
}

/// Kubernetes' `nonTerminatingPodHasStaleDisruptionCondition`: `None` when
/// the pod has no stale `DisruptionTarget` (none, not True, set by the
/// kubelet, the pod deleting or finished), else how long until it is stale.
pub fn stale_disruption_target(pod: &CachedPod, now: Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() || crate::pods::is_terminated(pod) {
        return None;
    }
    let cond = crate::pods::condition(pod, "DisruptionTarget")?;
    if cond.status != "True" || cond.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = cond.last_transition_time.as_ref().map_or(now, |t| t.0);
    let left = (since + STALE_POD_DISRUPTION_TIMEOUT).as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(left.max(0) as u64))
}

/// Sets `DisruptionTarget` back to False on pods that carried it for
/// [`STALE_POD_DISRUPTION_TIMEOUT`] without being deleted (an eviction whose
/// delete never happened), guarded by the pod's resourceVersion; the
/// condition's reason and message stay, as Kubernetes' apply leaves them.
async fn reset_stale_disruption_targets(ctx: &Context) -> Result<(), Error> {
    let now = Timestamp::now();
    for pod in ctx.informers.pods.store().state() {
        if stale_disruption_target(&pod, now) != Some(Duration::ZERO) {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "False",
                "lastTransitionTime": Time(now),
            }]},
        });
        match api
            .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => tracing::info!(pod = %key_of(&*pod), "reset stale DisruptionTarget condition to False"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), Error> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &pdb.namespace().unwrap_or_default());
    let mut updated = pdb.clone();
    updated.status = Some(status);
    api.replace_status(&pdb.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(())
}

/// Kubernetes' `failSafe`: no disruption allowed, and why.
async fn fail_safe(ctx: &Context, pdb: &PodDisruptionBudget, err: String) -> Result<Action, Error> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = Some(0);
    let cond = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: "False".into(),
        reason: "SyncFailed".into(),
        message: err,
        observed_generation: status.observed_generation.filter(|g| *g != 0),
        last_transition_time: Time(Timestamp::now()),
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    let unchanged = conditions
        .iter()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
        .is_some_and(|c| c.status == cond.status && c.reason == cond.reason && c.message == cond.message)
        && pdb.status.as_ref().map(|s| s.disruptions_allowed.unwrap_or(0)) == Some(0);
    set_condition(&mut conditions, cond);
    status.conditions = Some(conditions);
    if !unchanged {
        write_status(ctx, pdb, status).await?;
    }
    // Kubernetes retries failed budgets with back-off.
    Ok(Action::requeue(Duration::from_secs(5)))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let pods: Vec<Arc<CachedPod>> = match budget_selector(&pdb) {
        Ok(None) => Vec::new(),
        Ok(Some(sel)) => ctx
            .informers
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && sel.matches(p.labels()))
            .collect(),
        Err(err) => {
            ctx.recorder.record(
                &*pdb,
                EventType::Warning,
                "NoPods",
                format!("Failed to get pods: {err}"),
            );
            return fail_safe(&ctx, &pdb, err.to_string()).await;
        }
    };
    // The controllers' scale is looked up only when the bound needs it.
    let needs_scale = pdb
        .spec
        .as_ref()
        .is_some_and(|s| s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_))));
    let scaled = if needs_scale {
        Some(expected_scale(&ctx, &pods).await)
    } else {
        None
    };
    let scale = || scaled.unwrap_or_else(|| Err("the controllers' scale was not looked up".into()));
    let (expected, desired, unmanaged) = match expected_and_desired(&pdb, pods.len(), scale) {
        Ok(v) => v,
        Err(err) => {
            ctx.recorder.record(
                &*pdb,
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {err}"),
            );
            return fail_safe(&ctx, &pdb, err).await;
        }
    };
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    let (disrupted, recheck, lapsed) = disrupted_pods(old.disrupted_pods.as_ref(), &pods, now);
    for pod in &lapsed {
        ctx.recorder.record(
            &**pod,
            EventType::Warning,
            "NotDeleted",
            format!(
                "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
                pdb.name_any()
            ),
        );
    }
    let healthy = count_healthy(&pods, &disrupted, now);
    let allowed = disruptions_allowed(healthy, desired, expected);
    let disrupted = (!disrupted.is_empty()).then_some(disrupted);
    let up_to_date = old.current_healthy == Some(healthy)
        && old.desired_healthy == Some(desired)
        && old.expected_pods == Some(expected)
        && old.disruptions_allowed == Some(allowed)
        && old.disrupted_pods.clone().filter(|m| !m.is_empty()) == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(&pdb);
    if !up_to_date {
        tracing::debug!(healthy, desired, expected, allowed, "budget changed");
        if pods.is_empty() {
            ctx.recorder
                .record(&*pdb, EventType::Normal, "NoPods", "No matching pods found".into());
        }
        if !unmanaged.is_empty() {
            let selector = pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|s| serde_json::to_string(s).unwrap_or_default())
                .unwrap_or_else(|| "nil".into());
            ctx.recorder.record(
                &*pdb,
                EventType::Warning,
                "UnmanagedPods",
                format!("Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."),
            );
        }
        let mut status = PodDisruptionBudgetStatus {
            current_healthy: Some(healthy),
            desired_healthy: Some(desired),
            expected_pods: Some(expected),
            disruptions_allowed: Some(allowed),
            disrupted_pods: disrupted,
            observed_generation: pdb.metadata.generation,
            conditions: old.conditions.clone(),
        };
        update_disruption_allowed(&mut status, now);
        match write_status(&ctx, &pdb, status).await {
            Ok(()) => {}
            // The cache is behind our (or the eviction handler's) write: the
            // change brings the budget back.
            Err(Error::Api(kube::Error::Api(s))) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(Error::Api(kube::Error::Api(s))) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err),
        }
    }
    match recheck {
        Some(at) => {
            let wait = (at.as_millisecond() - now.as_millisecond()).max(0) as u64;
            Ok(Action::requeue(
                Duration::from_millis(wait).min(ctx.config.resync_period),
            ))
        }
        None => Ok(Action::requeue(ctx.config.resync_period)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_up_as_kubernetes() {
        assert_eq!(scaled_value(&pct("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&pct("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&pct("1%"), 1, true), Ok(1));
        assert_eq!(scaled_value(&pct("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&pct("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&pct("34%"), 10, true), Ok(4));
        assert_eq!(scaled_value(&IntOrString::Int(3), 10, true), Ok(3));
        assert_eq!(
            scaled_value(&pct("5"), 10, true),
            Err("invalid value for IntOrString: invalid type: string is not a percentage".into())
        );
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta::default(),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn scale(count: i32) -> impl FnOnce() -> Result<Expected, String> {
        move || {
            Ok(Expected {
                count,
                unmanaged: Vec::new(),
            })
        }
    }

    #[test]
    fn the_bound_decides_expected_and_desired() {
        // Integer minAvailable: the pods found are the expected ones; the
        // controllers are not asked.
        let never = || -> Result<Expected, String> { panic!("scale asked") };
        assert_eq!(
            expected_and_desired(&budget(Some(IntOrString::Int(2)), None), 3, never),
            Ok((3, 2, vec![]))
        );
        // Percentages and maxUnavailable scale against the controllers.
        assert_eq!(
            expected_and_desired(&budget(Some(pct("50%")), None), 2, scale(5)),
            Ok((5, 3, vec![]))
        );
        assert_eq!(
            expected_and_desired(&budget(None, Some(IntOrString::Int(1))), 2, scale(4)),
            Ok((4, 3, vec![]))
        );
        assert_eq!(
            expected_and_desired(&budget(None, Some(pct("30%"))), 2, scale(4)),
            Ok((4, 2, vec![]))
        );
        assert_eq!(
            expected_and_desired(&budget(None, Some(IntOrString::Int(9))), 2, scale(4)),
            Ok((4, 0, vec![]))
        );
        assert_eq!(
            expected_and_desired(&budget(None, Some(pct("10%"))), 2, || Err(
                "found no controllers for pod \"x\"".into()
            )),
            Err("found no controllers for pod \"x\"".into())
        );
        assert_eq!(expected_and_desired(&budget(None, None), 2, never), Ok((0, 0, vec![])));
    }

    #[test]
    fn allowed_disruptions_are_never_negative_nor_given_without_pods() {
        assert_eq!(disruptions_allowed(2, 2, 2), 0);
        assert_eq!(disruptions_allowed(3, 2, 3), 1);
        assert_eq!(disruptions_allowed(1, 2, 2), 0);
        assert_eq!(disruptions_allowed(2, 0, 0), 0);
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<CachedPod> {
        Arc::new(CachedPod::of(&whole_pod(name, ready, deleting)))
    }

    fn whole_pod(name: &str, ready: bool, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn disrupted_and_deleting_pods_are_not_healthy_until_the_timeout() {
        let now = Timestamp::now();
        let pods = vec![
            pod("a", true, false),
            pod("b", true, false),
            pod("c", true, true),
            pod("d", false, false),
            pod("e", true, false),
        ];
        let recorded = BTreeMap::from([
            ("a".to_string(), Time(now - SignedDuration::from_secs(10))),
            ("b".to_string(), Time(now - SignedDuration::from_secs(200))),
            ("c".to_string(), Time(now)),
            ("gone".to_string(), Time(now)),
        ]);
        let (kept, recheck, lapsed) = disrupted_pods(Some(&recorded), &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(recheck, Some(now - SignedDuration::from_secs(10) + DELETION_TIMEOUT));
        assert_eq!(lapsed.iter().map(|p| p.name_any()).collect::<Vec<_>>(), ["b"]);
        // b (lapsed entry) and e count; a (disrupted), c (deleting), d (unready) do not.
        assert_eq!(count_healthy(&pods, &kept, now), 2);
    }

    #[test]
    fn a_disruption_target_goes_stale_after_two_minutes_without_deletion() {
        let now = Timestamp::now();
        let marked = |reason: &str, ago: i64, deleting: bool| {
            let mut p = (*pod("p", true, deleting)).clone();
            p.status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .expect("conditions")
                .push(PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    last_transition_time: Some(Time(now - SignedDuration::from_secs(ago))),
                    ..Default::default()
                });
            p
        };
        assert_eq!(
            stale_disruption_target(&marked("EvictionByEvictionAPI", 200, false), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            stale_disruption_target(&marked("EvictionByEvictionAPI", 20, false), now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            stale_disruption_target(&marked("EvictionByEvictionAPI", 200, true), now),
            None
        );
        assert_eq!(
            stale_disruption_target(&marked("TerminationByKubelet", 200, false), now),
            None
        );
        assert_eq!(stale_disruption_target(&pod("q", true, false), now), None);
    }

    #[test]
    fn the_condition_follows_the_allowed_disruptions() {
        let t0 = Timestamp::now() - SignedDuration::from_secs(60);
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: Some(1),
            observed_generation: Some(1),
            ..Default::default()
        };
        update_disruption_allowed(&mut status, t0);
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("True", "SufficientPods", Some(1))
        );
        // Same status later: the transition time stays.
        update_disruption_allowed(&mut status, Timestamp::now());
        assert_eq!(status.conditions.as_ref().unwrap()[0].last_transition_time, Time(t0));
        status.disruptions_allowed = Some(0);
        update_disruption_allowed(&mut status, Timestamp::now());
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InsufficientPods"));
        assert_ne!(c.last_transition_time, Time(t0));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }
}
