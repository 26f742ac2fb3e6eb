//! NodePorts: a pod's `hostPort`s must be free on the node.

use crate::framework::{FilterPlugin, HostPort, NodeInfo, PodInfo, Unfit};

/// Plugin name.
pub const NAME: &str = "NodePorts";
/// Reason shown in FailedScheduling messages.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Whether all `wanted` host ports are free given the `used` ones.
pub fn fits(wanted: &[HostPort], used: &[HostPort]) -> bool {
    !wanted.iter().any(|w| used.iter().any(|u| w.conflicts(u)))
}

/// The NodePorts filter.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if fits(&pod.host_ports, &node.used_ports) {
            Ok(())
        } else {
            Err(Unfit::resolvable(REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::*;

    fn hp(proto: &str, ip: &str, port: i32) -> HostPort {
        HostPort {
            protocol: proto.into(),
            host_ip: ip.into(),
            port,
        }
    }

    #[test]
    fn host_ports_conflict_by_protocol_ip_and_port() {
        let used = [hp("TCP", "10.0.0.1", 8080)];
        assert!(!fits(&[hp("TCP", "10.0.0.1", 8080)], &used));
        assert!(
            !fits(&[hp("TCP", "0.0.0.0", 8080)], &used),
            "wildcard IP overlaps every IP"
        );
        assert!(fits(&[hp("TCP", "10.0.0.2", 8080)], &used));
        assert!(fits(&[hp("UDP", "10.0.0.1", 8080)], &used));
        assert!(fits(&[hp("TCP", "10.0.0.1", 8081)], &used));
        assert!(fits(&[], &used));
    }

    #[test]
    fn a_second_pod_with_the_same_host_port_does_not_fit() {
        let mut node = node_info(node("n1", "4", "8Gi"));
        let first = pod_info(with_host_port(pod("a", "", ""), 9000, None));
        assert_eq!(NodePorts.filter(&first, &node), Ok(()));
        node.add_pod(&first.requests, &first.host_ports);
        let second = pod_info(with_host_port(pod("b", "", ""), 9000, Some("127.0.0.1")));
        assert_eq!(NodePorts.filter(&second, &node), Err(Unfit::resolvable(REASON)));
        node.remove_pod(&first.requests, &first.host_ports);
        assert_eq!(NodePorts.filter(&second, &node), Ok(()));
    }
}
