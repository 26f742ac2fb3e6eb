//! Pod garbage collector: removes pods nothing else will.
//!
//! Every `--pod-gc-period`: pods bound to Nodes that no longer exist
//! (confirmed with a live GET) are force-deleted; unscheduled pods already
//! being deleted are force-deleted; and terminated pods (Succeeded/Failed)
//! beyond `--terminated-pod-gc-threshold` are deleted oldest first.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

use crate::cached_pod::CachedPod;
use crate::{pods, runner, Context, Error};

/// Subscribes the pod GC and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let period = ctx.config.pod_gc_period;
    runner::every("pod-gc", period, move || {
        let ctx = ctx.clone();
        async move { pass(&ctx).await }
    })
    .boxed()
}

/// Terminated pods to delete so that at most `threshold` remain: oldest first.
pub fn excess_terminated(pods: &[Arc<CachedPod>], threshold: usize) -> Vec<Arc<CachedPod>> {
    let mut terminated: Vec<Arc<CachedPod>> = pods
        .iter()
        .filter(|p| pods::is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if terminated.len() <= threshold {
        return vec![];
    }
    terminated.sort_by_key(|p| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or(0)
    });
    let excess = terminated.len() - threshold;
    terminated.truncate(excess);
    terminated
}

async fn pass(ctx: &Context) -> Result<(), Error> {
    let all = ctx.informers.pods.store().state();
    let nodes: HashSet<String> = ctx
        .informers
        .nodes
        .store()
        .state()
        .iter()
        .map(|n| n.name_any())
        .collect();
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let mut checked: HashSet<String> = HashSet::new();
    for pod in &all {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let orphaned = if node.is_empty() {
            pod.metadata.deletion_timestamp.is_some()
        } else if nodes.contains(&node) {
            false
        } else if checked.contains(&node) {
            true
        } else if nodes_api.get_opt(&node).await?.is_none() {
            checked.insert(node.clone());
            true
        } else {
            false
        };
        if orphaned {
            tracing::info!(pod = %pods::key_of(&**pod), node = %node, "deleting orphaned pod");
            force_delete(ctx, pod).await?;
        }
    }
    for pod in excess_terminated(&all, ctx.config.terminated_pod_gc_threshold) {
        tracing::info!(pod = %pods::key_of(&*pod), "deleting terminated pod beyond the threshold");
        force_delete(ctx, &pod).await?;
    }
    Ok(())
}

async fn force_delete(ctx: &Context, pod: &CachedPod) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    match api
        .delete(
            &pod.name_any(),
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, phase: &str, created: i64) -> Arc<CachedPod> {
        Arc::new(CachedPod::of(&whole_pod(name, phase, created)))
    }

    fn whole_pod(name: &str, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn oldest_terminated_pods_go_first() {
        let pods = vec![
            pod("new-done", "Succeeded", 300),
            pod("running", "Running", 1),
            pod("old-failed", "Failed", 100),
            pod("mid", "Succeeded", 200),
        ];
        let names: Vec<_> = excess_terminated(&pods, 1).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["old-failed", "mid"]);
        assert!(excess_terminated(&pods, 3).is_empty());
    }
}
