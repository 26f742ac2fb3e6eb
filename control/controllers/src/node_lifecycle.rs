//! Node lifecycle: notices Nodes that stopped heartbeating and evicts their pods.
//!
//! Every `--node-monitor-period` each Node's Lease (namespace
//! `kube-node-lease`, named like the Node) is checked. A Lease not renewed for
//! `--node-monitor-grace-period` (measured on this process's clock from when
//! the renewal was *observed*, so clock skew does not matter) makes the Node
//! Ready=Unknown, taints it `node.kubernetes.io/unreachable:NoExecute` and
//! marks its pods not ready. Pods on a NoExecute-tainted node are deleted
//! once their toleration runs out — their own `tolerationSeconds`, or
//! `--default-eviction-toleration-seconds` when they do not tolerate the taint
//! — and their controllers replace them. A renewed Lease lifts the taint.
//!
//! Taint by condition, as Kubernetes' node lifecycle controller: a Node whose
//! MemoryPressure, DiskPressure or PIDPressure condition is True carries
//! `node.kubernetes.io/memory-pressure` (`disk-pressure`, `pid-pressure`)
//! `:NoSchedule`, removed when the condition is no longer True, so the
//! scheduler's TaintToleration keeps new pods off (DaemonSet pods tolerate
//! them). This is the only place those taints are written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::{runner, Context, Error};

/// Taint of a Node whose heartbeats stopped.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Taint of a Node that reports not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// The NoSchedule taint of each pressure condition while it is True.
pub const CONDITION_TAINTS: &[(&str, &str)] = &[
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];

/// The node's taints with the condition taints brought in line with its
/// conditions (added with `now`, others kept as they are); `None` when
/// nothing changes.
pub fn condition_taints(node: &Node, now: &Time) -> Option<Vec<Taint>> {
    let current = taints(node);
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(kind, _)| conditions.iter().any(|c| c.type_ == *kind && c.status == "True"))
        .map(|(_, key)| *key)
        .collect();
    let managed = |t: &Taint| t.effect == "NoSchedule" && CONDITION_TAINTS.iter().any(|(_, key)| t.key == *key);
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for key in &wanted {
        if !next.iter().any(|t| t.key == *key && t.effect == "NoSchedule") {
            next.push(Taint {
                key: (*key).into(),
                effect: "NoSchedule".into(),
                time_added: Some(now.clone()),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

/// Apply [`condition_taints`] (with the Node's resourceVersion as precondition:
/// a conflict is retried on the next pass).
async fn taint_by_conditions(nodes_api: &Api<Node>, node: &Node) -> Result<(), Error> {
    let Some(next) = condition_taints(node, &Time(Timestamp::now())) else {
        return Ok(());
    };
    let name = node.name_any();
    tracing::info!(node = %name, taints = ?next.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "node conditions changed its taints");
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": next},
    });
    match nodes_api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// When each Node's heartbeat was last seen to change.
#[derive(Default)]
struct Health {
    /// node -> (last heartbeat value seen, when we saw it change).
    seen: HashMap<String, (String, Instant)>,
}

/// Subscribes the node lifecycle controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let period = ctx.config.node_monitor_period;
    let health = Arc::new(std::sync::Mutex::new(Health::default()));
    runner::every("node-lifecycle", period, move || {
        let ctx = ctx.clone();
        let health = health.clone();
        async move { monitor(&ctx, &health).await }
    })
    .boxed()
}

/// The heartbeat marker of a Node: its Lease renewTime, else its Ready
/// condition's lastHeartbeatTime.
fn heartbeat(ctx: &Context, node: &Node) -> Option<String> {
    let lease = ctx
        .informers
        .leases
        .store()
        .get(&ObjectRef::new(&node.name_any()).within("kube-node-lease"));
    if let Some(renew) = lease
        .as_ref()
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
    {
        return Some(format!("lease:{}", renew.0));
    }
    ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| format!("status:{}", t.0))
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

async fn monitor(ctx: &Context, health: &std::sync::Mutex<Health>) -> Result<(), Error> {
    let grace = ctx.config.node_monitor_grace_period;
    let nodes = ctx.informers.nodes.store().state();
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    for node in &nodes {
        let name = node.name_any();
        let beat = heartbeat(ctx, node).unwrap_or_default();
        let stale = {
            let mut h = health.lock().expect("health lock");
            let entry = h
                .seen
                .entry(name.clone())
                .or_insert_with(|| (beat.clone(), Instant::now()));
            if entry.0 != beat {
                *entry = (beat, Instant::now());
            }
            entry.1.elapsed() > grace
        };
        let tainted = taints(node)
            .iter()
            .any(|t| t.key == UNREACHABLE_TAINT && t.effect == "NoExecute");
        let now = Time(Timestamp::now());
        if stale && !tainted {
            tracing::info!(node = %name, "node stopped heartbeating; marking unreachable");
            let mut conditions = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            for c in conditions.iter_mut() {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
            }
            if !conditions.iter().any(|c| c.type_ == "Ready") {
                conditions.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(now.clone()),
                    last_heartbeat_time: None,
                });
            }
            nodes_api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": {"conditions": conditions}})),
                )
                .await?;
            let mut t = taints(node);
            t.push(Taint {
                key: UNREACHABLE_TAINT.into(),
                effect: "NoExecute".into(),
                time_added: Some(now.clone()),
                value: None,
            });
            nodes_api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"taints": t}})),
                )
                .await?;
            ctx.recorder.record(
                &**node,
                EventType::Normal,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            mark_pods_not_ready(ctx, &name).await?;
        } else if !stale && tainted {
            tracing::info!(node = %name, "node heartbeats again; lifting unreachable taint");
            let t: Vec<Taint> = taints(node)
                .into_iter()
                .filter(|t| t.key != UNREACHABLE_TAINT)
                .collect();
            nodes_api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"taints": t}})),
                )
                .await?;
            if ready_condition(node).and_then(|c| c.reason.as_deref()) == Some("NodeStatusUnknown") {
                let mut conditions = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                for c in conditions
                    .iter_mut()
                    .filter(|c| c.reason.as_deref() == Some("NodeStatusUnknown"))
                {
                    c.status = if c.type_ == "Ready" { "True" } else { "False" }.into();
                    c.reason = Some("NodeHeartbeatResumed".into());
                    c.message = Some("Node lease is renewed again.".into());
                    c.last_transition_time = Some(now.clone());
                }
                nodes_api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"conditions": conditions}})),
                    )
                    .await?;
            }
            ctx.recorder.record(
                &**node,
                EventType::Normal,
                "NodeReady",
                format!("Node {name} status is now: NodeReady"),
            );
        }
        if !stale {
            taint_by_conditions(&nodes_api, node).await?;
        }
        evict_pods(ctx, node).await?;
    }
    // Forget nodes that are gone.
    let names: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    health
        .lock()
        .expect("health lock")
        .seen
        .retain(|n, _| names.contains(n));
    Ok(())
}

