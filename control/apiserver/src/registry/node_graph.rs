//! The Node authorizer's graph: which objects each node's pods use, held in
//! memory as Kubernetes' `plugin/pkg/auth/authorizer/node` graph is.
//!
//! [`start`] lists every Pod, PersistentVolumeClaim and PersistentVolume
//! once and then follows their etcd prefixes with watches (as Kubernetes'
//! `graph_populator` follows informers), so authorizing a node's request
//! never reads etcd. A broken or compacted watch relists and watches again.
//!
//! The relations kept are Kubernetes' edges, flattened per pod:
//!
//! - a pod bound to a node (`spec.nodeName` set) uses the Secrets and
//!   ConfigMaps it names (volumes, projected sources, `env`/`envFrom`,
//!   `imagePullSecrets`, volume `secretRef`s), its PersistentVolumeClaims
//!   (`persistentVolumeClaim` volumes, and `<pod>-<volume>` for generic
//!   ephemeral volumes), and its ServiceAccount;
//! - a claim leads to the volume it is bound to (`spec.volumeName`), and a
//!   volume to the Secrets its source names (`secretRef`s, CSI
//!   `*SecretRef`s, with their namespace).
//!
//! - a VolumeAttachment leads to the node it names (`spec.nodeName`).
//!
//! [`NodeGraph::related`] answers "is there a path from this object to this
//! node". The graph also remembers, per volume, the node a `local-path`
//! volume is pinned to and whether it is `Released` (noded deletes those).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use etcd_client::EventType;
use serde_json::Value;
use tracing::Instrument;

use crate::kinds::{self, Kind};
use crate::registry::Registry;
use crate::storage::store::{collection_prefix, decode, decode_as};

/// The provisioner annotation of dynamically provisioned volumes.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Sluice's local-path provisioner, whose volumes their node deletes.
pub const LOCAL_PATH_PROVISIONER: &str = "sluice.dev/local-path";
/// The label node affinity pins a local volume with.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The kinds of object a node may reach through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vertex {
    /// `pods`
    Pod,
    /// `secrets`
    Secret,
    /// `configmaps`
    ConfigMap,
    /// `persistentvolumeclaims`
    Claim,
    /// `persistentvolumes` (cluster-scoped)
    Volume,
    /// `serviceaccounts`
    ServiceAccount,
    /// `volumeattachments` (cluster-scoped; related by `spec.nodeName`)
    Attachment,
}

/// What one bound pod uses (names within the pod's namespace).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRefs {
    /// `spec.nodeName`.
    pub node: String,
    /// Secrets named anywhere in the spec.
    pub secrets: BTreeSet<String>,
    /// ConfigMaps named anywhere in the spec.
    pub configmaps: BTreeSet<String>,
    /// Claims of its volumes.
    pub claims: BTreeSet<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
}

/// What the graph keeps of a PersistentVolume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeRefs {
    /// Secrets its source names, as (namespace, name).
    pub secrets: BTreeSet<(String, String)>,
    /// The node a `sluice.dev/local-path` volume is pinned to.
    pub local_path_node: Option<String>,
    /// `status.phase == Released`.
    pub released: bool,
}

type Key = (String, String);

/// A name as the graph holds it. Names many pods share (their namespace,
/// node and service account, the `kube-root-ca.crt` ConfigMap every
/// service-account volume projects) are held once ([`Names`]); a pod's own
/// name once for both maps that file it.
type Name = Arc<str>;

/// A pod's (namespace, name) as the graph holds it.
type HeldKey = (Name, Name);

/// [`PodRefs`] as the graph holds it: its names shared, each set a sorted
/// slice. The `BTreeSet`s and owned strings took about 900 bytes a pod, 17
/// MB of the API server's 209 MB heap at 19,000 pods (heaptrack, 5,000-node
/// scheduler bench), mostly the B-tree leaf each pod's one ConfigMap took.
#[derive(Debug)]
struct HeldPod {
    node: Name,
    service_account: Name,
    secrets: Box<[Name]>,
    configmaps: Box<[Name]>,
    claims: Box<[Name]>,
}

