//! Revision history: keeps at most `revisionHistoryLimit` (default 10) fully
//! scaled-down old ReplicaSets, deleting the lowest revisions first. The kept
//! ones are what `kubectl rollout history/undo` read.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::DeleteParams;
use kube::ResourceExt;

use super::{revision, rs_replicas, rs_status_current, Sync};
use crate::Error;

/// Deletes old ReplicaSets beyond the history limit.
pub async fn cleanup(s: &Sync<'_>, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
    let limit = Some(&s.d.spec)
        .and_then(|sp| sp.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    for rs in to_delete(old, limit) {
        match s.rs_api.delete(&rs.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(st)) if st.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The old ReplicaSets to delete: idle ones beyond `limit`, lowest revision first.
pub fn to_delete(old: &[Arc<ReplicaSet>], limit: usize) -> Vec<Arc<ReplicaSet>> {
    let mut idle: Vec<Arc<ReplicaSet>> = old
        .iter()
        .filter(|rs| {
            rs_replicas(rs) == 0
                && rs.status.as_ref().map(|st| st.replicas).unwrap_or(0) == 0
                && rs_status_current(rs)
                && rs.metadata.deletion_timestamp.is_none()
        })
        .cloned()
        .collect();
    if idle.len() <= limit {
        return vec![];
    }
    idle.sort_by_key(|rs| revision(rs));
    let excess = idle.len() - limit;
    idle.truncate(excess);
    idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn rs(rev: i64, replicas: i32) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("rs-{rev}")),
                annotations: Some(BTreeMap::from([(super::super::REVISION.to_string(), rev.to_string())])),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            },
            status: Some(ReplicaSetStatus {
                replicas,
                ..Default::default()
            }),
        })
    }

    #[test]
    fn deletes_lowest_idle_revisions_beyond_limit() {
        let old = vec![rs(3, 0), rs(1, 0), rs(2, 0), rs(4, 2)];
        let names: Vec<_> = to_delete(&old, 1).iter().map(|r| r.name_any()).collect();
        assert_eq!(names, ["rs-1", "rs-2"]);
        assert!(to_delete(&old, 3).is_empty());
    }
}
