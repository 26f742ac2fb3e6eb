//! What a StatefulSet does next (pure), after Kubernetes'
//! `updateStatefulSet`.
//!
//! Pods have stable ordinals `start..start+replicas`, named `<set>-<ordinal>`.
//! In order of ordinal, a missing pod is created (ordinals below the
//! partition from the current revision, the others from the update
//! revision) and a failed or succeeded pod is deleted to be created again.
//! Pods with ordinals outside the range are condemned and deleted highest
//! first. With `OrderedReady` every step waits: for a created pod to be
//! Running and Ready (and available for `minReadySeconds`), for a deleted
//! one to be gone, and only one pod changes at a time; `Parallel` does all
//! of it at once. Finally `RollingUpdate` deletes pods of other revisions
//! from the highest ordinal down to the partition, at most `maxUnavailable`
//! unavailable at a time (a deleted pod comes back at the update revision).

/// A pod of the set as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Ordinal (from the name).
    pub ordinal: i32,
    /// Pod name.
    pub name: String,
    /// Its `controller-revision-hash` label.
    pub revision: String,
    /// Running with the Ready condition.
    pub running_ready: bool,
    /// Running, Ready for `minReadySeconds`.
    pub available: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Failed or Succeeded.
    pub finished: bool,
}

impl PodView {
    fn healthy(&self) -> bool {
        self.running_ready && self.available && !self.terminating
    }
}

/// The set as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    /// `spec.ordinals.start`.
    pub start: i32,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    /// `updateStrategy.type: RollingUpdate`.
    pub rolling: bool,
    /// `rollingUpdate.partition`.
    pub partition: i32,
    /// `rollingUpdate.maxUnavailable`, resolved (at least 1).
    pub max_unavailable: i32,
    /// Name of the current revision.
    pub current_revision: String,
    /// Name of the update revision.
    pub update_revision: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod with this ordinal from this revision.
    Create {
        /// Ordinal.
        ordinal: i32,
        /// Revision name.
        revision: String,
    },
    /// Delete this pod.
    Delete(String),
    /// Wait for this pod (OrderedReady).
    WaitFor(String),
}

/// The ordinal of a pod named `<set>-<ordinal>`, if it is one of `set`'s.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The revision a new pod with `ordinal` gets.
pub fn revision_for(set: &SetView, ordinal: i32) -> &str {
    if set.rolling && ordinal < set.start + set.partition {
        &set.current_revision
    } else {
        &set.update_revision
    }
}

