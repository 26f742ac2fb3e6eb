//! Job controller: runs pods until `completions` succeed (NonIndexed) or
//! every index in `0..completions` succeeded (Indexed), at most
//! `parallelism` at a time, as Kubernetes' job controller does.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer and are
//! counted through `status.uncountedTerminatedPods` ([`accounting`]).
//! Failures are retried with Kubernetes' back-off (10 s doubling, at most
//! 6 minutes) until `backoffLimit` (or `backoffLimitPerIndex` /
//! `maxFailedIndexes`), `activeDeadlineSeconds` or a `podFailurePolicy`
//! FailJob rule ends the Job. An ending Job first gets the interim
//! condition (FailureTarget or SuccessCriteriaMet), its remaining pods are
//! deleted, and the final Failed or Complete condition follows once no pod
//! is left running and every finished pod is counted. `suspend` deletes
//! the active pods and sets Suspended; resuming restarts the clock.

pub mod accounting;
pub mod failure_policy;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cached_pod::CachedPod;
use crate::events::EventType;
use crate::expectations::Expectations;
use crate::pods::{self, controller_of, controller_ref};
use crate::{runner, Context, Error};
use accounting::{
    account, backoff_delay, completion_index, format_indexes, has_tracking_finalizer, pending_indexes, Accounting,
    COMPLETION_INDEX, INDEX_FAILURE_COUNT, TRACKING_FINALIZER,
};

/// Most pods created or deleted in one reconcile (Kubernetes' burstReplicas).
const BURST: usize = 500;
/// The `spec.managedBy` value of Jobs this controller manages (also when unset).
pub const MANAGED_BY_JOB_CONTROLLER: &str = "kubernetes.io/job-controller";
/// How often pods whose Job is gone are freed of the tracking finalizer.
const ORPHAN_SWEEP: Duration = Duration::from_secs(2);

/// Consecutive failures since the last success, per Job (Kubernetes keeps
/// this back-off record in memory too).
#[derive(Default)]
struct Backoff {
    records: Mutex<HashMap<String, (u32, Timestamp)>>,
}

impl Backoff {
    fn update(&self, key: &str, a: &Accounting) {
        let mut map = self.records.lock().expect("backoff lock");
        if a.new_successes > 0 && a.new_failures == 0 {
            map.remove(key);
        }
        if a.new_failures > 0 {
            let at = a.last_failure.unwrap_or_else(Timestamp::now);
            let e = map.entry(key.to_string()).or_insert((0, at));
            e.0 += a.new_failures;
            e.1 = e.1.max(at);
        }
    }

    /// How long new pods must still wait.
    fn remaining(&self, key: &str, now: Timestamp) -> Duration {
        let map = self.records.lock().expect("backoff lock");
        let Some((n, at)) = map.get(key) else {
            return Duration::ZERO;
        };
        let until = at.as_millisecond() + backoff_delay(*n).as_millis() as i64;
        Duration::from_millis((until - now.as_millisecond()).max(0) as u64)
    }

    fn forget(&self, key: &str) {
        self.records.lock().expect("backoff lock").remove(key);
    }
}

struct State {
    expectations: Expectations,
    backoff: Backoff,
}

/// Subscribes the Job controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.jobs.store();
    let own = ctx.informers.jobs.trigger(|j: &Job| Some(ObjectRef::from_obj(j)));
    let from_pods = ctx.informers.pods.trigger(|pod: &CachedPod| {
        let ns = pod.namespace().unwrap_or_default();
        controller_of(pod)
            .filter(|o| o.kind == "Job" && o.api_version == "batch/v1")
            .map(|o| ObjectRef::<Job>::new(&o.name).within(&ns))
    });
    let state = Arc::new(State {
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let sweep_ctx = ctx.clone();
    let queue = runner::run(
        "job",
        ctx,
        store,
        vec![own.boxed(), from_pods.boxed()],
        move |job, ctx| reconcile(job, ctx, state.clone()),
    );
    Box::pin(async move {
        let sweep = runner::every("job-orphan-pods", ORPHAN_SWEEP, || release_orphans(sweep_ctx.clone()));
        futures::future::join(queue, sweep).await;
    })
}

fn has_condition(job: &Job, type_: &str) -> Option<JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

/// Whether the Job has its final condition (Complete or Failed).
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete").is_some() || has_condition(job, "Failed").is_some()
}

