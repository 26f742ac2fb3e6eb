//! Pods filed under label pairs (key, value), so that what a label selector
//! may select is looked up instead of checked against every cached pod.
//!
//! The [`cache`](crate::cache) keeps two: placed pods by their own labels
//! (what a pod's affinity terms select), and placed pods with required
//! anti-affinity by the label their terms require (which of them may reject
//! an incoming pod). A lookup is a superset of what matches: the caller still
//! checks the whole selector and the namespaces. Found this way, the pod
//! (anti-)affinity PreFilter costs the pods a term selects, not every pod of
//! the cluster (kube-scheduler scans them all, in parallel).

use crate::framework::selector::Narrowing;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Uids filed by label key, then value.
#[derive(Default, Debug)]
pub struct LabelIndex {
    filed: HashMap<String, HashMap<String, HashSet<Arc<str>>>>,
}

impl LabelIndex {
    /// File `uid` under (`key`, `value`).
    pub fn insert(&mut self, key: &str, value: &str, uid: &Arc<str>) {
        self.filed
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_default()
            .insert(uid.clone());
    }

    /// Take `uid` out of (`key`, `value`); empty sets are dropped.
    pub fn remove(&mut self, key: &str, value: &str, uid: &str) {
        let Some(values) = self.filed.get_mut(key) else { return };
        if let Some(uids) = values.get_mut(value) {
            uids.remove(uid);
            if uids.is_empty() {
                values.remove(value);
            }
        }
        if values.is_empty() {
            self.filed.remove(key);
        }
    }

    /// The uids filed under (`key`, `value`).
    pub fn get<'a>(&'a self, key: &str, value: &str) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.filed
            .get(key)
            .and_then(|values| values.get(value))
            .into_iter()
            .flatten()
    }

    /// The uids a selector narrowed to `narrowing` may select, each once, or
    /// `None` when it is not narrowed (every pod may match).
    pub fn narrowed<'a>(&'a self, narrowing: Narrowing<'_>) -> Option<Vec<&'a Arc<str>>> {
        match narrowing {
            Narrowing::Nothing => Some(Vec::new()),
            Narrowing::Unnarrowed => None,
            Narrowing::OneOf(key, values) => {
                // A pod has one value per key: the values' sets are disjoint,
                // so only a value listed twice could count a pod twice.
                let mut distinct: Vec<&String> = values.iter().collect();
                distinct.sort();
                distinct.dedup();
                Some(distinct.into_iter().flat_map(|v| self.get(key, v)).collect())
            }
        }
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.filed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids<'a>(found: impl IntoIterator<Item = &'a Arc<str>>) -> Vec<String> {
        let mut v: Vec<String> = found.into_iter().map(|u| u.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_narrowed_selector_finds_the_pods_of_its_values_once_each() {
        let mut idx = LabelIndex::default();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        idx.insert("app", "web", &a);
        idx.insert("app", "web", &b);
        idx.insert("app", "db", &c);
        idx.insert("tier", "front", &a);
        let web = ["web".to_string()];
        assert_eq!(uids(idx.narrowed(Narrowing::OneOf("app", &web)).unwrap()), ["a", "b"]);
        let both = ["db".to_string(), "web".to_string(), "db".to_string()];
        assert_eq!(
            uids(idx.narrowed(Narrowing::OneOf("app", &both)).unwrap()),
            ["a", "b", "c"],
            "a value listed twice finds its pods once"
        );
        assert!(idx.narrowed(Narrowing::Nothing).unwrap().is_empty());
        assert!(idx.narrowed(Narrowing::Unnarrowed).is_none());

        idx.remove("app", "web", "a");
        idx.remove("app", "web", "b");
        idx.remove("app", "db", "c");
        idx.remove("tier", "front", "a");
        assert!(idx.is_empty(), "empty sets are dropped");
    }
}
