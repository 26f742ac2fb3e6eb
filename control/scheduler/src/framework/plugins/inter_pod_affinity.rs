//! InterPodAffinity: the pod's required `podAffinity` terms must each find a matching
//! pod in the node's topology domain and its required `podAntiAffinity` terms none, and
//! no pod already placed may have a required anti-affinity term matching this pod in the
//! node's domain (filter). Preferred terms of the pod, and the terms of placed pods that
//! match it (required affinity with weight 1), add or subtract their weights per domain
//! (score).
//!
//! PreFilter counts matching pods per topology pair (key, value) once per cycle, and
//! Filter looks up the node's pairs. The pods counted are looked up, not scanned
//! ([`PlacedPods`]): for each of the pod's required terms, the placed pods with a label
//! its selector requires; for placed pods' required anti-affinity, those whose term
//! requires one of the pod's labels. Work per cycle follows the pods that may match,
//! not the cluster's size (a term whose selector requires no label value still scans
//! every placed pod). A pod whose required affinity terms
//! match no pod anywhere but match the pod itself may go to any node having the
//! topology keys (the first pod of a group with affinity to itself).

use crate::cache::Cache;
use crate::framework::selector::Selector;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE};
use crate::placed_pod::PlacedPod;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, HashMap};

/// Plugin name.
pub const NAME: &str = "InterPodAffinity";
/// Reason when a required affinity term is not satisfied on the node.
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason when a required anti-affinity term of the pod is violated on the node.
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason when a placed pod's required anti-affinity term matches the pod on the node.
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Weight of placed pods' required affinity terms matching the incoming pod, in the score
/// (kube-scheduler's `hardPodAffinityWeight` default).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Labels = BTreeMap<String, String>;

/// A pod affinity term resolved against the pod that carries it: its namespaces (own
/// namespace when none are named and there is no `namespaceSelector`) and its label
/// selector with `matchLabelKeys`/`mismatchLabelKeys` merged in from the owner's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct AffinityTerm {
    namespaces: Vec<String>,
    namespace_selector: Selector,
    selector: Selector,
    /// The term's topology key.
    pub topology_key: String,
}

impl AffinityTerm {
    /// Resolve `term` as carried by `owner`.
    pub fn new(term: &PodAffinityTerm, owner: &Pod) -> AffinityTerm {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(owner.metadata.namespace.clone().unwrap_or_else(|| "default".into()));
        }
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        let owner_labels = owner.metadata.labels.as_ref();
        if term.label_selector.is_some() {
            for key in term.match_label_keys.iter().flatten() {
                if let Some(v) = owner_labels.and_then(|l| l.get(key)) {
                    selector.require_equal(key, v);
                }
            }
            for key in term.mismatch_label_keys.iter().flatten() {
                if let Some(v) = owner_labels.and_then(|l| l.get(key)) {
                    selector.require_not_equal(key, v);
                }
            }
        }
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// The term's label selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Whether the pod with metadata `pod` (whose namespace has labels
    /// `ns_labels`) is selected by the term.
    pub fn matches(&self, pod: &ObjectMeta, ns_labels: Option<&Labels>) -> bool {
        let ns = pod.namespace.as_deref().unwrap_or("default");
        let in_namespace = self.namespaces.iter().any(|n| n == ns) || self.namespace_selector.matches(ns_labels);
        in_namespace && self.selector.matches(pod.labels.as_ref())
    }
}

/// A preferred term with its weight.
#[derive(Clone, Debug)]
pub struct WeightedTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight (1..=100).
    pub weight: i64,
}

