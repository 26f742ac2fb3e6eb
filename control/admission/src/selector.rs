//! Label selectors (`metav1.LabelSelector`): `matchLabels` and `matchExpressions`
//! with the operators `In`, `NotIn`, `Exists` and `DoesNotExist`.
//!
//! An empty selector (`{}`) matches everything. A selector that cannot be
//! evaluated (an unknown operator, `In` without values, `Exists` with values)
//! is an error, never a silent match.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Labels of an object: key → value.
pub type Labels = BTreeMap<String, String>;

/// Why a selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The operator is none of `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// `In`/`NotIn` need at least one value.
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    MissingValues,
    /// `Exists`/`DoesNotExist` take no values.
    #[error("values set must be empty for exists and does not exist")]
    UnexpectedValues,
}

/// Whether the selector has no requirement at all (it then matches everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Checks that every requirement of the selector can be evaluated.
pub fn validate(selector: &LabelSelector) -> Result<(), SelectorError> {
    for req in selector.match_expressions.iter().flatten() {
        check_requirement(req)?;
    }
    Ok(())
}

fn check_requirement(req: &LabelSelectorRequirement) -> Result<(), SelectorError> {
    let has_values = req.values.as_ref().is_some_and(|v| !v.is_empty());
    match req.operator.as_str() {
        "In" | "NotIn" if !has_values => Err(SelectorError::MissingValues),
        "In" | "NotIn" => Ok(()),
        "Exists" | "DoesNotExist" if has_values => Err(SelectorError::UnexpectedValues),
        "Exists" | "DoesNotExist" => Ok(()),
        other => Err(SelectorError::UnknownOperator(other.to_owned())),
    }
}

/// Evaluates `selector` against `labels`. All requirements must hold.
pub fn matches(selector: &LabelSelector, labels: &Labels) -> Result<bool, SelectorError> {
    validate(selector)?;
    for (key, value) in selector.match_labels.iter().flatten() {
        if labels.get(key) != Some(value) {
            return Ok(false);
        }
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        let actual = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" => actual.is_some_and(|a| values.contains(a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            other => return Err(SelectorError::UnknownOperator(other.to_owned())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The `metadata.labels` of a JSON object; non-string values are skipped.
pub fn labels_of(object: &serde_json::Value) -> Labels {
    object
        .pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn sel(ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: if ml.is_empty() { None } else { Some(labels(ml)) },
            match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = LabelSelector::default();
        assert!(is_empty(&s));
        assert_eq!(matches(&s, &Labels::new()), Ok(true));
        assert_eq!(matches(&s, &labels(&[("a", "b")])), Ok(true));
        let s = sel(&[], vec![]);
        assert!(is_empty(&s));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let s = sel(&[("app", "web"), ("tier", "fe")], vec![]);
        assert!(!is_empty(&s));
        assert_eq!(
            matches(&s, &labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])),
            Ok(true)
        );
        assert_eq!(matches(&s, &labels(&[("app", "web")])), Ok(false));
        assert_eq!(matches(&s, &labels(&[("app", "web"), ("tier", "be")])), Ok(false));
    }

    #[test]
    fn operators() {
        let l = labels(&[("env", "prod"), ("team", "a")]);
        let m = |e| matches(&sel(&[], vec![e]), &l);
        assert_eq!(m(expr("env", "In", &["prod", "staging"])), Ok(true));
        assert_eq!(m(expr("env", "In", &["dev"])), Ok(false));
        assert_eq!(m(expr("missing", "In", &["dev"])), Ok(false));
        assert_eq!(m(expr("env", "NotIn", &["dev"])), Ok(true));
        assert_eq!(m(expr("env", "NotIn", &["prod"])), Ok(false));
        assert_eq!(m(expr("missing", "NotIn", &["prod"])), Ok(true));
        assert_eq!(m(expr("team", "Exists", &[])), Ok(true));
        assert_eq!(m(expr("missing", "Exists", &[])), Ok(false));
        assert_eq!(m(expr("missing", "DoesNotExist", &[])), Ok(true));
        assert_eq!(m(expr("team", "DoesNotExist", &[])), Ok(false));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = sel(&[("app", "web")], vec![expr("env", "NotIn", &["prod"])]);
        assert_eq!(matches(&s, &labels(&[("app", "web"), ("env", "dev")])), Ok(true));
        assert_eq!(matches(&s, &labels(&[("app", "web"), ("env", "prod")])), Ok(false));
        assert_eq!(matches(&s, &labels(&[("env", "dev")])), Ok(false));
    }

    #[test]
    fn invalid_requirements_are_errors() {
        let l = Labels::new();
        assert_eq!(
            matches(&sel(&[], vec![expr("a", "Equals", &["x"])]), &l),
            Err(SelectorError::UnknownOperator("Equals".into()))
        );
        assert_eq!(
            matches(&sel(&[], vec![expr("a", "In", &[])]), &l),
            Err(SelectorError::MissingValues)
        );
        assert_eq!(
            matches(&sel(&[], vec![expr("a", "Exists", &["x"])]), &l),
            Err(SelectorError::UnexpectedValues)
        );
        // Operators are case-sensitive, as in Kubernetes.
        assert!(matches(&sel(&[], vec![expr("a", "in", &["x"])]), &l).is_err());
    }

    #[test]
    fn labels_of_reads_metadata_labels() {
        let obj = serde_json::json!({"metadata": {"labels": {"a": "1", "bad": 3}}});
        assert_eq!(labels_of(&obj), labels(&[("a", "1")]));
        assert_eq!(labels_of(&serde_json::json!("not an object")), Labels::new());
        assert_eq!(
            labels_of(&serde_json::json!({"metadata": {"labels": null}})),
            Labels::new()
        );
    }
}