/// Sets condition `type_` (keeping lastTransitionTime when the status is unchanged).
fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        if c.status != status || c.reason.as_deref() != Some(reason) {
            c.last_probe_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        return;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>, state: Arc<State>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let key = format!("{ns}/{name}");
    let uid = job.uid().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    // `spec.managedBy` hands the Job to another controller (Kubernetes' rule).
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != MANAGED_BY_JOB_CONTROLLER)
    {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_store = ctx.informers.pods.store();
    let owned: Vec<Arc<CachedPod>> = ctx
        .informers
        .pods
        .controlled_by(&uid)
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(&**p).is_some_and(|o| o.uid == uid))
        .collect();

    // A finished or deleting Job only lets go of its pods.
    if is_finished(&job) || job.metadata.deletion_timestamp.is_some() {
        state.expectations.forget(&key);
        state.backoff.forget(&key);
        for pod in owned.iter().filter(|p| has_tracking_finalizer(p)) {
            if job.metadata.deletion_timestamp.is_some()
                || pods::is_terminated(pod)
                || pod.metadata.deletion_timestamp.is_some()
            {
                remove_finalizer(&pods_api, pod).await?;
            }
        }
        if is_finished(&job) {
            // Pods still running after the end (none normally) are deleted.
            for pod in owned.iter().filter(pods::is_active) {
                delete_pod(&ctx, &job, &pods_api, pod, &key, &state.expectations).await?;
            }
        }
        return Ok(Action::await_change());
    }

    let exists = |n: &str| pod_store.get(&ObjectRef::new(n).within(&ns)).is_some();
    let live = |n: &str| {
        pod_store
            .get(&ObjectRef::new(n).within(&ns))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    };
    if !state.expectations.satisfied(&key, exists, live) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let now = Timestamp::now();
    let a = account(&job, &owned, now);
    state.backoff.update(&key, &a);
    let old_status = job.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let mut conds = status.conditions.clone().unwrap_or_default();
    let mut requeue: Option<Duration> = None;
    let mut want = |d: Duration| requeue = Some(requeue.map_or(d, |r: Duration| r.min(d)));
    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.map(i64::from);
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;

    // Suspend and resume.
    let was_suspended = has_condition(&job, "Suspended").is_some();
    if suspended && !was_suspended {
        set_condition(&mut conds, "Suspended", "True", "JobSuspended", "Job suspended", now);
        ctx.recorder
            .record(&*job, EventType::Normal, "Suspended", "Job suspended".into());
    } else if !suspended && was_suspended {
        set_condition(&mut conds, "Suspended", "False", "JobResumed", "Job resumed", now);
        status.start_time = Some(Time(now));
        ctx.recorder
            .record(&*job, EventType::Normal, "Resumed", "Job resumed".into());
    }
    if !suspended && status.start_time.is_none() {
        status.start_time = Some(Time(now));
    }

    // Is the Job ending?
    let failure_target = conds
        .iter()
        .find(|c| c.type_ == "FailureTarget" && c.status == "True")
        .cloned();
    let success_target = conds
        .iter()
        .find(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
        .cloned();
    if failure_target.is_none() && success_target.is_none() {
        if let Some((reason, message)) = failure(&spec, &a, &status, completions, now, &mut want) {
            set_condition(&mut conds, "FailureTarget", "True", reason, &message, now);
        } else if let Some((reason, message)) = success(&spec, &a, completions, indexed) {
            set_condition(&mut conds, "SuccessCriteriaMet", "True", reason, &message, now);
        }
    }
    let ending = conds
        .iter()
        .find(|c| (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet") && c.status == "True")
        .cloned();

    // Pods: delete what must go, create what is missing.
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    if ending.is_some() || suspended {
        for pod in &a.active {
            delete_pod(&ctx, &job, &pods_api, pod, &key, &state.expectations).await?;
            deleted.insert(pod.name_any());
        }
    } else {
        let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
        let blocking = a.active.len() + if only_failed { a.terminating as usize } else { 0 };
        let wait = state.backoff.remaining(&key, now);
        if indexed {
            let mut held: BTreeSet<i64> = a.active.iter().filter_map(|p| completion_index(p)).collect();
            if only_failed {
                held.extend(
                    owned
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminated(p))
                        .filter_map(|p| completion_index(p)),
                );
            }
            let pending = pending_indexes(completions.unwrap_or(0), &a, &held);
            let room = parallelism.saturating_sub(blocking).min(BURST);
            let create: Vec<i64> = pending.into_iter().take(room).collect();
            if !create.is_empty() && !wait.is_zero() {
                want(wait);
            } else if !create.is_empty() {
                create_pods(
                    &ctx,
                    &job,
                    &pods_api,
                    &create.into_iter().map(Some).collect::<Vec<_>>(),
                    &a,
                    &key,
                    &state.expectations,
                )
                .await?;
            }
        } else {
            let target = match completions {
                Some(c) => parallelism.min((c - i64::from(a.succeeded)).max(0) as usize),
                None if a.succeeded > 0 => 0,
                None => parallelism,
            };
            if target > blocking {
                if !wait.is_zero() && a.failed > 0 {
                    want(wait);
                } else {
                    let n = (target - blocking).min(BURST);
                    create_pods(&ctx, &job, &pods_api, &vec![None; n], &a, &key, &state.expectations).await?;
                }
            } else if a.active.len() > target {
                let mut extra: Vec<Arc<CachedPod>> = a.active.clone();
                extra.sort_by_key(|p| crate::replicaset::deletion_rank(p));
                for pod in extra.into_iter().take(a.active.len() - target) {
                    delete_pod(&ctx, &job, &pods_api, &pod, &key, &state.expectations).await?;
                    deleted.insert(pod.name_any());
                }
            }
        }
    }

    // The final condition, once nothing runs and every finished pod is counted.
    let active = a.active.iter().filter(|p| !deleted.contains(&p.name_any())).count() as i32;
    let terminating = a.terminating + deleted.len() as i32;
    let mut finished_now = None;
    if let Some(end) = &ending {
        if active == 0 && terminating == 0 && a.uncounted_succeeded.is_empty() && a.uncounted_failed.is_empty() {
            let reason = end.reason.clone().unwrap_or_default();
            let message = end.message.clone().unwrap_or_default();
            if end.type_ == "SuccessCriteriaMet" {
                set_condition(&mut conds, "Complete", "True", &reason, &message, now);
                status.completion_time = Some(Time(now));
                finished_now = Some((EventType::Normal, "Completed".to_string(), "Job completed".to_string()));
            } else {
                set_condition(&mut conds, "Failed", "True", &reason, &message, now);
                finished_now = Some((EventType::Warning, reason, message));
            }
        }
    }

    status.conditions = (!conds.is_empty()).then_some(conds);
    status.active = Some(active);
    status.ready = Some(a.ready);
    status.terminating = Some(terminating);
    status.succeeded = Some(a.counted_succeeded);
    status.failed = Some(a.counted_failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!a.uncounted_succeeded.is_empty()).then(|| a.uncounted_succeeded.clone()),
        failed: (!a.uncounted_failed.is_empty()).then(|| a.uncounted_failed.clone()),
    });
    if indexed {
        status.completed_indexes = Some(format_indexes(&a.completed));
        if spec.backoff_limit_per_index.is_some() {
            status.failed_indexes = Some(format_indexes(&a.failed_indexes));
        }
    }
    // Counts as the Job's finalizer-tracked view: uncounted pods are shown in
    // succeeded/failed only after they are counted, as Kubernetes does.
    if !status_equal(&status, &old_status) {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let mut updated = (*job).clone();
        updated.status = Some(status);
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_millis(500))),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(err) => return Err(err.into()),
        }
        if let Some((type_, reason, message)) = finished_now {
            ctx.recorder.record(&*job, type_, &reason, message);
        }
    }
    // Only now, with the finished pods recorded, may their finalizers go.
    for pod in &a.release {
        remove_finalizer(&pods_api, pod).await?;
    }
    if let (Some(ads), Some(start)) = (
        spec.active_deadline_seconds,
        job.status.as_ref().and_then(|s| s.start_time.as_ref()),
    ) {
        let deadline = start.0 + SignedDuration::from_secs(ads);
        let left = deadline.as_millisecond() - now.as_millisecond();
        if left > 0 {
            want(Duration::from_millis(left as u64));
        }
    }
    Ok(requeue.map_or_else(|| Action::requeue(ctx.config.resync_period), Action::requeue))
}

