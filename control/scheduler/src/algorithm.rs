//! One scheduling decision: filter nodes until enough feasible ones are found, score
//! them, pick the best (random among ties), like kube-scheduler's `schedulePod`.
//!
//! Only a bounded share of nodes is examined per pod in large clusters
//! ([`num_feasible_nodes_to_find`]) and the search starts where the previous one stopped,
//! so the cost per pod does not grow with the cluster and pods spread over all nodes.

use crate::cache::Cache;
use crate::framework::diagnosis::Diagnosis;
use crate::framework::{Framework, NodeInfo, PodInfo};

/// Below this many nodes, every node is examined.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes to look for before scoring (kube-scheduler's
/// `numFeasibleNodesToFind`). `percentage` 0 means adaptive: 50% minus 1% per 125 nodes,
/// at least 5%; the result is never below 100 nodes (or all nodes if fewer).
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all_nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    }
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Pick a node for the pod, or explain why none fits (all nodes were then examined).
pub fn schedule_pod(
    framework: &Framework,
    cache: &mut Cache,
    pod: &PodInfo,
    percentage: u32,
) -> Result<String, Diagnosis> {
    let nodes = cache.nodes();
    let n = nodes.len();
    if n == 0 {
        return Err(Diagnosis::default());
    }
    let pod = &framework.run_pre_filters(pod, cache);
    let to_find = num_feasible_nodes_to_find(percentage, n);
    let start = cache.next_start % n;
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(to_find.min(n));
    let mut diagnosis = Diagnosis {
        num_nodes: n,
        ..Default::default()
    };
    let mut processed = 0;
    for i in 0..n {
        let node = &nodes[(start + i) % n];
        processed += 1;
        match framework.run_filters(pod, node) {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= to_find {
                    break;
                }
            }
            Err((_plugin, unfit)) => diagnosis.record(unfit),
        }
    }
    let chosen = match feasible.len() {
        0 => None,
        1 => Some(feasible[0].name().to_string()),
        _ => {
            let scores = framework.run_scores(pod, &feasible, cache);
            Some(feasible[select_host(&scores)].name().to_string())
        }
    };
    cache.next_start = (start + processed) % n;
    chosen.ok_or(diagnosis)
}

/// Index of the highest score; ties are broken uniformly at random (reservoir sampling).
pub fn select_host(scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 1u64;
    for (i, &s) in scores.iter().enumerate().skip(1) {
        if s > scores[best] {
            best = i;
            ties = 1;
        } else if s == scores[best] {
            ties += 1;
            if fastrand::u64(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::plugins::registry;
    use crate::framework::testing::{node, pod, pod_info};
    use k8s_openapi::api::core::v1::Taint;
    use std::sync::Arc;

    #[test]
    fn feasible_node_count_follows_kube_scheduler() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420); // 50 - 8 = 42%
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500); // 50 - 40 = 10%
        assert_eq!(num_feasible_nodes_to_find(0, 100_000), 5000); // floor of 5%
        assert_eq!(num_feasible_nodes_to_find(1, 5000), 100); // never below 100
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn picks_the_least_allocated_node_and_explains_failures() {
        let fw = registry();
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(node("small", "1", "2Gi")));
        cache.upsert_node(Arc::new(node("big", "8", "16Gi")));
        let mut tainted = node("tainted", "16", "32Gi");
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
        cache.upsert_node(Arc::new(tainted));

        let p = pod_info(pod("p", "500m", "1Gi"));
        assert_eq!(schedule_pod(&fw, &mut cache, &p, 0).as_deref(), Ok("big"));

        let huge = pod_info(pod("huge", "10", "1Gi"));
        let d = schedule_pod(&fw, &mut cache, &huge, 0).map(|_| ()).unwrap_err();
        expect_test::expect![[r#"0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."#]]
        .assert_eq(&d.message());
    }

    #[test]
    fn assumed_pods_prevent_overcommit() {
        let fw = registry();
        let mut cache = Cache::new();
        for i in 0..3 {
            cache.upsert_node(Arc::new(node(&format!("n{i}"), "1", "4Gi")));
        }
        let mut placed = Vec::new();
        for i in 0..4 {
            let p = pod_info(pod(&format!("p{i}"), "600m", "100Mi"));
            match schedule_pod(&fw, &mut cache, &p, 0) {
                Ok(node) => {
                    cache.assume(&format!("u{i}"), &node, p.requests, vec![]);
                    placed.push(node);
                }
                Err(d) => assert!(
                    d.message().starts_with("0/3 nodes are available: 3 Insufficient cpu."),
                    "{}",
                    d.message()
                ),
            }
        }
        placed.sort();
        assert_eq!(
            placed,
            ["n0", "n1", "n2"],
            "one 600m pod per 1-cpu node, the fourth waits"
        );
    }

    #[test]
    fn required_anti_affinity_puts_one_replica_per_host_and_explains_the_rest() {
        use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let fw = registry();
        let mut cache = Cache::new();
        for i in 0..3 {
            let mut n = node(&format!("n{i}"), "4", "8Gi");
            n.metadata.labels = Some([("kubernetes.io/hostname".to_string(), format!("n{i}"))].into());
            cache.upsert_node(Arc::new(n));
        }
        let app: std::collections::BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let mut placed = Vec::new();
        for i in 0..4 {
            let mut p = pod(&format!("web-{i}"), "100m", "100Mi");
            p.metadata.labels = Some(app.clone());
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(app.clone()),
                            ..Default::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            let p = pod_info(p);
            match schedule_pod(&fw, &mut cache, &p, 0) {
                Ok(node) => {
                    cache.assume_pod(&format!("u{i}"), &node, &p);
                    placed.push(node);
                }
                Err(d) => expect_test::expect![[r#"0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."#]]
                .assert_eq(&d.message()),
            }
        }
        placed.sort();
        assert_eq!(placed, ["n0", "n1", "n2"]);
    }

    #[test]
    fn ties_are_broken_among_the_best() {
        for _ in 0..50 {
            let i = select_host(&[5, 9, 1, 9]);
            assert!(i == 1 || i == 3);
        }
        assert_eq!(select_host(&[7]), 0);
    }
}
