//! The scheduler cache: every node with what bound *and assumed* pods use on it.
//!
//! Fed by the node and pod informers. A scheduling decision is *assumed* here before
//! the binding request is sent, so the next decision already sees the pod on its node
//! and concurrent bindings can never overcommit a node. The assumption is confirmed when
//! the informer shows the bound pod, forgotten when binding fails, and expires if the
//! informer never shows it after a successful binding.

use crate::framework::plugins::default_preemption::{Budget, Running};
use crate::framework::plugins::inter_pod_affinity::PodTerms;
use crate::framework::selector::{Narrowing, Selector};
use crate::framework::{pod_host_ports, HostPort, NodeInfo, PodInfo};
use crate::label_index::LabelIndex;
use crate::placed_pod::PlacedPod;
use crate::resources::{pod_requests, PodRequests};
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an assumed pod whose binding succeeded may wait for the informer.
pub const ASSUME_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
enum PodState {
    /// Assumed by a scheduling decision; `bound_at` is set once the binding request succeeded.
    Assumed { bound_at: Option<Instant> },
    /// Seen bound by the informer.
    Bound,
}

#[derive(Clone, Debug)]
struct CachedPod {
    node: String,
    requests: PodRequests,
    ports: Vec<HostPort>,
    state: PodState,
    /// What the plugins read of the pod ([`PlacedPod`]); absent only for
    /// usage recorded without one.
    object: Option<Arc<PlacedPod>>,
}

/// What the scheduling queue keeps of a pending pod: what its plugins read
/// of a pod to place. That is all of it but the following, which no plugin
/// reads: of each container and init container only its name, image
/// (ImageLocality), ports (NodePorts), resources and restart policy (the
/// requests, sidecars counted as such) are kept; ephemeral containers go;
/// of its volumes only those backed by a claim (VolumeBinding, through
/// [`sluice_kube::storage::claim_names`]). A plugin that comes to read more
/// of a pending pod must be given it here. The scheduler writes a pod only
/// by patches (its binding, nomination and condition), so nothing trimmed is
/// written back. Measured with heaptrack (2,000 simulated nodes, 6,000
/// pods, the scheduler slower than the pods' creation): the pending pods
/// held by the queue were 75 MB of its 95 MB heap peak, 35 MB of it the
/// volumes (a `Volume` holds every source's fields inline; the service
/// account's projected volume and its sources), the containers' mounts and
/// restart rules. The queue holds the copy as JSON (`queue`), which this
/// trimming also keeps short.
pub fn pending_copy(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.ephemeral_containers = None;
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(sluice_kube::storage::names_a_claim);
            if volumes.is_empty() {
                spec.volumes = None;
            }
        }
        let placed = |c: Container| Container {
            name: c.name,
            image: c.image,
            ports: c.ports,
            resources: c.resources,
            restart_policy: c.restart_policy,
            ..Default::default()
        };
        spec.containers = std::mem::take(&mut spec.containers).into_iter().map(placed).collect();
        spec.init_containers = spec
            .init_containers
            .take()
            .map(|init| init.into_iter().map(placed).collect());
    }
    pod
}