fn status_equal(a: &JobStatus, b: &JobStatus) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// Why the Job fails, if it does: (reason, message) as Kubernetes words them.
fn failure(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    a: &Accounting,
    status: &JobStatus,
    completions: Option<i64>,
    now: Timestamp,
    want: &mut impl FnMut(Duration),
) -> Option<(&'static str, String)> {
    if let Some(message) = &a.fail_job {
        return Some(("PodFailurePolicy", message.clone()));
    }
    if spec.backoff_limit_per_index.is_none() && a.failed > spec.backoff_limit.unwrap_or(6) {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into(),
        ));
    }
    if spec.backoff_limit_per_index.is_some() {
        if let Some(max) = spec.max_failed_indexes {
            if a.failed_indexes.len() as i64 > i64::from(max) {
                return Some((
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes".into(),
                ));
            }
        }
        let c = completions.unwrap_or(0);
        if !a.failed_indexes.is_empty() && (a.completed.len() + a.failed_indexes.len()) as i64 >= c {
            return Some(("FailedIndexes", "Job has failed indexes".into()));
        }
    }
    if let (Some(ads), Some(start)) = (spec.active_deadline_seconds, status.start_time.as_ref()) {
        if spec.suspend != Some(true) {
            let deadline = start.0 + SignedDuration::from_secs(ads);
            if now >= deadline {
                return Some((
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".into(),
                ));
            }
            let left = deadline.as_millisecond() - now.as_millisecond();
            want(Duration::from_millis(left.max(0) as u64));
        }
    }
    None
}