impl HeldPod {
    fn new(r: &PodRefs, names: &mut Names) -> Self {
        let mut set = |s: &BTreeSet<String>| s.iter().map(|n| names.get(n)).collect();
        let (secrets, configmaps, claims) = (set(&r.secrets), set(&r.configmaps), set(&r.claims));
        Self {
            node: names.get(&r.node),
            service_account: names.get(&r.service_account),
            secrets,
            configmaps,
            claims,
        }
    }

    /// Whether it holds what `r` says (both sets sorted).
    fn holds(&self, r: &PodRefs) -> bool {
        let same = |held: &[Name], s: &BTreeSet<String>| held.iter().map(|n| &**n).eq(s.iter().map(String::as_str));
        *self.node == *r.node
            && *self.service_account == *r.service_account
            && same(&self.secrets, &r.secrets)
            && same(&self.configmaps, &r.configmaps)
            && same(&self.claims, &r.claims)
    }

    fn names(self) -> impl Iterator<Item = Name> {
        [self.node, self.service_account]
            .into_iter()
            .chain(self.secrets.into_vec())
            .chain(self.configmaps.into_vec())
            .chain(self.claims.into_vec())
    }
}

/// The names pods share, each held once while some pod names it.
#[derive(Default)]
struct Names(HashSet<Name>);

impl Names {
    fn get(&mut self, s: &str) -> Name {
        if let Some(n) = self.0.get(s) {
            return n.clone();
        }
        let n: Name = Arc::from(s);
        self.0.insert(n.clone());
        n
    }

    /// Let go of `n`, forgetting it if nothing else holds it.
    fn release(&mut self, n: Name) {
        // This one and the set's.
        if Arc::strong_count(&n) == 2 {
            self.0.remove(&*n);
        }
    }
}

/// `key` as the maps are looked up by (not held: the strings are not shared).
fn lookup_key(namespace: &str, name: &str) -> HeldKey {
    (Arc::from(namespace), Arc::from(name))
}

#[derive(Default)]
struct Inner {
    pods: HashMap<HeldKey, HeldPod>,
    by_node: HashMap<Name, HashSet<HeldKey>>,
    names: Names,
    claims: HashMap<Key, String>,
    volumes: HashMap<String, VolumeRefs>,
    attachments: HashMap<String, String>,
}

impl Inner {
    fn remove_pod(&mut self, key: &HeldKey) {
        let Some((key, old)) = self.pods.remove_entry(key) else {
            return;
        };
        if let Some(set) = self.by_node.get_mut(&old.node) {
            set.remove(&key);
            if set.is_empty() {
                self.by_node.remove(&old.node);
            }
        }
        self.names.release(key.0);
        for n in old.names() {
            self.names.release(n);
        }
    }

    fn set_pod(&mut self, key: Key, refs: Option<PodRefs>) {
        let lookup = lookup_key(&key.0, &key.1);
        if let (Some(held), Some(r)) = (self.pods.get(&lookup), &refs) {
            if held.holds(r) {
                return;
            }
        }
        self.remove_pod(&lookup);
        if let Some(refs) = refs {
            let held = HeldPod::new(&refs, &mut self.names);
            let key: HeldKey = (self.names.get(&key.0), lookup.1);
            self.by_node.entry(held.node.clone()).or_default().insert(key.clone());
            self.pods.insert(key, held);
        }
    }

    /// Whether the graph holds no pod (and so no name of one).
    #[cfg(test)]
    fn holds_no_pod(&self) -> bool {
        self.pods.is_empty() && self.by_node.is_empty() && self.names.0.is_empty()
    }
}

/// The in-memory graph of nodes, pods and what pods use.
#[derive(Default)]
pub struct NodeGraph {
    inner: RwLock<Inner>,
    started: AtomicBool,
}

/// The process's graph (one API server, one graph).
pub fn graph() -> &'static NodeGraph {
    static GRAPH: OnceLock<NodeGraph> = OnceLock::new();
    GRAPH.get_or_init(NodeGraph::default)
}

