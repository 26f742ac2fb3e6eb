//! NodeResourcesFit: the pod's cpu/memory requests and one pod slot must fit in the
//! node's allocatable minus what bound and assumed pods already request (filter);
//! with the LeastAllocated strategy, emptier nodes score higher (score).

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit, MAX_NODE_SCORE};
use crate::resources::Resources;
use std::borrow::Cow;

/// Plugin name.
pub const NAME: &str = "NodeResourcesFit";
/// Reason when the node has no pod slot left.
pub const TOO_MANY_PODS: &str = "Too many pods";
/// Reason when CPU is short.
pub const INSUFFICIENT_CPU: &str = "Insufficient cpu";
/// Reason when memory is short.
pub const INSUFFICIENT_MEMORY: &str = "Insufficient memory";

/// Every resource the pod lacks on the node (empty when it fits).
pub fn insufficient(request: &Resources, allocatable: &Resources, requested: &Resources) -> Vec<&'static str> {
    let mut out = Vec::new();
    if requested.pods + 1 > allocatable.pods {
        out.push(TOO_MANY_PODS);
    }
    if request.milli_cpu > 0 && request.milli_cpu > allocatable.milli_cpu - requested.milli_cpu {
        out.push(INSUFFICIENT_CPU);
    }
    if request.memory > 0 && request.memory > allocatable.memory - requested.memory {
        out.push(INSUFFICIENT_MEMORY);
    }
    out
}

/// kube-scheduler's per-resource least-requested score: the free share, 0..=100.
pub fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// LeastAllocated score of a node after adding the pod (cpu and memory weighted equally).
pub fn least_allocated_score(pod_non_zero: &Resources, allocatable: &Resources, non_zero_requested: &Resources) -> i64 {
    let cpu = least_requested(
        non_zero_requested.milli_cpu + pod_non_zero.milli_cpu,
        allocatable.milli_cpu,
    );
    let mem = least_requested(non_zero_requested.memory + pod_non_zero.memory, allocatable.memory);
    (cpu + mem) / 2
}

/// The NodeResourcesFit filter and LeastAllocated score.
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let reasons = insufficient(&pod.requests.requests, &node.allocatable, &node.requested);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Unfit {
                reasons: reasons.into_iter().map(Cow::Borrowed).collect(),
                unresolvable: false,
            })
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        least_allocated_score(&pod.requests.non_zero, &node.allocatable, &node.non_zero_requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::*;

    #[test]
    fn requests_fit_against_allocatable_minus_requested() {
        let mut node = node_info(node("n1", "2", "4Gi"));
        let big = pod_info(pod("big", "1500m", "1Gi"));
        assert_eq!(NodeResourcesFit.filter(&big, &node), Ok(()));
        node.add_pod(&big.requests, &[]);
        let second = pod_info(pod("second", "600m", "1Gi"));
        assert_eq!(
            NodeResourcesFit.filter(&second, &node),
            Err(Unfit::resolvable(INSUFFICIENT_CPU))
        );
        let exact = pod_info(pod("exact", "500m", "3Gi"));
        assert_eq!(
            NodeResourcesFit.filter(&exact, &node),
            Ok(()),
            "filling the node exactly fits"
        );
        let both = pod_info(pod("both", "4", "8Gi"));
        assert_eq!(
            NodeResourcesFit.filter(&both, &node).unwrap_err().reasons,
            vec![INSUFFICIENT_CPU, INSUFFICIENT_MEMORY]
        );
    }

    #[test]
    fn pod_count_is_a_resource() {
        let allocatable = Resources {
            milli_cpu: 1000,
            memory: 1 << 30,
            pods: 2,
        };
        let requested = Resources {
            milli_cpu: 0,
            memory: 0,
            pods: 2,
        };
        assert_eq!(
            insufficient(
                &Resources {
                    pods: 1,
                    ..Default::default()
                },
                &allocatable,
                &requested
            ),
            vec![TOO_MANY_PODS]
        );
    }

    #[test]
    fn pods_without_requests_always_fit_resources() {
        let node = node_info(node("n1", "0", "0"));
        assert_eq!(NodeResourcesFit.filter(&pod_info(pod("p", "", "")), &node), Ok(()));
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let empty = node_info(node("empty", "4", "8Gi"));
        let mut half = node_info(node("half", "4", "8Gi"));
        half.add_pod(&pod_info(pod("x", "2", "4Gi")).requests, &[]);
        let p = pod_info(pod("p", "1", "2Gi"));
        // (4000-1000)/4000 = 75 for both resources; half: (4000-3000)/4000 = 25.
        assert_eq!(NodeResourcesFit.score(&p, &empty), 75);
        assert_eq!(NodeResourcesFit.score(&p, &half), 25);
        assert_eq!(least_requested(5, 4), 0, "overcommitted scores zero");
    }
}
