//! NodeResourcesBalancedAllocation: nodes whose cpu and memory would be used in
//! similar proportions after placing the pod score higher.

use crate::framework::{NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};
use crate::resources::Resources;

/// Plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Score from the used fractions of cpu and memory (each capped at 1):
/// `(1 - |cpu - memory| / 2) * 100`, the standard deviation form kube-scheduler uses for two resources.
pub fn balanced_score(pod_request: &Resources, allocatable: &Resources, requested: &Resources) -> i64 {
    let fraction = |req: i64, alloc: i64| -> f64 {
        if alloc <= 0 {
            return 1.0;
        }
        (req as f64 / alloc as f64).min(1.0)
    };
    let cpu = fraction(requested.milli_cpu + pod_request.milli_cpu, allocatable.milli_cpu);
    let mem = fraction(requested.memory + pod_request.memory, allocatable.memory);
    let std = (cpu - mem).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// The BalancedAllocation score.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn skip(&self, pod: &PodInfo) -> bool {
        // Like kube-scheduler: a pod requesting neither cpu nor memory changes no balance.
        pod.requests.requests.milli_cpu == 0 && pod.requests.requests.memory == 0
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        balanced_score(&pod.requests.requests, &node.allocatable, &node.requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::*;

    #[test]
    fn balanced_usage_scores_higher() {
        let p = pod_info(pod("p", "1", "1Gi"));
        let balanced = node_info(node("balanced", "4", "4Gi")); // 25% / 25%
        let lopsided = node_info(node("lopsided", "2", "8Gi")); // 50% / 12.5%
        assert_eq!(BalancedAllocation.score(&p, &balanced), 100);
        assert_eq!(BalancedAllocation.score(&p, &lopsided), 81);
        assert!(BalancedAllocation.skip(&pod_info(pod("none", "", ""))));
    }
}
