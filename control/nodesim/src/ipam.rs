//! Pod IPs for simulated nodes: each node hands out addresses from its `spec.podCIDR`
//! (set by the controller-manager's node IPAM) or, until it has one, from a synthetic
//! /24 derived from the node's index in a configurable range.

use ipnet::Ipv4Net;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// Per-node pod IP allocation.
#[derive(Default)]
pub struct PodIpam {
    nodes: HashMap<String, NodeRange>,
}

struct NodeRange {
    cidr: Ipv4Net,
    used: BTreeSet<u32>,
    next: u32,
}

/// The synthetic /24 of node number `index` inside `range` (wrapping if it is too small).
pub fn synthetic_cidr(range: Ipv4Net, index: usize) -> Ipv4Net {
    let prefix = range.prefix_len().min(24);
    let slots = 1u64 << (24 - prefix);
    let base = u32::from(range.network());
    let offset = ((index as u64 % slots) as u32) << 8;
    Ipv4Net::new(Ipv4Addr::from(base + offset), 24).expect("/24 is valid")
}

impl PodIpam {
    /// Set the range of a node; keeps the old one if it already had addresses in use
    /// from a different range (running pods keep their IPs).
    pub fn set_node_cidr(&mut self, node: &str, cidr: Ipv4Net) {
        match self.nodes.get_mut(node) {
            Some(r) if r.cidr == cidr => {}
            Some(r) if r.used.is_empty() => {
                *r = NodeRange {
                    cidr,
                    used: BTreeSet::new(),
                    next: 2,
                }
            }
            Some(_) => {}
            None => {
                self.nodes.insert(
                    node.to_string(),
                    NodeRange {
                        cidr,
                        used: BTreeSet::new(),
                        next: 2,
                    },
                );
            }
        }
    }

    /// Mark an address already used by a running pod (after a restart).
    pub fn mark_used(&mut self, node: &str, ip: Ipv4Addr) {
        if let Some(r) = self.nodes.get_mut(node) {
            if r.cidr.contains(&ip) {
                r.used.insert(u32::from(ip) - u32::from(r.cidr.network()));
            }
        }
    }

    /// A free address on the node (skipping network, .1 gateway and broadcast), if any.
    pub fn allocate(&mut self, node: &str) -> Option<Ipv4Addr> {
        let r = self.nodes.get_mut(node)?;
        let size = 1u32 << (32 - r.cidr.prefix_len());
        if size < 4 {
            return None;
        }
        let usable = size - 3;
        for _ in 0..usable {
            let candidate = r.next;
            r.next = if r.next + 1 >= size - 1 { 2 } else { r.next + 1 };
            if r.used.insert(candidate) {
                return Some(Ipv4Addr::from(u32::from(r.cidr.network()) + candidate));
            }
        }
        None
    }

    /// Return an address.
    pub fn release(&mut self, node: &str, ip: Ipv4Addr) {
        if let Some(r) = self.nodes.get_mut(node) {
            if r.cidr.contains(&ip) {
                r.used.remove(&(u32::from(ip) - u32::from(r.cidr.network())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ranges_are_distinct_per_node() {
        let range: Ipv4Net = "10.128.0.0/9".parse().unwrap();
        assert_eq!(synthetic_cidr(range, 0).to_string(), "10.128.0.0/24");
        assert_eq!(synthetic_cidr(range, 257).to_string(), "10.129.1.0/24");
    }

    #[test]
    fn addresses_are_unique_and_reused_after_release() {
        let mut ipam = PodIpam::default();
        ipam.set_node_cidr("n", "10.0.0.0/29".parse().unwrap()); // usable .2-.6
        let ips: Vec<_> = std::iter::from_fn(|| ipam.allocate("n")).collect();
        assert_eq!(ips.len(), 5);
        assert_eq!(ips[0].to_string(), "10.0.0.2");
        ipam.release("n", ips[2]);
        assert_eq!(ipam.allocate("n"), Some(ips[2]));
        assert_eq!(ipam.allocate("other"), None);
    }
}
