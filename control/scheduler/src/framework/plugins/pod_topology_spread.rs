//! PodTopologySpread: `spec.topologySpreadConstraints`. A `DoNotSchedule` constraint
//! rejects a node when placing the pod there would make its domain hold more than
//! `maxSkew` matching pods above the least populated eligible domain (filter); the
//! `ScheduleAnyway` ones prefer nodes whose domains hold fewer matching pods (score).
//!
//! Eligible domains come from nodes that carry every constraint's topology key and pass
//! the constraint's node inclusion policies (`nodeAffinityPolicy` Honor by default:
//! the pod's nodeSelector/required node affinity; `nodeTaintsPolicy` Ignore by default).
//! With fewer eligible domains than `minDomains`, the global minimum counts as 0.
//! PreFilter sums the matching pods per domain from the counts kept per node between
//! cycles ([`MatchCounts`]); when every node passes the inclusion policies, from the
//! nodes holding matching pods only, with the number of eligible domains recounted only
//! when the nodes change, else in one pass over every node. Filter, which runs for every
//! node searched, reads the hostname and zone domains' counts by number
//! ([`NodeDomains`]), not by label value.
//!
//! A pod with no constraints at all gets kube-scheduler's system defaults when it
//! belongs to a Service (whose selector matches it) or is controlled by a
//! ReplicationController, ReplicaSet or StatefulSet: `ScheduleAnyway` over the hostname (maxSkew 3) and the zone
//! (maxSkew 5), selecting the pods those objects select; nodes lacking a key are
//! then scored, not ignored.

use crate::cache::Cache;
use crate::framework::plugins::{node_affinity, taint_toleration};
use crate::framework::selector::{Narrowing, Selector};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE};
use crate::placed_pod::PlacedPod;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Plugin name.
pub const NAME: &str = "PodTopologySpread";
/// Reason when the skew would exceed `maxSkew`.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Reason when the node lacks a constraint's topology key.
pub const REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
/// The topology keys of the system default constraints (hostname, zone),
/// whose domains [`NodeDomains`] numbers.
pub const TOPOLOGY_KEYS: [&str; 2] = ["kubernetes.io/hostname", "topology.kubernetes.io/zone"];
/// The hostname label, counted per node rather than per domain when scoring.
pub const HOSTNAME_LABEL: &str = TOPOLOGY_KEYS[0];
/// The zone label of the system default constraints.
pub const ZONE_LABEL: &str = TOPOLOGY_KEYS[1];

type Labels = BTreeMap<String, String>;

/// A constraint resolved against the pod that carries it.
#[derive(Clone, Debug)]
pub struct Constraint {
    /// `maxSkew`.
    pub max_skew: i64,
    /// `topologyKey`.
    pub topology_key: String,
    /// `labelSelector` with `matchLabelKeys` merged in.
    pub selector: Selector,
    /// `minDomains` (1 when unset).
    pub min_domains: i64,
    /// `nodeAffinityPolicy` is Honor (the default).
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy` is Honor (default Ignore).
    pub honor_node_taints: bool,
}

impl Constraint {
    /// Resolve one constraint of `pod`.
    pub fn new(c: &TopologySpreadConstraint, pod: &Pod) -> Constraint {
        let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
        let pod_labels = pod.metadata.labels.as_ref();
        for key in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.and_then(|l| l.get(key)) {
                selector.require_equal(key, v);
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1).max(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether the node passes this constraint's node inclusion policies for `pod`.
    pub fn includes_node(&self, pod: &Pod, node: &NodeInfo) -> bool {
        let Some(spec) = pod.spec.as_ref() else { return true };
        if self.honor_node_affinity && !node_affinity::required_matches(spec, node.labels(), node.name()) {
            return false;
        }
        if self.honor_node_taints {
            let tolerations = spec.tolerations.as_deref().unwrap_or_default();
            if taint_toleration::first_untolerated(node.taints(), tolerations).is_some() {
                return false;
            }
        }
        true
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`.
pub fn constraints(pod: &Pod, when_unsatisfiable: &str) -> Vec<Constraint> {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when_unsatisfiable)
        .map(|c| Constraint::new(c, pod))
        .collect()
}

/// kube-scheduler's default selector for a pod: the selectors of the Services in its
/// namespace that select it (merged), plus the selector of its controlling
/// ReplicationController, ReplicaSet or StatefulSet. `None` when there is nothing
/// to group it with.
pub fn default_selector<'a>(
    pod: &Pod,
    service_selectors: impl Iterator<Item = &'a BTreeMap<String, String>>,
    controller_selector: &dyn Fn(&str, &str) -> Option<&'a LabelSelector>,
) -> Option<LabelSelector> {
    let labels = pod.metadata.labels.as_ref();
    let mut merged = BTreeMap::new();
    for sel in service_selectors {
        if sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            merged.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut expressions: Vec<LabelSelectorRequirement> = Vec::new();
    let owner = sluice_kube::owners::controller_of(pod).filter(|o| {
        matches!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("v1", "ReplicationController") | ("apps/v1", "ReplicaSet" | "StatefulSet")
        )
    });
    if let Some(sel) = owner.and_then(|o| controller_selector(&o.kind, &o.name)) {
        for (k, v) in sel.match_labels.iter().flatten() {
            expressions.push(LabelSelectorRequirement {
                key: k.clone(),
                operator: "In".into(),
                values: Some(vec![v.clone()]),
            });
        }
        expressions.extend(sel.match_expressions.iter().flatten().cloned());
    }
    if merged.is_empty() && expressions.is_empty() {
        return None;
    }
    Some(LabelSelector {
        match_labels: Some(merged),
        match_expressions: Some(expressions),
    })
}

/// The system default constraints (hostname maxSkew 3, zone maxSkew 5, ScheduleAnyway).
pub fn system_default_constraints(selector: &LabelSelector) -> Vec<Constraint> {
    [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            topology_key: key.into(),
            selector: Selector::from_label_selector(Some(selector)),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

fn has_all_keys(labels: Option<&Labels>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.is_some_and(|l| l.contains_key(&c.topology_key)))
}

/// Per node, per constraint: how many placed pods match. Nodes are taken by
/// their position in the cache's nodes ([`NodeInfo::slot`]), their counts side
/// by side: scoring reads them for every feasible node of every pod, and a map
/// by node name cost a string hash and comparison for each.
#[derive(Clone, Debug, Default)]
pub struct PerNode {
    constraints: usize,
    counts: Vec<i64>,
}

/// Equal when the same nodes have the same matches (however far each vector reaches).
impl PartialEq for PerNode {
    fn eq(&self, other: &PerNode) -> bool {
        self.constraints == other.constraints && self.matched().eq(other.matched())
    }
}

impl PerNode {
    /// No matches yet, for `constraints` constraints.
    pub fn new(constraints: usize) -> PerNode {
        PerNode {
            constraints,
            counts: Vec::new(),
        }
    }

    /// The counts of the node at `slot` (none for a node nothing was counted on).
    pub fn get(&self, slot: usize) -> Option<&[i64]> {
        let k = self.constraints;
        self.counts.get(slot * k..slot * k + k)
    }

    /// The nodes with any match, by slot.
    pub fn matched(&self) -> impl Iterator<Item = (usize, &[i64])> {
        self.counts
            .chunks_exact(self.constraints.max(1))
            .enumerate()
            .filter(|(_, c)| c.iter().any(|n| *n != 0))
    }

    fn add(&mut self, slot: usize, constraint: usize, delta: i64) {
        let at = slot * self.constraints + constraint;
        if at >= self.counts.len() {
            self.counts.resize((slot + 1) * self.constraints, 0);
        }
        self.counts[at] += delta;
    }
}

/// One placed pod as counting sees it: namespace, labels, and whether it is terminating.
struct Placed<'a> {
    namespace: &'a str,
    labels: Option<&'a Labels>,
    terminating: bool,
}

