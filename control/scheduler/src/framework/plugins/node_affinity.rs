//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node
//! (filter); matching preferred terms add their weights (score).

use crate::framework::{default_normalize, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit};
use k8s_openapi::api::core::v1::PodSpec;
use std::collections::BTreeMap;

/// Plugin name.
pub const NAME: &str = "NodeAffinity";
/// Reason shown in FailedScheduling messages.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub use sluice_kube::node_selector::{field_requirement_matches, label_requirement_matches, term_matches};

/// Whether the pod's `nodeSelector` and required node affinity (terms ORed) match the node.
pub fn required_matches(spec: &PodSpec, labels: Option<&BTreeMap<String, String>>, node_name: &str) -> bool {
    if let Some(selector) = spec.node_selector.as_ref() {
        let ok = selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !ok {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, node_name)),
    }
}

/// Sum of the weights of the pod's preferred terms that match the node (the raw score).
pub fn preferred_score(spec: &PodSpec, labels: Option<&BTreeMap<String, String>>, node_name: &str) -> i64 {
    preferred_terms(spec)
        .iter()
        .filter(|p| term_matches(&p.preference, labels, node_name))
        .map(|p| i64::from(p.weight))
        .sum()
}

fn preferred_terms(spec: &PodSpec) -> &[k8s_openapi::api::core::v1::PreferredSchedulingTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

/// The NodeAffinity filter and score (NodeSelector included, as in kube-scheduler).
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Ok(());
        };
        if required_matches(spec, node.labels(), node.name()) {
            Ok(())
        } else {
            Err(Unfit::unresolvable(REASON))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn skip(&self, pod: &PodInfo) -> bool {
        pod.pod.spec.as_ref().is_none_or(|s| preferred_terms(s).is_empty())
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.pod
            .spec
            .as_ref()
            .map_or(0, |s| preferred_score(s, node.labels(), node.name()))
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity as NodeAffinitySpec, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        PreferredSchedulingTerm,
    };

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn spec_with_required(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinitySpec {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn required_terms_are_ored_and_requirements_anded() {
        let l = labels(&[("zone", "a"), ("disk", "ssd")]);
        let term = |reqs: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        };
        let spec = spec_with_required(vec![
            term(vec![req("zone", "In", &["b"])]),
            term(vec![req("zone", "In", &["a"]), req("disk", "In", &["ssd"])]),
        ]);
        assert!(required_matches(&spec, Some(&l), "n1"));
        let spec = spec_with_required(vec![term(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])])]);
        assert!(!required_matches(&spec, Some(&l), "n1"));
        let spec = spec_with_required(vec![NodeSelectorTerm::default()]);
        assert!(
            !required_matches(&spec, Some(&l), "n1"),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn match_fields_selects_by_node_name() {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n2"])]),
        };
        let spec = spec_with_required(vec![term]);
        assert!(!required_matches(&spec, None, "n1"));
        assert!(required_matches(&spec, None, "n2"));
    }

    #[test]
    fn node_selector_needs_every_label() {
        let spec = PodSpec {
            node_selector: Some(labels(&[("zone", "a"), ("disk", "ssd")])),
            ..Default::default()
        };
        assert!(required_matches(
            &spec,
            Some(&labels(&[("zone", "a"), ("disk", "ssd"), ("x", "y")])),
            "n"
        ));
        assert!(!required_matches(&spec, Some(&labels(&[("zone", "a")])), "n"));
        assert!(!required_matches(&spec, None, "n"));
    }

    #[test]
    fn preferred_terms_add_weights() {
        let pref = |w: i32, key: &str, v: &str| PreferredSchedulingTerm {
            weight: w,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![req(key, "In", &[v])]),
                match_fields: None,
            },
        };
        let spec = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinitySpec {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        pref(80, "zone", "a"),
                        pref(20, "disk", "ssd"),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            preferred_score(&spec, Some(&labels(&[("zone", "a"), ("disk", "ssd")])), "n"),
            100
        );
        assert_eq!(preferred_score(&spec, Some(&labels(&[("disk", "ssd")])), "n"), 20);
        let mut scores = [100, 20, 0];
        default_normalize(&mut scores, false);
        assert_eq!(scores, [100, 20, 0]);
    }
}
