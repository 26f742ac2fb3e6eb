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
//!
//! Objects are cached without `metadata.managedFields`, as
//! kube-controller-manager's shared informers cache them (a transform drops
//! them on arrival): no controller reads them, and they are most of a pod's
//! metadata. An update sent from a cached copy leaves them out, which keeps
//! the stored ones.
//!
//! Beside the store the informer keeps an [`OwnerIndex`]: objects by their
//! controller's uid, and the ones without a controller by namespace. A
//! controller reconciling one owner reads the pods it controls and the
//! orphans it may adopt from there, instead of scanning every cached pod
//! (client-go's informers offer the same through indexers).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, ReplicationController, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::cached_pod::{keep_claims, CachedPod};

/// The subscribers' queues of one informer.
type Subscribers<K> = Arc<std::sync::Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>>;

/// A cache of one resource type plus a change feed.
pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    owners: Arc<RwLock<Indexes<K>>>,
    subscribers: Subscribers<K>,
    driver: std::sync::Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
}

/// An object's namespace and name: the index's one handle on it, shared by
/// the set it is filed in and the record of where that is.
#[derive(Debug, Hash, PartialEq, Eq)]
struct Named {
    namespace: Option<Box<str>>,
    name: Box<str>,
}

impl Named {
    fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        Self {
            namespace: meta.namespace.as_deref().map(Box::from),
            name: meta.name.as_deref().unwrap_or_default().into(),
        }
    }

    /// The store's key for it.
    fn object_ref<K: Resource<DynamicType = ()>>(&self) -> ObjectRef<K> {
        let r = ObjectRef::new(&self.name);
        match &self.namespace {
            Some(ns) => r.within(ns),
            None => r,
        }
    }
}

/// Where [`OwnerIndex`] filed an object: the key of the set it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filed {
    /// Under its controller's uid.
    Controller(Arc<str>),
    /// Among its namespace's objects without a controller.
    Orphan(Arc<str>),
}

/// Objects filed under a string (a controller's uid, a namespace).
type Sets = HashMap<Arc<str>, HashSet<Arc<Named>>>;

/// Objects of one kind by their controller (the owner reference with
/// `controller: true`), and those without one by namespace.
///
/// It holds each object's name and namespace once, and each uid and
/// namespace it files under once: kube-runtime's `ObjectRef` carries an
/// object's uid and resourceVersion too, and one per set and per record took
/// about 700 bytes per object, 17 MB of the manager's 144 MB heap at 19,000
/// pods (heaptrack, 5,000-node scheduler bench).
pub struct OwnerIndex<K: Resource<DynamicType = ()>> {
    controlled: Sets,
    orphans: Sets,
    filed: HashMap<Arc<Named>, Filed>,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: Resource<DynamicType = ()>> Default for OwnerIndex<K> {
    fn default() -> Self {
        Self {
            controlled: HashMap::new(),
            orphans: HashMap::new(),
            filed: HashMap::new(),
            kind: std::marker::PhantomData,
        }
    }
}

/// File `key` in the set `at` of `sets`, returning the set's key (shared).
fn file_in(sets: &mut Sets, at: &str, key: Arc<Named>) -> Arc<str> {
    let at: Arc<str> = match sets.get_key_value(at) {
        Some((k, _)) => k.clone(),
        None => Arc::from(at),
    };
    sets.entry(at.clone()).or_default().insert(key);
    at
}

impl<K: Resource<DynamicType = ()>> OwnerIndex<K> {
    /// File `obj` by its current controller (moving it if that changed).
    pub fn apply(&mut self, obj: &K) {
        let named = Named::of(obj);
        let controller = sluice_kube::owners::controller_of(obj).map(|o| o.uid.as_str());
        let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
        let same = match (self.filed.get(&named), controller) {
            (Some(Filed::Controller(uid)), Some(c)) => &**uid == c,
            (Some(Filed::Orphan(ns)), None) => &**ns == namespace,
            _ => false,
        };
        if same {
            return;
        }
        self.remove(&named);
        let key = Arc::new(named);
        let place = match controller {
            Some(uid) => Filed::Controller(file_in(&mut self.controlled, uid, key.clone())),
            None => Filed::Orphan(file_in(&mut self.orphans, namespace, key.clone())),
        };
        self.filed.insert(key, place);
    }

    /// Forget `obj`.
    pub fn delete(&mut self, obj: &K) {
        self.remove(&Named::of(obj));
    }

    fn remove(&mut self, key: &Named) {
        let (sets, at) = match self.filed.remove(key) {
            Some(Filed::Controller(uid)) => (&mut self.controlled, uid),
            Some(Filed::Orphan(ns)) => (&mut self.orphans, ns),
            None => return,
        };
        if let Some(set) = sets.get_mut(&at) {
            set.remove(key);
            if set.is_empty() {
                sets.remove(&at);
            }
        }
    }

