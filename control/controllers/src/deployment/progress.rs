//! Deployment status: counters summed over its ReplicaSets, and the
//! Available and Progressing conditions `kubectl rollout status` reads
//! (including ProgressDeadlineExceeded after `progressDeadlineSeconds`
//! without progress).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{fenceposts, Sync};
use crate::Error;

/// Writes status if it changed; returns when to look again (progress deadline).
pub async fn sync_status(
    s: &Sync<'_>,
    new_rs: Option<&ReplicaSet>,
    all: &[Arc<ReplicaSet>],
) -> Result<Option<Duration>, Error> {
    let now = Timestamp::now();
    let (status, requeue) = compute(s.d, new_rs, all, s.pending_condition.clone(), now);
    let old = s.d.status.clone().unwrap_or_default();
    if serde_json::to_value(&status).ok() != serde_json::to_value(&old).ok() {
        let api: Api<Deployment> = Api::namespaced(s.ctx.client.clone(), &s.d.namespace().unwrap_or_default());
        let patch = json!({ "status": status });
        match api
            .patch_status(&s.d.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        if progressing_reason(&status) == Some("ProgressDeadlineExceeded")
            && progressing_reason(&old) != Some("ProgressDeadlineExceeded")
        {
            s.ctx.recorder.record(
                s.d,
                crate::events::EventType::Warning,
                "ProgressDeadlineExceeded",
                format!("Deployment {:?} has timed out progressing.", s.d.name_any()),
            );
        }
    }
    Ok(requeue)
}

fn progressing_reason(status: &DeploymentStatus) -> Option<&str> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))?
        .reason
        .as_deref()
}