fn pods_on(ctx: &Context, node: &str) -> Vec<Arc<crate::cached_pod::CachedPod>> {
    ctx.informers
        .pods
        .store()
        .state()
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .collect()
}

async fn mark_pods_not_ready(ctx: &Context, node: &str) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    for pod in pods_on(ctx, node) {
        if !crate::pods::is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for c in conditions.iter_mut().filter(|c| c.type_ == "Ready") {
            c.status = "False".into();
            c.reason = Some("NodeNotReady".into());
            c.last_transition_time = Some(now.clone());
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"conditions": conditions}})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// How long a pod may stay on a node with `taint`: `None` forever, else seconds.
pub fn toleration_seconds(tolerations: &[Toleration], taint: &Taint, default_seconds: i64) -> Option<i64> {
    let matching = tolerations
        .iter()
        .find(|t| sluice_kube::tolerations::tolerates(t, taint));
    match matching {
        None => Some(default_seconds),
        Some(t) => t.toleration_seconds.map(|s| s.max(0)),
    }
}

async fn evict_pods(ctx: &Context, node: &Node) -> Result<(), Error> {
    let no_execute: Vec<Taint> = taints(node)
        .into_iter()
        .filter(|t| t.effect == "NoExecute" && (t.key == UNREACHABLE_TAINT || t.key == NOT_READY_TAINT))
        .collect();
    if no_execute.is_empty() {
        return Ok(());
    }
    let now_ms = Timestamp::now().as_millisecond();
    for pod in pods_on(ctx, &node.name_any()) {
        if pod.metadata.deletion_timestamp.is_some() || crate::pods::is_terminated(&pod) {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let due = no_execute.iter().any(|taint| {
            let Some(secs) = toleration_seconds(&tolerations, taint, ctx.config.default_eviction_toleration_seconds)
            else {
                return false;
            };
            let added = taint
                .time_added
                .as_ref()
                .map(|t| t.0.as_millisecond())
                .unwrap_or(now_ms);
            now_ms >= added + secs * 1000
        });
        if !due {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        tracing::info!(pod = %pod.name_any(), node = %node.name_any(), "evicting pod from unreachable node");
        ctx.recorder.record(
            &*pod,
            EventType::Normal,
            "TaintManagerEviction",
            format!(
                "Marking for deletion Pod {}/{}",
                pod.namespace().unwrap_or_default(),
                pod.name_any()
            ),
        );
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_conditions_add_and_remove_their_noschedule_taints_only() {
        let node = |conditions: serde_json::Value, taints: serde_json::Value| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n1"},
                "spec": {"taints": taints},
                "status": {"conditions": conditions},
            }))
            .unwrap()
        };
        let now = Time(Timestamp::from_second(1_000).unwrap());
        let pressed = node(
            json!([{"type": "MemoryPressure", "status": "True"}, {"type": "DiskPressure", "status": "False"}]),
            json!([{"key": "user", "effect": "NoSchedule"}]),
        );
        let next = condition_taints(&pressed, &now).unwrap();
        let keys: Vec<&str> = next.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["user", "node.kubernetes.io/memory-pressure"]);
        assert_eq!(next[1].time_added, Some(now.clone()));
        let already = node(
            json!([{"type": "MemoryPressure", "status": "True"}]),
            serde_json::to_value(&next).unwrap(),
        );
        assert_eq!(condition_taints(&already, &now), None, "nothing to do");
        let relieved = node(
            json!([{"type": "MemoryPressure", "status": "False"}]),
            serde_json::to_value(&next).unwrap(),
        );
        let keys: Vec<String> = condition_taints(&relieved, &now)
            .unwrap()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(keys, ["user"]);
    }

    fn taint() -> Taint {
        Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }
    }

    #[test]
    fn default_applies_only_without_a_matching_toleration() {
        assert_eq!(toleration_seconds(&[], &taint(), 300), Some(300));
        let own = Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        };
        assert_eq!(toleration_seconds(std::slice::from_ref(&own), &taint(), 300), Some(5));
        let forever = Toleration {
            toleration_seconds: None,
            ..own
        };
        assert_eq!(toleration_seconds(&[forever], &taint(), 300), None);
        let other = Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(toleration_seconds(&[other], &taint(), 300), Some(300));
    }
}