    /// Keys of the objects controlled by the owner with `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<ObjectRef<K>> {
        self.controlled
            .get(uid)
            .map(|s| s.iter().map(|n| n.object_ref()).collect())
            .unwrap_or_default()
    }

    /// Keys of the objects in namespace `ns` without a controller.
    pub fn orphans_in(&self, ns: &str) -> Vec<ObjectRef<K>> {
        self.orphans
            .get(ns)
            .map(|s| s.iter().map(|n| n.object_ref()).collect())
            .unwrap_or_default()
    }
}

/// The index in use and, during a relist, the one being rebuilt (swapped in
/// when the list is complete, as the reflector swaps its store).
struct Indexes<K: Resource<DynamicType = ()>> {
    current: OwnerIndex<K>,
    relisting: Option<OwnerIndex<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone> Indexes<K> {
    fn apply_watcher_event(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => self.current.apply(obj),
            watcher::Event::Delete(obj) => self.current.delete(obj),
            watcher::Event::Init => self.relisting = Some(OwnerIndex::default()),
            watcher::Event::InitApply(obj) => self.relisting.get_or_insert_with(OwnerIndex::default).apply(obj),
            watcher::Event::InitDone => {
                if let Some(fresh) = self.relisting.take() {
                    self.current = fresh;
                }
            }
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Creates the informer; nothing is watched until [`Informer::start`].
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Self::trimmed(api, config, |_| {})
    }

    /// Creates an informer that caches what `trim` leaves of each object
    /// (beside dropping its managedFields).
    pub fn trimmed(api: Api<K>, config: watcher::Config, trim: fn(&mut K)) -> Self {
        let (store, mut writer) = reflector::store::<K>();
        let owners = Arc::new(RwLock::new(Indexes {
            current: OwnerIndex::default(),
            relisting: None,
        }));
        let index = owners.clone();
        let subscribers: Subscribers<K> = Arc::default();
        let tx = subscribers.clone();
        let reader = store.clone();
        let kind = K::kind(&()).to_string();
        let driver = async move {
            let mut events = watcher(api, config)
                .default_backoff()
                .modify(move |obj: &mut K| {
                    obj.meta_mut().managed_fields = None;
                    trim(obj);
                })
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        writer.apply_watcher_event(&event);
                        index
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .apply_watcher_event(&event);
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
            owners,
            subscribers,
            driver: std::sync::Mutex::new(Some(Box::pin(driver))),
        }
    }

    /// The cached objects controlled by the owner with `uid` (from the
    /// owner index, not a scan).
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        self.indexed(|idx| idx.controlled_by(uid))
    }

    /// The cached objects an owner with `uid` in namespace `ns` may claim:
    /// those it controls and the namespace's objects without a controller
    /// (from the owner index, not a scan). Only these can change hands when
    /// it releases what stopped matching and adopts matching orphans.
    pub fn claimable(&self, uid: &str, ns: &str) -> Vec<Arc<K>> {
        self.indexed(|idx| {
            let mut keys = idx.controlled_by(uid);
            keys.extend(idx.orphans_in(ns));
            keys
        })
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .collect()
    }

