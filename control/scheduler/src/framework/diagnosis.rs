//! Why a pod fits nowhere: per-reason node counts and the FailedScheduling message
//! in kube-scheduler's format.
//!
//! The `preemption:` part is DefaultPreemption's verdict, as kube-scheduler words it:
//! when it finds no victims, per node, "Preemption is not helpful for scheduling" for
//! failures evicting pods cannot fix and "No preemption victims found for incoming pod"
//! for the others; why the pod may not preempt at all; nothing when it preempted.

use super::Unfit;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The outcome of filtering every node for one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Number of nodes considered.
    pub num_nodes: usize,
    /// Nodes per failure reason (a node may count under several reasons).
    pub reasons: BTreeMap<Cow<'static, str>, usize>,
    /// Nodes whose failure preemption could not fix.
    pub unresolvable_nodes: usize,
    /// DefaultPreemption's own message when it did not look for victims
    /// (`Some(reason)`) or found them (`Some("")`: no `preemption:` part).
    pub post_filter: Option<String>,
}

impl Diagnosis {
    /// Count one node's failure.
    pub fn record(&mut self, unfit: Unfit) {
        if unfit.unresolvable {
            self.unresolvable_nodes += 1;
        }
        for reason in unfit.reasons {
            *self.reasons.entry(reason).or_default() += 1;
        }
    }

    /// The FailedScheduling message, e.g.
    /// `0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu.
    /// preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.`
    pub fn message(&self) -> String {
        let n = self.num_nodes;
        if n == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let mut msg = format!(
            "0/{n} nodes are available: {}.",
            histogram(self.reasons.iter().map(|(r, c)| (r.as_ref(), *c)))
        );
        match self.post_filter.as_deref() {
            Some("") => return msg,
            Some(why) => {
                msg.push_str(&format!(" preemption: {why}"));
                return msg;
            }
            None => {}
        }
        let resolvable = n.saturating_sub(self.unresolvable_nodes);
        let preemption = [
            ("Preemption is not helpful for scheduling", self.unresolvable_nodes),
            ("No preemption victims found for incoming pod", resolvable),
        ];
        msg.push_str(&format!(
            " preemption: 0/{n} nodes are available: {}.",
            histogram(preemption.into_iter().filter(|(_, c)| *c > 0))
        ));
        msg
    }
}

/// "count reason" pairs sorted as strings, like kube-scheduler's `sortReasonsHistogram`.
fn histogram<'a>(items: impl Iterator<Item = (&'a str, usize)>) -> String {
    let mut parts: Vec<String> = items.map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counts_nodes_per_reason() {
        let mut d = Diagnosis {
            num_nodes: 3,
            ..Default::default()
        };
        d.record(Unfit::resolvable("Insufficient cpu"));
        d.record(Unfit::resolvable("Insufficient cpu"));
        d.record(Unfit::unresolvable("node(s) had untolerated taint {dedicated: gpu}"));
        expect_test::expect![[r#"0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."#]]
        .assert_eq(&d.message());
    }

    #[test]
    fn no_nodes_at_all() {
        assert_eq!(Diagnosis::default().message(), "no nodes available to schedule pods");
    }
}
