//! TaintToleration: a node's NoSchedule/NoExecute taints must be tolerated (filter);
//! fewer untolerated PreferNoSchedule taints score higher (score).

use crate::framework::{default_normalize, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit};
use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Plugin name.
pub const NAME: &str = "TaintToleration";

pub use sluice_kube::tolerations::{first_untolerated, tolerates};

/// Number of PreferNoSchedule taints not tolerated by tolerations whose effect is
/// empty or PreferNoSchedule (the raw score; fewer is better).
pub fn intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    let relevant: Vec<&Toleration> = tolerations
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
        .collect();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| !relevant.iter().any(|t| tolerates(t, taint)))
        .count() as i64
}

/// The reason text kube-scheduler uses for an untolerated taint.
pub fn reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or_default()
    )
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The TaintToleration filter and score.
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match first_untolerated(node.taints(), tolerations(pod)) {
            None => Ok(()),
            Some(taint) => Err(Unfit::unresolvable(reason(taint))),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        intolerable_prefer_no_schedule(node.taints(), tolerations(pod))
    }
    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
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
    fn only_hard_effects_block_scheduling() {
        let taints = [taint("soft", "x", "PreferNoSchedule"), taint("hard", "y", "NoExecute")];
        let untolerated = first_untolerated(&taints, &[]).map(reason);
        assert_eq!(untolerated.as_deref(), Some("node(s) had untolerated taint {hard: y}"));
        assert_eq!(
            first_untolerated(&taints, &[toleration("hard", "Exists", "", "")]),
            None
        );
    }

    #[test]
    fn prefer_no_schedule_scores_lower() {
        let taints = [taint("a", "1", "PreferNoSchedule"), taint("b", "2", "PreferNoSchedule")];
        assert_eq!(intolerable_prefer_no_schedule(&taints, &[]), 2);
        // A NoSchedule-only toleration does not count for PreferNoSchedule taints.
        assert_eq!(
            intolerable_prefer_no_schedule(&taints, &[toleration("a", "Exists", "", "NoSchedule")]),
            2
        );
        assert_eq!(
            intolerable_prefer_no_schedule(&taints, &[toleration("a", "Exists", "", "")]),
            1
        );
        let mut scores = [0, 1, 2];
        default_normalize(&mut scores, true);
        assert_eq!(scores, [100, 50, 0]);
    }
}