/// Whether the pod has any pod affinity or anti-affinity (kube's `PodsWithAffinity`).
pub fn has_pod_affinity(pod: &Pod) -> bool {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    a.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// A pod put on (`added`) or taken off a node, in the order the cache saw it, with
/// what label-counting plugins (PodTopologySpread) look at: they keep their counts
/// current from these instead of scanning every cached pod each cycle. Only those
/// fields are kept, not the pod object (old versions would otherwise stay alive).
#[derive(Clone, Debug)]
pub struct Placement {
    /// The node's name.
    pub node: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// The pod has a deletionTimestamp.
    pub terminating: bool,
    /// Put on (true) or taken off (false).
    pub added: bool,
}

/// Placements kept for [`Cache::placements_since`]; a counter further behind counts again.
const PLACEMENTS_KEPT: usize = 4096;

/// Tells caches apart, so a counter never replays one cache's placements onto another's.
static CACHE_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Whether replacing a pod whose metadata was `old` by one with `new` on the same
/// node can change what a label-counting plugin sees (labels, namespace, or
/// whether it is terminating).
fn counted_differently(old: &ObjectMeta, new: &ObjectMeta) -> bool {
    old.labels != new.labels
        || old.namespace != new.namespace
        || old.deletion_timestamp.is_some() != new.deletion_timestamp.is_some()
}

/// Usage of pods on a node the cache does not know (yet): pod events can arrive before
/// their node's, and pods outlive a deleted node until garbage collected.
#[derive(Clone, Debug, Default)]
struct Orphaned {
    pods: Vec<(PodRequests, Vec<HostPort>)>,
}

/// Nodes and the pods bound or assumed on them.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    node_index: HashMap<String, usize>,
    pods: HashMap<String, CachedPod>,
    orphaned: HashMap<String, Orphaned>,
    /// Placed pods (bound or assumed, with their objects) by their labels:
    /// what a pod affinity term may select is looked up here.
    labeled: LabelIndex,
    /// Cached pods with required anti-affinity, filed under the label each
    /// of those terms requires (its selector's [`Narrowing`]): an incoming
    /// pod is checked only against the terms that may select it.
    anti_affinity_filed: LabelIndex,
    /// Cached pods with a required anti-affinity term no label narrows.
    anti_affinity_unfiled: HashSet<Arc<str>>,
    /// Uids of cached pods whose terms add to other pods' scores (required
    /// affinity, preferred affinity or anti-affinity; required anti-affinity
    /// only filters): InterPodAffinity's score walks these.
    scoring_terms: HashSet<String>,
    /// The terms of cached pods with any pod affinity or anti-affinity,
    /// resolved once when the pod is cached or changes.
    affinity_terms: HashMap<String, Arc<PodTerms>>,
    /// Namespace labels, for pod affinity terms' `namespaceSelector`.
    namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Service selectors by namespace and name (default topology spreading).
    services: HashMap<String, HashMap<String, BTreeMap<String, String>>>,
    /// ReplicationController, ReplicaSet and StatefulSet selectors by (kind, namespace, name).
    controllers: HashMap<(String, String, String), LabelSelector>,
    /// PodDisruptionBudgets by (namespace, name), for preemption.
    budgets: HashMap<(String, String), Budget>,
    /// How many nodes report each image name (ImageLocality's spread).
    image_nodes: HashMap<String, usize>,
    /// PersistentVolumeClaims, PersistentVolumes and StorageClasses (VolumeBinding).
    pub volumes: crate::framework::plugins::volume_binding::Volumes,
    /// Where the next search starts, so successive pods spread over all nodes
    /// (kube-scheduler's `nextStartNodeIndex`).
    pub next_start: usize,
    /// This cache's identity (see [`Placement`]).
    id: u64,
    /// Counts changes to the set of nodes or their labels.
    nodes_changed: u64,
    /// The most recent placements; the first has sequence number `placements_start`.
    placements: std::collections::VecDeque<Placement>,
    placements_start: u64,
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// Whether a node change may let pending pods fit: a new node, or changed
/// allocatable, labels, taints or cordon flag.
/// Whether a node's update may let a pending pod fit, as kube-scheduler's
/// node update events: allocatable, labels, annotations (a node publishing its
/// local storage root makes `WaitForFirstConsumer` claims provisionable
/// there), taints and `unschedulable`.
fn scheduling_relevant_change(old: &NodeInfo, new: &NodeInfo) -> bool {
    old.allocatable != new.allocatable
        || old.node.metadata.labels != new.node.metadata.labels
        || old.node.metadata.annotations != new.node.metadata.annotations
        || old.node.spec.as_ref().map(|s| (&s.taints, s.unschedulable))
            != new.node.spec.as_ref().map(|s| (&s.taints, s.unschedulable))
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache {
            id: CACHE_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..Cache::default()
        }
    }

    /// This cache's identity and the sequence number its next placement gets.
    pub fn placement_cursor(&self) -> (u64, u64) {
        (self.id, self.placements_start + self.placements.len() as u64)
    }

    /// The placements from cursor `from` on (as [`Cache::placement_cursor`] gave it),
    /// or None when they are no longer all kept or `from` is another cache's.
    pub fn placements_since(&self, from: (u64, u64)) -> Option<impl Iterator<Item = &Placement>> {
        let (id, seq) = from;
        let end = self.placements_start + self.placements.len() as u64;
        if id != self.id || seq < self.placements_start || seq > end {
            return None;
        }
        Some(self.placements.iter().skip((seq - self.placements_start) as usize))
    }

    /// Put the pod cached under `key`, whose metadata is `pod`, on `node`
    /// (`added`) or take it off.
    fn place(&mut self, key: &str, node: &str, pod: &ObjectMeta, added: bool) {
        let key: Arc<str> = key.into();
        for (k, v) in pod.labels.iter().flatten() {
            if added {
                self.labeled.insert(k, v, &key);
            } else {
                self.labeled.remove(k, v, &key);
            }
        }
        if self.placements.len() == PLACEMENTS_KEPT {
            self.placements.pop_front();
            self.placements_start += 1;
        }
        self.placements.push_back(Placement {
            node: node.to_string(),
            namespace: pod.namespace.clone().unwrap_or_else(|| "default".into()),
            labels: pod.labels.clone(),
            terminating: pod.deletion_timestamp.is_some(),
            added,
        });
    }

    /// This cache's identity and how many times a node was added, removed
    /// or relabeled: what is computed from the nodes' labels alone stays
    /// valid while this stays the same.
    pub fn node_generation(&self) -> (u64, u64) {
        (self.id, self.nodes_changed)
    }

    /// All known nodes.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.node_index.get(name).map(|&i| &self.nodes[i])
    }

    /// One node's position in [`Cache::nodes`], by name.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.node_index.get(name).copied()
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.node_index.get(name).map(|&i| &mut self.nodes[i])
    }

    /// Add or update a node; returns whether pending pods may now fit.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(info) = self.node_mut(&name) {
            let old = info.clone();
            info.set_node(node);
            let info = info.clone();
            if old.node.metadata.labels != info.node.metadata.labels {
                self.nodes_changed += 1;
            }
            self.count_images(&old, -1);
            self.count_images(&info, 1);
            return scheduling_relevant_change(&old, &info);
        }
        self.nodes_changed += 1;
        let mut info = NodeInfo::new(node);
        self.count_images(&info, 1);
        if let Some(orphaned) = self.orphaned.remove(&name) {
            for (req, ports) in &orphaned.pods {
                info.add_pod(req, ports);
            }
        }
        info.set_slot(self.nodes.len());
        self.node_index.insert(name, self.nodes.len());
        self.nodes.push(info);
        true
    }

    /// Forget a node; its pods' usage is kept aside in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.node_index.remove(name) else { return };
        self.nodes_changed += 1;
        let info = self.nodes.swap_remove(i);
        self.count_images(&info, -1);
        if i < self.nodes.len() {
            self.nodes[i].set_slot(i);
            let moved = self.nodes[i].name().to_string();
            self.node_index.insert(moved, i);
        }
        let orphaned: Vec<_> = self
            .pods
            .values()
            .filter(|p| p.node == name)
            .map(|p| (p.requests, p.ports.clone()))
            .collect();
        if !orphaned.is_empty() {
            self.orphaned.insert(name.to_string(), Orphaned { pods: orphaned });
        }
    }

    /// Adds (`delta` 1) or removes (-1) `info`'s image names in the per-image node counts.
    fn count_images(&mut self, info: &NodeInfo, delta: isize) {
        for name in info.images.keys() {
            let n = self.image_nodes.entry(name.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    /// How many nodes report an image by this name (kube-scheduler's
    /// `ImageStateSummary.NumNodes`).
    pub fn image_node_count(&self, name: &str) -> usize {
        self.image_nodes.get(name).copied().unwrap_or(0)
    }

    fn account(&mut self, node: &str, requests: &PodRequests, ports: &[HostPort], add: bool) {
        if let Some(info) = self.node_mut(node) {
            if add {
                info.add_pod(requests, ports)
            } else {
                info.remove_pod(requests, ports)
            }
            return;
        }
        let orphaned = self.orphaned.entry(node.to_string()).or_default();
        if add {
            orphaned.pods.push((*requests, ports.to_vec()));
        } else if let Some(i) = orphaned.pods.iter().position(|(r, p)| r == requests && p == ports) {
            orphaned.pods.swap_remove(i);
            if orphaned.pods.is_empty() {
                self.orphaned.remove(node);
            }
        }
    }

    /// Record a bound, non-terminal pod seen by the informer (confirms an assumption).
    /// Returns whether pending pods may now fit because of it: a pod the cache did not
    /// know, or whose labels changed (pod affinity may now be satisfied).
    pub fn add_or_update_bound_pod(&mut self, pod: &Pod) -> bool {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let key = uid(pod).to_string();
        let object = Arc::new(PlacedPod::of(pod));
        self.index_affinity(&key, pod);
        if let Some(existing) = self.pods.get_mut(&key) {
            existing.state = PodState::Bound;
            let relabeled = existing
                .object
                .as_ref()
                .is_none_or(|o| o.metadata.labels != pod.metadata.labels);
            let previous = existing.object.replace(object.clone());
            if existing.node == node {
                match previous {
                    Some(old) if !counted_differently(&old.metadata, &pod.metadata) => {}
                    previous => {
                        if let Some(old) = previous {
                            self.place(&key, &node, &old.metadata, false);
                        }
                        self.place(&key, &node, &pod.metadata, true);
                    }
                }
                return relabeled;
            }
            // Bound somewhere else than assumed: move the usage.
            let old = self.pods.remove(&key).expect("just seen");
            self.account(&old.node, &old.requests, &old.ports, false);
            if let Some(previous) = previous {
                self.place(&key, &old.node, &previous.metadata, false);
            }
        }
        let cached = CachedPod {
            node: node.clone(),
            requests: pod_requests(pod),
            ports: pod_host_ports(pod),
            state: PodState::Bound,
            object: Some(object.clone()),
        };
        self.account(&node, &cached.requests, &cached.ports, true);
        self.place(&key, &node, &pod.metadata, true);
        self.pods.insert(key, cached);
        true
    }

    /// Remove a pod (deleted or terminal); returns whether it was using a node.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(old) = self.pods.remove(uid) else { return false };
        self.unindex_affinity(uid);
        self.account(&old.node, &old.requests, &old.ports, false);
        if let Some(object) = old.object {
            self.place(uid, &old.node, &object.metadata, false);
        }
        true
    }

    /// Whether the pod is assumed or bound in the cache.
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Whether the pod is known bound (the informer showed it on a node).
    pub fn is_bound(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.state == PodState::Bound)
    }

    /// Put a pod on a node before binding it, so later decisions see it there.
    pub fn assume(&mut self, uid: &str, node: &str, requests: PodRequests, ports: Vec<HostPort>) {
        if self.pods.contains_key(uid) {
            return;
        }
        self.account(node, &requests, &ports, true);
        self.pods.insert(
            uid.to_string(),
            CachedPod {
                node: node.to_string(),
                requests,
                ports,
                state: PodState::Assumed { bound_at: None },
                object: None,
            },
        );
    }

    /// [`Cache::assume`] with the pod object, so the next decisions see its labels and
    /// anti-affinity on the node.
    pub fn assume_pod(&mut self, uid: &str, node: &str, pod: &PodInfo) {
        if self.pods.contains_key(uid) {
            return;
        }
        self.assume(uid, node, pod.requests, pod.host_ports.clone());
        if let Some(cached) = self.pods.get_mut(uid) {
            cached.object = Some(Arc::new(PlacedPod::of(&pod.pod)));
        }
        self.place(uid, node, &pod.pod.metadata, true);
        self.index_affinity(uid, &pod.pod);
    }

    fn index_affinity(&mut self, uid: &str, pod: &Pod) {
        self.unindex_affinity(uid);
        if !has_pod_affinity(pod) {
            return;
        }
        let terms = Arc::new(PodTerms::of(pod));
        let key: Arc<str> = uid.into();
        for term in &terms.required_anti_affinity {
            match term.selector().narrowing() {
                Narrowing::Nothing => {}
                Narrowing::OneOf(k, values) => {
                    for v in values {
                        self.anti_affinity_filed.insert(k, v, &key);
                    }
                }
                Narrowing::Unnarrowed => {
                    self.anti_affinity_unfiled.insert(key.clone());
                }
            }
        }
        if terms.scores_others() {
            self.scoring_terms.insert(uid.to_string());
        }
        self.affinity_terms.insert(uid.to_string(), terms);
    }

    fn unindex_affinity(&mut self, uid: &str) {
        self.scoring_terms.remove(uid);
        let Some(terms) = self.affinity_terms.remove(uid) else {
            return;
        };
        for term in &terms.required_anti_affinity {
            if let Narrowing::OneOf(k, values) = term.selector().narrowing() {
                for v in values {
                    self.anti_affinity_filed.remove(k, v, uid);
                }
            }
        }
        self.anti_affinity_unfiled.remove(uid);
    }

    /// A placed pod (on a known node, with its object) with its node and kept terms.
    fn placed(&self, uid: &str) -> Option<(&NodeInfo, &PlacedPod, Option<&PodTerms>)> {
        let p = self.pods.get(uid)?;
        Some((
            self.node(&p.node)?,
            p.object.as_deref()?,
            self.affinity_terms.get(uid).map(|t| &**t),
        ))
    }

    /// The placed pods `selector` may select, each once: those with a label
    /// it requires, or all of them when none narrows it. The caller checks
    /// the whole selector and the namespaces.
    pub fn pods_selectable_by(
        &self,
        selector: &Selector,
    ) -> impl Iterator<Item = (&NodeInfo, &PlacedPod, Option<&PodTerms>)> {
        let (found, all) = match self.labeled.narrowed(selector.narrowing()) {
            Some(uids) => (Some(uids), None),
            None => (None, Some(self.pods_on_nodes())),
        };
        let found = found.into_iter().flatten().filter_map(|u| self.placed(u));
        found.chain(all.into_iter().flatten())
    }

    /// The placed pods with a required anti-affinity term that may select a
    /// pod labelled `labels`, each once: those whose term requires one of
    /// these labels, and those with a term no label narrows.
    pub fn anti_affinity_toward(
        &self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> impl Iterator<Item = (&NodeInfo, &PlacedPod, Option<&PodTerms>)> {
        let mut uids: Vec<&Arc<str>> = self.anti_affinity_unfiled.iter().collect();
        for (k, v) in labels.into_iter().flatten() {
            uids.extend(self.anti_affinity_filed.get(k, v));
        }
        uids.sort();
        uids.dedup();
        uids.into_iter().filter_map(|u| self.placed(u))
    }

    /// The placed pods whose terms add to other pods' scores, with their nodes and terms.
    pub fn pods_with_scoring_terms(&self) -> impl Iterator<Item = (&NodeInfo, &PlacedPod, Option<&PodTerms>)> {
        self.scoring_terms.iter().filter_map(|uid| self.placed(uid))
    }

    /// Every cached pod (bound or assumed) with its node and, for pods with pod
    /// (anti-)affinity, their terms, for plugins that count pods by topology; pods on
    /// nodes the cache does not know are left out.
    pub fn pods_on_nodes(&self) -> impl Iterator<Item = (&NodeInfo, &PlacedPod, Option<&PodTerms>)> {
        self.pods.iter().filter_map(|(uid, p)| {
            let pod = p.object.as_deref()?;
            Some((self.node(&p.node)?, pod, self.affinity_terms.get(uid).map(|t| &**t)))
        })
    }

    /// Every cached pod (bound or assumed) on a node the cache knows, with
    /// that node's position in [`Cache::nodes`].
    pub fn pods_by_slot(&self) -> impl Iterator<Item = (usize, &PlacedPod)> {
        self.pods
            .values()
            .filter_map(|p| Some((self.slot(&p.node)?, p.object.as_deref()?)))
    }

    /// Record a namespace's labels; returns whether they changed.
    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) -> bool {
        self.namespaces.insert(name.to_string(), labels.clone()) != Some(labels)
    }

    /// Forget a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// A namespace's labels, if the namespace is known.
    pub fn namespace_labels(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(name)
    }

    /// Every known namespace's name and labels.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Binding failed: undo the assumption (a pod already confirmed bound is kept).
    pub fn forget(&mut self, uid: &str) {
        if matches!(
            self.pods.get(uid),
            Some(CachedPod {
                state: PodState::Assumed { .. },
                ..
            })
        ) {
            self.remove_pod(uid);
        }
    }

    /// Binding succeeded: start the clock for the informer to confirm it.
    pub fn finish_binding(&mut self, uid: &str, now: Instant) {
        if let Some(CachedPod {
            state: PodState::Assumed { bound_at },
            ..
        }) = self.pods.get_mut(uid)
        {
            *bound_at = Some(now);
        }
    }

    /// Drop assumptions whose binding succeeded more than [`ASSUME_TTL`] ago but that the
    /// informer never confirmed; returns how many.
    pub fn expire_assumed(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| matches!(p.state, PodState::Assumed { bound_at: Some(t) } if now.duration_since(t) > ASSUME_TTL))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.remove_pod(k);
        }
        expired.len()
    }

    /// After a re-list: drop bound pods the list did not contain (assumed ones stay).
    pub fn retain_bound_pods(&mut self, listed: &std::collections::HashSet<String>) -> bool {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, p)| p.state == PodState::Bound && !listed.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove_pod(k);
        }
        !gone.is_empty()
    }

    /// Record a Service's selector (`None`: it selects no pods).
    pub fn upsert_service(&mut self, ns: &str, name: &str, selector: Option<BTreeMap<String, String>>) {
        let in_ns = self.services.entry(ns.to_string()).or_default();
        match selector {
            Some(sel) => {
                in_ns.insert(name.to_string(), sel);
            }
            None => {
                in_ns.remove(name);
            }
        }
    }

    /// Forget a Service.
    pub fn remove_service(&mut self, ns: &str, name: &str) {
        self.upsert_service(ns, name, None);
    }

    /// Selectors of the Services of a namespace.
    pub fn service_selectors(&self, ns: &str) -> impl Iterator<Item = &BTreeMap<String, String>> {
        self.services.get(ns).into_iter().flat_map(|m| m.values())
    }

    /// Record a ReplicationController's, ReplicaSet's or StatefulSet's selector (`kind` as in ownerReferences).
    pub fn upsert_controller(&mut self, kind: &str, ns: &str, name: &str, selector: Option<LabelSelector>) {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        match selector {
            Some(sel) => {
                self.controllers.insert(key, sel);
            }
            None => {
                self.controllers.remove(&key);
            }
        }
    }

    /// The selector of a ReplicationController, ReplicaSet or StatefulSet.
    pub fn controller_selector(&self, kind: &str, ns: &str, name: &str) -> Option<&LabelSelector> {
        self.controllers
            .get(&(kind.to_string(), ns.to_string(), name.to_string()))
    }

    /// Record a PodDisruptionBudget (`None`: it was deleted).
    pub fn upsert_budget(&mut self, ns: &str, name: &str, budget: Option<Budget>) {
        let key = (ns.to_string(), name.to_string());
        match budget {
            Some(b) => {
                self.budgets.insert(key, b);
            }
            None => {
                self.budgets.remove(&key);
            }
        }
    }

    /// Every known PodDisruptionBudget.
    pub fn budgets(&self) -> Vec<Budget> {
        self.budgets.values().cloned().collect()
    }

    /// The pods using each node (bound or assumed), for preemption.
    pub fn running_by_node(&self) -> HashMap<&str, Vec<Running>> {
        let mut by_node: HashMap<&str, Vec<Running>> = HashMap::new();
        for p in self.pods.values() {
            if let Some(pod) = &p.object {
                by_node.entry(p.node.as_str()).or_default().push(Running {
                    pod: pod.clone(),
                    requests: p.requests,
                    ports: p.ports.clone(),
                });
            }
        }
        by_node
    }

    /// After a re-list: drop nodes the list did not contain.
    pub fn retain_nodes(&mut self, listed: &std::collections::HashSet<String>) {
        let gone: Vec<String> = self
            .node_index
            .keys()
            .filter(|n| !listed.contains(*n))
            .cloned()
            .collect();
        for n in gone {
            self.remove_node(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, pod};
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn with_uid(mut p: Pod, uid: &str, node: Option<&str>) -> Pod {
        p.metadata.uid = Some(uid.into());
        p.spec.as_mut().unwrap().node_name = node.map(Into::into);
        p
    }

    /// A cached pod's pod (anti-)affinity terms are resolved when it is cached and
    /// follow its changes, so the plugins do not resolve them again every cycle.
    #[test]
    fn affinity_terms_are_kept_with_the_pod() {
        use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity};
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(crate::framework::testing::node("n1", "4", "8Gi")));
        let mut p = with_uid(crate::framework::testing::pod("web-1", "", ""), "u1", Some("n1"));
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    topology_key: "kubernetes.io/hostname".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(web.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        cache.add_or_update_bound_pod(&p);
        assert_eq!(
            cache.anti_affinity_toward(Some(&web)).count(),
            1,
            "its required anti-affinity is checked against pods labelled app=web"
        );
        let kept: Vec<_> = cache
            .pods_on_nodes()
            .map(|(_, _, t)| t.map(|t| t.required_anti_affinity[0].topology_key.clone()))
            .collect();
        assert_eq!(kept, [Some("kubernetes.io/hostname".to_string())]);
        assert_eq!(
            cache.pods_with_scoring_terms().count(),
            0,
            "required anti-affinity scores no other pod"
        );
        // The pod drops its affinity: no terms kept.
        p.spec.as_mut().unwrap().affinity = None;
        cache.add_or_update_bound_pod(&p);
        assert!(cache.pods_on_nodes().all(|(_, _, t)| t.is_none()));
        assert_eq!(cache.anti_affinity_toward(Some(&web)).count(), 0);
        assert!(cache.anti_affinity_filed.is_empty());
        cache.remove_pod("u1");
        assert!(cache.affinity_terms.is_empty());
    }

    /// A bound pod is kept without what no plugin reads of it (containers,
    /// volumes, annotations, container statuses), and with all they do
    /// read; its requests and host ports count in full.
    #[test]
    fn a_pending_pod_is_queued_with_what_placing_it_reads() {
        use k8s_openapi::api::core::v1::{
            EnvVar, EphemeralContainer, PersistentVolumeClaimVolumeSource, Probe, Volume, VolumeMount,
        };
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "web", "image": "registry.local/web:1",
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                }],
                "initContainers": [
                    {"name": "proxy", "image": "registry.local/proxy:1", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m"}}},
                    {"name": "migrate", "image": "registry.local/migrate:1",
                     "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                ],
                "overhead": {"cpu": "10m"},
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                ],
            },
        }))
        .expect("a pod");
        let spec = p.spec.as_mut().unwrap();
        spec.containers[0].env = Some(vec![EnvVar {
            name: "A".into(),
            value: Some("b".into()),
            ..Default::default()
        }]);
        spec.containers[0].liveness_probe = Some(Probe::default());
        spec.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
        spec.ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debug".into(),
            ..Default::default()
        }]);

        let queued = pending_copy(p.clone());

        // What the plugins compute from it is what they compute from the whole pod.
        assert_eq!(pod_requests(&queued), pod_requests(&p));
        assert_eq!(pod_host_ports(&queued), pod_host_ports(&p));
        assert_eq!(pod_host_ports(&queued)[0].port, 8080);
        assert_eq!(
            sluice_kube::storage::claim_names(&queued),
            ["data-web-0", "web-0-scratch"]
        );
        let spec = queued.spec.as_ref().unwrap();
        let images = |s: &PodSpec| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .map(|c| c.image.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(images(spec), images(p.spec.as_ref().unwrap()));
        assert_eq!(
            spec.init_containers.as_ref().unwrap()[0].restart_policy.as_deref(),
            Some("Always")
        );
        assert_eq!(spec.tolerations, p.spec.as_ref().unwrap().tolerations);
        assert_eq!(spec.overhead, p.spec.as_ref().unwrap().overhead);
        assert_eq!(queued.metadata, p.metadata);
        // What no plugin reads is gone.
        let c = &spec.containers[0];
        assert_eq!((&c.env, &c.liveness_probe, &c.volume_mounts), (&None, &None, &None));
        assert_eq!(spec.ephemeral_containers, None);
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v: &Volume| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"]);
        assert_eq!(
            spec.volumes.as_ref().unwrap()[0].persistent_volume_claim,
            Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-web-0".into(),
                ..Default::default()
            })
        );
    }

    #[test]
    fn a_bound_pod_is_kept_with_what_the_plugins_read() {
        use k8s_openapi::api::core::v1::{
            Affinity, ContainerPort, ContainerStatus, EnvVar, PodAffinity, PodAffinityTerm, Volume,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(node("n1", "4", "8Gi")));
        let mut p = with_uid(pod("web-1", "500m", "1Gi"), "u1", Some("n1"));
        p.metadata.namespace = Some("shop".into());
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.metadata.annotations = Some([("big".to_string(), "x".repeat(4096))].into());
        let started = Time(k8s_openapi::jiff::Timestamp::now());
        let spec = p.spec.as_mut().unwrap();
        spec.priority = Some(7);
        spec.affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    topology_key: "zone".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        spec.volumes = Some(vec![Volume {
            name: "kube-api-access".into(),
            ..Default::default()
        }]);
        spec.containers[0].env = Some(vec![EnvVar {
            name: "A".into(),
            value: Some("b".into()),
            ..Default::default()
        }]);
        spec.containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }]);
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(started.clone()),
            container_statuses: Some(vec![ContainerStatus {
                name: "c".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        cache.add_or_update_bound_pod(&p);

        let (info, kept, terms) = cache.pods_on_nodes().next().expect("the pod is on n1");
        assert_eq!(kept.metadata.labels, p.metadata.labels);
        assert_eq!(kept.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(kept.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(kept.metadata.annotations, None);
        assert_eq!((kept.priority, kept.start_time.clone()), (Some(7), Some(started)));
        // Its affinity terms are kept resolved beside it.
        assert_eq!(terms.map(|t| t.required_affinity.len()), Some(1));
        assert_eq!(info.name(), "n1");
        // Counted in full: the node's requests and host ports.
        assert_eq!(info.requested, pod_requests(&p).requests);
        assert_eq!(info.used_ports, pod_host_ports(&p));
        assert_eq!(info.used_ports.len(), 1);
    }

    #[test]
    fn a_node_publishing_an_annotation_wakes_pending_pods() {
        let mut cache = Cache::new();
        let n = node("n1", "2", "4Gi");
        assert!(cache.upsert_node(Arc::new(n.clone())), "a new node is relevant");
        assert!(!cache.upsert_node(Arc::new(n.clone())), "an unchanged node is not");
        let mut rooted = n.clone();
        rooted.metadata.annotations =
            Some([(sluice_kube::local_path::ANN_ROOT.to_string(), "/var/lib/x".to_string())].into());
        assert!(cache.upsert_node(Arc::new(rooted)), "a new annotation is relevant");
    }

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(node("n1", "2", "4Gi")));
        let p = with_uid(pod("p", "1", "1Gi"), "u1", None);
        cache.assume("u1", "n1", pod_requests(&p), vec![]);
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000);
        cache.forget("u1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 0);

        cache.assume("u1", "n1", pod_requests(&p), vec![]);
        cache.add_or_update_bound_pod(&with_uid(p.clone(), "u1", Some("n1")));
        assert!(cache.is_bound("u1"));
        cache.forget("u1"); // a late failure report must not drop a confirmed pod
        assert_eq!(
            cache.node("n1").unwrap().requested.milli_cpu,
            1000,
            "confirmed pods are not double-counted"
        );
        assert!(cache.remove_pod("u1"));
        assert_eq!(cache.node("n1").unwrap().requested, Default::default());
    }

    #[test]
    fn unconfirmed_bindings_expire() {
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(node("n1", "2", "4Gi")));
        let p = pod("p", "1", "1Gi");
        cache.assume("u1", "n1", pod_requests(&p), vec![]);
        let t0 = Instant::now();
        cache.finish_binding("u1", t0);
        assert_eq!(cache.expire_assumed(t0 + Duration::from_secs(1)), 0);
        assert_eq!(cache.expire_assumed(t0 + ASSUME_TTL + Duration::from_secs(1)), 1);
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 0);
    }

    #[test]
    fn pods_seen_before_their_node_are_counted_when_it_appears() {
        let mut cache = Cache::new();
        cache.add_or_update_bound_pod(&with_uid(pod("p", "500m", ""), "u1", Some("late")));
        assert!(cache.upsert_node(Arc::new(node("late", "2", "4Gi"))));
        assert_eq!(cache.node("late").unwrap().requested.milli_cpu, 500);
        cache.upsert_node(Arc::new(node("other", "2", "4Gi")));
        cache.remove_node("late");
        assert_eq!(cache.nodes().len(), 1);
        assert_eq!(cache.node("other").unwrap().name(), "other");
        cache.upsert_node(Arc::new(node("late", "2", "4Gi")));
        assert_eq!(
            cache.node("late").unwrap().requested.milli_cpu,
            500,
            "usage survives a node delete/re-add"
        );
    }

    #[test]
    fn only_relevant_node_changes_wake_pending_pods() {
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(node("n1", "2", "4Gi")));
        assert!(!cache.upsert_node(Arc::new(node("n1", "2", "4Gi"))));
        assert!(cache.upsert_node(Arc::new(node("n1", "4", "4Gi"))));
    }
}
