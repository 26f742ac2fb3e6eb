//! DefaultPreemption (kube-scheduler's PostFilter plugin): when a pod fits
//! nowhere, find a node where evicting lower-priority pods would make it
//! fit, with the fewest and least important victims.
//!
//! As kube-scheduler's `SelectVictimsOnNode` and `pickOneNodeForPreemption`:
//! - a pod with `preemptionPolicy: Never`, or whose nominated node still has
//!   a lower-priority pod terminating (an earlier preemption in progress),
//!   preempts nothing;
//! - on each node whose failure preemption could fix, every pod of lower
//!   priority is taken away; if the pod then fits, victims are given back
//!   one by one, most important first (those whose eviction would violate a
//!   PodDisruptionBudget before the others), as long as the pod still fits;
//! - among the candidate nodes: fewest budget violations, then the lowest
//!   highest victim priority, the lowest sum of priorities, the fewest
//!   victims, then the first node.
//!
//! Simplification: InterPodAffinity and PodTopologySpread count pods from
//! the state PreFilter computed for the whole cache, so taking victims away
//! does not change their verdict; preemption helps with resources and host
//! ports, not with (anti-)affinity or spread. The caller (`scheduler`)
//! nominates the node and evicts the victims.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::cache::Cache;
use crate::framework::selector::Selector;
use crate::framework::{Framework, HostPort, NodeInfo, PodInfo};
use crate::placed_pod::PlacedPod;
use crate::resources::PodRequests;

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";

/// A pod using a node, as preemption weighs it.
#[derive(Clone, Debug)]
pub struct Running {
    /// The pod.
    pub pod: Arc<PlacedPod>,
    /// What it uses there.
    pub requests: PodRequests,
    /// Its host ports.
    pub ports: Vec<HostPort>,
}

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Its namespace.
    pub namespace: String,
    /// The pods it covers.
    pub selector: Selector,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// Pods already counted as disrupted (`status.disruptedPods`).
    pub disrupted: Vec<String>,
}

/// Where preemption would place the pod and whom it evicts.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The pods to evict, most important first.
    pub victims: Vec<Arc<PlacedPod>>,
    /// How many of them a budget does not allow to disrupt.
    pub budget_violations: usize,
}

/// A pod's priority (0 when admission gave none).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Why `pod` may not preempt others, as kube-scheduler words it
/// (`podEligibleToPreemptOthers`); `on_nominated` are the pods using the
/// node the pod was nominated to earlier.
pub fn ineligible(pod: &Pod, on_nominated: &[Running]) -> Option<&'static str> {
    if pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Some("not eligible due to preemptionPolicy=Never.");
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let mine = priority(pod);
    if nominated
        && on_nominated
            .iter()
            .any(|r| r.pod.is_terminating() && r.pod.priority() < mine)
    {
        return Some("not eligible due to a terminating pod on the nominated node.");
    }
    None
}

/// Whether evicting `pod` would go beyond a budget (and spend it if not).
fn violates_budget(pod: &PlacedPod, budgets: &mut [Budget]) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut violates = false;
    for b in budgets.iter_mut() {
        if b.namespace != ns || !b.selector.matches(pod.metadata.labels.as_ref()) {
            continue;
        }
        if b.disrupted.iter().any(|d| d == name) {
            continue;
        }
        b.disruptions_allowed -= 1;
        if b.disruptions_allowed < 0 {
            violates = true;
        }
    }
    violates
}

/// The victims on `node` that would let `pod` fit there, or `None`.
pub fn select_victims_on_node(
    framework: &Framework,
    pod: &PodInfo,
    node: &NodeInfo,
    running: &[Running],
    budgets: &[Budget],
) -> Option<Candidate> {
    let mine = priority(&pod.pod);
    let mut lower: Vec<&Running> = running
        .iter()
        .filter(|r| r.pod.priority() < mine && !r.pod.is_terminating())
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for r in &lower {
        trial.remove_pod(&r.requests, &r.ports);
    }
    if framework.run_filters(pod, &trial).is_err() {
        return None;
    }
    // Most important first: higher priority, then the one running longer.
    lower.sort_by(|a, b| {
        b.pod.priority().cmp(&a.pod.priority()).then_with(|| {
            let started = |r: &Running| r.pod.start_time.as_ref().map(|t| t.0);
            started(a).cmp(&started(b))
        })
    });
    let mut spend = budgets.to_vec();
    let (violating, sparing): (Vec<&Running>, Vec<&Running>) =
        lower.into_iter().partition(|r| violates_budget(&r.pod, &mut spend));
    let mut victims = Vec::new();
    let mut budget_violations = 0;
    for (group, violates) in [(violating, true), (sparing, false)] {
        for r in group {
            trial.add_pod(&r.requests, &r.ports);
            if framework.run_filters(pod, &trial).is_err() {
                trial.remove_pod(&r.requests, &r.ports);
                victims.push(r.pod.clone());
                if violates {
                    budget_violations += 1;
                }
            }
        }
    }
    Some(Candidate {
        node: node.name().to_string(),
        victims,
        budget_violations,
    })
}

