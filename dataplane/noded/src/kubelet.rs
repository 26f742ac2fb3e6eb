//! The pod loop: watch this node's Pods, relist the runtime, run pod workers.
//!
//! A reflector keeps the Pods bound to this node (`spec.nodeName` field
//! selector) in memory. When Pods change (watch events), the loop relists
//! the runtime ([`Snapshot`]) at once and syncs just those Pods, so a new
//! pod starts without waiting for a tick (a change of the status alone,
//! such as the node's own status write, waits for the tick: [`SyncKeys`];
//! a pod whose worker just started a container is synced again at once, so
//! that an init container that already finished lets the next one start);
//! every second it relists and syncs
//! every Pod (dead containers, probes, back-offs). A pod never has two
//! workers at once: a change that arrives while its worker runs is synced
//! again as soon as that worker ends. Runtime objects whose Pod is gone are
//! killed (only after the first full list of Pods, so a restarted noded
//! adopts its running pods instead of killing them).

use crate::lock;
use crate::pleg::Snapshot;
use crate::pod_worker::PodWorkers;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the runtime is relisted (the longest a dead container goes unnoticed).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// Orphans get this long to stop (their Pod, and so its grace period, is gone).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Run the pod loop forever (with the node-pressure `eviction` manager beside it, given one).
pub async fn run(workers: Arc<PodWorkers>, eviction: Option<crate::eviction::Manager>) {
    let ctx = workers.context();
    let node = ctx.node_name.clone();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store::<Pod>();
    let changed = Arc::new(tokio::sync::Notify::new());
    let dirty: Arc<Mutex<HashSet<String>>> = Arc::default();
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = reflector(writer, watcher(pods, config))
        .default_backoff()
        .applied_objects();
    {
        let (changed, dirty, reader) = (changed.clone(), dirty.clone(), reader.clone());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut seen = SyncKeys::default();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(pod) => {
                        if !seen.changed(&pod, &reader) {
                            continue;
                        }
                        lock(&dirty).insert(pod.metadata.uid.clone().unwrap_or_default());
                        changed.notify_one();
                    }
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
    if let Some(manager) = eviction {
        tokio::spawn(manager.run(reader.clone(), workers.clone()));
    }
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tick = tokio::time::interval(RELIST_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = tokio::select! {
            _ = tick.tick() => true,
            _ = changed.notified() => false,
        };
        let relist_started = std::time::Instant::now();
        let snapshot = match Snapshot::relist(&ctx.cri).await {
            Ok(snapshot) => {
                crate::kubelet_metrics::metrics().relisted(&snapshot, relist_started);
                Arc::new(snapshot)
            }
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
        crate::kubelet_metrics::metrics().pods_seen(pods.iter().map(|p| &**p));
        let wanted: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let changed_now: HashSet<String> = std::mem::take(&mut *lock(&dirty));
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if !full && !changed_now.contains(&uid) {
                continue;
            }
            if !lock(&in_flight).insert(uid.clone()) {
                // Its worker is busy: sync again once it is done.
                if changed_now.contains(&uid) {
                    lock(&dirty).insert(uid);
                }
                continue;
            }
            let (workers, snapshot, in_flight, dirty, changed) = (
                workers.clone(),
                snapshot.clone(),
                in_flight.clone(),
                dirty.clone(),
                changed.clone(),
            );
            tokio::spawn(async move {
                if let Err(err) = workers.sync_pod(&pod, &snapshot).await {
                    tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or(""), %err, "pod sync failed (retrying)");
                }
                lock(&in_flight).remove(&uid);
                if workers.take_started(&uid) {
                    lock(&dirty).insert(uid.clone());
                }
                if lock(&dirty).contains(&uid) {
                    changed.notify_one();
                }
            });
        }
        if !full {
            continue;
        }
        for uid in snapshot.pod_uids().into_iter().filter(|uid| !wanted.contains(uid)) {
            if !lock(&in_flight).insert(uid.clone()) {
                continue;
            }
            let (workers, snapshot, in_flight) = (workers.clone(), snapshot.clone(), in_flight.clone());
            tokio::spawn(async move {
                if let Err(err) = workers.kill_pod(&uid, None, &snapshot, ORPHAN_GRACE).await {
                    tracing::warn!(uid, %err, "removing an orphaned pod failed (retrying)");
                }
                lock(&in_flight).remove(&uid);
            });
        }
        workers.forget_gone_containers(&snapshot).await;
    }
}

/// What of each Pod a worker acts on, so that a watch event that changes
/// only the status (nearly always the status this node just posted) does
/// not sync the pod again at once: as the kubelet's pod config, which syncs
/// on spec and metadata changes and leaves status-only differences to its
/// periodic work (here the next tick, within [`RELIST_PERIOD`]). In a burst
/// of pod starts each pod's own status writes would otherwise each cost a
/// runtime relist and a sync.
#[derive(Default)]
struct SyncKeys(HashMap<String, u64>);

impl SyncKeys {
    /// Whether `pod` differs from its last version in more than its status
    /// (a pod seen for the first time does); forgets pods the store no longer has.
    fn changed(&mut self, pod: &Pod, store: &reflector::Store<Pod>) -> bool {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = sync_key(pod);
        let changed = self.0.insert(uid, key) != Some(key);
        if self.0.len() > 2 * store.len() + 64 {
            let present: HashSet<String> = store.state().iter().filter_map(|p| p.metadata.uid.clone()).collect();
            self.0.retain(|uid, _| present.contains(uid));
        }
        changed
    }
}

/// A hash of the Pod without its status and the bookkeeping every write changes.
fn sync_key(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut bare = Pod {
        metadata: pod.metadata.clone(),
        spec: pod.spec.clone(),
        status: None,
    };
    bare.metadata.resource_version = None;
    bare.metadata.managed_fields = None;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&bare).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(rv: &str, phase: &str, label: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "uid": "u1", "resourceVersion": rv, "labels": {"app": label},
                         "managedFields": [{"manager": "noded", "operation": "Update"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn a_status_write_is_not_a_change_to_sync_at_once() {
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&watcher::Event::Apply(pod("1", "Pending", "web")));
        let mut keys = SyncKeys::default();
        assert!(keys.changed(&pod("1", "Pending", "web"), &store), "first sight");
        assert!(
            !keys.changed(&pod("2", "Running", "web"), &store),
            "only the status and resourceVersion changed"
        );
        assert!(keys.changed(&pod("3", "Running", "api"), &store), "a label changed");
        let mut deleted = pod("4", "Running", "api");
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(keys.changed(&deleted, &store), "graceful deletion began");
    }
}
