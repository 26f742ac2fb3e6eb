//! RollingUpdate choices for a DaemonSet (pure), after Kubernetes'
//! `rollingUpdate`: with `maxSurge` 0, old pods are deleted (the manage step
//! then creates new ones) while no more than `maxUnavailable` nodes are
//! without an available pod; with `maxSurge` > 0, a new pod is started next
//! to the old one on up to `maxSurge` nodes at once and the old one is
//! deleted once the new one is available. Old pods that are not available
//! are replaced at once in both modes: they cost no availability.

/// One pod on a node, as the rolling update sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Ready for at least `minReadySeconds`.
    pub available: bool,
}

/// The daemon pods on one node that should run the DaemonSet (pods being
/// deleted left out).
#[derive(Debug, Clone, Default)]
pub struct NodePods {
    /// Node name.
    pub node: String,
    /// Pods of the current revision.
    pub new: Vec<PodState>,
    /// Pods of older revisions.
    pub old: Vec<PodState>,
}

/// What the rolling update does this round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Old pods to delete.
    pub delete: Vec<String>,
    /// Nodes that get a new pod beside their old one (surge).
    pub create: Vec<String>,
}

/// `maxSurge`/`maxUnavailable` resolved against the desired number of
/// nodes, percentages rounded up, and unavailable 1 when both are 0.
pub fn resolve(max_surge: i32, max_unavailable: i32) -> (i32, i32) {
    if max_surge == 0 && max_unavailable == 0 {
        (0, 1)
    } else {
        (max_surge, max_unavailable)
    }
}

/// The step of the rolling update for `nodes`, in node order.
pub fn plan(nodes: &[NodePods], max_surge: i32, max_unavailable: i32) -> Plan {
    let (max_surge, max_unavailable) = resolve(max_surge, max_unavailable);
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for n in nodes {
            match (n.new.as_slice(), n.old.as_slice()) {
                ([], [old]) => {
                    if !old.available {
                        plan.delete.push(old.name.clone());
                    } else {
                        candidates.push(old.name.clone());
                    }
                }
                ([new], []) => {
                    if !new.available {
                        unavailable += 1;
                    }
                }
                // Nothing yet, or several pods: the manage step is at work.
                _ => unavailable += 1,
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surge = 0;
        let mut candidates = Vec::new();
        for n in nodes {
            match (n.new.as_slice(), n.old.as_slice()) {
                (_, []) => {}
                ([], [old]) => {
                    if !old.available {
                        plan.create.push(n.node.clone());
                    } else {
                        candidates.push(n.node.clone());
                    }
                }
                ([new], [old]) => {
                    if new.available {
                        plan.delete.push(old.name.clone());
                    } else {
                        surge += 1;
                    }
                }
                _ => surge += 1,
            }
        }
        let room = (max_surge - surge).max(0) as usize;
        plan.create.extend(candidates.into_iter().take(room));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, available: bool) -> PodState {
        PodState {
            name: name.into(),
            available,
        }
    }

    fn node(name: &str, new: &[PodState], old: &[PodState]) -> NodePods {
        NodePods {
            node: name.into(),
            new: new.to_vec(),
            old: old.to_vec(),
        }
    }

    #[test]
    fn without_surge_old_pods_go_within_max_unavailable() {
        let nodes = [
            node("a", &[], &[pod("a-old", true)]),
            node("b", &[], &[pod("b-old", true)]),
            node("c", &[], &[pod("c-old", false)]),
            node("d", &[pod("d-new", true)], &[]),
        ];
        // The unavailable old pod goes for free; one more within budget 1.
        assert_eq!(
            plan(&nodes, 0, 1),
            Plan {
                delete: vec!["c-old".into(), "a-old".into()],
                create: vec![]
            }
        );
        assert_eq!(plan(&nodes, 0, 2).delete.len(), 3);
        // A new pod that is not available yet uses the budget up.
        let waiting = [
            node("a", &[], &[pod("a-old", true)]),
            node("d", &[pod("d-new", false)], &[]),
        ];
        assert!(plan(&waiting, 0, 1).delete.is_empty());
        // Both zero means one at a time.
        assert_eq!(plan(&nodes[..2], 0, 0).delete, ["a-old"]);
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones() {
        let nodes = [
            node("a", &[], &[pod("a-old", true)]),
            node("b", &[], &[pod("b-old", true)]),
            node("c", &[pod("c-new", true)], &[pod("c-old", true)]),
            node("d", &[pod("d-new", false)], &[pod("d-old", true)]),
        ];
        // d occupies the one surge slot; c's new pod is available: its old one goes.
        assert_eq!(
            plan(&nodes, 1, 0),
            Plan {
                delete: vec!["c-old".into()],
                create: vec![]
            }
        );
        assert_eq!(
            plan(&nodes, 2, 0),
            Plan {
                delete: vec!["c-old".into()],
                create: vec!["a".into()]
            }
        );
        let broken = [node("e", &[], &[pod("e-old", false)])];
        assert_eq!(plan(&broken, 1, 0).create, ["e"]);
    }
}
