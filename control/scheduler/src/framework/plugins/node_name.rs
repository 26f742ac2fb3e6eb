//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Unfit};

/// Plugin name.
pub const NAME: &str = "NodeName";
/// Reason shown in FailedScheduling messages.
pub const REASON: &str = "node(s) didn't match the requested node name";

/// Whether the pod may run on a node called `node_name`.
pub fn fits(pod_node_name: Option<&str>, node_name: &str) -> bool {
    match pod_node_name {
        None | Some("") => true,
        Some(wanted) => wanted == node_name,
    }
}

/// The NodeName filter.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let wanted = pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if fits(wanted, node.name()) {
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
    fn only_the_named_node_fits() {
        assert!(fits(None, "a"));
        assert!(fits(Some(""), "a"));
        assert!(fits(Some("a"), "a"));
        assert!(!fits(Some("b"), "a"));
    }
}