/// All pod (anti-)affinity terms of one pod, resolved.
#[derive(Clone, Debug, Default)]
pub struct PodTerms {
    /// `podAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Vec<AffinityTerm>,
    /// `podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// `podAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<WeightedTerm>,
    /// `podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

impl PodTerms {
    /// Whether these terms add to other pods' scores when they match them
    /// (required anti-affinity only filters).
    pub fn scores_others(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Resolve every pod (anti-)affinity term of `pod`.
    pub fn of(pod: &Pod) -> PodTerms {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(t, pod)).collect()
        };
        let preferred = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|w| WeightedTerm {
                    term: AffinityTerm::new(&w.pod_affinity_term, pod),
                    weight: i64::from(w.weight),
                })
                .collect()
        };
        PodTerms {
            required_affinity: required(
                pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity: required(
                paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: preferred(
                pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: preferred(
                paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
        }
    }
}

/// Counts of matching pods per topology pair: by key, then by value, so
/// Filter, which asks for every node searched, looks pairs up with the
/// node's own strings (a map by owned (key, value) pairs made it copy both
/// for every lookup).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// The count of pair (`key`, `value`).
    pub fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// Whether no pair was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether none of a node's pairs (its labels) has a count above 0.
    fn none_on(&self, node_labels: Option<&Labels>) -> bool {
        self.0.iter().all(|(key, values)| {
            node_labels
                .and_then(|l| l.get(key))
                .and_then(|v| values.get(v))
                .is_none_or(|n| *n <= 0)
        })
    }

    fn add(&mut self, key: &str, value: &str) {
        let values = match self.0.get_mut(key) {
            Some(values) => values,
            None => self.0.entry(key.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(n) => *n += 1,
            None => {
                values.insert(value.to_string(), 1);
            }
        }
    }
}

fn count(counts: &mut TopologyCounts, term: &AffinityTerm, node_labels: Option<&Labels>) {
    if let Some(v) = node_labels.and_then(|l| l.get(&term.topology_key)) {
        counts.add(&term.topology_key, v);
    }
}

/// What PreFilter computes once per cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreFilterState {
    /// Pairs where a placed pod's required anti-affinity term matches the incoming pod.
    pub existing_anti_affinity: TopologyCounts,
    /// Pairs with pods matching each of the incoming pod's required affinity terms.
    pub affinity: TopologyCounts,
    /// Pairs with pods matching the incoming pod's required anti-affinity terms.
    pub anti_affinity: TopologyCounts,
    /// The incoming pod's required affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// The incoming pod's required anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Whether the incoming pod matches all its own required affinity terms.
    pub matches_own_affinity: bool,
}

/// The placed pods PreFilter reads, found by what may match instead of
/// scanned: each method may return more pods than match (every term is
/// checked again), never fewer, and each pod once. A placed pod's terms
/// are those resolved when it was placed.
pub trait PlacedPods<'a> {
    /// Placed pods `selector` may select, with their node's labels.
    fn selectable_by(&self, selector: &Selector) -> Vec<(Option<&'a Labels>, &'a PlacedPod)>;
    /// The terms of placed pods with a required anti-affinity term that may
    /// select a pod labelled `labels`, with their node's labels.
    fn anti_affinity_toward(&self, labels: Option<&Labels>) -> Vec<(Option<&'a Labels>, &'a PodTerms)>;
    /// The terms of placed pods that may add to other pods' scores
    /// ([`PodTerms::scores_others`]), with their node's labels.
    fn with_scoring_terms(&self) -> Vec<(Option<&'a Labels>, &'a PodTerms)>;
}

impl<'a> PlacedPods<'a> for &'a Cache {
    fn selectable_by(&self, selector: &Selector) -> Vec<(Option<&'a Labels>, &'a PlacedPod)> {
        let cache: &'a Cache = self;
        cache
            .pods_selectable_by(selector)
            .map(|(n, p, _)| (n.labels(), p))
            .collect()
    }

    fn anti_affinity_toward(&self, labels: Option<&Labels>) -> Vec<(Option<&'a Labels>, &'a PodTerms)> {
        let cache: &'a Cache = self;
        cache
            .anti_affinity_toward(labels)
            .filter_map(|(n, _, t)| Some((n.labels(), t?)))
            .collect()
    }

    fn with_scoring_terms(&self) -> Vec<(Option<&'a Labels>, &'a PodTerms)> {
        let cache: &'a Cache = self;
        cache
            .pods_with_scoring_terms()
            .filter_map(|(n, _, t)| Some((n.labels(), t?)))
            .collect()
    }
}

