//! Node selector terms (`NodeSelectorTerm`): whether a node's labels and
//! name satisfy them, as Kubernetes' `nodeaffinity` helpers decide. One
//! implementation for every user: the scheduler's NodeAffinity (pod node
//! affinity), the DaemonSet controller (through it), and PersistentVolume
//! node affinity ([`crate::storage`], the PV controller and the scheduler's
//! VolumeBinding).

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use std::collections::BTreeMap;

/// Whether one label requirement matches the node's labels.
/// Unknown operators and malformed Gt/Lt values never match.
pub fn label_requirement_matches(req: &NodeSelectorRequirement, labels: Option<&BTreeMap<String, String>>) -> bool {
    let value = labels.and_then(|l| l.get(&req.key));
    let values = req.values.as_deref().unwrap_or_default();
    let int_cmp = |cmp: fn(i64, i64) -> bool| -> bool {
        let (Some(v), [bound]) = (value, values) else {
            return false;
        };
        match (v.parse::<i64>(), bound.parse::<i64>()) {
            (Ok(v), Ok(b)) => cmp(v, b),
            _ => false,
        }
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => int_cmp(|v, b| v > b),
        "Lt" => int_cmp(|v, b| v < b),
        _ => false,
    }
}

/// Whether one field requirement matches; only `metadata.name` with In/NotIn is supported,
/// as in Kubernetes.
pub fn field_requirement_matches(req: &NodeSelectorRequirement, node_name: &str) -> bool {
    if req.key != "metadata.name" {
        return false;
    }
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => values.iter().any(|v| v == node_name),
        "NotIn" => !values.iter().any(|v| v == node_name),
        _ => false,
    }
}

/// Whether a node selector term matches: all its expressions and fields match.
/// A term with neither matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, labels: Option<&BTreeMap<String, String>>, node_name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| label_requirement_matches(r, labels))
        && fields.iter().all(|r| field_requirement_matches(r, node_name))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn label_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let l = Some(&l);
        assert!(label_requirement_matches(&req("zone", "In", &["a", "b"]), l));
        assert!(!label_requirement_matches(&req("zone", "In", &["b"]), l));
        assert!(label_requirement_matches(&req("zone", "NotIn", &["b"]), l));
        assert!(
            label_requirement_matches(&req("missing", "NotIn", &["b"]), l),
            "NotIn matches an absent label"
        );
        assert!(label_requirement_matches(&req("zone", "Exists", &[]), l));
        assert!(!label_requirement_matches(&req("zone", "DoesNotExist", &[]), l));
        assert!(label_requirement_matches(&req("gpu", "DoesNotExist", &[]), l));
        assert!(label_requirement_matches(&req("cores", "Gt", &["4"]), l));
        assert!(!label_requirement_matches(&req("cores", "Lt", &["4"]), l));
        assert!(
            !label_requirement_matches(&req("zone", "Gt", &["4"]), l),
            "non-integer label never compares"
        );
        assert!(
            !label_requirement_matches(&req("cores", "Gt", &["4", "5"]), l),
            "Gt needs exactly one value"
        );
        assert!(!label_requirement_matches(&req("zone", "Bogus", &["a"]), l));
    }

    #[test]
    fn fields_match_the_node_name_only() {
        assert!(field_requirement_matches(&req("metadata.name", "In", &["n1"]), "n1"));
        assert!(field_requirement_matches(&req("metadata.name", "NotIn", &["n2"]), "n1"));
        assert!(!field_requirement_matches(&req("metadata.uid", "In", &["n1"]), "n1"));
        let empty = NodeSelectorTerm::default();
        assert!(!term_matches(&empty, None, "n1"), "an empty term matches nothing");
    }
}