/// Whether the Job succeeded: (reason, message).
fn success(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    a: &Accounting,
    completions: Option<i64>,
    indexed: bool,
) -> Option<(&'static str, String)> {
    if let Some(policy) = &spec.success_policy {
        for (i, rule) in policy.rules.iter().enumerate() {
            let among: BTreeSet<i64> = match &rule.succeeded_indexes {
                Some(ix) => accounting::parse_indexes(ix, completions.unwrap_or(0)),
                None => (0..completions.unwrap_or(0)).collect(),
            };
            let done = a.completed.intersection(&among).count() as i64;
            let ok = match rule.succeeded_count {
                Some(n) => done >= i64::from(n),
                None => done == among.len() as i64,
            };
            if ok {
                return Some(("SuccessPolicy", format!("Matched rules at index {i}")));
            }
        }
    }
    let done = if indexed {
        completions.is_some_and(|c| a.completed.len() as i64 >= c)
    } else {
        match completions {
            Some(c) => i64::from(a.succeeded) >= c,
            None => a.succeeded > 0 && a.active.is_empty(),
        }
    };
    done.then(|| {
        (
            "CompletionsReached",
            "Reached expected number of succeeded pods".to_string(),
        )
    })
}

/// Creates one pod per entry (`Some(index)` for Indexed Jobs) in
/// slow-start batches, stopping at the first failure like Kubernetes.
async fn create_pods(
    ctx: &Context,
    job: &Job,
    api: &Api<Pod>,
    indexes: &[Option<i64>],
    a: &Accounting,
    key: &str,
    expectations: &Expectations,
) -> Result<(), Error> {
    let mut rest = indexes;
    let mut batch = 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let creates = now.iter().map(|index| {
            let pod = pod_from_template(job, *index, index.and_then(|i| a.index_failures.get(&i).copied()));
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
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {pod_name}"),
                    );
                }
                Err(err) => {
                    ctx.recorder.record(
                        job,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {err}"),
                    );
                    failed = Some(err);
                }
            }
        }
        if let Some(err) = failed {
            return Err(err.into());
        }
        rest = later;
        batch *= 2;
    }
    Ok(())
}