/// Compute the PreFilter state from the `placed` pods; `ns_labels` gives a
/// namespace's labels.
pub fn pre_filter<'a, 'n>(
    pod: &Pod,
    placed: &dyn PlacedPods<'a>,
    ns_labels: &dyn Fn(&str) -> Option<&'n Labels>,
) -> PreFilterState {
    let terms = PodTerms::of(pod);
    let own_ns_labels = ns_labels(pod.metadata.namespace.as_deref().unwrap_or("default"));
    let mut state = PreFilterState {
        matches_own_affinity: terms
            .required_affinity
            .iter()
            .all(|t| t.matches(&pod.metadata, own_ns_labels)),
        ..Default::default()
    };
    for (node_labels, theirs) in placed.anti_affinity_toward(pod.metadata.labels.as_ref()) {
        for term in &theirs.required_anti_affinity {
            if term.matches(&pod.metadata, own_ns_labels) {
                count(&mut state.existing_anti_affinity, term, node_labels);
            }
        }
    }
    let count_selected = |term: &AffinityTerm, counts: &mut TopologyCounts| {
        for (node_labels, existing) in placed.selectable_by(&term.selector) {
            let existing_ns = ns_labels(existing.metadata.namespace.as_deref().unwrap_or("default"));
            if term.matches(&existing.metadata, existing_ns) {
                count(counts, term, node_labels);
            }
        }
    };
    for term in &terms.required_affinity {
        count_selected(term, &mut state.affinity);
    }
    for term in &terms.required_anti_affinity {
        count_selected(term, &mut state.anti_affinity);
    }
    state.required_affinity = terms.required_affinity;
    state.required_anti_affinity = terms.required_anti_affinity;
    state
}

/// Whether the pod's required affinity is satisfied on a node with these labels.
pub fn satisfies_affinity(state: &PreFilterState, node_labels: Option<&Labels>) -> bool {
    let mut pods_exist = true;
    for term in &state.required_affinity {
        let Some(v) = node_labels.and_then(|l| l.get(&term.topology_key)) else {
            return false; // every topology key must be on the node
        };
        if state.affinity.get(&term.topology_key, v) <= 0 {
            pods_exist = false;
        }
    }
    // The first pod of a group with affinity to itself: nothing matches anywhere yet.
    pods_exist || (state.affinity.is_empty() && state.matches_own_affinity)
}

/// Whether the pod's required anti-affinity is satisfied on a node with these labels.
pub fn satisfies_anti_affinity(state: &PreFilterState, node_labels: Option<&Labels>) -> bool {
    state.required_anti_affinity.iter().all(|term| {
        node_labels
            .and_then(|l| l.get(&term.topology_key))
            .is_none_or(|v| state.anti_affinity.get(&term.topology_key, v) <= 0)
    })
}

/// Whether no placed pod's required anti-affinity rejects the pod on a node with these labels.
pub fn satisfies_existing_anti_affinity(state: &PreFilterState, node_labels: Option<&Labels>) -> bool {
    state.existing_anti_affinity.none_on(node_labels)
}

