//! The ConfigMaps and Secrets the node's pods use, each kept by a watch of
//! that one object while a pod uses it: the kubelet's watch-based ConfigMap
//! and Secret managers (its default `configMapAndSecretChangeDetectionStrategy:
//! Watch`). Volumes ([`super::projection`]) and containers' environments
//! ([`crate::env`]) read them from here.
//!
//! A pod's references ([`referenced`]) are registered before its volumes
//! are set up ([`Objects::register`]). The first pod to name an object
//! starts a list and watch of it alone (`fieldSelector=metadata.name=<name>`,
//! which the Node authorizer allows for an object a pod of the node uses);
//! later pods, and every refresh of every pod's volumes, read the watch's
//! copy. The watch stops when the last pod using the object is forgotten
//! ([`Objects::unregister`]).
//!
//! Before, every pod's volumes read their objects with a GET at start and
//! again on every refresh: every pod's projected `kube-root-ca.crt` alone was
//! a GET every 10 s per pod, forever.
//!
//! A read waits for the watch's first list for at most [`SYNC_WAIT`], then
//! fails with the kubelet's message (`failed to sync configmap cache: timed
//! out waiting for the condition`), which the pod worker reports as
//! `FailedMount` (or `CreateContainerConfigError`) and retries.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec, Secret};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a read waits for an object's first list (the kubelet polls one
/// second; a loaded node's first list can take longer, and a timeout costs
/// the pod a `FailedMount` and a later retry).
pub const SYNC_WAIT: Duration = Duration::from_secs(5);

/// One object a pod references: its namespace and name.
type Key = (String, String);

/// The ConfigMaps and the Secrets of the node's pods.
#[derive(Default)]
pub struct Objects {
    /// ConfigMaps by namespace and name.
    pub config_maps: Watched<ConfigMap>,
    /// Secrets by namespace and name.
    pub secrets: Watched<Secret>,
}

impl Objects {
    /// Note the ConfigMaps and Secrets `pod`'s volumes use (again after a
    /// restart of noded: registering twice changes nothing), starting the
    /// watches of those no other pod uses.
    pub fn register(&self, client: &kube::Client, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let Some(spec) = pod.spec.as_ref() else { return };
        let names = referenced(spec);
        let keys = |names: BTreeSet<String>| names.into_iter().map(|n| (namespace.clone(), n)).collect();
        self.config_maps.register(client, &uid, keys(names.config_maps));
        self.secrets.register(client, &uid, keys(names.secrets));
    }

    /// Pod `uid` is gone: stop the watches no other pod needs.
    pub fn unregister(&self, uid: &str) {
        self.config_maps.unregister(uid);
        self.secrets.unregister(uid);
    }
}

/// The names of the ConfigMaps and Secrets some volumes use.
#[derive(Debug, Default, PartialEq)]
pub struct Referenced {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
}

/// What a pod reads, as the kubelet's `VisitPodConfigmapNames` and
/// `VisitPodSecretNames` find it for its managers: configMap and secret
/// volumes and projected sources, and every container's `envFrom` and
/// `valueFrom` references (init and ephemeral containers too).
pub fn referenced(spec: &PodSpec) -> Referenced {
    let mut out = Referenced::default();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            out.config_maps.insert(c.name.clone());
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.secrets.insert(name);
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &s.config_map {
                out.config_maps.insert(c.name.clone());
            }
            if let Some(c) = &s.secret {
                out.secrets.insert(c.name.clone());
            }
        }
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let ephemeral = spec.ephemeral_containers.iter().flatten();
    let envs = containers
        .map(|c| (c.env.as_deref(), c.env_from.as_deref()))
        .chain(ephemeral.map(|c| (c.env.as_deref(), c.env_from.as_deref())));
    for (env, env_from) in envs {
        for from in env_from.unwrap_or_default() {
            out.config_maps
                .extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            out.secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for from in env.unwrap_or_default().iter().filter_map(|e| e.value_from.as_ref()) {
            out.config_maps
                .extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            out.secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    out.config_maps.retain(|n| !n.is_empty());
    out.secrets.retain(|n| !n.is_empty());
    out
}

/// Which pods use which objects: the bookkeeping behind [`Watched`].
#[derive(Debug, Default)]
pub struct Users {
    by_key: HashMap<Key, HashSet<String>>,
    by_pod: HashMap<String, HashSet<Key>>,
}

impl Users {
    /// Pod `uid` uses `keys` (besides what it used before); returns the
    /// keys no pod used until now.
    pub fn add(&mut self, uid: &str, keys: Vec<Key>) -> Vec<Key> {
        let mut new = Vec::new();
        for key in keys {
            let users = self.by_key.entry(key.clone()).or_default();
            if users.is_empty() {
                new.push(key.clone());
            }
            users.insert(uid.to_string());
            self.by_pod.entry(uid.to_string()).or_default().insert(key);
        }
        new
    }

    /// Pod `uid` is gone; returns the keys no pod uses any more.
    pub fn remove(&mut self, uid: &str) -> Vec<Key> {
        let mut unused = Vec::new();
        for key in self.by_pod.remove(uid).unwrap_or_default() {
            if let Some(users) = self.by_key.get_mut(&key) {
                users.remove(uid);
                if users.is_empty() {
                    self.by_key.remove(&key);
                    unused.push(key);
                }
            }
        }
        unused
    }
}

/// The watches of one kind of object.
pub struct Watched<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    state: Mutex<WatchedState<K>>,
}

struct WatchedState<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    users: Users,
    watches: HashMap<Key, Watch<K>>,
}

