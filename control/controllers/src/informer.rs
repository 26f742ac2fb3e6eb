//! Shared informers: one watch per resource type for the whole manager.
//!
//! An [`Informer`] runs kube-runtime's watcher into a reflector store (the
//! cache every controller reads) and hands each object it sees — added,
//! modified, or deleted, with its last known state — to subscribers, which
//! map it to the keys of the objects they reconcile. Subscribing happens
//! before the informer starts, so the initial list reaches everyone.
//!
//! What a subscriber gets is the store's own `Arc` (a deleted object's last
//! state is the only copy made), through a queue of its own that frees each
//! change once the subscriber has taken it. A ring shared by all (a
//! broadcast channel) would keep its last few thousand changes alive,
//! superseded copies included, however fast everyone reads.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// The subscribers' queues of one informer.
type Subscribers<K> = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>;

/// A cache of one resource type plus a change feed.
pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    subscribers: Subscribers<K>,
    driver: std::sync::Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Creates the informer; nothing is watched until [`Informer::start`].
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (store, mut writer) = reflector::store::<K>();
        let subscribers: Subscribers<K> = Arc::default();
        let tx = subscribers.clone();
        let reader = store.clone();
        let kind = K::kind(&()).to_string();
        let driver = async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        writer.apply_watcher_event(&event);
                        match event {
                            watcher::Event::Apply(obj)
                            | watcher::Event::Delete(obj)
                            | watcher::Event::InitApply(obj) => {
                                tracing::trace!(kind = %kind, name = ?obj.meta().name, rv = ?obj.meta().resource_version, "informer event");
                                // The store's copy; a deleted object's last state is new.
                                let shared = reader
                                    .get(&ObjectRef::from_obj(&obj))
                                    .filter(|s| s.meta().resource_version == obj.meta().resource_version)
                                    .unwrap_or_else(|| Arc::new(obj));
                                tx.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .retain(|sub| sub.send(shared.clone()).is_ok());
                            }
                            watcher::Event::InitDone => {
                                tracing::debug!(kind = %kind, "informer synced");
                            }
                            watcher::Event::Init => {}
                        }
                    }
                    Err(err) => tracing::warn!(kind = %kind, error = %err, "watch failed; retrying"),
                }
            }
        };
        Self {
            store,
            subscribers,
            driver: std::sync::Mutex::new(Some(Box::pin(driver))),
        }
    }

    /// The cache (empty until the first list completes; see [`Informer::wait_synced`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every change from now on, as the object's last known state.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|obj| (obj, rx)) })
    }

    /// Changes mapped to reconcile keys of another type by `mapper`.
    pub fn trigger<T, I>(
        &self,
        mapper: impl Fn(&K) -> I + Send + 'static,
    ) -> impl Stream<Item = ObjectRef<T>> + Send + 'static
    where
        T: Resource<DynamicType = ()> + 'static,
        ObjectRef<T>: Hash + Eq,
        I: IntoIterator<Item = ObjectRef<T>>,
    {
        self.subscribe()
            .flat_map(move |obj| futures::stream::iter(mapper(&obj).into_iter().collect::<Vec<_>>()))
    }

    /// Starts watching (once).
    pub fn start(&self) {
        if let Some(driver) = self.driver.lock().expect("informer lock").take() {
            tokio::spawn(driver);
        }
    }

    /// Waits until the first list has been stored.
    pub async fn wait_synced(&self) {
        let _ = self.store.wait_until_ready().await;
    }
}

/// The informers every controller shares.
pub struct Informers {
    /// All pods.
    pub pods: Informer<Pod>,
    /// All ReplicaSets.
    pub replicasets: Informer<ReplicaSet>,
    /// All ReplicationControllers.
    pub replicationcontrollers: Informer<ReplicationController>,
    /// All Deployments.
    pub deployments: Informer<Deployment>,
    /// All Services.
    pub services: Informer<Service>,
    /// All EndpointSlices.
    pub endpointslices: Informer<EndpointSlice>,
    /// All Nodes.
    pub nodes: Informer<Node>,
    /// Node heartbeat Leases (namespace `kube-node-lease`).
    pub node_leases: Informer<Lease>,
    /// All Namespaces.
    pub namespaces: Informer<Namespace>,
    /// All Jobs.
    pub jobs: Informer<Job>,
    /// All CronJobs.
    pub cronjobs: Informer<CronJob>,
    /// All DaemonSets.
    pub daemonsets: Informer<DaemonSet>,
    /// All StatefulSets.
    pub statefulsets: Informer<StatefulSet>,
    /// All ControllerRevisions (DaemonSet and StatefulSet history).
    pub controllerrevisions: Informer<ControllerRevision>,
    /// All PodDisruptionBudgets.
    pub pdbs: Informer<PodDisruptionBudget>,
}

impl Informers {
    /// Creates (without starting) every informer.
    pub fn new(client: &Client) -> Self {
        let cfg = watcher::Config::default;
        Self {
            pods: Informer::new(Api::all(client.clone()), cfg()),
            replicasets: Informer::new(Api::all(client.clone()), cfg()),
            replicationcontrollers: Informer::new(Api::all(client.clone()), cfg()),
            deployments: Informer::new(Api::all(client.clone()), cfg()),
            services: Informer::new(Api::all(client.clone()), cfg()),
            endpointslices: Informer::new(Api::all(client.clone()), cfg()),
            nodes: Informer::new(Api::all(client.clone()), cfg()),
            node_leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease"), cfg()),
            namespaces: Informer::new(Api::all(client.clone()), cfg()),
            jobs: Informer::new(Api::all(client.clone()), cfg()),
            cronjobs: Informer::new(Api::all(client.clone()), cfg()),
            daemonsets: Informer::new(Api::all(client.clone()), cfg()),
            statefulsets: Informer::new(Api::all(client.clone()), cfg()),
            controllerrevisions: Informer::new(Api::all(client.clone()), cfg()),
            pdbs: Informer::new(Api::all(client.clone()), cfg()),
        }
    }

    /// Starts every informer and waits for all of them to list.
    pub async fn start_and_sync(&self) {
        self.pods.start();
        self.replicasets.start();
        self.replicationcontrollers.start();
        self.deployments.start();
        self.services.start();
        self.endpointslices.start();
        self.nodes.start();
        self.node_leases.start();
        self.namespaces.start();
        self.jobs.start();
        self.cronjobs.start();
        self.daemonsets.start();
        self.statefulsets.start();
        self.controllerrevisions.start();
        self.pdbs.start();
        self.pods.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.replicationcontrollers.wait_synced().await;
        self.deployments.wait_synced().await;
        self.services.wait_synced().await;
        self.endpointslices.wait_synced().await;
        self.nodes.wait_synced().await;
        self.node_leases.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.jobs.wait_synced().await;
        self.cronjobs.wait_synced().await;
        self.daemonsets.wait_synced().await;
        self.statefulsets.wait_synced().await;
        self.controllerrevisions.wait_synced().await;
        self.pdbs.wait_synced().await;
    }
}