/// The candidate kube-scheduler would pick.
pub fn pick(candidates: &[Candidate]) -> Option<&Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.iter().map(|v| v.priority()).max().unwrap_or(i32::MIN);
        // Offset so negative priorities still add up to a comparable sum.
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority()) + i64::from(i32::MAX) + 1)
            .sum();
        (c.budget_violations, highest, sum, c.victims.len())
    };
    candidates.iter().min_by_key(|c| key(c))
}

/// DefaultPreemption for `pod`, which fits nowhere: the node and victims
/// chosen, or `Err(Some(why))` when the pod may not preempt, `Err(None)`
/// when no node has victims whose eviction would help.
pub fn preempt(framework: &Framework, cache: &Cache, pod: &PodInfo) -> Result<Candidate, Option<&'static str>> {
    let by_node = cache.running_by_node();
    let on = |node: &str| by_node.get(node).map(Vec::as_slice).unwrap_or_default();
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or_default();
    if let Some(why) = ineligible(&pod.pod, on(nominated)) {
        return Err(Some(why));
    }
    let pod = framework.run_pre_filters(pod, cache);
    let budgets = cache.budgets();
    let candidates: Vec<Candidate> = cache
        .nodes()
        .iter()
        .filter(|n| matches!(framework.run_filters(&pod, n), Err((_, unfit)) if !unfit.unresolvable))
        .filter_map(|n| select_victims_on_node(framework, &pod, n, on(n.name()), &budgets))
        .collect();
    pick(&candidates).cloned().ok_or(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::plugins::registry;
    use crate::framework::testing::{node, node_info, pod, pod_info};

    fn with_priority(mut p: Pod, prio: i32) -> Pod {
        p.spec.as_mut().unwrap().priority = Some(prio);
        p
    }

    fn running(name: &str, cpu: &str, prio: i32) -> Running {
        let p = Arc::new(with_priority(pod(name, cpu, ""), prio));
        let info = PodInfo::new(p.clone());
        Running {
            pod: Arc::new(PlacedPod::of(&p)),
            requests: info.requests,
            ports: info.host_ports,
        }
    }

    fn on_node(n: &str, cpu: &str, pods: &[Running]) -> NodeInfo {
        let mut info = node_info(node(n, cpu, "8Gi"));
        for r in pods {
            info.add_pod(&r.requests, &r.ports);
        }
        info
    }

    #[test]
    fn evicts_only_as_many_lower_priority_pods_as_needed() {
        let fw = registry();
        let pods = [
            running("low-a", "1", 1),
            running("low-b", "1", 2),
            running("high", "1", 100),
        ];
        let node = on_node("n1", "3", &pods);
        let incoming = pod_info(with_priority(pod("new", "1", ""), 50));
        let c = select_victims_on_node(&fw, &incoming, &node, &pods, &[]).expect("a candidate");
        let names: Vec<_> = c.victims.iter().map(|v| v.metadata.name.clone().unwrap()).collect();
        // low-b (priority 2) is given back first, so only low-a is evicted.
        assert_eq!(names, ["low-a"]);
        // Nothing of lower priority frees enough: no candidate.
        let big = pod_info(with_priority(pod("big", "3", ""), 50));
        assert!(select_victims_on_node(&fw, &big, &node, &pods, &[]).is_none());
    }

    #[test]
    fn budgets_and_priorities_decide_the_node() {
        let fw = registry();
        let a = [running("a1", "2", 10)];
        let b = [running("b1", "2", 5)];
        let incoming = pod_info(with_priority(pod("new", "1", ""), 50));
        let ca = select_victims_on_node(&fw, &incoming, &on_node("a", "2", &a), &a, &[]).unwrap();
        let cb = select_victims_on_node(&fw, &incoming, &on_node("b", "2", &b), &b, &[]).unwrap();
        assert_eq!(
            pick(&[ca.clone(), cb.clone()]).unwrap().node,
            "b",
            "the lower victim priority"
        );
        // b1 is protected by a budget with no disruptions left: node a wins.
        let budget = Budget {
            namespace: "default".into(),
            selector: Selector::everything(),
            disruptions_allowed: 0,
            disrupted: vec![],
        };
        let cb = select_victims_on_node(&fw, &incoming, &on_node("b", "2", &b), &b, &[budget]).unwrap();
        assert_eq!(cb.budget_violations, 1);
        assert_eq!(pick(&[ca, cb]).unwrap().node, "a");
    }

    #[test]
    fn never_and_terminating_victims_make_a_pod_wait() {
        let mut never = with_priority(pod("p", "1", ""), 5);
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert_eq!(
            ineligible(&never, &[]),
            Some("not eligible due to preemptionPolicy=Never.")
        );
        let mut nominated = with_priority(pod("p", "1", ""), 5);
        nominated.status = Some(k8s_openapi::api::core::v1::PodStatus {
            nominated_node_name: Some("n1".into()),
            ..Default::default()
        });
        let mut going = running("old", "1", 1);
        let mut p = (*going.pod).clone();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        going.pod = Arc::new(p);
        assert_eq!(
            ineligible(&nominated, &[going]),
            Some("not eligible due to a terminating pod on the nominated node.")
        );
        assert_eq!(ineligible(&nominated, &[]), None);
    }
}