impl<'a> Placed<'a> {
    fn of(pod: &'a ObjectMeta) -> Self {
        Placed {
            namespace: pod.namespace.as_deref().unwrap_or("default"),
            labels: pod.labels.as_ref(),
            terminating: pod.deletion_timestamp.is_some(),
        }
    }
}

/// Add (`delta` 1) or take away (-1) one placed pod's matches: pods of namespace `ns`,
/// not terminating, selected by a constraint.
fn count(per_node: &mut PerNode, ns: &str, constraints: &[Constraint], slot: usize, placed: &Placed, delta: i64) {
    if placed.terminating || placed.namespace != ns {
        return;
    }
    for (i, c) in constraints.iter().enumerate() {
        if c.selector.matches(placed.labels) {
            per_node.add(slot, i, delta);
        }
    }
}

/// Per node (by slot), per constraint: how many placed pods in the pod's namespace match
/// the constraint's selector (terminating pods excluded). One pass over `pods`
/// (as the cache keeps them, or whole).
pub fn matching_per_node<'a, P: kube::Resource + 'a>(
    pod: &Pod,
    constraints: &[Constraint],
    pods: impl Iterator<Item = (usize, &'a P)>,
) -> PerNode {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut per_node = PerNode::new(constraints.len());
    for (slot, existing) in pods {
        count(&mut per_node, ns, constraints, slot, &Placed::of(existing.meta()), 1);
    }
    per_node
}

/// The placed pods (on nodes the cache knows) any of `constraints` may select, each
/// once, with their node's slot: from the cache's label index when every selector
/// requires a label, else all of them. Counting from scratch then reads a
/// workload's pods, not the cluster's (the spread benchmark's apps, ten pods each,
/// were each counted over every placed pod).
fn selectable<'a>(cache: &'a Cache, constraints: &[Constraint]) -> Vec<(usize, &'a PlacedPod)> {
    if constraints
        .iter()
        .any(|c| matches!(c.selector.narrowing(), Narrowing::Unnarrowed))
    {
        return cache.pods_by_slot().collect();
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut found = Vec::new();
    for (i, c) in constraints.iter().enumerate() {
        if constraints[..i].iter().any(|d| d.selector == c.selector) {
            continue;
        }
        for (node, pod, _) in cache.pods_selectable_by(&c.selector) {
            if seen.insert(pod.metadata.uid.as_deref().unwrap_or_default()) {
                found.push((node.slot(), pod));
            }
        }
    }
    found
}

/// Matching counts kept between cycles: a pod of the same namespace and selectors as an
/// earlier one (the replicas of one workload, scheduled one after another) gets the
/// earlier counts brought up to date from the cache's placements since, instead of a
/// pass over every placed pod. Counting every pod again per cycle made a cycle's cost
/// grow with the cluster (kube-scheduler's PreScore also walks every node's pods).
/// Nodes are counted by slot, so the counts are made again when the cache's nodes
/// change ([`Cache::node_generation`]): a removal moves a node to another slot.
#[derive(Default)]
pub struct MatchCounts {
    entries: Vec<Counted>,
    tick: u64,
}

struct Counted {
    ns: String,
    selectors: Vec<Selector>,
    cursor: (u64, u64),
    nodes: (u64, u64),
    per_node: PerNode,
    used: u64,
}

/// Namespaces and selectors remembered at once (several workloads scaling together).
const COUNTS_KEPT: usize = 16;

impl MatchCounts {
    /// The counts for `pod` and `constraints`, up to date with `cache`.
    pub fn get(&mut self, pod: &Pod, constraints: &[Constraint], cache: &Cache) -> &PerNode {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        self.tick += 1;
        let tick = self.tick;
        let cursor = cache.placement_cursor();
        let nodes = cache.node_generation();
        let found = self.entries.iter().position(|e| {
            e.ns == ns
                && e.selectors.len() == constraints.len()
                && e.selectors.iter().zip(constraints).all(|(s, c)| *s == c.selector)
        });
        let at = match found {
            Some(at) => {
                let e = &mut self.entries[at];
                match cache.placements_since(e.cursor).filter(|_| e.nodes == nodes) {
                    Some(placements) => {
                        for p in placements {
                            let Some(slot) = cache.slot(&p.node) else { continue };
                            let placed = Placed {
                                namespace: &p.namespace,
                                labels: p.labels.as_ref(),
                                terminating: p.terminating,
                            };
                            count(
                                &mut e.per_node,
                                ns,
                                constraints,
                                slot,
                                &placed,
                                if p.added { 1 } else { -1 },
                            );
                        }
                    }
                    None => {
                        e.per_node = matching_per_node(pod, constraints, selectable(cache, constraints).into_iter())
                    }
                }
                e.cursor = cursor;
                e.nodes = nodes;
                at
            }
            None => {
                let entry = Counted {
                    ns: ns.to_string(),
                    selectors: constraints.iter().map(|c| c.selector.clone()).collect(),
                    cursor,
                    nodes,
                    per_node: matching_per_node(pod, constraints, selectable(cache, constraints).into_iter()),
                    used: tick,
                };
                if self.entries.len() < COUNTS_KEPT {
                    self.entries.push(entry);
                    self.entries.len() - 1
                } else {
                    let oldest = (0..self.entries.len())
                        .min_by_key(|&i| self.entries[i].used)
                        .unwrap_or(0);
                    self.entries[oldest] = entry;
                    oldest
                }
            }
        };
        self.entries[at].used = tick;
        &self.entries[at].per_node
    }
}

/// One constraint's domains as Filter reads them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DomainCounts {
    /// How many eligible domains there are.
    pub eligible: usize,
    /// Matching pods per eligible domain; a domain not listed has none.
    pub matched: HashMap<String, i64>,
    /// The global minimum: 0 below `minDomains` eligible domains or when an
    /// eligible domain has no matching pod, else the least count.
    pub min: i64,
}

impl DomainCounts {
    fn new(eligible: usize, matched: HashMap<String, i64>, min_domains: i64) -> DomainCounts {
        let min = if (eligible as i64) < min_domains || matched.len() < eligible {
            0
        } else {
            matched.values().copied().min().unwrap_or(i64::MAX)
        };
        DomainCounts { eligible, matched, min }
    }
}

/// What PreFilter computes once per cycle for the `DoNotSchedule` constraints.
#[derive(Clone, Debug, Default)]
pub struct PreFilterState {
    /// The constraints.
    pub constraints: Vec<Constraint>,
    /// Per constraint: its domains' counts.
    pub counts: Vec<DomainCounts>,
    /// Per constraint: 1 when the incoming pod matches its own selector.
    pub self_match: Vec<i64>,
    /// The counts again by domain number, for the constraints whose key is
    /// numbered ([`PreFilterState::number`]): Filter runs for every node
    /// searched, and where the constraints leave few domains open that is most
    /// of the cluster's nodes.
    numbered: Option<NumberedCounts>,
}

/// [`PreFilterState`]'s counts by domain number.
#[derive(Clone, Debug)]
struct NumberedCounts {
    domains: std::sync::Arc<NodeDomains>,
    /// Per constraint: its key's place in [`TOPOLOGY_KEYS`] and the matches
    /// per domain number, when the key is numbered.
    counts: Vec<Option<(usize, Vec<i64>)>>,
}

impl PreFilterState {
    /// The global minimum of constraint `i`.
    pub fn min_match(&self, i: usize) -> i64 {
        self.counts[i].min
    }

