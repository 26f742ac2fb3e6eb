//! Recreate: scale every old ReplicaSet to zero, wait until their pods are
//! gone, then bring the new ReplicaSet up to `replicas`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;

use super::{rs_replicas, Sync};
use crate::pods::controller_of;
use crate::Error;

/// One Recreate step; returns the new ReplicaSet (if it exists yet).
pub async fn sync(
    s: &mut Sync<'_>,
    new_rs: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
) -> Result<Option<ReplicaSet>, Error> {
    let mut scaled_down = false;
    for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
        s.scale(rs, 0).await?;
        scaled_down = true;
    }
    if scaled_down || old_pods_running(s, old) {
        return s.new_replicaset(new_rs, old, None).await;
    }
    let Some(new_rs) = s.new_replicaset(new_rs, old, Some(s.replicas())).await? else {
        return Ok(None);
    };
    if rs_replicas(&new_rs) != s.replicas() {
        return Ok(Some(s.scale(&new_rs, s.replicas()).await?));
    }
    Ok(Some(new_rs))
}

/// Whether any pod of an old ReplicaSet still exists and has not terminated.
fn old_pods_running(s: &Sync<'_>, old: &[Arc<ReplicaSet>]) -> bool {
    let uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
    let ns = s.d.namespace();
    s.ctx.informers.pods.store().state().iter().any(|p| {
        p.namespace() == ns
            && !crate::pods::is_terminated(p)
            && controller_of(&**p).is_some_and(|r| uids.contains(&r.uid))
    })
}
