//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that
//! tolerate the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use super::taint_toleration::tolerates;
use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Unfit};
use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Plugin name.
pub const NAME: &str = "NodeUnschedulable";
/// Reason shown in FailedScheduling messages.
pub const REASON: &str = "node(s) were unschedulable";
/// The taint key a cordoned node implicitly carries.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Whether a pod with these tolerations may go to a node with this `unschedulable` flag.
pub fn fits(node_unschedulable: bool, tolerations: &[Toleration]) -> bool {
    if !node_unschedulable {
        return true;
    }
    let taint = Taint {
        key: UNSCHEDULABLE_TAINT_KEY.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    tolerations.iter().any(|t| tolerates(t, &taint))
}

/// The NodeUnschedulable filter.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let unschedulable = node.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        let tolerations = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if fits(unschedulable, tolerations) {
            Ok(())
        } else {
            Err(Unfit::unresolvable(REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordoned_nodes_need_the_toleration() {
        assert!(fits(false, &[]));
        assert!(!fits(true, &[]));
        let exists = Toleration {
            key: Some(UNSCHEDULABLE_TAINT_KEY.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(fits(true, &[exists]));
        let other = Toleration {
            key: Some("other".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(!fits(true, &[other]));
    }
}
