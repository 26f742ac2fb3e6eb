//! The pod loop: watch this node's Pods, relist the runtime, run pod workers.
//!
//! A reflector keeps the Pods bound to this node (`spec.nodeName` field
//! selector) in memory. Every second, and at once when a Pod changes, the
//! loop relists the runtime ([`Snapshot`]) and starts a worker for every Pod
//! that has none running; a pod never has two workers at once. Runtime
//! objects whose Pod is gone are killed (only after the first full list of
//! Pods, so a restarted noded adopts its running pods instead of killing
//! them).

use crate::pleg::Snapshot;
use crate::pod_worker::PodWorkers;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the runtime is relisted (the longest a dead container goes unnoticed).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// Orphans get this long to stop (their Pod, and so its grace period, is gone).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Run the pod loop forever.
pub async fn run(workers: Arc<PodWorkers>) {
    let ctx = workers.context();
    let node = ctx.node_name.clone();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store::<Pod>();
    let changed = Arc::new(tokio::sync::Notify::new());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = reflector(writer, watcher(pods, config)).default_backoff().applied_objects();
    {
        let changed = changed.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => changed.notify_one(),
                    Err(err) => tracing::warn!(%err, "pod watch error (retrying)"),
                }
            }
        });
    }
    if reader.wait_until_ready().await.is_err() {
        tracing::error!("pod reflector stopped before its first list");
        return;
    }
    tracing::info!(node, "pod loop started");
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(RELIST_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = changed.notified() => {}
        }
        let snapshot = match Snapshot::relist(&ctx.cri).await {
            Ok(snapshot) => Arc::new(snapshot),
            Err(err) => {
                tracing::warn!(%err, "relist failed");
                continue;
            }
        };
        let pods: Vec<Arc<Pod>> = reader
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
            .collect();
        let wanted: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
                continue;
            }
            let (workers, snapshot, in_flight) = (workers.clone(), snapshot.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Err(err) = workers.sync_pod(&pod, &snapshot).await {
                    tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or(""), %err, "pod sync failed (retrying)");
                }
                in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            });
        }
        for uid in snapshot.pod_uids().into_iter().filter(|uid| !wanted.contains(uid)) {
            if !in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.clone()) {
                continue;
            }
            let (workers, snapshot, in_flight) = (workers.clone(), snapshot.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Err(err) = workers.kill_pod(&uid, &snapshot, ORPHAN_GRACE).await {
                    tracing::warn!(uid, %err, "removing an orphaned pod failed (retrying)");
                }
                in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
            });
        }
        workers.forget_gone_containers(&snapshot).await;
    }
}