/// The steps to take now; `pods` are the set's pods (any ordinal).
pub fn plan(set: &SetView, pods: &[PodView]) -> Vec<Step> {
    let monotonic = !set.parallel;
    let end = set.start + set.replicas.max(0);
    let mut steps = Vec::new();
    let at = |ord: i32| pods.iter().find(|p| p.ordinal == ord);

    for ord in set.start..end {
        match at(ord) {
            None => {
                steps.push(Step::Create {
                    ordinal: ord,
                    revision: revision_for(set, ord).to_string(),
                });
                if monotonic {
                    return steps;
                }
            }
            Some(p) if p.finished && !p.terminating => {
                steps.push(Step::Delete(p.name.clone()));
                if monotonic {
                    return steps;
                }
            }
            Some(p) if monotonic && (p.terminating || !p.running_ready || !p.available) => {
                steps.push(Step::WaitFor(p.name.clone()));
                return steps;
            }
            Some(_) => {}
        }
    }

    let mut condemned: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.ordinal < set.start || p.ordinal >= end)
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    for p in condemned {
        if p.terminating {
            if monotonic {
                steps.push(Step::WaitFor(p.name.clone()));
                return steps;
            }
            continue;
        }
        if monotonic {
            if let Some(other) = pods.iter().find(|o| o.name != p.name && !o.healthy()) {
                steps.push(Step::WaitFor(other.name.clone()));
                return steps;
            }
        }
        steps.push(Step::Delete(p.name.clone()));
        if monotonic {
            return steps;
        }
    }

    if !set.rolling {
        return steps;
    }
    let update_min = set.start + set.partition.max(0);
    let mut unavailable = 0;
    let mut outdated_healthy = Vec::new();
    for ord in (update_min..end).rev() {
        let Some(p) = at(ord) else {
            unavailable += 1;
            continue;
        };
        let outdated = p.revision != set.update_revision;
        if !p.healthy() {
            unavailable += 1;
            if outdated && !p.terminating && !steps.contains(&Step::Delete(p.name.clone())) {
                // Replacing a pod that is down costs no availability.
                steps.push(Step::Delete(p.name.clone()));
            }
        } else if outdated {
            outdated_healthy.push(p.name.clone());
        }
    }
    let room = (set.max_unavailable.max(1) - unavailable).max(0) as usize;
    steps.extend(outdated_healthy.into_iter().take(room).map(Step::Delete));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(replicas: i32, parallel: bool) -> SetView {
        SetView {
            start: 0,
            replicas,
            parallel,
            rolling: true,
            partition: 0,
            max_unavailable: 1,
            current_revision: "r1".into(),
            update_revision: "r1".into(),
        }
    }

    fn pod(ord: i32, rev: &str, healthy: bool) -> PodView {
        PodView {
            ordinal: ord,
            name: format!("web-{ord}"),
            revision: rev.into(),
            running_ready: healthy,
            available: healthy,
            terminating: false,
            finished: false,
        }
    }

    fn create(ord: i32, rev: &str) -> Step {
        Step::Create {
            ordinal: ord,
            revision: rev.into(),
        }
    }

    #[test]
    fn ordinals_come_from_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web-a", "web-a-3"), Some(3));
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_and_waits() {
        let s = set(3, false);
        assert_eq!(plan(&s, &[]), [create(0, "r1")]);
        assert_eq!(plan(&s, &[pod(0, "r1", false)]), [Step::WaitFor("web-0".into())]);
        assert_eq!(plan(&s, &[pod(0, "r1", true)]), [create(1, "r1")]);
        // A deleted pod in the middle comes back first.
        assert_eq!(plan(&s, &[pod(0, "r1", true), pod(2, "r1", true)]), [create(1, "r1")]);
        let p = set(3, true);
        assert_eq!(plan(&p, &[]), [create(0, "r1"), create(1, "r1"), create(2, "r1")]);
        let mut started = set(2, false);
        started.start = 5;
        assert_eq!(plan(&started, &[pod(5, "r1", true)]), [create(6, "r1")]);
    }

    #[test]
    fn scale_down_deletes_highest_first_when_all_are_healthy() {
        let s = set(1, false);
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        assert_eq!(plan(&s, &pods), [Step::Delete("web-2".into())]);
        let mut down = pods.clone();
        down[2].terminating = true;
        assert_eq!(plan(&s, &down), [Step::WaitFor("web-2".into())]);
        let sick = [pod(0, "r1", false), pod(1, "r1", true)];
        assert_eq!(plan(&s, &sick), [Step::WaitFor("web-0".into())]);
        assert_eq!(
            plan(&set(1, true), &pods),
            [Step::Delete("web-2".into()), Step::Delete("web-1".into())]
        );
    }

    #[test]
    fn min_ready_seconds_hold_ordered_ready_until_available() {
        let mut ready_not_available = pod(0, "r1", true);
        ready_not_available.available = false;
        let s = set(2, false);
        assert_eq!(
            plan(&s, &[ready_not_available.clone()]),
            [Step::WaitFor("web-0".into())]
        );
        assert_eq!(
            plan(&set(2, true), &[ready_not_available]),
            [create(1, "r1")],
            "Parallel does not wait"
        );
    }

    #[test]
    fn failed_pods_are_recreated() {
        let mut failed = pod(0, "r1", false);
        failed.finished = true;
        assert_eq!(plan(&set(1, false), &[failed]), [Step::Delete("web-0".into())]);
    }

    #[test]
    fn rolling_update_goes_down_from_the_top_to_the_partition() {
        let mut s = set(3, false);
        s.update_revision = "r2".into();
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        assert_eq!(plan(&s, &pods), [Step::Delete("web-2".into())]);
        let rolled = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", false)];
        assert_eq!(plan(&s, &rolled), [Step::WaitFor("web-2".into())]);
        let rolled = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)];
        assert_eq!(plan(&s, &rolled), [Step::Delete("web-1".into())]);
        s.partition = 2;
        assert!(plan(&s, &rolled).is_empty(), "ordinals below the partition stay");
        assert_eq!(revision_for(&s, 1), "r1");
        assert_eq!(revision_for(&s, 2), "r2");
        s.partition = 0;
        s.max_unavailable = 2;
        assert_eq!(
            plan(&s, &pods),
            [Step::Delete("web-2".into()), Step::Delete("web-1".into())]
        );
        s.rolling = false;
        assert!(plan(&s, &pods).is_empty(), "OnDelete waits for users");
        assert_eq!(revision_for(&s, 0), "r2");
    }
}