/// The status a Deployment should have, and when the progress deadline would
/// pass if nothing changes. Pure, for tests.
pub fn compute(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    all: &[Arc<ReplicaSet>],
    pending: Option<(&'static str, String)>,
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let spec = d.spec.clone();
    let replicas = spec.replicas.unwrap_or(1);
    let old = d.status.clone().unwrap_or_default();
    // Use the freshest copy of the new ReplicaSet (it may have been written this round).
    let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let mut total = 0;
    let mut ready = 0;
    let mut available = 0;
    for rs in all {
        let rs: &ReplicaSet = match new_rs {
            Some(n) if n.uid() == rs.uid() => n,
            _ => rs,
        };
        let st = status_of(rs);
        total += st.replicas;
        ready += st.ready_replicas.unwrap_or(0);
        available += st.available_replicas.unwrap_or(0);
    }
    let updated = new_rs.map(|rs| status_of(rs).replicas).unwrap_or(0);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((replicas - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    let (_, max_unavailable) = fenceposts(d);
    let stamp = Time(now);
    if available >= replicas - max_unavailable {
        set_condition(
            &mut status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &stamp,
        );
    } else {
        set_condition(
            &mut status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &stamp,
        );
    }

    let mut requeue = None;
    let current = condition(&status, "Progressing").cloned();
    let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    if spec.paused.unwrap_or(false) {
        if current.as_ref().and_then(|c| c.reason.as_deref()) != Some("DeploymentPaused") {
            set_condition(
                &mut status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                &stamp,
            );
        }
        return (status, None);
    }
    if current.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused") {
        set_condition(
            &mut status,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            &stamp,
        );
    }
    if let Some((reason, message)) = pending {
        set_condition(&mut status, "Progressing", "True", reason, &message, &stamp);
    }
    let complete = new_rs.is_some()
        && updated == replicas
        && available >= replicas
        && total == replicas
        && new_rs.map(|rs| Some(&rs.spec).and_then(|s| s.replicas).unwrap_or(1)) == Some(replicas);
    let progressed = updated > old.updated_replicas.unwrap_or(0)
        || total < old.replicas.unwrap_or(0) && total >= updated
        || ready > old.ready_replicas.unwrap_or(0)
        || available > old.available_replicas.unwrap_or(0);
    if complete {
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            &stamp,
        );
    } else if progressed {
        let mut c = DeploymentCondition {
            type_: Some("Progressing".into()),
            status: Some("True".into()),
            reason: Some("ReplicaSetUpdated".into()),
            message: Some(format!("ReplicaSet \"{rs_name}\" is progressing.")),
            last_update_time: Some(stamp.clone()),
            last_transition_time: Some(stamp.clone()),
        };
        if let Some(cur) = condition(&status, "Progressing") {
            if cur.status.as_deref() == Some("True") {
                c.last_transition_time = cur.last_transition_time.clone();
            }
        }
        replace_condition(&mut status, c);
    } else if let Some(deadline) = spec.progress_deadline_seconds.filter(|s| *s > 0 && *s < i32::MAX) {
        if let Some(cur) = condition(&status, "Progressing").cloned() {
            let timed_out_already = cur.reason.as_deref() == Some("ProgressDeadlineExceeded");
            let last = cur
                .last_update_time
                .as_ref()
                .map(|t| t.0.as_millisecond())
                .unwrap_or(now.as_millisecond());
            let due = last + i64::from(deadline) * 1000;
            if !timed_out_already && cur.reason.as_deref() != Some("NewReplicaSetAvailable") {
                if now.as_millisecond() >= due {
                    set_condition(
                        &mut status,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                        &stamp,
                    );
                } else {
                    requeue = Some(Duration::from_millis((due - now.as_millisecond()) as u64 + 50));
                }
            }
        }
    }
    (status, requeue)
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

fn replace_condition(status: &mut DeploymentStatus, c: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = conds.iter_mut().find(|x| x.type_ == c.type_) {
        *existing = c;
    } else {
        conds.push(c);
    }
}

/// Sets a condition like Kubernetes' `SetDeploymentCondition`: nothing changes
/// when status and reason are the same; the transition time is kept when
/// only the reason changes.
fn set_condition(status: &mut DeploymentStatus, type_: &str, value: &str, reason: &str, message: &str, now: &Time) {
    if let Some(cur) = condition(status, type_) {
        if cur.status.as_deref() == Some(value) && cur.reason.as_deref() == Some(reason) {
            return;
        }
    }
    let transition = match condition(status, type_) {
        Some(cur) if cur.status.as_deref() == Some(value) => cur.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    replace_condition(
        status,
        DeploymentCondition {
            type_: Some(type_.into()),
            status: Some(value.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: transition,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rs(uid: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{uid}")),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            },
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn deployment(replicas: i32, deadline: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(deadline),
                ..Default::default()
            },
            status: None,
        }
    }

    fn reason(st: &DeploymentStatus, t: &str) -> String {
        condition(st, t).and_then(|c| c.reason.clone()).unwrap_or_default()
    }

    #[test]
    fn complete_rollout_reports_new_replicaset_available() {
        let new = rs("a", 3, 3);
        let (st, _) = compute(
            &deployment(3, 600),
            Some(&new),
            &[Arc::new(new.clone())],
            None,
            Timestamp::now(),
        );
        assert_eq!(st.observed_generation, Some(2));
        assert_eq!(
            (st.replicas, st.updated_replicas, st.available_replicas),
            (Some(3), Some(3), Some(3))
        );
        assert_eq!(reason(&st, "Available"), "MinimumReplicasAvailable");
        assert_eq!(reason(&st, "Progressing"), "NewReplicaSetAvailable");
    }

    #[test]
    fn stalled_rollout_times_out_after_the_deadline() {
        let new = rs("a", 1, 0);
        let old = rs("b", 3, 3);
        let all = [Arc::new(old), Arc::new(new.clone())];
        let t0 = Timestamp::now();
        let mut d = deployment(3, 5);
        let (st, _) = compute(
            &d,
            Some(&new),
            &all,
            Some(("NewReplicaSetCreated", "Created".into())),
            t0,
        );
        // The new pod counts as progress over the empty previous status.
        assert_eq!(reason(&st, "Progressing"), "ReplicaSetUpdated");
        d.status = Some(st);
        // Nothing changes afterwards: the deadline is armed.
        let (st, requeue) = compute(&d, Some(&new), &all, None, t0);
        assert_eq!(reason(&st, "Progressing"), "ReplicaSetUpdated");
        assert!(requeue.is_some());
        d.status = Some(st);
        let later = t0 + k8s_openapi::jiff::SignedDuration::from_secs(6);
        let (st, _) = compute(&d, Some(&new), &all, None, later);
        assert_eq!(reason(&st, "Progressing"), "ProgressDeadlineExceeded");
        assert_eq!(condition(&st, "Progressing").unwrap().status.as_deref(), Some("False"));
    }
}