    /// The cached objects of the keys `pick` takes from the owner index.
    fn indexed(&self, pick: impl FnOnce(&OwnerIndex<K>) -> Vec<ObjectRef<K>>) -> Vec<Arc<K>> {
        let keys = pick(&self.owners.read().unwrap_or_else(|e| e.into_inner()).current);
        keys.iter().filter_map(|k| self.store.get(k)).collect()
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
    pub pods: Informer<CachedPod>,
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
    /// All Leases: the nodes' heartbeats (namespace `kube-node-lease`) and
    /// the few others (leader election), which the garbage collector reads.
    pub leases: Informer<Lease>,
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
    /// All PersistentVolumes.
    pub persistentvolumes: Informer<PersistentVolume>,
    /// All PersistentVolumeClaims.
    pub persistentvolumeclaims: Informer<PersistentVolumeClaim>,
    /// All CSIDrivers.
    pub csidrivers: Informer<CSIDriver>,
    /// All VolumeAttachments.
    pub volumeattachments: Informer<VolumeAttachment>,
}

impl Informers {
    /// Creates (without starting) every informer.
    pub fn new(client: &Client) -> Self {
        let cfg = watcher::Config::default;
        Self {
            pods: Informer::trimmed(Api::all(client.clone()), cfg(), keep_claims),
            replicasets: Informer::new(Api::all(client.clone()), cfg()),
            replicationcontrollers: Informer::new(Api::all(client.clone()), cfg()),
            deployments: Informer::new(Api::all(client.clone()), cfg()),
            services: Informer::new(Api::all(client.clone()), cfg()),
            endpointslices: Informer::new(Api::all(client.clone()), cfg()),
            nodes: Informer::new(Api::all(client.clone()), cfg()),
            leases: Informer::new(Api::all(client.clone()), cfg()),
            namespaces: Informer::new(Api::all(client.clone()), cfg()),
            jobs: Informer::new(Api::all(client.clone()), cfg()),
            cronjobs: Informer::new(Api::all(client.clone()), cfg()),
            daemonsets: Informer::new(Api::all(client.clone()), cfg()),
            statefulsets: Informer::new(Api::all(client.clone()), cfg()),
            controllerrevisions: Informer::new(Api::all(client.clone()), cfg()),
            pdbs: Informer::new(Api::all(client.clone()), cfg()),
            persistentvolumes: Informer::new(Api::all(client.clone()), cfg()),
            persistentvolumeclaims: Informer::new(Api::all(client.clone()), cfg()),
            csidrivers: Informer::new(Api::all(client.clone()), cfg()),
            volumeattachments: Informer::new(Api::all(client.clone()), cfg()),
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
        self.leases.start();
        self.namespaces.start();
        self.jobs.start();
        self.cronjobs.start();
        self.daemonsets.start();
        self.statefulsets.start();
        self.controllerrevisions.start();
        self.pdbs.start();
        self.persistentvolumes.start();
        self.persistentvolumeclaims.start();
        self.csidrivers.start();
        self.volumeattachments.start();
        self.pods.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.replicationcontrollers.wait_synced().await;
        self.deployments.wait_synced().await;
        self.services.wait_synced().await;
        self.endpointslices.wait_synced().await;
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.namespaces.wait_synced().await;
        self.jobs.wait_synced().await;
        self.cronjobs.wait_synced().await;
        self.daemonsets.wait_synced().await;
        self.statefulsets.wait_synced().await;
        self.controllerrevisions.wait_synced().await;
        self.pdbs.wait_synced().await;
        self.persistentvolumes.wait_synced().await;
        self.persistentvolumeclaims.wait_synced().await;
        self.csidrivers.wait_synced().await;
        self.volumeattachments.wait_synced().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(ns: &str, name: &str, controller: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                owner_references: controller.map(|uid| {
                    vec![
                        OwnerReference {
                            uid: "not-the-controller".into(),
                            ..OwnerReference::default()
                        },
                        OwnerReference {
                            uid: uid.into(),
                            controller: Some(true),
                            ..OwnerReference::default()
                        },
                    ]
                }),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(refs: Vec<ObjectRef<Pod>>) -> Vec<String> {
        let mut v: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    #[test]
    fn objects_are_filed_by_controller_or_as_orphans_of_their_namespace_and_move_when_it_changes() {
        let mut idx = OwnerIndex::<Pod>::default();
        idx.apply(&pod("a", "p1", Some("rs-1")));
        idx.apply(&pod("a", "p2", Some("rs-1")));
        idx.apply(&pod("a", "p3", None));
        idx.apply(&pod("b", "p4", None));
        assert_eq!(names(idx.controlled_by("rs-1")), ["p1", "p2"]);
        assert_eq!(names(idx.controlled_by("not-the-controller")), Vec::<String>::new());
        assert_eq!(names(idx.orphans_in("a")), ["p3"]);
        assert_eq!(names(idx.orphans_in("b")), ["p4"]);

        // Released (controller gone), adopted (orphan gets one), deleted.
        idx.apply(&pod("a", "p2", None));
        idx.apply(&pod("a", "p3", Some("rs-2")));
        idx.delete(&pod("a", "p1", Some("rs-1")));
        assert_eq!(names(idx.controlled_by("rs-1")), Vec::<String>::new());
        assert_eq!(names(idx.controlled_by("rs-2")), ["p3"]);
        assert_eq!(names(idx.orphans_in("a")), ["p2"]);
        assert!(!idx.controlled.contains_key("rs-1"), "empty sets are dropped");
    }

    #[test]
    fn a_relist_replaces_the_index_when_it_is_complete() {
        let mut idx = Indexes::<Pod> {
            current: OwnerIndex::default(),
            relisting: None,
        };
        idx.apply_watcher_event(&watcher::Event::Apply(pod("a", "gone", Some("rs-1"))));
        idx.apply_watcher_event(&watcher::Event::Init);
        idx.apply_watcher_event(&watcher::Event::InitApply(pod("a", "kept", Some("rs-1"))));
        assert_eq!(
            names(idx.current.controlled_by("rs-1")),
            ["gone"],
            "the old index serves until the list is done"
        );
        idx.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(names(idx.current.controlled_by("rs-1")), ["kept"]);
    }
}