fn meta_key(obj: &Value) -> Option<Key> {
    let name = obj.pointer("/metadata/name")?.as_str()?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((ns.to_string(), name.to_string()))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(ptr).and_then(Value::as_array).into_iter().flatten()
}

/// Collects `secretRef`-like references (keys `secretRef` or ending in
/// `SecretRef`) under `v`: their name, and namespace when given.
fn secret_refs(v: &Value, out: &mut Vec<(Option<String>, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "secretRef" || k.ends_with("SecretRef") {
                    if let Some(name) = str_at(child, "/name") {
                        out.push((str_at(child, "/namespace").map(String::from), name.to_string()));
                    }
                } else {
                    secret_refs(child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| secret_refs(c, out)),
        _ => {}
    }
}

/// What a pod uses, if it is bound to a node.
pub fn pod_refs(pod: &Value) -> Option<PodRefs> {
    let node = str_at(pod, "/spec/nodeName")?;
    let pod_name = str_at(pod, "/metadata/name").unwrap_or_default();
    let mut r = PodRefs {
        node: node.to_string(),
        service_account: str_at(pod, "/spec/serviceAccountName")
            .or_else(|| str_at(pod, "/spec/serviceAccount"))
            .unwrap_or("default")
            .to_string(),
        ..Default::default()
    };
    for s in items(pod, "/spec/imagePullSecrets") {
        if let Some(n) = str_at(s, "/name") {
            r.secrets.insert(n.into());
        }
    }
    for list in ["/spec/initContainers", "/spec/containers", "/spec/ephemeralContainers"] {
        for c in items(pod, list) {
            for e in items(c, "/envFrom") {
                if let Some(n) = str_at(e, "/secretRef/name") {
                    r.secrets.insert(n.into());
                }
                if let Some(n) = str_at(e, "/configMapRef/name") {
                    r.configmaps.insert(n.into());
                }
            }
            for e in items(c, "/env") {
                if let Some(n) = str_at(e, "/valueFrom/secretKeyRef/name") {
                    r.secrets.insert(n.into());
                }
                if let Some(n) = str_at(e, "/valueFrom/configMapKeyRef/name") {
                    r.configmaps.insert(n.into());
                }
            }
        }
    }
    for v in items(pod, "/spec/volumes") {
        if let Some(n) = str_at(v, "/secret/secretName") {
            r.secrets.insert(n.into());
        }
        if let Some(n) = str_at(v, "/configMap/name") {
            r.configmaps.insert(n.into());
        }
        if let Some(n) = str_at(v, "/azureFile/secretName") {
            r.secrets.insert(n.into());
        }
        for src in items(v, "/projected/sources") {
            if let Some(n) = str_at(src, "/secret/name") {
                r.secrets.insert(n.into());
            }
            if let Some(n) = str_at(src, "/configMap/name") {
                r.configmaps.insert(n.into());
            }
        }
        if let Some(n) = str_at(v, "/persistentVolumeClaim/claimName") {
            r.claims.insert(n.into());
        }
        if v.get("ephemeral").is_some_and(|e| !e.is_null()) {
            if let Some(vol) = str_at(v, "/name") {
                r.claims.insert(format!("{pod_name}-{vol}"));
            }
        }
        let mut refs = Vec::new();
        secret_refs(v, &mut refs);
        r.secrets.extend(refs.into_iter().map(|(_, n)| n));
    }
    Some(r)
}

/// What the graph keeps of a volume.
pub fn volume_refs(pv: &Value) -> VolumeRefs {
    let mut refs = Vec::new();
    if let Some(spec) = pv.get("spec") {
        secret_refs(spec, &mut refs);
    }
    let mut secrets: BTreeSet<(String, String)> = refs.into_iter().filter_map(|(ns, n)| ns.map(|ns| (ns, n))).collect();
    if let (Some(ns), Some(n)) = (
        str_at(pv, "/spec/azureFile/secretNamespace"),
        str_at(pv, "/spec/azureFile/secretName"),
    ) {
        secrets.insert((ns.into(), n.into()));
    }
    let local_path = str_at(
        pv,
        &format!("/metadata/annotations/{}", ANN_PROVISIONED_BY.replace('/', "~1")),
    ) == Some(LOCAL_PATH_PROVISIONER);
    let local_path_node = local_path
        .then(|| {
            items(pv, "/spec/nodeAffinity/required/nodeSelectorTerms")
                .flat_map(|t| items(t, "/matchExpressions"))
                .find(|e| str_at(e, "/key") == Some(HOSTNAME_LABEL) && str_at(e, "/operator") == Some("In"))
                .and_then(|e| items(e, "/values").find_map(Value::as_str).map(String::from))
        })
        .flatten();
    VolumeRefs {
        secrets,
        local_path_node,
        released: str_at(pv, "/status/phase") == Some("Released"),
    }
}

impl NodeGraph {
    /// Record a pod's new state (`None`: deleted).
    pub fn set_pod(&self, key: (String, String), pod: Option<&Value>) {
        let refs = pod.and_then(pod_refs);
        self.write().set_pod(key, refs);
    }

    /// Record a claim's new state (`None`: deleted).
    pub fn set_claim(&self, key: (String, String), claim: Option<&Value>) {
        let mut g = self.write();
        match claim.and_then(|c| str_at(c, "/spec/volumeName")) {
            Some(v) => {
                g.claims.insert(key, v.to_string());
            }
            None => {
                g.claims.remove(&key);
            }
        }
    }

    /// Record a volume's new state (`None`: deleted).
    pub fn set_volume(&self, name: &str, pv: Option<&Value>) {
        let mut g = self.write();
        match pv {
            Some(pv) => {
                g.volumes.insert(name.to_string(), volume_refs(pv));
            }
            None => {
                g.volumes.remove(name);
            }
        }
    }

    /// Record a VolumeAttachment's new state (`None`: deleted).
    pub fn set_attachment(&self, name: &str, va: Option<&Value>) {
        let mut g = self.write();
        match va.and_then(|v| str_at(v, "/spec/nodeName")) {
            Some(node) => {
                g.attachments.insert(name.to_string(), node.to_string());
            }
            None => {
                g.attachments.remove(name);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a path leads from the object (`namespace` empty for
    /// volumes) to `node` through a pod bound to it.
    pub fn related(&self, node: &str, vertex: Vertex, namespace: &str, name: &str) -> bool {
        let g = self.read();
        if vertex == Vertex::Attachment {
            return g.attachments.get(name).is_some_and(|n| n == node);
        }
        let Some(pods) = g.by_node.get(node) else {
            return false;
        };
        let on_node = || pods.iter().filter_map(|k| g.pods.get(k).map(|p| (k, p)));
        let claim_volume = |ns: &str, claim: &str| g.claims.get(&(ns.to_string(), claim.to_string()));
        let names = |held: &[Name], name: &str| held.iter().any(|n| &**n == name);
        match vertex {
            Vertex::Attachment => false,
            Vertex::Pod => pods.contains(&lookup_key(namespace, name)),
            Vertex::ConfigMap => on_node().any(|(k, p)| &*k.0 == namespace && names(&p.configmaps, name)),
            Vertex::Claim => on_node().any(|(k, p)| &*k.0 == namespace && names(&p.claims, name)),
            Vertex::ServiceAccount => on_node().any(|(k, p)| &*k.0 == namespace && &*p.service_account == name),
            Vertex::Volume => on_node().any(|(k, p)| {
                p.claims
                    .iter()
                    .any(|c| claim_volume(&k.0, c).is_some_and(|v| v == name))
            }),
            Vertex::Secret => on_node().any(|(k, p)| {
                (&*k.0 == namespace && names(&p.secrets, name))
                    || p.claims.iter().any(|c| {
                        claim_volume(&k.0, c)
                            .and_then(|v| g.volumes.get(v))
                            .is_some_and(|v| v.secrets.contains(&(namespace.to_string(), name.to_string())))
                    })
            }),
        }
    }

    /// Whether `volume` is a `Released` local-path volume pinned to `node`
    /// (noded deletes those once their directory is gone).
    pub fn released_local_path_of(&self, node: &str, volume: &str) -> bool {
        self.read()
            .volumes
            .get(volume)
            .is_some_and(|v| v.released && v.local_path_node.as_deref() == Some(node))
    }
}

/// What the graph follows: a kind and how to apply one of its objects.
#[derive(Clone, Copy)]
enum Feed {
    Pods,
    Claims,
    Volumes,
    Attachments,
}

impl Feed {
    fn kind(self) -> Kind {
        match self {
            Feed::Pods => Kind::Builtin(&kinds::pod::Pods),
            Feed::Claims => Kind::Builtin(&kinds::persistentvolumeclaim::PersistentVolumeClaims),
            Feed::Volumes => Kind::Builtin(&kinds::persistentvolume::PersistentVolumes),
            Feed::Attachments => Kind::Builtin(&kinds::volumeattachment::VolumeAttachments),
        }
    }

    fn apply(self, g: &NodeGraph, key: Key, obj: Option<&Value>) {
        match self {
            Feed::Pods => g.set_pod(key, obj),
            Feed::Claims => g.set_claim(key, obj),
            Feed::Volumes => g.set_volume(&key.1, obj),
            Feed::Attachments => g.set_attachment(&key.1, obj),
        }
    }
}

/// Fills the graph and follows pods, claims, volumes and attachments in the background.
pub async fn start(registry: Arc<Registry>) -> anyhow::Result<()> {
    if graph().started.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    for feed in [Feed::Pods, Feed::Claims, Feed::Volumes, Feed::Attachments] {
        let rev = relist(&registry, feed).await?;
        let span = tracing::info_span!("node-graph", kind = feed.kind().resource().plural);
        tokio::spawn(follow(registry.clone(), feed, rev).instrument(span));
    }
    Ok(())
}

/// Replaces the feed's part of the graph with a fresh list; returns its revision.
async fn relist(registry: &Registry, feed: Feed) -> anyhow::Result<i64> {
    let list = registry
        .list(&feed.kind(), None, &crate::registry::ListQuery::default())
        .await?;
    let rev = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    let g = graph();
    {
        let mut inner = g.write();
        match feed {
            Feed::Pods => {
                inner.pods.clear();
                inner.by_node.clear();
                inner.names = Names::default();
            }
            Feed::Claims => inner.claims.clear(),
            Feed::Volumes => inner.volumes.clear(),
            Feed::Attachments => inner.attachments.clear(),
        }
    }
    for obj in list["items"].as_array().into_iter().flatten() {
        if let Some(key) = meta_key(obj) {
            feed.apply(g, key, Some(obj));
        }
    }
    Ok(rev)
}

/// The (namespace, name) of the object at etcd `key` under `prefix` (its
/// collection's): `<namespace>/<name>` for a namespaced kind, `<name>` for
/// a cluster-scoped one.
fn key_under(prefix: &str, key: &[u8]) -> Option<Key> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    Some(match rest.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// What the graph reads of a stored pod: its name and the parts of its
/// spec [`pod_refs`] reads. Decoding only these skips the rest of the spec,
/// its status and managedFields, most of a pod, without allocating them;
/// the graph decodes every write of every pod.
#[derive(serde::Deserialize)]
struct StoredPod {
    #[serde(default)]
    metadata: StoredPodMeta,
    #[serde(default)]
    spec: StoredPodSpec,
}

#[derive(serde::Deserialize, Default)]
struct StoredPodMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredPodSpec {
    node_name: Option<Value>,
    service_account_name: Option<Value>,
    service_account: Option<Value>,
    image_pull_secrets: Option<Value>,
    init_containers: Option<Vec<StoredContainer>>,
    containers: Option<Vec<StoredContainer>>,
    ephemeral_containers: Option<Vec<StoredContainer>>,
    volumes: Option<Value>,
}

/// What [`pod_refs`] reads of a container.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredContainer {
    env: Option<Value>,
    env_from: Option<Value>,
}

impl StoredPod {
    /// The pod as [`pod_refs`] reads it: only what was decoded.
    fn into_value(self) -> Value {
        fn put(m: &mut serde_json::Map<String, Value>, k: &str, v: Option<Value>) {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        let containers = |list: Option<Vec<StoredContainer>>| {
            list.map(|cs| {
                Value::Array(
                    cs.into_iter()
                        .map(|c| {
                            let mut m = serde_json::Map::new();
                            put(&mut m, "env", c.env);
                            put(&mut m, "envFrom", c.env_from);
                            Value::Object(m)
                        })
                        .collect(),
                )
            })
        };
        let s = self.spec;
        let mut spec = serde_json::Map::new();
        put(&mut spec, "nodeName", s.node_name);
        put(&mut spec, "serviceAccountName", s.service_account_name);
        put(&mut spec, "serviceAccount", s.service_account);
        put(&mut spec, "imagePullSecrets", s.image_pull_secrets);
        put(&mut spec, "initContainers", containers(s.init_containers));
        put(&mut spec, "containers", containers(s.containers));
        put(&mut spec, "ephemeralContainers", containers(s.ephemeral_containers));
        put(&mut spec, "volumes", s.volumes);
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), Value::String(self.metadata.name));
        meta.insert("namespace".into(), Value::String(self.metadata.namespace));
        let mut pod = serde_json::Map::new();
        pod.insert("metadata".into(), Value::Object(meta));
        pod.insert("spec".into(), Value::Object(spec));
        Value::Object(pod)
    }
}

/// A stored object of `feed` as the graph reads it (a pod: see [`StoredPod`]).
fn decode_for(feed: Feed, key: &[u8], value: &[u8], revision: i64) -> Option<Value> {
    match feed {
        Feed::Pods => decode_as::<StoredPod>(key, value).ok().map(StoredPod::into_value),
        _ => decode(key, value, revision).ok(),
    }
}

/// Follows the feed's collection from `rev` on. The watch asks etcd for new
/// values only: a delete names its object by its key, and with previous
/// values etcd would read and send every pod's last state again on each of
/// its writes, for the graph alone.
async fn follow(registry: Arc<Registry>, feed: Feed, mut rev: i64) {
    let prefix = collection_prefix(feed.kind().resource(), None);
    loop {
        match registry.store.watch_new_values(&prefix, rev + 1, false).await {
            Ok(mut stream) => loop {
                let resp = match stream.message().await {
                    Ok(Some(r)) if !r.canceled() && r.compact_revision() == 0 => r,
                    _ => break,
                };
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    rev = rev.max(kv.mod_revision());
                    match ev.event_type() {
                        EventType::Put => {
                            let Some(obj) = decode_for(feed, kv.key(), kv.value(), kv.mod_revision()) else {
                                continue;
                            };
                            if let Some(key) = meta_key(&obj) {
                                feed.apply(graph(), key, Some(&obj));
                            }
                        }
                        EventType::Delete => {
                            if let Some(key) = key_under(&prefix, kv.key()) {
                                feed.apply(graph(), key, None);
                            }
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching for the node graph"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match relist(&registry, feed).await {
            Ok(r) => rev = r,
            Err(e) => tracing::warn!(error = %e, "relisting for the node graph"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A delete seen on the watch names its object by its etcd key, for
    /// namespaced and cluster-scoped kinds alike; a key outside the
    /// collection names nothing.
    #[test]
    fn a_key_names_its_object() {
        let pods = collection_prefix(Feed::Pods.kind().resource(), None);
        let volumes = collection_prefix(Feed::Volumes.kind().resource(), None);
        assert_eq!(
            key_under(&pods, format!("{pods}app/web-0").as_bytes()),
            Some(("app".into(), "web-0".into()))
        );
        assert_eq!(
            key_under(&volumes, format!("{volumes}pv-1").as_bytes()),
            Some((String::new(), "pv-1".into()))
        );
        assert_eq!(key_under(&pods, format!("{volumes}pv-1").as_bytes()), None);
    }

    /// A stored pod read for the graph (its name and spec only) gives the
    /// same key and the same references as the whole pod.
    #[test]
    fn a_stored_pod_read_for_the_graph_relates_what_the_whole_pod_does() {
        let mut whole = pod("web-0", "node-1");
        whole["metadata"]["labels"] = json!({"app": "web"});
        whole["metadata"]["managedFields"] = json!([{"manager": "m", "fieldsV1": {"f:spec": {}}}]);
        whole["status"] = json!({"phase": "Running", "podIP": "10.0.0.5"});
        let key = b"/registry/core/pods/app/web-0";
        let stored = crate::storage::store::encode(key, &whole).expect("encodes");
        let read = decode_for(Feed::Pods, key, &stored, 7).expect("decodes");
        assert_eq!(meta_key(&read), meta_key(&whole));
        assert_eq!(pod_refs(&read), pod_refs(&whole));
        assert!(pod_refs(&read).is_some_and(|r| r.secrets.contains("env-secret") && r.claims.contains("data")));
        assert!(read.get("status").is_none(), "the status is not read");
        assert!(
            read.pointer("/spec/containers/0/name").is_none(),
            "nor what the graph does not use"
        );
    }

    fn pod(name: &str, node: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "app"}, "spec": {
        "nodeName": node,
        "serviceAccountName": "runner",
        "imagePullSecrets": [{"name": "pull"}],
        "containers": [{"name": "c",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
            "envFrom": [{"configMapRef": {"name": "from-cm"}}, {"secretRef": {"name": "from-secret"}}]}],
        "volumes": [
            {"name": "s", "secret": {"secretName": "vol-secret"}},
            {"name": "cm", "configMap": {"name": "vol-cm"}},
            {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}}
        ]}})
    }

    fn fresh() -> NodeGraph {
        let g = NodeGraph::default();
        g.set_pod(("app".into(), "web".into()), Some(&pod("web", "n1")));
        g.set_claim(
            ("app".into(), "data".into()),
            Some(&json!({"spec": {"volumeName": "pv-1"}})),
        );
        g.set_volume(
            "pv-1",
            Some(&json!({"spec": {"csi": {"driver": "d", "nodeStageSecretRef": {"name": "stage", "namespace": "infra"}}}})),
        );
        g
    }

    #[test]
    fn a_bound_pod_relates_everything_it_names_to_its_node() {
        let g = fresh();
        for s in [
            "pull",
            "env-secret",
            "from-secret",
            "vol-secret",
            "proj-secret",
            "csi-secret",
        ] {
            assert!(g.related("n1", Vertex::Secret, "app", s), "{s}");
        }
        for c in ["env-cm", "from-cm", "vol-cm", "proj-cm"] {
            assert!(g.related("n1", Vertex::ConfigMap, "app", c), "{c}");
        }
        assert!(g.related("n1", Vertex::Claim, "app", "data"));
        assert!(g.related("n1", Vertex::Claim, "app", "web-scratch"));
        assert!(g.related("n1", Vertex::Volume, "", "pv-1"));
        assert!(g.related("n1", Vertex::Secret, "infra", "stage"));
        assert!(g.related("n1", Vertex::ServiceAccount, "app", "runner"));
        assert!(g.related("n1", Vertex::Pod, "app", "web"));
        g.set_attachment("csi-1", Some(&json!({"spec": {"nodeName": "n1"}})));
        assert!(g.related("n1", Vertex::Attachment, "", "csi-1"));
        assert!(!g.related("n2", Vertex::Attachment, "", "csi-1"));
    }

    #[test]
    fn other_nodes_namespaces_and_unnamed_objects_are_unrelated() {
        let g = fresh();
        assert!(!g.related("n2", Vertex::Secret, "app", "vol-secret"));
        assert!(!g.related("n1", Vertex::Secret, "other", "vol-secret"));
        assert!(!g.related("n1", Vertex::Secret, "app", "unused"));
        assert!(!g.related("n1", Vertex::ServiceAccount, "app", "default"));
        assert!(!g.related("n2", Vertex::Volume, "", "pv-1"));
        assert!(!g.related("n1", Vertex::Volume, "", "pv-2"));
    }

    #[test]
    fn deleting_or_moving_a_pod_and_unbinding_a_claim_drop_the_edges() {
        let g = fresh();
        g.set_claim(("app".into(), "data".into()), Some(&json!({"spec": {}})));
        assert!(!g.related("n1", Vertex::Volume, "", "pv-1"));
        assert!(!g.related("n1", Vertex::Secret, "infra", "stage"));
        g.set_pod(("app".into(), "web".into()), Some(&pod("web", "n2")));
        assert!(!g.related("n1", Vertex::Secret, "app", "vol-secret"));
        assert!(g.related("n2", Vertex::Secret, "app", "vol-secret"));
        g.set_pod(("app".into(), "web".into()), None);
        assert!(!g.related("n2", Vertex::Secret, "app", "vol-secret"));
        let mut pending = pod("web", "n1");
        pending["spec"].as_object_mut().unwrap().remove("nodeName");
        g.set_pod(("app".into(), "web".into()), Some(&pending));
        assert!(!g.related("n1", Vertex::Pod, "app", "web"));
    }

    /// Pods naming the same things share one copy of each name, an update
    /// that changes nothing the graph keeps leaves it as it is, and a name
    /// no pod holds any more is forgotten.
    #[test]
    fn names_are_shared_while_pods_hold_them_and_forgotten_after() {
        let g = fresh();
        let mut other = pod("api", "n1");
        other["spec"]["volumes"][0]["secret"]["secretName"] = json!("api-secret");
        g.set_pod(("app".into(), "api".into()), Some(&other));
        {
            let inner = g.read();
            let web = &inner.pods[&lookup_key("app", "web")];
            let api = &inner.pods[&lookup_key("app", "api")];
            assert!(Arc::ptr_eq(&web.node, &api.node));
            assert!(Arc::ptr_eq(&web.service_account, &api.service_account));
            assert!(Arc::ptr_eq(&web.configmaps[0], &api.configmaps[0]));
            let held = inner.pods.get_key_value(&lookup_key("app", "web")).expect("held").0;
            let filed = inner.by_node["n1"].get(&lookup_key("app", "web")).expect("filed");
            assert!(Arc::ptr_eq(&held.1, &filed.1), "the pod's name is held once");
            assert!(inner.names.0.contains("api-secret") && inner.names.0.contains("vol-secret"));
        }
        let before = Arc::as_ptr(&g.read().pods[&lookup_key("app", "api")].node);
        let mut relabeled = other.clone();
        relabeled["metadata"]["labels"] = json!({"tier": "api"});
        g.set_pod(("app".into(), "api".into()), Some(&relabeled));
        assert_eq!(Arc::as_ptr(&g.read().pods[&lookup_key("app", "api")].node), before);
        assert!(g.related("n1", Vertex::Secret, "app", "api-secret"));

        g.set_pod(("app".into(), "api".into()), None);
        assert!(
            !g.read().names.0.contains("api-secret"),
            "only the deleted pod named it"
        );
        assert!(g.read().names.0.contains("vol-secret"), "the other pod still does");
        assert!(g.related("n1", Vertex::Secret, "app", "vol-secret"));
        g.set_pod(("app".into(), "web".into()), None);
        assert!(g.read().holds_no_pod());
        assert!(!g.related("n1", Vertex::Pod, "app", "web"));
    }

    #[test]
    fn released_local_path_volumes_belong_to_the_node_they_are_pinned_to() {
        let g = NodeGraph::default();
        let pv = |phase: &str| {
            json!({"metadata": {"name": "pvc-1", "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
                "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}},
                "status": {"phase": phase}})
        };
        g.set_volume("pvc-1", Some(&pv("Bound")));
        assert!(!g.released_local_path_of("n1", "pvc-1"));
        g.set_volume("pvc-1", Some(&pv("Released")));
        assert!(g.released_local_path_of("n1", "pvc-1"));
        assert!(!g.released_local_path_of("n2", "pvc-1"));
        let mut other = pv("Released");
        other["metadata"]["annotations"] = json!({ANN_PROVISIONED_BY: "example.com/nfs"});
        g.set_volume("pvc-1", Some(&other));
        assert!(!g.released_local_path_of("n1", "pvc-1"));
    }
}