/// The Filter decision for a node with these labels.
pub fn filter(state: &PreFilterState, node_labels: Option<&Labels>) -> Result<(), Unfit> {
    if !satisfies_affinity(state, node_labels) {
        return Err(Unfit::unresolvable(REASON_AFFINITY));
    }
    if !satisfies_anti_affinity(state, node_labels) {
        return Err(Unfit::resolvable(REASON_ANTI_AFFINITY));
    }
    if !satisfies_existing_anti_affinity(state, node_labels) {
        return Err(Unfit::resolvable(REASON_EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

/// Score per topology key and value.
pub type TopologyScore = HashMap<String, HashMap<String, i64>>;

fn add_score(scores: &mut TopologyScore, term: &AffinityTerm, weight: i64, node_labels: Option<&Labels>) {
    if let Some(v) = node_labels.and_then(|l| l.get(&term.topology_key)) {
        *scores
            .entry(term.topology_key.clone())
            .or_default()
            .entry(v.clone())
            .or_default() += weight;
    }
}

/// Score contributions per topology pair (kube's PreScore): the incoming pod's preferred
/// terms matching placed pods (those each term may select), and the terms of placed
/// pods that score others matching the incoming pod.
pub fn topology_score<'a, 'n>(
    pod: &Pod,
    terms: &PodTerms,
    placed: &dyn PlacedPods<'a>,
    ns_labels: &dyn Fn(&str) -> Option<&'n Labels>,
) -> TopologyScore {
    let own_ns_labels = ns_labels(pod.metadata.namespace.as_deref().unwrap_or("default"));
    let mut scores = TopologyScore::new();
    let preferred = terms
        .preferred_affinity
        .iter()
        .map(|w| (w, w.weight))
        .chain(terms.preferred_anti_affinity.iter().map(|w| (w, -w.weight)));
    for (w, weight) in preferred {
        for (node_labels, existing) in placed.selectable_by(&w.term.selector) {
            if node_labels.is_none_or(|l| l.is_empty()) {
                continue;
            }
            let existing_ns = ns_labels(existing.metadata.namespace.as_deref().unwrap_or("default"));
            if w.term.matches(&existing.metadata, existing_ns) {
                add_score(&mut scores, &w.term, weight, node_labels);
            }
        }
    }
    for (node_labels, theirs) in placed.with_scoring_terms() {
        if node_labels.is_none_or(|l| l.is_empty()) {
            continue;
        }
        for term in &theirs.required_affinity {
            if term.matches(&pod.metadata, own_ns_labels) {
                add_score(&mut scores, term, HARD_POD_AFFINITY_WEIGHT, node_labels);
            }
        }
        for w in &theirs.preferred_affinity {
            if w.term.matches(&pod.metadata, own_ns_labels) {
                add_score(&mut scores, &w.term, w.weight, node_labels);
            }
        }
        for w in &theirs.preferred_anti_affinity {
            if w.term.matches(&pod.metadata, own_ns_labels) {
                add_score(&mut scores, &w.term, -w.weight, node_labels);
            }
        }
    }
    scores
}

/// A node's raw score: the sum over topology keys of its domain's score.
pub fn node_score(scores: &TopologyScore, node_labels: Option<&Labels>) -> i64 {
    scores
        .iter()
        .filter_map(|(key, values)| values.get(node_labels?.get(key)?))
        .sum()
}

/// Min-max normalization into 0..=100 (all equal: all 0).
pub fn normalize(scores: &mut [i64]) {
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            MAX_NODE_SCORE * (*s - min) / diff
        } else {
            0
        };
    }
}

/// The plugin.
pub struct InterPodAffinity;

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        let lookup = |ns: &str| cache.namespace_labels(ns);
        let s = pre_filter(&pod.pod, &cache, &lookup);
        state.inter_pod_affinity = Some(s);
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match pod.cycle.inter_pod_affinity.as_ref() {
            Some(state) => filter(state, node.labels()),
            None => Ok(()),
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }

    fn score_nodes(&self, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) -> Option<Vec<i64>> {
        let terms = PodTerms::of(&pod.pod);
        let lookup = |ns: &str| cache.namespace_labels(ns);
        let scores = topology_score(&pod.pod, &terms, &cache, &lookup);
        if scores.is_empty() {
            return Some(vec![0; nodes.len()]);
        }
        let mut raw: Vec<i64> = nodes.iter().map(|n| node_score(&scores, n.labels())).collect();
        normalize(&mut raw);
        Some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::pod;
    use k8s_openapi::api::core::v1::{Affinity, PodAffinity, PodAntiAffinity};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    const HOST: &str = "kubernetes.io/hostname";
    const ZONE: &str = "topology.kubernetes.io/zone";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn node_labels(host: &str, zone: &str) -> Labels {
        labels(&[(HOST, host), (ZONE, zone)])
    }

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", app)])),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn labeled(name: &str, app: &str) -> Pod {
        let mut p = pod(name, "", "");
        p.metadata.labels = Some(labels(&[("app", app)]));
        p
    }

    fn with_affinity(mut p: Pod, affinity: Vec<PodAffinityTerm>, anti: Vec<PodAffinityTerm>) -> Pod {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: (!affinity.is_empty()).then(|| PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(affinity),
                ..Default::default()
            }),
            pod_anti_affinity: (!anti.is_empty()).then(|| PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(anti),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn no_ns(_: &str) -> Option<&'static Labels> {
        None
    }

    /// Every placed pod, for each question: the most [`PlacedPods`] may
    /// return. Each pod is kept as the cache keeps it, with its terms
    /// resolved when it has pod affinity or anti-affinity.
    struct Scan<'l>(Vec<(&'l Labels, PlacedPod, Option<PodTerms>)>);

    impl<'l> Scan<'l> {
        fn of(placed: &[(&'l Labels, &Pod)]) -> Scan<'l> {
            let kept = |p: &Pod| crate::cache::has_pod_affinity(p).then(|| PodTerms::of(p));
            Scan(placed.iter().map(|(l, p)| (*l, PlacedPod::of(p), kept(p))).collect())
        }
    }

    impl<'a> PlacedPods<'a> for &'a Scan<'_> {
        fn selectable_by(&self, _: &Selector) -> Vec<(Option<&'a Labels>, &'a PlacedPod)> {
            self.0.iter().map(|(l, p, _)| (Some(*l), p)).collect()
        }

        fn anti_affinity_toward(&self, _: Option<&Labels>) -> Vec<(Option<&'a Labels>, &'a PodTerms)> {
            self.0
                .iter()
                .filter_map(|(l, _, t)| Some((Some(*l), t.as_ref()?)))
                .filter(|(_, t)| !t.required_anti_affinity.is_empty())
                .collect()
        }

        fn with_scoring_terms(&self) -> Vec<(Option<&'a Labels>, &'a PodTerms)> {
            self.0
                .iter()
                .filter_map(|(l, _, t)| Some((Some(*l), t.as_ref()?)))
                .collect()
        }
    }

    fn state_for(incoming: &Pod, placed: &[(&Labels, &Pod)]) -> PreFilterState {
        pre_filter(incoming, &&Scan::of(placed), &no_ns)
    }

    /// The cache finds the pods a term may select by label instead of
    /// scanning them: for every kind of selector (matchLabels, `In` with
    /// values listed twice, only `Exists`/`NotIn`, none, a namespace
    /// selector), PreFilter over the cache counts what a scan counts, and
    /// keeps doing so when placed pods change labels or go away.
    #[test]
    fn pre_filter_over_the_cache_counts_what_a_scan_counts() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let expr = |key: &str, op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        let selectors = [
            Some(LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            Some(expr("app", "In", &["db", "web", "db"])),
            Some(expr("app", "Exists", &[])),
            Some(expr("app", "NotIn", &["web"])),
            Some(LabelSelector::default()),
            None,
        ];
        let term_with = |sel: &Option<LabelSelector>, key: &str, all_namespaces: bool| PodAffinityTerm {
            label_selector: sel.clone(),
            topology_key: key.into(),
            namespace_selector: all_namespaces.then(LabelSelector::default),
            ..Default::default()
        };
        use std::sync::Arc;
        // Preferred affinity and anti-affinity with the same term (weights 7 and 3).
        let preferring = |mut p: Pod, t: &PodAffinityTerm| {
            let weighted = |weight| {
                Some(vec![WeightedPodAffinityTerm {
                    weight,
                    pod_affinity_term: t.clone(),
                }])
            };
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_affinity: Some(PodAffinity {
                    preferred_during_scheduling_ignored_during_execution: weighted(7),
                    ..Default::default()
                }),
                pod_anti_affinity: Some(PodAntiAffinity {
                    preferred_during_scheduling_ignored_during_execution: weighted(3),
                    ..Default::default()
                }),
                ..Default::default()
            });
            p
        };
        let mut cache = Cache::new();
        let mut node_labels_of = BTreeMap::new();
        for (i, zone) in ["a", "a", "b", "c"].iter().enumerate() {
            let name = format!("n{i}");
            let mut n = crate::framework::testing::node(&name, "64", "64Gi");
            n.metadata.labels = Some(node_labels(&name, zone));
            node_labels_of.insert(name, node_labels(&format!("n{i}"), zone));
            cache.upsert_node(Arc::new(n));
        }
        let mut placed: Vec<(String, Pod)> = Vec::new();
        let apps = ["web", "db", "cache"];
        for i in 0..24 {
            let mut p = labeled(&format!("p{i}"), apps[i % 3]);
            if i % 5 == 0 {
                p.metadata.namespace = Some("infra".into());
            }
            if i % 7 == 0 {
                p.metadata.labels = None;
            }
            let sel = &selectors[i % selectors.len()];
            let key = if i % 2 == 0 { HOST } else { ZONE };
            if i % 3 != 2 {
                p = with_affinity(p, vec![], vec![term_with(sel, key, i % 4 == 0)]);
            } else if i % 6 == 5 {
                // Terms that score others: required affinity, preferred anti-affinity.
                let sel = &selectors[i % 4];
                p = with_affinity(p, vec![term_with(sel, key, false)], vec![]);
                let anti = p.spec.as_mut().unwrap().affinity.as_mut().unwrap();
                anti.pod_anti_affinity = Some(PodAntiAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                        weight: 5,
                        pod_affinity_term: term_with(sel, ZONE, true),
                    }]),
                    ..Default::default()
                });
            }
            let node = format!("n{}", i % 4);
            p.metadata.uid = Some(format!("u{i}"));
            p.spec.as_mut().unwrap().node_name = Some(node.clone());
            if i % 6 == 1 {
                // Assumed, not yet seen bound.
                let info = crate::framework::testing::pod_info(p.clone());
                cache.assume_pod(&format!("u{i}"), &node, &info);
            } else {
                cache.add_or_update_bound_pod(&p);
            }
            placed.push((node, p));
        }
        let check = |cache: &Cache, placed: &[(String, Pod)]| {
            let scan: Vec<(&Labels, &Pod)> = placed.iter().map(|(n, p)| (&node_labels_of[n], p)).collect();
            let ns_labels = |_: &str| None;
            for (i, sel) in selectors.iter().enumerate() {
                for all_namespaces in [false, true] {
                    let t = term_with(sel, if i % 2 == 0 { HOST } else { ZONE }, all_namespaces);
                    for incoming in [
                        with_affinity(labeled("in-web", "web"), vec![t.clone()], vec![t.clone()]),
                        with_affinity(labeled("in-db", "db"), vec![], vec![t.clone()]),
                        with_affinity(pod("in-bare", "", ""), vec![t.clone()], vec![]),
                        preferring(labeled("in-pref", "web"), &t),
                    ] {
                        let looked_up = pre_filter(&incoming, &cache, &ns_labels);
                        let scanned = pre_filter(&incoming, &&Scan::of(&scan), &ns_labels);
                        assert_eq!(looked_up, scanned, "selector {i}, all namespaces {all_namespaces}");
                        // The score looks up what the pod's preferred terms may
                        // select, and walks the pods whose terms score others.
                        let terms = PodTerms::of(&incoming);
                        let from_cache = topology_score(&incoming, &terms, &cache, &ns_labels);
                        let from_all = topology_score(&incoming, &terms, &&Scan::of(&scan), &ns_labels);
                        assert_eq!(from_cache, from_all, "selector {i}, all namespaces {all_namespaces}");
                    }
                }
            }
        };
        check(&cache, &placed);
        // Relabel some, take others away: the index follows.
        for i in [0usize, 3, 8, 13] {
            let (_, p) = &mut placed[i];
            p.metadata.labels = Some(labels(&[("app", "web"), ("tier", "front")]));
            cache.add_or_update_bound_pod(p);
        }
        for i in [1usize, 4, 9] {
            cache.remove_pod(&format!("u{i}"));
        }
        let placed: Vec<_> = placed
            .into_iter()
            .enumerate()
            .filter(|(i, _)| ![1, 4, 9].contains(i))
            .map(|(_, p)| p)
            .collect();
        check(&cache, &placed);
    }

    #[test]
    fn anti_affinity_keeps_replicas_on_different_hosts() {
        let n1 = node_labels("n1", "a");
        let n2 = node_labels("n2", "a");
        let web = with_affinity(labeled("web-1", "web"), vec![], vec![term("web", HOST)]);
        let incoming = with_affinity(labeled("web-2", "web"), vec![], vec![term("web", HOST)]);
        let s = state_for(&incoming, &[(&n1, &web)]);
        assert_eq!(filter(&s, Some(&n1)), Err(Unfit::resolvable(REASON_ANTI_AFFINITY)));
        assert_eq!(filter(&s, Some(&n2)), Ok(()));
        // The same anti-affinity over zones rules out both nodes of zone a.
        let incoming = with_affinity(labeled("web-2", "web"), vec![], vec![term("web", ZONE)]);
        let s = state_for(&incoming, &[(&n1, &web)]);
        assert!(filter(&s, Some(&n2)).is_err());
        assert_eq!(filter(&s, Some(&node_labels("n3", "b"))), Ok(()));
    }

    #[test]
    fn placed_pods_anti_affinity_is_symmetric() {
        let n1 = node_labels("n1", "a");
        let guard = with_affinity(labeled("guard", "guard"), vec![], vec![term("web", HOST)]);
        let plain = labeled("web-1", "web");
        let s = state_for(&plain, &[(&n1, &guard)]);
        assert_eq!(
            filter(&s, Some(&n1)),
            Err(Unfit::resolvable(REASON_EXISTING_ANTI_AFFINITY))
        );
        assert_eq!(filter(&s, Some(&node_labels("n2", "a"))), Ok(()));
        assert_eq!(filter(&s, None), Ok(()), "a node without labels is in no pair");
        let other = labeled("db-1", "db");
        assert_eq!(filter(&state_for(&other, &[(&n1, &guard)]), Some(&n1)), Ok(()));
        // A term over zones rules out every node of the guard's zone, only those.
        let zone_guard = with_affinity(labeled("zone-guard", "guard"), vec![], vec![term("web", ZONE)]);
        let s = state_for(&plain, &[(&n1, &guard), (&n1, &zone_guard)]);
        assert_eq!(
            filter(&s, Some(&node_labels("n2", "a"))),
            Err(Unfit::resolvable(REASON_EXISTING_ANTI_AFFINITY))
        );
        assert_eq!(filter(&s, Some(&node_labels("n3", "b"))), Ok(()));
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain() {
        let n1 = node_labels("n1", "a");
        let n2 = node_labels("n2", "a");
        let n3 = node_labels("n3", "b");
        let cache_pod = labeled("cache", "cache");
        let incoming = with_affinity(labeled("web", "web"), vec![term("cache", ZONE)], vec![]);
        let s = state_for(&incoming, &[(&n1, &cache_pod)]);
        assert_eq!(filter(&s, Some(&n1)), Ok(()));
        assert_eq!(filter(&s, Some(&n2)), Ok(()), "same zone");
        assert_eq!(filter(&s, Some(&n3)), Err(Unfit::unresolvable(REASON_AFFINITY)));
        assert_eq!(
            filter(&s, Some(&labels(&[(HOST, "bare")]))),
            Err(Unfit::unresolvable(REASON_AFFINITY)),
            "nodes without the topology key never match"
        );
        // Nothing matches anywhere and the pod does not match its own term: nowhere.
        let s = state_for(&incoming, &[]);
        assert!(filter(&s, Some(&n1)).is_err());
    }

    #[test]
    fn first_pod_of_a_self_affine_group_goes_anywhere() {
        let n1 = node_labels("n1", "a");
        let first = with_affinity(labeled("web-1", "web"), vec![term("web", ZONE)], vec![]);
        let s = state_for(&first, &[]);
        assert_eq!(filter(&s, Some(&n1)), Ok(()));
        assert!(filter(&s, Some(&labels(&[(HOST, "bare")]))).is_err());
        // Once one is placed, the rest follow it.
        let s = state_for(&first, &[(&n1, &first)]);
        assert!(filter(&s, Some(&node_labels("n3", "b"))).is_err());
        assert_eq!(filter(&s, Some(&node_labels("n2", "a"))), Ok(()));
    }

    #[test]
    fn namespaces_and_selectors_scope_terms() {
        let n1 = node_labels("n1", "a");
        let mut other_ns = labeled("cache", "cache");
        other_ns.metadata.namespace = Some("infra".into());
        let incoming = with_affinity(labeled("web", "web"), vec![term("cache", HOST)], vec![]);
        let placed = [(&n1, &other_ns)];
        assert!(
            filter(&state_for(&incoming, &placed), Some(&n1)).is_err(),
            "own namespace only"
        );

        let mut t = term("cache", HOST);
        t.namespaces = Some(vec!["infra".into()]);
        let incoming = with_affinity(labeled("web", "web"), vec![t], vec![]);
        assert_eq!(filter(&state_for(&incoming, &placed), Some(&n1)), Ok(()));

        let mut t = term("cache", HOST);
        t.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("team", "infra")])),
            ..Default::default()
        });
        let incoming = with_affinity(labeled("web", "web"), vec![t], vec![]);
        let infra = labels(&[("team", "infra")]);
        let ns = |n: &str| (n == "infra").then_some(&infra);
        let s = pre_filter(&incoming, &&Scan::of(&placed), &ns);
        assert_eq!(filter(&s, Some(&n1)), Ok(()));
    }

    #[test]
    fn match_label_keys_narrow_the_selector_to_the_owners_values() {
        let n1 = node_labels("n1", "a");
        let mut old = labeled("web-old", "web");
        old.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("pod-template-hash".into(), "old".into());
        let mut t = term("web", HOST);
        t.match_label_keys = Some(vec!["pod-template-hash".into()]);
        let mut incoming = with_affinity(labeled("web-new", "web"), vec![], vec![t]);
        incoming
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("pod-template-hash".into(), "new".into());
        assert_eq!(filter(&state_for(&incoming, &[(&n1, &old)]), Some(&n1)), Ok(()));
    }

    #[test]
    fn preferred_terms_and_placed_pods_terms_score_domains() {
        let n1 = node_labels("n1", "a");
        let n2 = node_labels("n2", "b");
        let cache_pod = labeled("cache", "cache");
        let mut incoming = labeled("web", "web");
        incoming.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                    weight: 10,
                    pod_affinity_term: term("cache", ZONE),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let terms = PodTerms::of(&incoming);
        let placed = [(&n1, &cache_pod)];
        let scores = topology_score(&incoming, &terms, &&Scan::of(&placed), &no_ns);
        let mut raw = vec![node_score(&scores, Some(&n1)), node_score(&scores, Some(&n2))];
        assert_eq!(raw, [10, 0]);
        normalize(&mut raw);
        assert_eq!(raw, [100, 0]);

        // A placed pod with required affinity to "web" attracts it (hard weight 1).
        let friend = with_affinity(labeled("friend", "friend"), vec![term("web", HOST)], vec![]);
        let plain = labeled("web", "web");
        let placed = [(&n2, &friend)];
        let scores = topology_score(&plain, &PodTerms::of(&plain), &&Scan::of(&placed), &no_ns);
        assert_eq!(node_score(&scores, Some(&n2)), HARD_POD_AFFINITY_WEIGHT);
        assert_eq!(node_score(&scores, Some(&n1)), 0);
    }
}
