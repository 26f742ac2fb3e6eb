//! The node and pod informers: list+watch through the API server (kube-runtime's
//! watcher, with back-off and resume) feeding the [`Cache`](crate::cache::Cache) and the
//! [`SchedulingQueue`](crate::queue::SchedulingQueue).
//!
//! Handlers only update the cache and enqueue keys; they never call the API server.
//! `managedFields` are dropped on arrival to keep memory small at 5,000 nodes.

use crate::cache::{pending_copy, Cache};
use crate::framework::plugins::default_preemption::Budget;
use crate::framework::selector::Selector;
use crate::queue::{PodKey, SchedulingQueue};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tracing::{info, warn};

/// Shared handles the informers update.
#[derive(Clone)]
pub struct InformerTargets {
    /// The scheduler cache.
    pub cache: Arc<Mutex<Cache>>,
    /// The scheduling queue.
    pub queue: Arc<SchedulingQueue>,
    /// Only pods with this `spec.schedulerName` are queued.
    pub scheduler_name: String,
}

impl InformerTargets {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handle a node added or changed.
    pub fn on_node(&self, mut node: Node) {
        node.metadata.managed_fields = None;
        let relevant = self.cache().upsert_node(Arc::new(node));
        if relevant {
            self.queue.move_all_unschedulable(Instant::now());
        }
    }

    /// Handle a pod added or changed.
    pub fn on_pod(&self, mut pod: Pod) {
        pod.metadata.managed_fields = None;
        let key = PodKey::from_obj(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let bound = spec.and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded") | Some("Failed"));
        if bound {
            self.queue.remove(&key);
            if terminal {
                if self.cache().remove_pod(&uid) {
                    self.queue.move_all_unschedulable(Instant::now());
                }
            } else if self.cache().add_or_update_bound_pod(&pod) {
                // A new or relabeled pod may satisfy a pending pod's affinity.
                self.queue.move_all_unschedulable(Instant::now());
            }
            return;
        }
        let ours = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
            == self.scheduler_name;
        // A pod with scheduling gates waits outside the queue until they are
        // all removed (kube-scheduler's SchedulingGates PreEnqueue plugin);
        // that update brings it back here.
        let gated = spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if terminal || pod.metadata.deletion_timestamp.is_some() || !ours {
            self.queue.remove(&key);
        } else if gated {
            self.queue.gate(key);
        } else if !self.cache().contains_pod(&uid) {
            self.queue.add_or_update(key, &pending_copy(pod));
        }
    }

    /// Handle a pod deleted.
    pub fn on_pod_deleted(&self, pod: &Pod) {
        self.queue.remove(&PodKey::from_obj(pod));
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if self.cache().remove_pod(uid) {
            self.queue.move_all_unschedulable(Instant::now());
        }
    }
}

/// Watch nodes until the process ends; `synced` turns true after the first full list.
pub async fn run_node_informer(client: Client, targets: InformerTargets, synced: watch::Sender<bool>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(node)) => targets.on_node(node),
            Ok(Event::Delete(node)) => targets
                .cache()
                .remove_node(node.metadata.name.as_deref().unwrap_or_default()),
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(node)) => {
                if let Some(l) = listed.as_mut() {
                    l.insert(node.metadata.name.clone().unwrap_or_default());
                }
                targets.on_node(node);
            }
            Ok(Event::InitDone) => {
                if let Some(l) = listed.take() {
                    info!(nodes = l.len(), "node informer synced");
                    targets.cache().retain_nodes(&l);
                }
                targets.queue.move_all_unschedulable(Instant::now());
                let _ = synced.send(true);
            }
            Err(e) => warn!(error = %e, "node watch failed; retrying"),
        }
    }
}

/// Watch pods until the process ends; `synced` turns true after the first full list.
pub async fn run_pod_informer(client: Client, targets: InformerTargets, synced: watch::Sender<bool>) {
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod)) => targets.on_pod(pod),
            Ok(Event::Delete(pod)) => targets.on_pod_deleted(&pod),
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let Some(l) = listed.as_mut() {
                    l.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                targets.on_pod(pod);
            }
            Ok(Event::InitDone) => {
                if let Some(l) = listed.take() {
                    info!(pods = l.len(), "pod informer synced");
                    if targets.cache().retain_bound_pods(&l) {
                        targets.queue.move_all_unschedulable(Instant::now());
                    }
                }
                let _ = synced.send(true);
            }
            Err(e) => warn!(error = %e, "pod watch failed; retrying"),
        }
    }
}

