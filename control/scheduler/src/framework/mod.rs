//! The scheduling framework: what a plugin sees ([`PodInfo`], [`NodeInfo`]), the
//! Filter and Score extension points, and [`Framework`], which runs them the way
//! kube-scheduler does (filters in order, first failure wins; weighted, normalized scores).
//!
//! Plugins live one per file under [`plugins`]; [`plugins::registry`] builds them all.

pub mod diagnosis;
pub mod plugins;
pub mod selector;

use crate::cache::Cache;
use crate::resources::{pod_requests, PodRequests, Resources};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Highest score a Score plugin may give a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// A host port a pod uses: (protocol, host IP, port). Host IP "0.0.0.0" means all addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// "TCP", "UDP" or "SCTP".
    pub protocol: String,
    /// The host IP the port is bound on.
    pub host_ip: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound on one node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.host_ip == other.host_ip || self.host_ip == "0.0.0.0" || other.host_ip == "0.0.0.0")
    }
}

/// The host ports a pod asks for (containers' `hostPort`s).
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// A pod being scheduled, with what plugins need computed once per attempt.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The pod object from the informer cache.
    pub pod: Arc<Pod>,
    /// Its resource requests.
    pub requests: PodRequests,
    /// Host ports it needs free.
    pub host_ports: Vec<HostPort>,
    /// What PreFilter computed for this scheduling cycle (empty outside a cycle).
    pub cycle: Arc<CycleState>,
}

/// Per-cycle state that PreFilter extension points compute once from the whole cache,
/// so Filter is cheap per node (kube-scheduler's CycleState, with typed slots).
#[derive(Clone, Debug, Default)]
pub struct CycleState {
    /// InterPodAffinity's topology counts.
    pub inter_pod_affinity: Option<plugins::inter_pod_affinity::PreFilterState>,
    /// PodTopologySpread's per-domain counts.
    pub pod_topology_spread: Option<plugins::pod_topology_spread::PreFilterState>,
    /// VolumeBinding's view of the pod's PersistentVolumeClaims.
    pub volume_binding: Option<plugins::volume_binding::PreFilterState>,
}

impl PodInfo {
    /// Precompute the per-pod inputs of the plugins.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        PodInfo {
            requests: pod_requests(&pod),
            host_ports: pod_host_ports(&pod),
            pod,
            cycle: Arc::default(),
        }
    }
}

/// A node as the scheduler sees it: the object plus what is bound or assumed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node object from the informer cache.
    pub node: Arc<Node>,
    /// Allocatable resources parsed from `status.allocatable` (falling back to capacity).
    pub allocatable: Resources,
    /// Sum of requests of pods bound or assumed here (`pods` counts them).
    pub requested: Resources,
    /// Same, with default requests for containers without any (for scoring).
    pub non_zero_requested: Resources,
    /// Host ports used by pods here.
    pub used_ports: Vec<HostPort>,
    /// Sizes in bytes of the images the node reports (`status.images`), by
    /// each of their names (ImageLocality).
    pub images: HashMap<String, i64>,
    /// Its position in the cache's nodes ([`crate::cache::Cache::nodes`]),
    /// set by the cache: what is kept per node between cycles is kept by
    /// position, not looked up by name.
    slot: usize,
}

impl NodeInfo {
    /// A node with nothing on it yet.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            node,
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: Vec::new(),
            images: HashMap::new(),
            slot: 0,
        };
        info.set_node(info.node.clone());
        info
    }

    /// Replace the node object (an update from the informer), keeping its pods' usage.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        let list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        self.allocatable = Resources::from_list(list);
        self.images = status
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names.iter().flatten().map(move |n| (n.clone(), size))
            })
            .collect();
        self.node = node;
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Its position in the cache's nodes.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Record its position in the cache's nodes.
    pub(crate) fn set_slot(&mut self, slot: usize) {
        self.slot = slot;
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.metadata.labels.as_ref()
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// Account a pod as running here.
    pub fn add_pod(&mut self, requests: &PodRequests, ports: &[HostPort]) {
        self.requested.add(&requests.requests);
        self.non_zero_requested.add(&requests.non_zero);
        self.used_ports.extend_from_slice(ports);
    }

    /// Stop accounting a pod here.
    pub fn remove_pod(&mut self, requests: &PodRequests, ports: &[HostPort]) {
        self.requested.sub(&requests.requests);
        self.non_zero_requested.sub(&requests.non_zero);
        for p in ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == p) {
                self.used_ports.swap_remove(i);
            }
        }
    }
}

/// Why a node cannot take a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    /// Human-readable reasons, counted per reason in the FailedScheduling message.
    pub reasons: Vec<Cow<'static, str>>,
    /// True when evicting pods could not help (kube's UnschedulableAndUnresolvable).
    pub unresolvable: bool,
}

