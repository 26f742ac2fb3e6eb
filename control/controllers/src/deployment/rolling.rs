//! RollingUpdate: scale the new ReplicaSet up within `replicas + maxSurge`
//! pods, and old ones down while at least `replicas - maxUnavailable` pods
//! stay available (Kubernetes' `rolloutRolling`).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::{fenceposts, rs_available, rs_replicas, rs_status_current, Sync};
use crate::Error;

/// One rolling step; returns the new ReplicaSet (if it exists yet).
pub async fn sync(
    s: &mut Sync<'_>,
    new_rs: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
) -> Result<Option<ReplicaSet>, Error> {
    let replicas = s.replicas();
    let (surge, unavailable) = fenceposts(s.d);
    let old_total: i32 = old.iter().map(|rs| rs_replicas(rs)).sum();
    let first = new_rs.is_none();
    let create_with = new_replicas(replicas, surge, old_total, 0);
    let Some(mut new_rs) = s.new_replicaset(new_rs, old, Some(create_with)).await? else {
        return Ok(None);
    };
    if first {
        // Just created: let the caches catch up before the next step.
        return Ok(Some(new_rs));
    }

    // Scale up the new ReplicaSet.
    let current = rs_replicas(&new_rs);
    let target = if current > replicas {
        replicas
    } else {
        new_replicas(replicas, surge, old_total, current)
    };
    if target != current {
        new_rs = s.scale(&new_rs, target).await?;
        return Ok(Some(new_rs));
    }

    // Scale down old ReplicaSets, only on statuses that reflect their specs.
    if old_total == 0 || !rs_status_current(&new_rs) || !old.iter().all(|rs| rs_status_current(rs)) {
        return Ok(Some(new_rs));
    }
    let plan = scale_down_plan(replicas, unavailable, &new_rs, old);
    for (rs, to) in plan {
        s.scale(&rs, to).await?;
    }
    Ok(Some(new_rs))
}

/// Replicas the new ReplicaSet may have: up to `replicas`, keeping all pods
/// within `replicas + surge` (Kubernetes' `NewRSNewReplicas`).
pub fn new_replicas(replicas: i32, surge: i32, old_total: i32, new_current: i32) -> i32 {
    let max_total = replicas + surge;
    let current_total = old_total + new_current;
    if current_total >= max_total {
        return new_current;
    }
    let up = (max_total - current_total).min(replicas - new_current).max(0);
    new_current + up
}

/// Scale-downs of old ReplicaSets keeping `replicas - unavailable` pods
/// available: first their unhealthy pods, then available ones, oldest first
/// (Kubernetes' `reconcileOldReplicaSets`). `old` must be sorted oldest first.
pub fn scale_down_plan(
    replicas: i32,
    unavailable: i32,
    new_rs: &ReplicaSet,
    old: &[Arc<ReplicaSet>],
) -> Vec<(ReplicaSet, i32)> {
    let mut scaled: Vec<(ReplicaSet, i32, i32)> = old
        .iter()
        .map(|rs| ((**rs).clone(), rs_replicas(rs), rs_available(rs)))
        .collect();
    let old_total: i32 = scaled.iter().map(|(_, r, _)| r).sum();
    let all_total = old_total + rs_replicas(new_rs);
    let min_available = replicas - unavailable;
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = all_total - min_available - new_unavailable;
    if old_total == 0 || max_scaled_down <= 0 {
        return vec![];
    }
    // Unhealthy old pods first: removing them costs no availability.
    let mut cleaned = 0;
    for (_, r, avail) in scaled.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if *r == 0 || *r == *avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(*r - *avail);
        *r -= down;
        cleaned += down;
    }
    // Then available ones, as far as availability allows.
    let available: i32 = scaled.iter().map(|(_, r, a)| (*a).min(*r)).sum::<i32>() + rs_available(new_rs);
    if available > min_available {
        let mut remaining = available - min_available;
        for (_, r, _) in scaled.iter_mut() {
            if remaining <= 0 {
                break;
            }
            let down = (*r).min(remaining);
            *r -= down;
            remaining -= down;
        }
    }
    scaled
        .into_iter()
        .filter(|(rs, r, _)| *r != rs_replicas(rs))
        .map(|(rs, r, _)| (rs, r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rs(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            },
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn new_replicas_respect_surge() {
        assert_eq!(new_replicas(3, 1, 3, 0), 1);
        assert_eq!(new_replicas(3, 1, 3, 1), 1);
        assert_eq!(new_replicas(3, 1, 2, 1), 2);
        assert_eq!(new_replicas(10, 3, 10, 0), 3);
        assert_eq!(new_replicas(3, 0, 0, 0), 3);
    }

    #[test]
    fn max_unavailable_zero_scales_down_only_what_new_pods_made_available() {
        let old = vec![Arc::new(rs("old", 3, 3))];
        // New pod exists but is not available: nothing may go.
        assert!(scale_down_plan(3, 0, &rs("new", 1, 0), &old).is_empty());
        // New pod available: one old pod may go.
        let plan = scale_down_plan(3, 0, &rs("new", 1, 1), &old);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].1, 2);
    }

    #[test]
    fn unhealthy_old_pods_go_first() {
        let old = vec![Arc::new(rs("older", 2, 0)), Arc::new(rs("old", 3, 3))];
        let plan = scale_down_plan(3, 1, &rs("new", 0, 0), &old);
        let names: Vec<_> = plan
            .iter()
            .map(|(r, n)| (r.metadata.name.clone().unwrap(), *n))
            .collect();
        assert_eq!(names, [("older".to_string(), 0), ("old".to_string(), 2)]);
    }
}
