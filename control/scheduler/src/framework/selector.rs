//! Label selectors (`metav1.LabelSelector`) as the scheduler evaluates them, compiled
//! once per scheduling cycle.
//!
//! A nil selector selects nothing, an empty one everything; a selector with an unknown
//! operator or malformed values selects nothing (as `LabelSelectorAsSelector` failing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// One requirement of a compiled selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// What every label set a selector selects must hold, for looking the
/// selected up in an index instead of checking them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Narrowing<'a> {
    /// The selector selects nothing.
    Nothing,
    /// One of these values under this key (its first `In` requirement;
    /// `matchLabels` come first). Values may repeat, as the selector lists them.
    OneOf(&'a str, &'a [String]),
    /// No requirement narrows it (only `NotIn`, `Exists`, `DoesNotExist`, or none).
    Unnarrowed,
}

/// A compiled label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// `None`: selects nothing.
    requirements: Option<Vec<Requirement>>,
}

impl Selector {
    /// A selector that selects nothing.
    pub fn nothing() -> Selector {
        Selector { requirements: None }
    }

    /// A selector that selects everything.
    pub fn everything() -> Selector {
        Selector {
            requirements: Some(Vec::new()),
        }
    }

    /// Compile a `LabelSelector`; `None` selects nothing.
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else { return Selector::nothing() };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let req = match e.operator.as_str() {
                "In" if !values.is_empty() => Requirement::In(e.key.clone(), values),
                "NotIn" if !values.is_empty() => Requirement::NotIn(e.key.clone(), values),
                "Exists" if values.is_empty() => Requirement::Exists(e.key.clone()),
                "DoesNotExist" if values.is_empty() => Requirement::DoesNotExist(e.key.clone()),
                _ => return Selector::nothing(),
            };
            reqs.push(req);
        }
        Selector {
            requirements: Some(reqs),
        }
    }

    /// Add `key in (value)` (`matchLabelKeys`); a selector of nothing stays so.
    pub fn require_equal(&mut self, key: &str, value: &str) {
        if let Some(r) = self.requirements.as_mut() {
            r.push(Requirement::In(key.into(), vec![value.into()]));
        }
    }

    /// Add `key notin (value)` (`mismatchLabelKeys`).
    pub fn require_not_equal(&mut self, key: &str, value: &str) {
        if let Some(r) = self.requirements.as_mut() {
            r.push(Requirement::NotIn(key.into(), vec![value.into()]));
        }
    }

    /// What every label set it selects must hold (see [`Narrowing`]).
    pub fn narrowing(&self) -> Narrowing<'_> {
        let Some(reqs) = self.requirements.as_ref() else {
            return Narrowing::Nothing;
        };
        reqs.iter()
            .find_map(|r| match r {
                Requirement::In(k, vs) => Some(Narrowing::OneOf(k, vs)),
                _ => None,
            })
            .unwrap_or(Narrowing::Unnarrowed)
    }

    /// Whether the labels are selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let Some(reqs) = self.requirements.as_ref() else {
            return false;
        };
        reqs.iter().all(|r| {
            let get = |k: &str| labels.and_then(|l| l.get(k));
            match r {
                Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
                Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
                Requirement::Exists(k) => get(k).is_some(),
                Requirement::DoesNotExist(k) => get(k).is_none(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn nil_selects_nothing_and_empty_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!Selector::from_label_selector(None).matches(Some(&l)));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(Some(&l)));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(None));
    }

    #[test]
    fn narrowing_names_a_label_every_selected_set_has() {
        let nothing = Selector::nothing();
        assert_eq!(nothing.narrowing(), Narrowing::Nothing);
        assert_eq!(Selector::everything().narrowing(), Narrowing::Unnarrowed);
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        let s = Selector::from_label_selector(Some(&sel));
        assert_eq!(s.narrowing(), Narrowing::OneOf("app", &["web".to_string()]));
        let only_expressions = LabelSelector {
            match_expressions: sel.match_expressions.clone(),
            ..Default::default()
        };
        let s = Selector::from_label_selector(Some(&only_expressions));
        assert_eq!(
            s.narrowing(),
            Narrowing::OneOf("tier", &["a".to_string(), "b".to_string()])
        );
        let exists = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            Selector::from_label_selector(Some(&exists)).narrowing(),
            Narrowing::Unnarrowed
        );
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(Some(&labels(&[("app", "web")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "db")]))));
        assert!(!s.matches(Some(&labels(&[("app", "api")]))));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert!(!Selector::from_label_selector(Some(&bad)).matches(None));
    }
}