    fn of(pod: &Pod, constraints: Vec<Constraint>, counts: Vec<DomainCounts>) -> PreFilterState {
        let labels = pod.metadata.labels.as_ref();
        PreFilterState {
            self_match: constraints
                .iter()
                .map(|c| i64::from(c.selector.matches(labels)))
                .collect(),
            constraints,
            counts,
            numbered: None,
        }
    }

    /// Keep the counts of the constraints whose key `domains` numbers by
    /// domain number too, for [`filter`] to read by the node's slot.
    /// `domains` must number the nodes Filter is given.
    pub fn number(&mut self, domains: std::sync::Arc<NodeDomains>) {
        let counts = self
            .constraints
            .iter()
            .zip(&self.counts)
            .map(|(c, d)| {
                let key = topology_key_index(&c.topology_key)?;
                let numbers = &domains.numbers[key];
                let mut by_number = vec![0; numbers.len()];
                for (value, n) in &d.matched {
                    if let Some(&at) = numbers.get(value) {
                        by_number[at as usize] = *n;
                    }
                }
                Some((key, by_number))
            })
            .collect();
        self.numbered = Some(NumberedCounts { domains, counts });
    }

    /// Matches in `node`'s domain of constraint `i`, read by number: none when
    /// the constraint is not numbered, `Some(None)` when the node lacks its key.
    fn numbered_matches(&self, i: usize, node: &NodeInfo) -> Option<Option<i64>> {
        let numbered = self.numbered.as_ref()?;
        let (key, by_number) = numbered.counts.get(i)?.as_ref()?;
        let id = numbered.domains.of_node(*key, node);
        Some(id.map(|id| by_number.get(id as usize).copied().unwrap_or(0)))
    }
}

/// Whether every node passes the constraints' node inclusion policies for
/// `pod`: no taint policy, and no node selector or required node affinity
/// to honor. Then the eligible domains depend on the nodes alone.
fn includes_every_node(pod: &Pod, constraints: &[Constraint]) -> bool {
    let spec = pod.spec.as_ref();
    let node_affinity = spec.is_some_and(|s| {
        s.node_selector.as_ref().is_some_and(|m| !m.is_empty())
            || s.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|na| na.required_during_scheduling_ignored_during_execution.is_some())
    });
    constraints
        .iter()
        .all(|c| !(c.honor_node_taints || (c.honor_node_affinity && node_affinity)))
}

/// Per constraint, how many domains the nodes having every constraint's key
/// have (each constraint's key's distinct values among them).
pub fn eligible_domains(constraints: &[Constraint], nodes: &[NodeInfo]) -> Vec<usize> {
    let mut domains: Vec<HashSet<&str>> = vec![HashSet::new(); constraints.len()];
    for node in nodes {
        let labels = node.labels();
        if !has_all_keys(labels, constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if let Some(v) = labels.and_then(|l| l.get(&c.topology_key)) {
                domains[i].insert(v);
            }
        }
    }
    domains.iter().map(HashSet::len).collect()
}

/// Compute the PreFilter state from every node and every placed pod.
pub fn pre_filter(pod: &Pod, constraints: Vec<Constraint>, nodes: &[NodeInfo], per_node: &PerNode) -> PreFilterState {
    let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
    for node in nodes {
        let labels = node.labels();
        if !has_all_keys(labels, &constraints) {
            continue;
        }
        let on_node = per_node.get(node.slot());
        for (i, c) in constraints.iter().enumerate() {
            if !c.includes_node(pod, node) {
                continue;
            }
            let Some(value) = labels.and_then(|l| l.get(&c.topology_key)) else {
                continue;
            };
            let n = on_node.map_or(0, |v| v[i]);
            // Most nodes share a few domains: copy a domain's name once, not per node.
            match counts[i].get_mut(value.as_str()) {
                Some(c) => *c += n,
                None => {
                    counts[i].insert(value.clone(), n);
                }
            }
        }
    }
    let counts = counts
        .into_iter()
        .zip(&constraints)
        .map(|(m, c)| DomainCounts::new(m.len(), m, c.min_domains))
        .collect();
    PreFilterState::of(pod, constraints, counts)
}

/// [`pre_filter`] when every node is included ([`includes_every_node`]):
/// from the nodes with matching pods (`per_node`, slots of `nodes`) and the
/// eligible domains' number ([`eligible_domains`], which changes only with
/// the nodes), instead of a pass over every node per cycle.
pub fn pre_filter_sparse(
    pod: &Pod,
    constraints: Vec<Constraint>,
    eligible: &[usize],
    per_node: &PerNode,
    nodes: &[NodeInfo],
) -> PreFilterState {
    let mut matched = vec![HashMap::<String, i64>::new(); constraints.len()];
    for (slot, on_node) in per_node.matched() {
        let Some(labels) = nodes.get(slot).and_then(NodeInfo::labels) else {
            continue;
        };
        if !has_all_keys(Some(labels), &constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if let Some(value) = labels.get(&c.topology_key) {
                *matched[i].entry(value.clone()).or_default() += on_node[i];
            }
        }
    }
    let counts = matched
        .into_iter()
        .zip(&constraints)
        .zip(eligible)
        .map(|((m, c), &e)| DomainCounts::new(e, m, c.min_domains))
        .collect();
    PreFilterState::of(pod, constraints, counts)
}

/// The Filter decision for one node.
pub fn filter(state: &PreFilterState, node: &NodeInfo) -> Result<(), Unfit> {
    for (i, c) in state.constraints.iter().enumerate() {
        let here = match state.numbered_matches(i, node) {
            Some(Some(here)) => here,
            Some(None) => return Err(Unfit::unresolvable(REASON_MISSING_LABEL)),
            None => {
                let Some(value) = node.labels().and_then(|l| l.get(&c.topology_key)) else {
                    return Err(Unfit::unresolvable(REASON_MISSING_LABEL));
                };
                state.counts[i].matched.get(value).copied().unwrap_or(0)
            }
        };
        let skew = (here + state.self_match[i]).saturating_sub(state.min_match(i));
        if skew > c.max_skew {
            return Err(Unfit::resolvable(REASON));
        }
    }
    Ok(())
}

/// `key`'s position in [`TOPOLOGY_KEYS`].
fn topology_key_index(key: &str) -> Option<usize> {
    TOPOLOGY_KEYS.iter().position(|k| *k == key)
}

/// The nodes' domains of the system default keys ([`TOPOLOGY_KEYS`]),
/// numbered: per key, each node's (by slot) value as a small number. Scoring
/// sums and compares domains for every feasible node of every pod; numbers
/// index vectors where values cost a string hash and comparison each. Made
/// again when the nodes change ([`Cache::node_generation`]).
#[derive(Debug, Default)]
pub struct NodeDomains {
    generation: (u64, u64),
    /// Per key, per slot: the node's domain number.
    ids: [Vec<Option<u32>>; TOPOLOGY_KEYS.len()],
    /// Per key, each domain's number.
    numbers: [HashMap<String, u32>; TOPOLOGY_KEYS.len()],
}

impl NodeDomains {
    /// Number the domains of `nodes` (the cache's, at `generation`).
    pub fn of(nodes: &[NodeInfo], generation: (u64, u64)) -> NodeDomains {
        let mut numbers: [HashMap<String, u32>; TOPOLOGY_KEYS.len()] = Default::default();
        let ids = std::array::from_fn(|key| {
            let numbers = &mut numbers[key];
            nodes
                .iter()
                .map(|n| {
                    let value = n.labels()?.get(TOPOLOGY_KEYS[key])?;
                    let next = numbers.len() as u32;
                    Some(*numbers.entry(value.clone()).or_insert(next))
                })
                .collect()
        });
        NodeDomains {
            generation,
            ids,
            numbers,
        }
    }

    /// `node`'s domain number of key `key` (its place in [`TOPOLOGY_KEYS`]),
    /// none when it lacks the key.
    fn of_node(&self, key: usize, node: &NodeInfo) -> Option<u32> {
        self.ids[key].get(node.slot()).copied().flatten()
    }
}