/// Watch namespaces (their labels, for pod affinity terms' `namespaceSelector`) until
/// the process ends. Scheduling does not wait for it: until it syncs, terms with a
/// non-empty `namespaceSelector` see only the namespaces already known.
pub async fn run_namespace_informer(client: Client, targets: InformerTargets) {
    let api: Api<Namespace> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(ns)) | Ok(Event::InitApply(ns)) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let changed = targets
                    .cache()
                    .upsert_namespace(&name, ns.metadata.labels.unwrap_or_default());
                if changed {
                    targets.queue.move_all_unschedulable(Instant::now());
                }
            }
            Ok(Event::Delete(ns)) => targets
                .cache()
                .remove_namespace(ns.metadata.name.as_deref().unwrap_or_default()),
            Ok(Event::Init) | Ok(Event::InitDone) => {}
            Err(e) => warn!(error = %e, "namespace watch failed; retrying"),
        }
    }
}

/// Watch Services, ReplicationControllers, ReplicaSets and StatefulSets (their selectors, for the default
/// topology spread constraints of the pods they select or own) and
/// PodDisruptionBudgets (for preemption) until the process ends.
pub async fn run_selector_informers(client: Client, targets: InformerTargets) {
    let services = {
        let targets = targets.clone();
        watch_kind::<Service>(client.clone(), move |obj, present| {
            let (ns, name) = (
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default(),
            );
            let selector = obj.spec.as_ref().and_then(|s| s.selector.clone()).filter(|_| present);
            targets.cache().upsert_service(ns, name, selector);
        })
    };
    let replicasets = {
        let targets = targets.clone();
        watch_kind::<ReplicaSet>(client.clone(), move |obj, present| {
            let (ns, name) = (
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default(),
            );
            let selector = Some(obj.spec.selector.clone()).filter(|_| present);
            targets.cache().upsert_controller("ReplicaSet", ns, name, selector);
        })
    };
    let replicationcontrollers = {
        let targets = targets.clone();
        watch_kind::<ReplicationController>(client.clone(), move |obj, present| {
            let (ns, name) = (
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default(),
            );
            let selector = obj
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .filter(|_| present)
                .map(|m| LabelSelector {
                    match_labels: Some(m),
                    match_expressions: None,
                });
            targets
                .cache()
                .upsert_controller("ReplicationController", ns, name, selector);
        })
    };
    let budgets = {
        let targets = targets.clone();
        watch_kind::<PodDisruptionBudget>(client.clone(), move |obj, present| {
            let (ns, name) = (
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default(),
            );
            let budget = present.then(|| budget_of(obj));
            targets.cache().upsert_budget(ns, name, budget);
        })
    };
    let statefulsets = watch_kind::<StatefulSet>(client, move |obj, present| {
        let (ns, name) = (
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            obj.metadata.name.as_deref().unwrap_or_default(),
        );
        let selector = Some(obj.spec.selector.clone()).filter(|_| present);
        targets.cache().upsert_controller("StatefulSet", ns, name, selector);
    });
    futures::join!(services, replicationcontrollers, replicasets, statefulsets, budgets);
}

/// What preemption reads of a PodDisruptionBudget.
fn budget_of(pdb: &PodDisruptionBudget) -> Budget {
    let status = pdb.status.as_ref();
    Budget {
        namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
        selector: pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .map_or_else(Selector::nothing, |s| Selector::from_label_selector(Some(s))),
        disruptions_allowed: status.and_then(|s| s.disruptions_allowed).unwrap_or(0),
        disrupted: status
            .and_then(|s| s.disrupted_pods.as_ref())
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

/// Watch one kind (of any scope, across namespaces), calling
/// `update(obj, present)` for every add/change (`true`) and delete.
async fn watch_kind<K>(client: Client, update: impl Fn(&K, bool))
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(obj)) | Ok(Event::InitApply(obj)) => update(&obj, true),
            Ok(Event::Delete(obj)) => update(&obj, false),
            Ok(Event::Init) | Ok(Event::InitDone) => {}
            Err(e) => warn!(kind = K::kind(&()).as_ref(), error = %e, "watch failed; retrying"),
        }
    }
}

/// Watch PersistentVolumeClaims, PersistentVolumes and StorageClasses (for
/// VolumeBinding) until the process ends; any change may let a pending pod
/// fit (a claim created or bound, a volume freed, a class added).
pub async fn run_volume_informers(client: Client, targets: InformerTargets) {
    let claims = {
        let targets = targets.clone();
        watch_kind::<PersistentVolumeClaim>(client.clone(), move |obj, present| {
            targets.cache().volumes.upsert_claim(obj, present);
            targets.queue.move_all_unschedulable(Instant::now());
        })
    };
    let volumes = {
        let targets = targets.clone();
        watch_kind::<PersistentVolume>(client.clone(), move |obj, present| {
            targets.cache().volumes.upsert_volume(obj, present);
            targets.queue.move_all_unschedulable(Instant::now());
        })
    };
    let classes = watch_kind::<StorageClass>(client, move |obj, present| {
        targets.cache().volumes.upsert_class(obj, present);
        targets.queue.move_all_unschedulable(Instant::now());
    });
    futures::join!(claims, volumes, classes);
}
