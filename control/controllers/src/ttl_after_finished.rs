//! TTL-after-finished controller: deletes a finished Job
//! `spec.ttlSecondsAfterFinished` seconds after it finished (its
//! `completionTime`, or when its Failed condition turned True), with
//! foreground propagation so its pods go first, as Kubernetes does. The
//! Job is read again from the API server before deleting, and the delete
//! is guarded by its uid, so a Job whose TTL was just raised or that was
//! recreated under the same name is left alone.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::{runner, Context, Error};

/// Subscribes the TTL-after-finished controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.jobs.store();
    let own = ctx.informers.jobs.trigger(|j: &Job| Some(ObjectRef::from_obj(j)));
    runner::run("ttl-after-finished", ctx, store, vec![own.boxed()], reconcile)
}

/// When the Job finished, if it did.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let finished = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    status
        .completion_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| finished.last_transition_time.as_ref().map(|t| t.0))
}

/// When the Job expires, if it finished and has a TTL.
pub fn expiry(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    Some(finish_time(job)? + SignedDuration::from_secs(i64::from(ttl)))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(at) = expiry(&job) else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    if at > now {
        let wait = (at.as_millisecond() - now.as_millisecond()).max(0) as u64;
        return Ok(Action::requeue(Duration::from_millis(wait)));
    }
    // Check the live object, not the cache, before deleting.
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match expiry(&fresh) {
        Some(at) if at <= Timestamp::now() && fresh.metadata.deletion_timestamp.is_none() => {}
        _ => return Ok(Action::await_change()),
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::info!(job = %format!("{}/{}", fresh.namespace().unwrap_or_default(), fresh.name_any()), "deleting finished job after its TTL");
    match api.delete(&fresh.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, cond: Option<(&str, Timestamp)>, completion: Option<Timestamp>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                completion_time: completion.map(Time),
                conditions: cond.map(|(t, at)| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn expires_ttl_after_completion_or_failure() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            expiry(&job(Some(5), Some(("Complete", t)), Some(t))),
            Some(Timestamp::from_second(1_005).unwrap())
        );
        assert_eq!(expiry(&job(Some(0), Some(("Failed", t)), None)), Some(t));
        assert_eq!(expiry(&job(None, Some(("Complete", t)), Some(t))), None);
        assert_eq!(expiry(&job(Some(5), Some(("SuccessCriteriaMet", t)), None)), None);
        assert_eq!(expiry(&job(Some(5), None, None)), None);
    }
}
