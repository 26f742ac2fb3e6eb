//! Which node answers ARP for each LoadBalancer IP (MetalLB's L2 mode; the
//! answering itself is the datapath's `announce` map, in eBPF).
//!
//! Every node's proxy computes the same choice from the same objects, so no
//! coordination is needed and exactly one node answers for an IP: the
//! candidates are the Ready nodes (without the
//! `node.kubernetes.io/exclude-from-external-load-balancers` label) — and,
//! for `externalTrafficPolicy: Local`, only those with a ready endpoint of
//! the Service, so the client's address can be kept — and among them the one
//! whose hash (FNV-1a, mixed) of `<node>#<ip>` is smallest wins (MetalLB orders
//! speakers by a hash of node and IP the same way, which spreads IPs over the
//! nodes and moves only the IPs of a node that leaves). Only Services of the
//! default load-balancer class (no `loadBalancerClass`) are announced: the
//! addresses of another implementation are its own business.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::translate::{load_balancer_ips, SERVICE_NAME_LABEL};

/// Nodes with this label never announce (Kubernetes' well-known label).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The LoadBalancer IPs `node_name` must answer ARP for.
pub fn announced_by(
    services: &[&Service],
    slices: &[&EndpointSlice],
    nodes: &[&Node],
    node_name: &str,
) -> Vec<Ipv4Addr> {
    let ready: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| is_ready(n))
        .filter(|n| {
            n.metadata
                .labels
                .as_ref()
                .is_none_or(|l| !l.contains_key(EXCLUDE_LABEL))
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
            continue;
        }
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        let with_endpoints = if local {
            endpoint_nodes(svc, slices)
        } else {
            BTreeSet::new()
        };
        let candidates: Vec<&str> = ready
            .iter()
            .copied()
            .filter(|n| !local || with_endpoints.contains(*n))
            .collect();
        for ip in load_balancer_ips(svc) {
            if choose(&candidates, ip) == Some(node_name) {
                out.push(ip);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The node among `candidates` that announces `ip`.
pub fn choose<'a>(candidates: &[&'a str], ip: Ipv4Addr) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .min_by_key(|n| (fnv1a(format!("{n}#{ip}").as_bytes()), *n))
}

/// FNV-1a, then splitmix64's finalizer (FNV alone orders names that differ
/// only in their first byte the same way for every IP).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Nodes holding a ready endpoint of `svc`.
fn endpoint_nodes<'a>(svc: &Service, slices: &[&'a EndpointSlice]) -> BTreeSet<&'a str> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == ns
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == name)
        })
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.node_name.as_deref())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: bool, exclude: bool) -> Node {
        let labels = if exclude { json!({EXCLUDE_LABEL: ""}) } else { json!({}) };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }
    fn lb(name: &str, ip: &str, extra: serde_json::Value) -> Service {
        let mut spec = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.20", "ports": [{"port": 80}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
        }))
        .unwrap()
    }
    fn slice(svc: &str, node: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{svc}-x"), "namespace": "shop", "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": node, "conditions": {"ready": true}}]
        }))
        .unwrap()
    }

    #[test]
    fn exactly_one_ready_node_announces_each_ip() {
        let nodes = [
            node("a", true, false),
            node("b", true, false),
            node("c", false, false),
            node("d", true, true),
        ];
        let nodes: Vec<&Node> = nodes.iter().collect();
        let services: Vec<Service> = (1..=20)
            .map(|i| lb(&format!("s{i}"), &format!("10.251.0.{}", 220 + i), json!({})))
            .collect();
        let services: Vec<&Service> = services.iter().collect();
        let a = announced_by(&services, &[], &nodes, "a");
        let b = announced_by(&services, &[], &nodes, "b");
        assert!(announced_by(&services, &[], &nodes, "c").is_empty(), "not Ready");
        assert!(
            announced_by(&services, &[], &nodes, "d").is_empty(),
            "excluded by label"
        );
        assert_eq!(a.len() + b.len(), 20, "every IP announced once");
        assert!(a.iter().all(|ip| !b.contains(ip)), "never by two nodes");
        assert!(!a.is_empty() && !b.is_empty(), "spread over the nodes: {a:?} {b:?}");
    }

    #[test]
    fn policy_local_announces_from_a_node_with_endpoints_and_other_classes_are_left_alone() {
        let nodes = [node("a", true, false), node("b", true, false)];
        let nodes: Vec<&Node> = nodes.iter().collect();
        for ip in ["10.251.0.241", "10.251.0.242", "10.251.0.243"] {
            let svc = lb("web", ip, json!({"externalTrafficPolicy": "Local"}));
            let slices = [slice("web", "b")];
            let slices: Vec<&EndpointSlice> = slices.iter().collect();
            assert_eq!(
                announced_by(&[&svc], &slices, &nodes, "b"),
                vec![ip.parse::<Ipv4Addr>().unwrap()]
            );
            assert!(announced_by(&[&svc], &slices, &nodes, "a").is_empty());
            assert!(
                announced_by(&[&svc], &[], &nodes, "b").is_empty(),
                "no endpoint: nobody"
            );
        }
        let other = lb("ext", "10.251.0.244", json!({"loadBalancerClass": "example.com/other"}));
        assert!(announced_by(&[&other], &[], &nodes, "a").is_empty());
        assert!(announced_by(&[&other], &[], &nodes, "b").is_empty());
    }
}