/// A pod for `job` (and completion `index`): the template, the tracking
/// finalizer, the Job as controller; Indexed pods get the index as
/// annotation, label, `JOB_COMPLETION_INDEX` and hostname `<job>-<index>`.
pub fn pod_from_template(job: &Job, index: Option<i64>, index_failures: Option<i32>) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let job_name = job.name_any();
    let base = match index {
        Some(i) => format!("{job_name}-{i}-"),
        None => format!("{job_name}-"),
    };
    // Kubernetes' generateName keeps at most 58 characters of the base.
    let base: String = base.chars().take(58).collect();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(n) = index_failures {
            annotations.insert(INDEX_FAILURE_COUNT.into(), n.to_string());
        }
        if spec.hostname.as_deref().is_none_or(str::is_empty) {
            spec.hostname = Some(format!("{job_name}-{i}"));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let list = c.env.get_or_insert_with(Vec::new);
            if !list.iter().any(|e| e.name == env.name) {
                list.push(env.clone());
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{base}{}", pods::random_suffix())),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

async fn delete_pod(
    ctx: &Context,
    job: &Job,
    api: &Api<Pod>,
    pod: &CachedPod,
    key: &str,
    expectations: &Expectations,
) -> Result<(), Error> {
    let name = pod.name_any();
    expectations.expect_delete(key, name.clone());
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.recorder.record(
                job,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Removes the tracking finalizer (guarded by resourceVersion; a conflict
/// is retried by the next reconcile).
async fn remove_finalizer(api: &Api<Pod>, pod: &CachedPod) -> Result<(), Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(());
    }
    let rest: Vec<&String> = pod.finalizers().iter().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pod.resource_version()}});
    match api
        .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Frees finished or deleting pods whose Job is gone from the tracking
/// finalizer (Kubernetes does this when it sees such a pod).
async fn release_orphans(ctx: Arc<Context>) -> Result<(), Error> {
    let jobs = ctx.informers.jobs.store();
    let uids: BTreeSet<String> = jobs.state().iter().filter_map(|j| j.uid()).collect();
    for pod in ctx.informers.pods.store().state() {
        if !has_tracking_finalizer(&pod) {
            continue;
        }
        let orphan = match controller_of(&*pod) {
            Some(o) if o.kind == "Job" => !uids.contains(&o.uid),
            _ => true,
        };
        if orphan && (pods::is_terminated(&pod) || pod.metadata.deletion_timestamp.is_some()) {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
            remove_finalizer(&api, &pod).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn job() -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions: Some(3),
                completion_mode: Some("Indexed".into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "pi".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = pod_from_template(&job(), Some(2), Some(1));
        assert!(pod.name_any().starts_with("pi-2-"));
        assert_eq!(pod.labels()[COMPLETION_INDEX], "2");
        assert_eq!(pod.annotations()[COMPLETION_INDEX], "2");
        assert_eq!(pod.annotations()[INDEX_FAILURE_COUNT], "1");
        assert_eq!(pod.finalizers(), [TRACKING_FINALIZER]);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
        let non_indexed = pod_from_template(&job(), None, None);
        assert!(non_indexed.annotations().is_empty());
        assert!(non_indexed.spec.unwrap().hostname.is_none());
    }

    #[test]
    fn success_and_failure_decisions() {
        let spec = JobSpec {
            completions: Some(2),
            backoff_limit: Some(1),
            ..Default::default()
        };
        let mut a = Accounting {
            succeeded: 2,
            ..Default::default()
        };
        assert_eq!(
            success(&spec, &a, Some(2), false).map(|s| s.0),
            Some("CompletionsReached")
        );
        a.succeeded = 1;
        assert!(success(&spec, &a, Some(2), false).is_none());
        a.failed = 2;
        let mut noop = |_d: Duration| {};
        assert_eq!(
            failure(&spec, &a, &JobStatus::default(), Some(2), Timestamp::now(), &mut noop).map(|f| f.0),
            Some("BackoffLimitExceeded")
        );
        a.failed = 1;
        assert!(failure(&spec, &a, &JobStatus::default(), Some(2), Timestamp::now(), &mut noop).is_none());
        // Deadline.
        let spec = JobSpec {
            active_deadline_seconds: Some(5),
            ..spec
        };
        let status = JobStatus {
            start_time: Some(Time(Timestamp::now() - SignedDuration::from_secs(6))),
            ..Default::default()
        };
        assert_eq!(
            failure(&spec, &a, &status, Some(2), Timestamp::now(), &mut noop).map(|f| f.0),
            Some("DeadlineExceeded")
        );
    }
}