/// Each node's domain for one constraint's key, as a small number.
enum DomainIds<'a> {
    /// A system default key (its place in [`TOPOLOGY_KEYS`]), numbered ahead.
    Numbered(&'a NodeDomains, usize),
    /// Another key, numbered as nodes are met.
    Met {
        key: &'a str,
        numbers: HashMap<&'a str, u32>,
    },
}

impl<'a> DomainIds<'a> {
    fn new(key: &'a str, numbered: &'a NodeDomains) -> DomainIds<'a> {
        match topology_key_index(key) {
            Some(i) => DomainIds::Numbered(numbered, i),
            None => DomainIds::Met {
                key,
                numbers: HashMap::new(),
            },
        }
    }

    /// `node`'s domain, none when it lacks the key.
    fn of(&mut self, node: &'a NodeInfo) -> Option<u32> {
        match self {
            DomainIds::Numbered(numbered, key) => numbered.of_node(*key, node),
            DomainIds::Met { key, numbers } => {
                let value = node.labels()?.get(*key)?;
                let next = numbers.len() as u32;
                Some(*numbers.entry(value.as_str()).or_insert(next))
            }
        }
    }
}

/// Normalized scores of the feasible `nodes` for the `ScheduleAnyway` constraints, as
/// kube-scheduler computes them: per constraint, matching pods in the node's domain
/// (on the node itself for the hostname key) weighted by ln(domains + 2), plus
/// `maxSkew - 1`; fewer is better; nodes lacking a topology key score 0.
/// `require_all` is false for system default constraints: nodes lacking a key are
/// then scored on the keys they have instead of being ignored. `all` are the
/// nodes `per_node` counts by slot (the cache's nodes), numbered in `numbered`;
/// `nodes` are among them.
pub fn score(
    pod: &Pod,
    constraints: &[Constraint],
    nodes: &[&NodeInfo],
    (all, numbered): (&[NodeInfo], &NodeDomains),
    per_node: &PerNode,
    require_all: bool,
) -> Vec<i64> {
    let k = constraints.len();
    let by_hostname: Vec<bool> = constraints.iter().map(|c| c.topology_key == HOSTNAME_LABEL).collect();
    let mut ids: Vec<DomainIds> = constraints
        .iter()
        .map(|c| DomainIds::new(&c.topology_key, numbered))
        .collect();
    // Each node's domain of each constraint's key, read once (node by node,
    // `k` at a time): scoring runs for every pod over every feasible node.
    let mut values: Vec<Option<u32>> = Vec::with_capacity(nodes.len() * k);
    for n in nodes {
        values.extend(ids.iter_mut().map(|ids| ids.of(n)));
    }
    let of = |node: usize| &values[node * k..node * k + k];
    let ignored: Vec<bool> = (0..nodes.len())
        .map(|i| require_all && of(i).iter().any(Option::is_none))
        .collect();
    // Domains of the scored nodes, per constraint, marked by number (a
    // hostname constraint's are the scored nodes themselves: only their
    // number is needed).
    let mut scored_domains: Vec<Vec<bool>> = vec![Vec::new(); k];
    let mut domains = vec![0usize; k];
    let mut scored_nodes = 0usize;
    for i in (0..nodes.len()).filter(|&i| !ignored[i]) {
        scored_nodes += 1;
        for (c, v) in of(i).iter().enumerate() {
            if let (false, Some(v)) = (by_hostname[c], v) {
                let v = *v as usize;
                if scored_domains[c].len() <= v {
                    scored_domains[c].resize(v + 1, false);
                }
                if !scored_domains[c][v] {
                    scored_domains[c][v] = true;
                    domains[c] += 1;
                }
            }
        }
    }
    let weights: Vec<f64> = (0..k)
        .map(|c| {
            let size = if by_hostname[c] { scored_nodes } else { domains[c] };
            ((size + 2) as f64).ln()
        })
        .collect();
    // Matching pods per domain over every eligible node (hostname: counted per node);
    // only nodes holding matching pods add anything.
    let mut domain_counts: Vec<Vec<i64>> = scored_domains.iter().map(|d| vec![0; d.len()]).collect();
    if by_hostname.iter().any(|h| !h) {
        let mut node_ids = vec![None; k];
        for (slot, on_node) in per_node.matched() {
            let Some(node) = all.get(slot) else { continue };
            for (i, id) in node_ids.iter_mut().enumerate() {
                *id = if by_hostname[i] && !require_all {
                    None
                } else {
                    ids[i].of(node)
                };
            }
            if require_all && node_ids.iter().any(Option::is_none) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if by_hostname[i] || !c.includes_node(pod, node) {
                    continue;
                }
                let Some(v) = node_ids[i] else { continue };
                if scored_domains[i].get(v as usize).copied().unwrap_or(false) {
                    domain_counts[i][v as usize] += on_node[i];
                }
            }
        }
    }
    let any_hostname = by_hostname.iter().any(|h| *h);
    let mut raw: Vec<i64> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if ignored[i] {
                return 0;
            }
            let on_node = if any_hostname { per_node.get(n.slot()) } else { None };
            let mut s = 0f64;
            for (c, v) in of(i).iter().enumerate() {
                let Some(v) = v else { continue };
                let cnt = if by_hostname[c] {
                    on_node.map_or(0, |counts| counts[c])
                } else {
                    domain_counts[c][*v as usize]
                };
                s += cnt as f64 * weights[c] + (constraints[c].max_skew - 1) as f64;
            }
            s.round() as i64
        })
        .collect();
    normalize(&mut raw, &ignored);
    raw
}