/// The copy one watch keeps; the watch stops when this is dropped.
struct Watch<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    task: tokio::task::JoinHandle<()>,
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Drop for Watch<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Default for Watched<K> {
    fn default() -> Self {
        Self {
            state: Mutex::new(WatchedState {
                users: Users::default(),
                watches: HashMap::new(),
            }),
        }
    }
}

/// The kubelet's name for a kind in its "failed to sync ... cache" message.
pub trait CacheName {
    /// `configmap`, `secret`.
    const CACHE: &'static str;
}

impl CacheName for ConfigMap {
    const CACHE: &'static str = "configmap";
}

impl CacheName for Secret {
    const CACHE: &'static str = "secret";
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A GET (of an object no pod registered) failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The watch had not listed the object in time.
    #[error("failed to sync {0} cache: timed out waiting for the condition")]
    NotSynced(&'static str),
}

impl<K> Watched<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + CacheName
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Start the list and watch of the one object `key`.
    fn start(client: &kube::Client, key: &Key) -> Watch<K> {
        let (namespace, name) = key;
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (store, task) = crate::watched_store(api, config, format!("{}/{namespace}/{name}", K::kind(&())));
        Watch { store, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchedState<K>> {
        crate::lock(&self.state)
    }

    /// Pod `uid` uses the objects `keys`; start watching those no pod used.
    pub fn register(&self, client: &kube::Client, uid: &str, keys: Vec<Key>) {
        let mut state = self.lock();
        for key in state.users.add(uid, keys) {
            let watch = Self::start(client, &key);
            state.watches.insert(key, watch);
        }
    }

    /// Pod `uid` is gone: stop watching what no other pod uses.
    pub fn unregister(&self, uid: &str) {
        let mut state = self.lock();
        for key in state.users.remove(uid) {
            state.watches.remove(&key);
        }
    }

    /// The object `namespace/name` (`None`: it does not exist), from its
    /// watch; an object no pod registered is read with a GET.
    pub async fn get(&self, client: &kube::Client, namespace: &str, name: &str) -> Result<Option<Arc<K>>, ReadError> {
        let key = (namespace.to_string(), name.to_string());
        let store = self.lock().watches.get(&key).map(|w| w.store.clone());
        let Some(store) = store else {
            let api: Api<K> = Api::namespaced(client.clone(), namespace);
            return Ok(api.get_opt(name).await?.map(Arc::new));
        };
        match tokio::time::timeout(SYNC_WAIT, store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(store.get(&ObjectRef::new(name).within(namespace))),
            _ => Err(ReadError::NotSynced(K::CACHE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("app".into(), name.into())
    }

    #[test]
    fn an_object_is_watched_from_its_first_user_until_its_last_is_gone() {
        let mut users = Users::default();
        assert_eq!(
            users.add("p1", vec![key("ca"), key("cfg")]),
            vec![key("ca"), key("cfg")]
        );
        assert_eq!(users.add("p2", vec![key("ca")]), vec![], "already watched");
        assert_eq!(
            users.add("p1", vec![key("ca")]),
            vec![],
            "registering again changes nothing"
        );
        let mut gone = users.remove("p1");
        gone.sort();
        assert_eq!(gone, vec![key("cfg")], "p2 still uses the CA");
        assert_eq!(users.remove("p1"), vec![], "forgetting twice changes nothing");
        assert_eq!(users.remove("p2"), vec![key("ca")]);
        assert_eq!(users.add("p3", vec![key("ca")]), vec![key("ca")], "watched anew");
    }

    #[test]
    fn volumes_and_environments_name_their_config_maps_and_secrets() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "env-all"}}, {"secretRef": {"name": "env-secrets"}}]}],
            "initContainers": [{"name": "init", "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "env-one", "key": "a"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "tls", "key": "b"}}},
                {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "D", "value": "d"}
            ]}],
            "ephemeralContainers": [{"name": "debug", "envFrom": [{"configMapRef": {"name": "debug-env"}}]}],
            "volumes": [
            {"name": "a", "configMap": {"name": "settings"}},
            {"name": "b", "secret": {"secretName": "tls"}},
            {"name": "c", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt"}},
                {"secret": {"name": "tls"}},
                {"downwardAPI": {"items": []}}
            ]}},
            {"name": "d", "emptyDir": {}},
            {"name": "e", "secret": {}}
        ]}))
        .unwrap();
        let got = referenced(&spec);
        assert_eq!(
            got.config_maps.into_iter().collect::<Vec<_>>(),
            vec!["debug-env", "env-all", "env-one", "kube-root-ca.crt", "settings"]
        );
        assert_eq!(got.secrets.into_iter().collect::<Vec<_>>(), vec!["env-secrets", "tls"]);
    }
}
