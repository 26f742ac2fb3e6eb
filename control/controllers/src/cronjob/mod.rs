//! CronJob controller: creates a Job from `spec.jobTemplate` at each
//! scheduled time, as Kubernetes' cronjob controller (v2) does.
//!
//! Jobs are named `<cronjob>-<scheduled time in minutes since the epoch>`
//! (so a run is created at most once even from a stale cache) and carry
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`. Schedules come from
//! `sluice-cron` in `spec.timeZone` (UTC without one); a controller that
//! was down runs only the most recent missed time ([`schedule`]), within
//! `startingDeadlineSeconds`. `concurrencyPolicy` Forbid skips a run while
//! a Job is active, Replace deletes the active ones first. `status.active`
//! lists the running Jobs, `lastScheduleTime`/`lastSuccessfulTime` the
//! last run and success, and finished Jobs beyond the history limits are
//! deleted oldest first. The reconcile is requeued for the next scheduled
//! time.

pub mod schedule;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::pods::{controller_of, controller_ref};
use crate::{runner, Context, Error};
use schedule::Missed;

/// Annotation with the scheduled time a Job was created for (RFC 3339, in
/// the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Subscribes the CronJob controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.cronjobs.store();
    let own = ctx
        .informers
        .cronjobs
        .trigger(|cj: &CronJob| Some(ObjectRef::from_obj(cj)));
    let from_jobs = ctx.informers.jobs.trigger(|job: &Job| {
        let ns = job.namespace().unwrap_or_default();
        controller_of(job)
            .filter(|o| o.kind == "CronJob")
            .map(|o| ObjectRef::<CronJob>::new(&o.name).within(&ns))
    });
    runner::run("cronjob", ctx, store, vec![own.boxed(), from_jobs.boxed()], reconcile)
}

fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.as_millisecond()).unwrap_or_default()
}

fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millisecond(t.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The Job's final condition, if it finished.
fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    for (type_, word) in [("Complete", "Complete"), ("Failed", "Failed")] {
        if conds.iter().any(|c| c.type_ == type_ && c.status == "True") {
            return Some(word);
        }
    }
    None
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(job.name_any()),
        namespace: job.namespace(),
        uid: job.uid(),
        resource_version: job.resource_version(),
        field_path: None,
    }
}

/// The Job name for a run scheduled at `t`.
pub fn job_name(cronjob: &str, t: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", t.timestamp().div_euclid(60))
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        WRITTEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cj.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let spec = cj.spec.clone();
    let old_status = cj.status.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: Vec<Arc<Job>> = ctx
        .informers
        .jobs
        .store()
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| controller_of(&**j).is_some_and(|o| o.uid == uid))
        .collect();

    // status.active: the owned Jobs still running.
    let mut active: Vec<ObjectReference> = Vec::new();
    let mut last_success = old_status.last_successful_time.as_ref().map(|t| t.0);
    let was_active: BTreeSet<String> = old_status
        .active
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();
    for job in &owned {
        match finished(job) {
            None if job.metadata.deletion_timestamp.is_none() => active.push(job_reference(job)),
            None => {}
            Some(word) => {
                if was_active.contains(&job.name_any()) {
                    ctx.recorder.record(
                        &*cj,
                        EventType::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {}, condition: {word}", job.name_any()),
                    );
                }
                if word == "Complete" {
                    if let Some(t) = job.status.as_ref().and_then(|s| s.completion_time.as_ref()) {
                        last_success = Some(last_success.map_or(t.0, |l| l.max(t.0)));
                    }
                }
            }
        }
    }
    // A Job listed as active but not cached yet (just created) is kept
    // unless the API server says it is gone.
    for r in old_status.active.iter().flatten() {
        let n = r.name.clone().unwrap_or_default();
        if owned.iter().any(|j| j.name_any() == n) {
            continue;
        }
        match jobs_api.get_opt(&n).await? {
            Some(j) if finished(&j).is_none() && j.metadata.deletion_timestamp.is_none() => active.push(r.clone()),
            Some(_) => {}
            None => ctx.recorder.record(
                &*cj,
                EventType::Normal,
                "MissingJob",
                format!("Active job went missing: {n}"),
            ),
        }
    }

    // History limits: delete the oldest finished Jobs beyond them.
    clean_history(
        &ctx,
        &cj,
        &jobs_api,
        &owned,
        "Complete",
        spec.successful_jobs_history_limit.unwrap_or(3),
    )
    .await?;
    clean_history(
        &ctx,
        &cj,
        &jobs_api,
        &owned,
        "Failed",
        spec.failed_jobs_history_limit.unwrap_or(1),
    )
    .await?;

    let tz = match sluice_cron::time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            ctx.recorder.record(
                &*cj,
                EventType::Warning,
                "UnknownTimeZone",
                format!(
                    "invalid timeZone: {:?}: {e}",
                    spec.time_zone.clone().unwrap_or_default()
                ),
            );
            write_status(&ctx, &cj, &active, None, last_success).await?;
            return Ok(Action::await_change());
        }
    };
    let sched = match sluice_cron::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder.record(
                &*cj,
                EventType::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            );
            write_status(&ctx, &cj, &active, None, last_success).await?;
            return Ok(Action::await_change());
        }
    };
    let now = to_chrono(Timestamp::now());
    let next_run = |from: DateTime<Utc>| {
        sched
            .next_after(from, tz)
            .map(|t| ((t - now).to_std().unwrap_or_default()) + Duration::from_millis(100))
    };
    let requeue = next_run(now).map_or_else(Action::await_change, Action::requeue);
    if spec.suspend == Some(true) {
        write_status(&ctx, &cj, &active, None, last_success).await?;
        return Ok(Action::await_change());
    }
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| to_chrono(t.0))
        .unwrap_or(now);
    let last = known_times(&cj).0.map(to_chrono);
    let due = schedule::due(&sched, tz, created, last, spec.starting_deadline_seconds, now);
    if due.missed == Missed::Many {
        ctx.recorder.record(
            &*cj,
            EventType::Warning,
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        );
    }
    let Some(scheduled) = due.scheduled else {
        write_status(&ctx, &cj, &active, None, last_success).await?;
        return Ok(requeue);
    };
    if let Some(sds) = spec.starting_deadline_seconds {
        if scheduled + chrono::Duration::seconds(sds) < now {
            ctx.recorder.record(
                &*cj,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.format("%a, %d %b %Y %H:%M:%S +0000")
                ),
            );
            write_status(&ctx, &cj, &active, None, last_success).await?;
            return Ok(requeue);
        }
    }
    let new_name = job_name(&name, scheduled);
    if owned.iter().any(|j| j.name_any() == new_name) || active.iter().any(|r| r.name.as_deref() == Some(&new_name)) {
        // Already run (the cache may not show lastScheduleTime yet).
        write_status(&ctx, &cj, &active, None, last_success).await?;
        return Ok(requeue);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            ctx.recorder.record(
                &*cj,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            );
            write_status(&ctx, &cj, &active, None, last_success).await?;
            return Ok(requeue);
        }
        Some("Replace") => {
            for r in std::mem::take(&mut active) {
                let n = r.name.unwrap_or_default();
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                match jobs_api.delete(&n, &params).await {
                    Ok(_) => {
                        ctx.recorder
                            .record(&*cj, EventType::Normal, "SuccessfulDelete", format!("Deleted job {n}"))
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        _ => {}
    }
    let job = job_from_template(&cj, scheduled, tz);
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            ctx.recorder.record(
                &*cj,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {new_name}"),
            );
            active.push(job_reference(&created));
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(err) => {
            ctx.recorder.record(
                &*cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {err}"),
            );
            return Err(err.into());
        }
    }
    write_status(&ctx, &cj, &active, Some(scheduled), last_success).await?;
    Ok(requeue)
}

/// A Job for the run scheduled at `scheduled`.
pub fn job_from_template(cj: &CronJob, scheduled: DateTime<Utc>, tz: sluice_cron::Tz) -> Job {
    let template = cj.spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// Deletes the oldest finished (`condition`) Jobs beyond `limit`.
async fn clean_history(
    ctx: &Context,
    cj: &CronJob,
    api: &Api<Job>,
    owned: &[Arc<Job>],
    condition: &str,
    limit: i32,
) -> Result<(), Error> {
    let mut done: Vec<&Arc<Job>> = owned
        .iter()
        .filter(|j| finished(j) == Some(condition) && j.metadata.deletion_timestamp.is_none())
        .collect();
    let limit = limit.max(0) as usize;
    if done.len() <= limit {
        return Ok(());
    }
    let started = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    done.sort_by_key(|j| (started(j), j.name_any()));
    let extra = done.len() - limit;
    for job in done.into_iter().take(extra) {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&job.name_any(), &params).await {
            Ok(_) => ctx.recorder.record(
                cj,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {}", job.name_any()),
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The times this controller last wrote per CronJob uid: (lastScheduleTime,
/// lastSuccessfulTime). The informer's copy of a CronJob can lag behind our
/// own status write when a Job event triggers the next reconcile first; both
/// times only move forward, so the later of the two copies is the truth
/// (`Option::max`: `None` is earlier than any time), and
/// a stale copy can neither rewind them nor make a run look not yet done.
static WRITTEN: LazyLock<Mutex<HashMap<String, Times>>> = LazyLock::new(Mutex::default);

/// (lastScheduleTime, lastSuccessfulTime).
type Times = (Option<Timestamp>, Option<Timestamp>);

/// The CronJob's (lastScheduleTime, lastSuccessfulTime): the later of the
/// cached object's and what this controller last wrote.
fn known_times(cj: &CronJob) -> Times {
    let st = cj.status.clone().unwrap_or_default();
    let written = WRITTEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cj.uid().unwrap_or_default())
        .copied()
        .unwrap_or_default();
    (
        st.last_schedule_time.map(|t| t.0).max(written.0),
        st.last_successful_time.map(|t| t.0).max(written.1),
    )
}

/// Writes `status` when it changed.
async fn write_status(
    ctx: &Context,
    cj: &CronJob,
    active: &[ObjectReference],
    scheduled: Option<DateTime<Utc>>,
    last_success: Option<Timestamp>,
) -> Result<(), Error> {
    let old = cj.status.clone().unwrap_or_default();
    let mut active = active.to_vec();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    active.dedup_by(|a, b| a.name == b.name);
    let (known_schedule, known_success) = known_times(cj);
    let last_schedule = scheduled.map(to_jiff).max(known_schedule);
    let last_success = last_success.max(known_success);
    let same_active = {
        let names = |v: &[ObjectReference]| v.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>();
        names(&active) == names(old.active.as_deref().unwrap_or_default())
    };
    if same_active
        && last_schedule == old.last_schedule_time.as_ref().map(|t| t.0)
        && last_success == old.last_successful_time.as_ref().map(|t| t.0)
    {
        return Ok(());
    }
    let fmt = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = json!({"status": {
        "active": if active.is_empty() { serde_json::Value::Null } else { json!(active) },
        "lastScheduleTime": last_schedule.map(fmt),
        "lastSuccessfulTime": last_success.map(fmt),
    }});
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &cj.namespace().unwrap_or_default());
    match api
        .patch_status(&cj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            WRITTEN
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(cj.uid().unwrap_or_default(), (last_schedule, last_success));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobSpec, JobTemplateSpec};

    #[test]
    fn jobs_are_named_by_the_scheduled_minute_and_annotated() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(job_name("hello", t), format!("hello-{}", t.timestamp() / 60));
        let cj = CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: CronJobSpec {
                schedule: "*/5 * * * *".into(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "hello".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(JobSpec::default()),
                },
                ..Default::default()
            },
            status: None,
        };
        let tz = sluice_cron::time_zone(Some("Europe/Berlin")).unwrap();
        let job = job_from_template(&cj, t, tz);
        assert_eq!(job.annotations()[SCHEDULED_TIMESTAMP], "2026-01-01T11:05:00+01:00");
        assert_eq!(job.labels()["app"], "hello");
        let owner = controller_of(&job).unwrap();
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("CronJob", "hello"));
    }
}