/// kube-scheduler's normalization: the lowest raw score becomes 100; ignored nodes 0.
pub fn normalize(scores: &mut [i64], ignored: &[bool]) {
    let considered = || scores.iter().zip(ignored).filter(|(_, ig)| !**ig).map(|(s, _)| *s);
    let min = considered().min().unwrap_or(0);
    let max = considered().max().unwrap_or(0);
    for (s, ig) in scores.iter_mut().zip(ignored) {
        *s = if *ig {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

/// The plugin, with the counts it keeps between cycles.
#[derive(Default)]
pub struct PodTopologySpread {
    counts: std::sync::Mutex<MatchCounts>,
    domains: std::sync::Mutex<Vec<EligibleDomains>>,
    numbered: std::sync::Mutex<std::sync::Arc<NodeDomains>>,
}

/// [`eligible_domains`] of some topology keys, as of a generation of the
/// cache's nodes ([`Cache::node_generation`]).
struct EligibleDomains {
    cache: (u64, u64),
    keys: Vec<String>,
    counts: Vec<usize>,
}

/// Sets of topology keys whose eligible domains are kept at once.
const DOMAINS_KEPT: usize = 8;

impl PodTopologySpread {
    /// The nodes' domains of the system default keys, numbered again only
    /// when the nodes changed.
    fn numbered(&self, cache: &Cache) -> std::sync::Arc<NodeDomains> {
        let mut kept = self.numbered.lock().unwrap_or_else(|p| p.into_inner());
        let generation = cache.node_generation();
        if kept.generation != generation || kept.ids[0].len() != cache.nodes().len() {
            *kept = std::sync::Arc::new(NodeDomains::of(cache.nodes(), generation));
        }
        kept.clone()
    }

    /// The eligible domains' number per constraint, counted again only when
    /// the nodes changed (or the keys were not asked for lately).
    fn eligible_domains(&self, constraints: &[Constraint], cache: &Cache) -> Vec<usize> {
        let mut kept = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        let generation = cache.node_generation();
        let same_keys = |m: &EligibleDomains| {
            m.keys.len() == constraints.len() && m.keys.iter().zip(constraints).all(|(k, c)| *k == c.topology_key)
        };
        if let Some(at) = kept.iter().position(same_keys) {
            if kept[at].cache == generation {
                return kept[at].counts.clone();
            }
            kept.remove(at);
        }
        let counts = eligible_domains(constraints, cache.nodes());
        if kept.len() == DOMAINS_KEPT {
            kept.remove(0);
        }
        kept.push(EligibleDomains {
            cache: generation,
            keys: constraints.iter().map(|c| c.topology_key.clone()).collect(),
            counts: counts.clone(),
        });
        counts
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        let hard = constraints(&pod.pod, "DoNotSchedule");
        if hard.is_empty() {
            return;
        }
        let numbered = self.numbered(cache);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let per_node = counts.get(&pod.pod, &hard, cache);
        let mut prepared = if includes_every_node(&pod.pod, &hard) {
            let eligible = self.eligible_domains(&hard, cache);
            pre_filter_sparse(&pod.pod, hard, &eligible, per_node, cache.nodes())
        } else {
            pre_filter(&pod.pod, hard, cache.nodes(), per_node)
        };
        prepared.number(numbered);
        state.pod_topology_spread = Some(prepared);
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match pod.cycle.pod_topology_spread.as_ref() {
            Some(state) => filter(state, node),
            None => Ok(()),
        }
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }

    fn score_nodes(&self, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) -> Option<Vec<i64>> {
        let has_any = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let (soft, require_all) = if has_any {
            (constraints(&pod.pod, "ScheduleAnyway"), true)
        } else {
            let ns = pod.pod.metadata.namespace.as_deref().unwrap_or("default");
            let selector = default_selector(&pod.pod, cache.service_selectors(ns), &|kind, name| {
                cache.controller_selector(kind, ns, name)
            });
            (
                selector.map(|s| system_default_constraints(&s)).unwrap_or_default(),
                false,
            )
        };
        if soft.is_empty() {
            return Some(vec![0; nodes.len()]);
        }
        let numbered = self.numbered(cache);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let per_node = counts.get(&pod.pod, &soft, cache);
        Some(score(
            &pod.pod,
            &soft,
            nodes,
            (cache.nodes(), &numbered),
            per_node,
            require_all,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::{node, node_info, pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        let mut n = node(name, "4", "8Gi");
        n.metadata.labels = Some(labels(&[(HOSTNAME_LABEL, name), (ZONE, zone)]));
        node_info(n)
    }

    fn web(name: &str) -> Pod {
        let mut p = pod(name, "", "");
        p.metadata.labels = Some(labels(&[("app", "web")]));
        p
    }

    fn spread(mut p: Pod, key: &str, max_skew: i32, when: &str) -> Pod {
        p.spec.as_mut().unwrap().topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    /// Nodes at the slots a cache would give them: their positions.
    fn slotted(mut nodes: Vec<NodeInfo>) -> Vec<NodeInfo> {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.set_slot(i);
        }
        nodes
    }

    fn state(incoming: &Pod, nodes: &[NodeInfo], placed: &[(usize, Pod)]) -> PreFilterState {
        let hard = constraints(incoming, "DoNotSchedule");
        let per_node = matching_per_node(incoming, &hard, placed.iter().map(|(i, p)| (nodes[*i].slot(), p)));
        pre_filter(incoming, hard, nodes, &per_node)
    }

    #[test]
    fn skew_over_zones_is_kept_within_max_skew() {
        let nodes = slotted(vec![zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")]);
        let incoming = spread(web("new"), ZONE, 1, "DoNotSchedule");
        // Zone a has 1, zone b has 0: the next pod must go to b.
        let s = state(&incoming, &nodes, &[(0, web("w1"))]);
        assert_eq!(filter(&s, &nodes[1]), Err(Unfit::resolvable(REASON)));
        assert_eq!(filter(&s, &nodes[2]), Ok(()));
        // Balanced: anywhere.
        let s = state(&incoming, &nodes, &[(0, web("w1")), (2, web("w2"))]);
        assert!(nodes.iter().all(|n| filter(&s, n).is_ok()));
        // Pods of another app or namespace do not count.
        let mut other = web("o");
        other.metadata.namespace = Some("other".into());
        let s = state(&incoming, &nodes, &[(0, other)]);
        assert_eq!(filter(&s, &nodes[0]), Ok(()));
    }

    #[test]
    fn nodes_without_the_key_are_rejected_unresolvably() {
        let nodes = slotted(vec![zoned("a1", "a"), node_info(node("bare", "4", "8Gi"))]);
        let incoming = spread(web("new"), ZONE, 1, "DoNotSchedule");
        let s = state(&incoming, &nodes, &[]);
        assert_eq!(filter(&s, &nodes[1]), Err(Unfit::unresolvable(REASON_MISSING_LABEL)));
        assert_eq!(filter(&s, &nodes[0]), Ok(()));
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = slotted(vec![zoned("a1", "a"), zoned("b1", "b")]);
        let mut incoming = spread(web("new"), ZONE, 1, "DoNotSchedule");
        incoming
            .spec
            .as_mut()
            .unwrap()
            .topology_spread_constraints
            .as_mut()
            .unwrap()[0]
            .min_domains = Some(3);
        let s = state(&incoming, &nodes, &[(0, web("w1")), (1, web("w2"))]);
        // Global minimum is 0 with 2 < 3 domains: 1 + 1 - 0 > 1 everywhere.
        assert!(nodes.iter().all(|n| filter(&s, n).is_err()));
    }

    #[test]
    fn node_affinity_policy_limits_the_domains() {
        let nodes = slotted(vec![zoned("a1", "a"), zoned("b1", "b")]);
        let mut incoming = spread(web("new"), ZONE, 1, "DoNotSchedule");
        incoming.spec.as_mut().unwrap().node_selector = Some(labels(&[(ZONE, "a")]));
        // Zone b is not eligible (Honor), so zone a may exceed it.
        let s = state(&incoming, &nodes, &[(0, web("w1")), (0, web("w2"))]);
        assert_eq!(filter(&s, &nodes[0]), Ok(()));
        incoming
            .spec
            .as_mut()
            .unwrap()
            .topology_spread_constraints
            .as_mut()
            .unwrap()[0]
            .node_affinity_policy = Some("Ignore".into());
        let s = state(&incoming, &nodes, &[(0, web("w1")), (0, web("w2"))]);
        assert_eq!(filter(&s, &nodes[0]), Err(Unfit::resolvable(REASON)));
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let nodes = slotted(vec![
            zoned("a1", "a"),
            zoned("b1", "b"),
            node_info(node("bare", "4", "8Gi")),
        ]);
        let incoming = spread(web("new"), ZONE, 1, "ScheduleAnyway");
        let placed = [(0usize, web("w1")), (0, web("w2"))];
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let soft = constraints(&incoming, "ScheduleAnyway");
        let scores = score_placed((&incoming, &soft, &placed), &feasible, &nodes, true);
        // ln(4) * 2 = 2.77 -> 3 for zone a, 0 for zone b: b gets 100, a 100*(3+0-3)/3 = 0.
        assert_eq!(scores, [0, 100, 0]);
    }

    /// [`score`] of the `feasible` nodes among `nodes` (slotted), with `placed`
    /// pods on the nodes at those positions.
    fn score_placed(
        (pod, constraints, placed): (&Pod, &[Constraint], &[(usize, Pod)]),
        feasible: &[&NodeInfo],
        nodes: &[NodeInfo],
        require_all: bool,
    ) -> Vec<i64> {
        let per_node = matching_per_node(pod, constraints, placed.iter().map(|(i, p)| (nodes[*i].slot(), p)));
        let numbered = NodeDomains::of(nodes, (0, 0));
        score(pod, constraints, feasible, (nodes, &numbered), &per_node, require_all)
    }

    /// Scoring by its definition, node by node, reading every label where
    /// it is used: the reference the faster code must agree with.
    fn score_by_definition(
        (pod, constraints, placed): (&Pod, &[Constraint], &[(usize, Pod)]),
        nodes: &[&NodeInfo],
        every_node: &[NodeInfo],
        require_all: bool,
    ) -> Vec<i64> {
        let ns = pod.metadata.namespace.as_deref();
        let value = |n: &NodeInfo, c: &Constraint| n.labels().and_then(|l| l.get(&c.topology_key)).cloned();
        let skipped = |n: &NodeInfo| require_all && constraints.iter().any(|c| value(n, c).is_none());
        let scored: Vec<&NodeInfo> = nodes.iter().copied().filter(|n| !skipped(n)).collect();
        let mut raw = Vec::new();
        for n in nodes {
            if skipped(n) {
                raw.push(0);
                continue;
            }
            let mut total = 0f64;
            for c in constraints {
                let Some(v) = value(n, c) else { continue };
                let hostname = c.topology_key == HOSTNAME_LABEL;
                let mut domains: Vec<String> = scored.iter().filter_map(|m| value(m, c)).collect();
                domains.sort();
                domains.dedup();
                let size = if hostname { scored.len() } else { domains.len() };
                let mut matching = 0;
                for (at, placed) in placed {
                    let m = &every_node[*at];
                    let counted = if hostname {
                        m.name() == n.name()
                    } else {
                        !skipped(m) && c.includes_node(pod, m) && value(m, c).as_ref() == Some(&v)
                    };
                    let matches = placed.metadata.namespace.as_deref() == ns
                        && placed.metadata.deletion_timestamp.is_none()
                        && c.selector.matches(placed.metadata.labels.as_ref());
                    if counted && matches {
                        matching += 1;
                    }
                }
                total += matching as f64 * ((size + 2) as f64).ln() + (c.max_skew - 1) as f64;
            }
            raw.push(total.round() as i64);
        }
        let ignored: Vec<bool> = nodes.iter().map(|n| skipped(n)).collect();
        normalize(&mut raw, &ignored);
        raw
    }

    /// Scoring gives the same scores as reading every label where it is
    /// used: hostname and zone constraints alone and together (domains
    /// numbered ahead) and a key of the user's own (read from the labels),
    /// nodes lacking a key, with and without requiring every key, matching
    /// pods spread unevenly.
    #[test]
    fn scores_agree_with_reading_every_label_where_it_is_used() {
        const RACK: &str = "example.com/rack";
        let mut nodes: Vec<NodeInfo> = (0..12)
            .map(|i| {
                let name = format!("n{i}");
                let mut pairs = vec![(HOSTNAME_LABEL, name.as_str())];
                if i % 4 != 3 {
                    pairs.push((ZONE, ["a", "b", "c"][i % 4]));
                }
                if i % 5 != 4 {
                    pairs.push((RACK, ["r1", "r2"][i % 2]));
                }
                let mut n = node(&name, "4", "8Gi");
                n.metadata.labels = Some(labels(&pairs));
                node_info(n)
            })
            .collect();
        nodes.push(node_info(node("bare", "4", "8Gi")));
        let nodes = slotted(nodes);
        let placed: Vec<(usize, Pod)> = [0, 0, 0, 1, 2, 2, 5, 7, 7, 9, 12]
            .iter()
            .enumerate()
            .map(|(j, &i)| (i, web(&format!("w{j}"))))
            .collect();
        let feasible: Vec<&NodeInfo> = nodes.iter().skip(1).collect();
        let incoming = web("new");
        let hostname = spread(web("new"), HOSTNAME_LABEL, 1, "ScheduleAnyway");
        let zone = spread(web("new"), ZONE, 2, "ScheduleAnyway");
        let rack = spread(web("new"), RACK, 1, "ScheduleAnyway");
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        let mut zone_and_rack = constraints(&zone, "ScheduleAnyway");
        zone_and_rack.extend(constraints(&rack, "ScheduleAnyway"));
        let sets = [
            constraints(&hostname, "ScheduleAnyway"),
            constraints(&zone, "ScheduleAnyway"),
            system_default_constraints(&sel),
            constraints(&rack, "ScheduleAnyway"),
            zone_and_rack,
        ];
        for c in &sets {
            for require_all in [true, false] {
                let fast = score_placed((&incoming, c, &placed), &feasible, &nodes, require_all);
                let reference = score_by_definition((&incoming, c, &placed), &feasible, &nodes, require_all);
                assert_eq!(
                    fast,
                    reference,
                    "{:?} require_all={require_all}",
                    c.iter().map(|c| &c.topology_key).collect::<Vec<_>>()
                );
                assert!(
                    fast.iter().any(|s| *s != fast[0]),
                    "the case tells nodes apart: {fast:?}"
                );
            }
        }
    }

    #[test]
    fn replicaset_pods_get_the_system_default_spreading() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let mut p = web("web-abc");
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-5d4".into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let rs_selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        let none = |_: &str, _: &str| None;
        assert!(default_selector(&p, std::iter::empty(), &none).is_none());
        let by_owner = |kind: &str, name: &str| (kind == "ReplicaSet" && name == "web-5d4").then_some(&rs_selector);
        let sel = default_selector(&p, std::iter::empty(), &by_owner).expect("owned by a ReplicaSet");
        let c = system_default_constraints(&sel);
        assert_eq!(
            c.iter()
                .map(|c| (c.topology_key.as_str(), c.max_skew))
                .collect::<Vec<_>>(),
            [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        );
        // A ReplicationController's pods are grouped by its (map) selector.
        let mut q = web("web-rc-x");
        q.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "ReplicationController".into(),
            name: "web-rc".into(),
            uid: "u2".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let by_rc =
            |kind: &str, name: &str| (kind == "ReplicationController" && name == "web-rc").then_some(&rs_selector);
        assert!(default_selector(&q, std::iter::empty(), &by_rc).is_some());
        assert!(default_selector(&q, std::iter::empty(), &by_owner).is_none());

        // A Service selecting other pods does not group it; one selecting it does.
        let other = labels(&[("app", "db")]);
        assert!(default_selector(&p, [&other].into_iter(), &none).is_none());
        let svc = labels(&[("app", "web")]);
        assert!(default_selector(&p, [&svc].into_iter(), &none).is_some());

        // Scoring: the node already holding two replicas scores lowest; a node without a
        // zone label is still scored (not ignored) under the defaults.
        let nodes = slotted(vec![
            zoned("a1", "a"),
            zoned("b1", "b"),
            node_info(node("bare", "4", "8Gi")),
        ]);
        let placed = [(0usize, web("w1")), (0, web("w2"))];
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let scores = score_placed((&p, &c, &placed), &feasible, &nodes, false);
        assert!(scores[0] < scores[1], "{scores:?}");
        assert!(scores[2] > 0, "{scores:?}");
    }

    /// When every node is included, PreFilter reads only the nodes holding
    /// matching pods and a count of eligible domains kept until the nodes
    /// change, and the plugin's Filter reads domains by number; Filter decides
    /// as after a pass over every node reading labels, for a zone
    /// constraint, zone + hostname, minDomains above the domains there are,
    /// nodes lacking a key, and after nodes come, go and are relabeled.
    #[test]
    fn filter_decides_the_same_from_the_nodes_with_matching_pods() {
        use crate::cache::Cache;
        use std::cell::Cell;
        use std::sync::Arc;
        let plugin = PodTopologySpread::default();
        let mut cache = Cache::new();
        let mut nodes: Vec<k8s_openapi::api::core::v1::Node> = Vec::new();
        for i in 0..12 {
            let name = format!("n{i}");
            let mut n = node(&name, "64", "64Gi");
            n.metadata.labels = Some(if i % 5 == 4 {
                labels(&[(HOSTNAME_LABEL, &name)])
            } else {
                labels(&[(HOSTNAME_LABEL, &name), (ZONE, ["a", "b", "c"][i % 3])])
            });
            cache.upsert_node(Arc::new(n.clone()));
            nodes.push(n);
        }
        let mut incomings = Vec::new();
        for min_domains in [None, Some(5)] {
            let mut zone = spread(web("new"), ZONE, 1, "DoNotSchedule");
            zone.spec
                .as_mut()
                .unwrap()
                .topology_spread_constraints
                .as_mut()
                .unwrap()[0]
                .min_domains = min_domains;
            let mut both = zone.clone();
            let mut host = spread(web("new"), HOSTNAME_LABEL, 2, "DoNotSchedule");
            both.spec
                .as_mut()
                .unwrap()
                .topology_spread_constraints
                .as_mut()
                .unwrap()
                .push(
                    host.spec
                        .as_mut()
                        .unwrap()
                        .topology_spread_constraints
                        .take()
                        .unwrap()
                        .remove(0),
                );
            incomings.extend([zone, both]);
        }
        let (fits, skewed, missing) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let check = |cache: &Cache, what: &str| {
            for incoming in &incomings {
                let info = PodInfo::new(Arc::new(incoming.clone()));
                let mut cycle = CycleState::default();
                plugin.pre_filter(&info, cache, &mut cycle);
                let sparse = cycle.pod_topology_spread.expect("constraints");
                let hard = constraints(incoming, "DoNotSchedule");
                let per_node = matching_per_node(incoming, &hard, cache.pods_by_slot());
                let full = pre_filter(incoming, hard, cache.nodes(), &per_node);
                for (a, b) in sparse.counts.iter().zip(&full.counts) {
                    let nonzero = |d: &DomainCounts| -> Vec<(String, i64)> {
                        let mut v: Vec<_> = d
                            .matched
                            .iter()
                            .filter(|(_, n)| **n != 0)
                            .map(|(k, n)| (k.clone(), *n))
                            .collect();
                        v.sort();
                        v
                    };
                    assert_eq!(
                        (a.eligible, a.min, nonzero(a)),
                        (b.eligible, b.min, nonzero(b)),
                        "{what}"
                    );
                }
                assert!(sparse.numbered.is_some(), "the plugin's Filter reads domains by number");
                for n in cache.nodes() {
                    let decided = filter(&sparse, n);
                    assert_eq!(decided, filter(&full, n), "{what}: {}", n.name());
                    match decided {
                        Ok(()) => fits.set(fits.get() + 1),
                        Err(e) if e == Unfit::resolvable(REASON) => skewed.set(skewed.get() + 1),
                        Err(_) => missing.set(missing.get() + 1),
                    }
                }
            }
        };
        check(&cache, "no pods");
        for i in 0..30usize {
            let mut p = web(&format!("w{i}"));
            if i % 4 == 3 {
                p.metadata.labels = Some(labels(&[("app", "db")]));
            }
            p.metadata.uid = Some(format!("u{i}"));
            p.spec.as_mut().unwrap().node_name = Some(format!("n{}", (i * 7) % 11));
            cache.add_or_update_bound_pod(&p);
        }
        check(&cache, "placed pods");
        // A new zone, a node leaving, a node relabeled into another zone.
        let mut d = node("n12", "64", "64Gi");
        d.metadata.labels = Some(labels(&[(HOSTNAME_LABEL, "n12"), (ZONE, "d")]));
        cache.upsert_node(Arc::new(d));
        check(&cache, "zone d added");
        cache.remove_node("n1");
        check(&cache, "n1 removed");
        let mut moved = nodes[2].clone();
        moved.metadata.labels = Some(labels(&[(HOSTNAME_LABEL, "n2"), (ZONE, "e")]));
        cache.upsert_node(Arc::new(moved));
        check(&cache, "n2 moved to zone e");
        assert!(
            fits.get() > 0 && skewed.get() > 0 && missing.get() > 0,
            "every decision was made: {fits:?} fit, {skewed:?} skewed, {missing:?} lacking a key"
        );
        let bare = PodTopologySpread::default().eligible_domains(&constraints(&incomings[1], "DoNotSchedule"), &cache);
        assert_eq!(bare, [5, 10], "zones a, b, c, d, e; hosts with a zone");
    }

    /// Counting from scratch over the pods the selectors may select (the cache's label
    /// index) gives what counting over every placed pod gives: one selector, two that
    /// differ and select some pods both, a selector listing two values, one no label
    /// narrows, one selecting nothing; pods of another namespace and terminating ones.
    #[test]
    fn counting_what_the_selectors_may_select_counts_every_match() {
        use crate::cache::Cache;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, Time};
        use std::sync::Arc;
        let mut cache = Cache::new();
        for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
            cache.upsert_node(Arc::new(zoned(name, zone).node.as_ref().clone()));
        }
        type Placed<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let pods: [Placed; 8] = [
            ("w1", &[("app", "web"), ("tier", "front")], "a1"),
            ("w2", &[("app", "web")], "a2"),
            ("w3", &[("app", "web"), ("tier", "front")], "b1"),
            ("d1", &[("app", "db"), ("tier", "front")], "b1"),
            ("d2", &[("app", "db")], "a1"),
            ("x1", &[("tier", "back")], "a2"),
            ("o1", &[("app", "web")], "a1"),
            ("t1", &[("app", "web")], "b1"),
        ];
        for (name, pairs, node) in pods {
            let mut p = pod(name, "", "");
            p.metadata.uid = Some(name.into());
            p.metadata.labels = Some(labels(pairs));
            p.spec.as_mut().unwrap().node_name = Some(node.into());
            if name == "o1" {
                p.metadata.namespace = Some("other".into());
            }
            if name == "t1" {
                p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            }
            cache.add_or_update_bound_pod(&p);
        }
        let constraint = |key: &str, selector: LabelSelector| Constraint {
            max_skew: 1,
            topology_key: key.into(),
            selector: Selector::from_label_selector(Some(&selector)),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        };
        let labelled = |pairs: &[(&str, &str)]| LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        };
        let expressions = |key: &str, operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        let sets = [
            vec![constraint(ZONE, labelled(&[("app", "web")]))],
            vec![
                constraint(ZONE, labelled(&[("app", "web")])),
                constraint(HOSTNAME_LABEL, labelled(&[("tier", "front")])),
            ],
            vec![constraint(ZONE, expressions("app", "In", &["web", "db"]))],
            vec![constraint(ZONE, expressions("tier", "Exists", &[]))],
            vec![
                constraint(ZONE, labelled(&[("app", "db")])),
                constraint(HOSTNAME_LABEL, expressions("app", "NotIn", &["web"])),
            ],
            vec![constraint(ZONE, expressions("app", "In", &[]))],
        ];
        let incoming = web("new");
        for set in &sets {
            let every = matching_per_node(&incoming, set, cache.pods_by_slot());
            let mut kept = MatchCounts::default();
            assert_eq!(
                *kept.get(&incoming, set, &cache),
                every,
                "{:?}",
                set.iter().map(|c| &c.selector).collect::<Vec<_>>()
            );
        }
        assert!(matching_per_node(&incoming, &sets[1], cache.pods_by_slot())
            .matched()
            .any(|(_, c)| c[0] > 0 && c[1] > 0));
    }

    /// The counts kept between cycles always equal a fresh count over the cache, through
    /// assumptions, bindings elsewhere, relabels, terminations, removals and a journal
    /// that overflowed.
    #[test]
    fn kept_counts_follow_the_cache() {
        use crate::cache::Cache;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use std::sync::Arc;
        let mut cache = Cache::new();
        for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
            cache.upsert_node(Arc::new(zoned(name, zone).node.as_ref().clone()));
        }
        let placed = |name: &str, node: &str| {
            let mut p = web(name);
            p.metadata.uid = Some(name.into());
            p.spec.as_mut().unwrap().node_name = Some(node.into());
            p
        };
        let incoming = spread(web("new"), ZONE, 1, "ScheduleAnyway");
        let soft = constraints(&incoming, "ScheduleAnyway");
        // Counted from scratch from each pod's node name, with no slot involved.
        let fresh = |cache: &Cache| -> BTreeMap<String, Vec<i64>> {
            let mut counts = BTreeMap::<String, Vec<i64>>::new();
            for (node, pod, _) in cache.pods_on_nodes() {
                if pod.metadata.deletion_timestamp.is_none() && soft[0].selector.matches(pod.metadata.labels.as_ref()) {
                    counts.entry(node.name().to_string()).or_insert_with(|| vec![0])[0] += 1;
                }
            }
            counts
        };
        let mut kept = MatchCounts::default();
        let mut check = |cache: &Cache, what: &str| {
            let got: BTreeMap<String, Vec<i64>> = kept
                .get(&incoming, &soft, cache)
                .matched()
                .map(|(slot, v)| (cache.nodes()[slot].name().to_string(), v.to_vec()))
                .collect();
            assert_eq!(got, fresh(cache), "{what}");
        };
        cache.add_or_update_bound_pod(&placed("w1", "a1"));
        cache.add_or_update_bound_pod(&placed("w2", "b1"));
        check(&cache, "first count");
        assert_eq!(fresh(&cache).len(), 2);

        cache.assume_pod("w3", "a2", &PodInfo::new(Arc::new(placed("w3", "a2"))));
        check(&cache, "assumed");
        // The informer shows it bound elsewhere.
        cache.add_or_update_bound_pod(&placed("w3", "b1"));
        check(&cache, "bound elsewhere than assumed");
        // Relabelled out of the selector, then terminating, then gone.
        let mut other = placed("w1", "a1");
        other.metadata.labels = Some(labels(&[("app", "db")]));
        cache.add_or_update_bound_pod(&other);
        check(&cache, "relabelled");
        let mut leaving = placed("w2", "b1");
        leaving.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        cache.add_or_update_bound_pod(&leaving);
        check(&cache, "terminating");
        cache.remove_pod("w3");
        check(&cache, "removed");
        assert!(fresh(&cache).is_empty());

        // A node leaves, moving another into its slot, and comes back at another slot.
        cache.add_or_update_bound_pod(&placed("w4", "a1"));
        cache.add_or_update_bound_pod(&placed("w5", "b1"));
        cache.add_or_update_bound_pod(&placed("w6", "b1"));
        check(&cache, "before a node leaves");
        let slot_of_b1 = cache.slot("b1");
        cache.remove_node("a1");
        assert_ne!(cache.slot("b1"), slot_of_b1, "b1 moved");
        check(&cache, "a node left, another moved to its slot");
        cache.add_or_update_bound_pod(&placed("w7", "b1"));
        check(&cache, "placed after the move");
        cache.upsert_node(Arc::new(zoned("a1", "a").node.as_ref().clone()));
        check(&cache, "the node came back");
        assert_eq!(fresh(&cache)["a1"], vec![1]);
        assert_eq!(fresh(&cache)["b1"], vec![3]);
        for p in ["w4", "w5", "w6", "w7"] {
            cache.remove_pod(p);
        }
        check(&cache, "emptied again");

        // More changes than the journal keeps: counted again from scratch.
        for i in 0..5000 {
            let name = format!("p{i}");
            cache.add_or_update_bound_pod(&placed(&name, if i % 2 == 0 { "a1" } else { "b1" }));
        }
        check(&cache, "after the journal overflowed");
        assert_eq!(fresh(&cache)["a1"], vec![2500]);
        // Another cache's journal is never replayed.
        let mut other_cache = Cache::new();
        other_cache.upsert_node(Arc::new(zoned("a1", "a").node.as_ref().clone()));
        other_cache.add_or_update_bound_pod(&placed("x", "a1"));
        check(&other_cache, "another cache");
    }

    /// Scoring through the plugin, with the counts and domain numbers it keeps
    /// between cycles, gives the scores of reading every label where it is used,
    /// for the system defaults and a zone constraint of the pod's own, as nodes
    /// are relabeled into another zone, leave (moving another node to their
    /// slot) and join.
    #[test]
    fn kept_numbers_follow_the_nodes() {
        use crate::cache::Cache;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        use std::sync::Arc;
        let mut cache = Cache::new();
        for i in 0..9 {
            let name = format!("n{i}");
            cache.upsert_node(Arc::new(zoned(&name, ["a", "b", "c"][i % 3]).node.as_ref().clone()));
        }
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        cache.upsert_controller("ReplicaSet", "default", "web-1", Some(selector.clone()));
        let owned = |name: &str| {
            let mut p = web(name);
            p.metadata.uid = Some(name.into());
            p.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "rs".into(),
                controller: Some(true),
                ..Default::default()
            }]);
            p
        };
        let mut placed = 0;
        let mut place = |cache: &mut Cache, node: &str, n: usize| {
            for _ in 0..n {
                let mut p = owned(&format!("w{placed}"));
                placed += 1;
                p.spec.as_mut().unwrap().node_name = Some(node.into());
                cache.add_or_update_bound_pod(&p);
            }
        };
        let defaults = (owned("new"), system_default_constraints(&selector), false);
        let own = spread(owned("new"), ZONE, 1, "ScheduleAnyway");
        let own_constraints = constraints(&own, "ScheduleAnyway");
        let own = (own, own_constraints, true);
        let plugin = PodTopologySpread::default();
        let check = |cache: &Cache, what: &str| {
            // The placed pods by the position of their node, found by name.
            let placed: Vec<(usize, Pod)> = cache
                .pods_on_nodes()
                .map(|(n, p, _)| {
                    let at = cache.nodes().iter().position(|m| m.name() == n.name()).unwrap();
                    let metadata = p.metadata.clone();
                    (
                        at,
                        Pod {
                            metadata,
                            ..Pod::default()
                        },
                    )
                })
                .collect();
            let feasible: Vec<&NodeInfo> = cache.nodes().iter().collect();
            for (pod, constraints, require_all) in [&defaults, &own] {
                let info = PodInfo::new(Arc::new(pod.clone()));
                let got = plugin.score_nodes(&info, &feasible, cache).unwrap();
                let reference =
                    score_by_definition((pod, constraints, &placed), &feasible, cache.nodes(), *require_all);
                assert_eq!(got, reference, "{what}, require_all={require_all}");
                assert!(
                    got.iter().any(|s| *s != got[0]),
                    "{what}: the case tells nodes apart: {got:?}"
                );
            }
        };
        place(&mut cache, "n0", 3);
        place(&mut cache, "n1", 1);
        place(&mut cache, "n4", 2);
        check(&cache, "first");
        place(&mut cache, "n3", 2);
        check(&cache, "more placed");
        // n0 moves from zone a to zone c.
        cache.upsert_node(Arc::new(zoned("n0", "c").node.as_ref().clone()));
        check(&cache, "relabeled");
        // n1 leaves; the last node takes its slot.
        cache.remove_node("n1");
        check(&cache, "a node left");
        place(&mut cache, "n8", 4);
        check(&cache, "placed on the moved node");
        cache.upsert_node(Arc::new(zoned("n9", "d").node.as_ref().clone()));
        place(&mut cache, "n9", 1);
        check(&cache, "a node in a new zone joined");
    }
}