impl Unfit {
    /// A failure that preempting pods could fix (e.g. Insufficient cpu).
    pub fn resolvable(reason: impl Into<Cow<'static, str>>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            unresolvable: false,
        }
    }

    /// A failure that preempting pods cannot fix (e.g. a taint).
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            unresolvable: true,
        }
    }
}

/// A Filter extension point: may this node run the pod?
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name (as in kube-scheduler's configuration).
    fn name(&self) -> &'static str;
    /// Compute this cycle's state from the whole cache once, before any node is filtered.
    fn pre_filter(&self, _pod: &PodInfo, _cache: &Cache, _state: &mut CycleState) {}
    /// `Ok` when the node fits, otherwise why not.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
}

/// A Score extension point: how good is this (feasible) node for the pod?
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name (as in kube-scheduler's configuration).
    fn name(&self) -> &'static str;
    /// Whether the plugin has nothing to say about this pod (kube's PreScore Skip).
    fn skip(&self, _pod: &PodInfo) -> bool {
        false
    }
    /// Raw score of one node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Bring raw scores of all feasible nodes into 0..=[`MAX_NODE_SCORE`].
    fn normalize(&self, _scores: &mut [i64]) {}
    /// Score all feasible nodes at once, normalized, for plugins that need the whole
    /// cache (kube's PreScore); `None` means use [`ScorePlugin::score`] and `normalize`.
    fn score_nodes(&self, _pod: &PodInfo, _nodes: &[&NodeInfo], _cache: &Cache) -> Option<Vec<i64>> {
        None
    }
}

/// A score plugin with its weight in the total.
pub struct WeightedScore {
    /// The plugin.
    pub plugin: Box<dyn ScorePlugin>,
    /// Its weight (kube-scheduler's defaults are used by [`plugins::registry`]).
    pub weight: i64,
}

/// The configured plugins, in the order they run.
pub struct Framework {
    /// Filters, run in order; the first failure decides the node's reason.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Scores, summed with their weights.
    pub scores: Vec<WeightedScore>,
}

impl Framework {
    /// Run every filter's PreFilter; returns the pod with this cycle's state attached.
    pub fn run_pre_filters(&self, pod: &PodInfo, cache: &Cache) -> PodInfo {
        let mut state = CycleState::default();
        for f in &self.filters {
            f.pre_filter(pod, cache, &mut state);
        }
        PodInfo {
            cycle: Arc::new(state),
            ..pod.clone()
        }
    }

    /// Run all filters on one node; the first failing plugin's reason is returned.
    pub fn run_filters(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), (&'static str, Unfit)> {
        for f in &self.filters {
            f.filter(pod, node).map_err(|u| (f.name(), u))?;
        }
        Ok(())
    }

    /// Total weighted score of each feasible node (same order as `nodes`).
    pub fn run_scores(&self, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for ws in &self.scores {
            if ws.plugin.skip(pod) {
                continue;
            }
            if let Some(all) = ws.plugin.score_nodes(pod, nodes, cache) {
                for (t, s) in total.iter_mut().zip(&all) {
                    *t += s * ws.weight;
                }
                continue;
            }
            for (s, n) in scores.iter_mut().zip(nodes) {
                *s = ws.plugin.score(pod, n);
            }
            ws.plugin.normalize(&mut scores);
            for (t, s) in total.iter_mut().zip(&scores) {
                *t += s * ws.weight;
            }
        }
        total
    }
}

/// Scale scores so the highest becomes [`MAX_NODE_SCORE`] (optionally reversed: the
/// lowest becomes the best), like kube-scheduler's `DefaultNormalizeScore`.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for plugin unit tests.
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, NodeSpec, NodeStatus, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    /// A node with the given allocatable cpu/memory and 110 pods.
    pub fn node(name: &str, cpu: &str, memory: &str) -> Node {
        let mut alloc = BTreeMap::new();
        alloc.insert("cpu".to_string(), Quantity(cpu.into()));
        alloc.insert("memory".to_string(), Quantity(memory.into()));
        alloc.insert("pods".to_string(), Quantity("110".into()));
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(alloc),
                ..Default::default()
            }),
        }
    }

    /// A pod with one container requesting cpu/memory (empty string: no request).
    pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), Quantity(memory.into()));
        }
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Give the pod's first container a host port.
    pub fn with_host_port(mut pod: Pod, port: i32, host_ip: Option<&str>) -> Pod {
        pod.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(port),
            host_ip: host_ip.map(Into::into),
            ..Default::default()
        }]);
        pod
    }

    pub fn pod_info(pod: Pod) -> PodInfo {
        PodInfo::new(Arc::new(pod))
    }

    pub fn node_info(node: Node) -> NodeInfo {
        NodeInfo::new(Arc::new(node))
    }
}
