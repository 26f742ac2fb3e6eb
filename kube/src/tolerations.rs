//! Taints and tolerations as Kubernetes matches them (`ToleratesTaint`):
//! the scheduler's TaintToleration filter and the DaemonSet controller's
//! placement share this one matcher.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether one toleration tolerates one taint (Kubernetes' `ToleratesTaint`):
/// an empty effect matches every effect, an empty key with `Exists` matches every key,
/// `Equal` (the default operator) also needs equal values.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        Some(_) => false,
    }
}

/// The first NoSchedule/NoExecute taint no toleration tolerates, if any.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| if s.is_empty() { None } else { Some(s.to_string()) };
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            ..Default::default()
        }
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", "NoSchedule"), &t));
        assert!(
            tolerates(&toleration("dedicated", "", "gpu", ""), &t),
            "default operator is Equal, empty effect matches all"
        );
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("dedicated", "Exists", "", "NoExecute"), &t));
        assert!(
            tolerates(&toleration("", "Exists", "", ""), &t),
            "empty key with Exists tolerates everything"
        );
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
    }
}
