//! From Kubernetes objects to datapath frontends: the pure translation of a
//! Service and its EndpointSlices into the [`ServiceSpec`]s this node
//! programs. No I/O here, so every rule of Service semantics is unit-tested.
//!
//! Rules (the same as kube-proxy's):
//! * one ClusterIP frontend per Service port (TCP/UDP; SCTP and IPv6 are not
//!   served by the datapath and are skipped), plus one NodePort frontend per
//!   port for `type: NodePort` and `type: LoadBalancer` (none for a port
//!   without a `nodePort`, e.g. `allocateLoadBalancerNodePorts: false`);
//! * one external frontend per port and address of
//!   `status.loadBalancer.ingress[].ip` (LoadBalancer; not `ipMode: Proxy`)
//!   and of `spec.externalIPs` (any type): externalTrafficPolicy applies to
//!   both, `loadBalancerSourceRanges` to the LoadBalancer IPs;
//! * hostPorts of this node's pods ([`host_port_frontends`]);
//! * headless (`clusterIP: None`) and `ExternalName` Services are skipped;
//! * backends come from the EndpointSlices labelled
//!   `kubernetes.io/service-name=<name>`, the target port resolved by the
//!   Service port's *name* in the slice's ports;
//! * `ready` endpoints get new flows; `serving` + `terminating` ones are
//!   passed as terminating (they keep their established flows only);
//! * `node_local` means the endpoint's `nodeName` is this node;
//! * `sessionAffinity: ClientIP` (default timeout 10800 s),
//!   `externalTrafficPolicy: Local` (NodePort frontends),
//!   `internalTrafficPolicy: Local` (ClusterIP frontends: local endpoints only),
//!   `loadBalancerSourceRanges` (NodePort and LoadBalancer IP frontends of
//!   LoadBalancer Services);
//! * `trafficDistribution: PreferSameNode` (ClusterIP frontends): only this
//!   node's ready endpoints when it has any, else all of them — how the
//!   `kube-dns` Service sends every pod to its own node's DNS server and
//!   falls back to the other nodes' while that one is down.

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use sluice_datapath::{Backend, Frontend, Protocol, ServiceSpec};
use std::net::Ipv4Addr;
use std::time::Duration;
use tracing::warn;

/// The label an EndpointSlice carries to name its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The `trafficDistribution` value that keeps traffic on the client's node when it can.
pub const PREFER_SAME_NODE: &str = "PreferSameNode";

/// The Kubernetes default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// The frontends this node programs for `service`, with their backends taken
/// from `slices` (slices of other Services are ignored). Empty for headless,
/// ExternalName or IPv6-only Services.
pub fn desired_frontends(service: &Service, slices: &[&EndpointSlice], node_name: &str) -> Vec<ServiceSpec> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if svc_type == "ExternalName" {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new(); // headless ("None"), unallocated, or IPv6
    };
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let own_slices: Vec<&EndpointSlice> = slices
        .iter()
        .copied()
        .filter(|s| belongs_to(s, namespace, name))
        .collect();

    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let prefer_same_node = spec.traffic_distribution.as_deref() == Some(PREFER_SAME_NODE);
    let mut has_node_ports = matches!(svc_type, "NodePort" | "LoadBalancer");
    let mut lb_ips = if svc_type == "LoadBalancer" {
        load_balancer_ips(service)
    } else {
        Vec::new()
    };
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let mut source_ranges = Vec::new();
    if svc_type == "LoadBalancer" {
        match parse_source_ranges(spec.load_balancer_source_ranges.as_deref().unwrap_or_default()) {
            Some(r) => source_ranges = r,
            None => {
                warn!(service = %format!("{namespace}/{name}"), "no loadBalancerSourceRanges entry is a valid IPv4 CIDR: node ports and LoadBalancer IPs stay closed");
                has_node_ports = false;
                lb_ips.clear();
            }
        }
    }

    let mut out = Vec::new();
    for port in spec.ports.as_deref().unwrap_or_default() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let backends = backends_for(port, proto, &own_slices, node_name);
        let cluster_backends = if internal_local {
            backends.iter().copied().filter(|b| b.node_local).collect()
        } else if prefer_same_node && backends.iter().any(|b| b.node_local && !b.terminating) {
            backends.iter().copied().filter(|b| b.node_local).collect()
        } else {
            backends.clone()
        };
        let mut cluster = ServiceSpec::cluster_ip(
            Frontend {
                proto,
                ..Frontend::tcp(cluster_ip, service_port)
            },
            cluster_backends,
        );
        cluster.affinity_timeout = affinity_timeout;
        out.push(cluster);
        // LoadBalancer IPs (with the source ranges) and external IPs (without):
        // reached from outside on the external interface and from pods.
        let externals = lb_ips
            .iter()
            .map(|ip| (*ip, true))
            .chain(external_ips.iter().map(|ip| (*ip, false)));
        for (ip, is_lb) in externals {
            let mut ext = ServiceSpec::cluster_ip(Frontend::external(ip, service_port, proto), backends.clone());
            ext.affinity_timeout = affinity_timeout;
            ext.external_traffic_local = external_local;
            if is_lb {
                ext.source_ranges = source_ranges.clone();
            }
            out.push(ext);
        }
        if !has_node_ports {
            continue;
        }
        if let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
            let mut np = ServiceSpec::node_port(node_port, proto, backends);
            np.affinity_timeout = affinity_timeout;
            np.external_traffic_local = external_local;
            np.source_ranges = source_ranges.clone();
            out.push(np);
        }
    }
    out
}

/// The IPv4 addresses in `status.loadBalancer.ingress` that the data plane
/// serves: every `ip` except those with `ipMode: Proxy` (a load balancer that
/// proxies traffic to the nodes itself, which kube-proxy does not short-circuit either).
pub fn load_balancer_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The hostPort frontends of the pods bound to this node: `<node
/// address>:<hostPort>` → the pod's `containerPort` (what the CNI portmap
/// plugin does with iptables, here as datapath frontends). Pods without an
/// IP, finished or on the host network are skipped; SCTP is not served.
pub fn host_port_frontends(pods: &[&Pod], node_name: &str) -> Vec<ServiceSpec> {
    let mut out: Vec<ServiceSpec> = Vec::new();
    for pod in pods {
        let (Some(spec), Some(status)) = (pod.spec.as_ref(), pod.status.as_ref()) else {
            continue;
        };
        if spec.node_name.as_deref() != Some(node_name)
            || spec.host_network == Some(true)
            || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        let ports = spec.containers.iter().flat_map(|c| c.ports.iter().flatten());
        for p in ports {
            let (Some(host_port), Ok(container_port)) = (
                p.host_port.and_then(|h| u16::try_from(h).ok()).filter(|h| *h != 0),
                u16::try_from(p.container_port),
            ) else {
                continue;
            };
            let Some(proto) = protocol(p.protocol.as_deref()) else {
                continue;
            };
            let frontend = Frontend::host_port(host_port, proto);
            if out.iter().any(|s| s.frontend == frontend) {
                continue; // the scheduler keeps host ports unique per node
            }
            out.push(ServiceSpec::cluster_ip(
                frontend,
                vec![Backend {
                    ip,
                    port: container_port,
                    node_local: true,
                    terminating: false,
                }],
            ));
        }
    }
    out
}

/// Whether `slice` is one of the Service `namespace/name`'s IPv4 slices.
fn belongs_to(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    slice.address_type == "IPv4"
        && slice.metadata.namespace.as_deref().unwrap_or("default") == namespace
        && slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|n| n == name)
}

/// The datapath protocol of a Service/Endpoint port (`None`: not served, e.g. SCTP).
fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The backends of one Service port, deduplicated, in slice order.
fn backends_for(port: &ServicePort, proto: Protocol, slices: &[&EndpointSlice], node_name: &str) -> Vec<Backend> {
    let port_name = port.name.as_deref().unwrap_or("");
    let mut out: Vec<Backend> = Vec::new();
    for slice in slices {
        let target =
            slice.ports.as_deref().unwrap_or_default().iter().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name && protocol(p.protocol.as_deref()) == Some(proto)
            });
        let Some(target) = target
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            let Some(terminating) = admission(ep) else { continue };
            let node_local = ep.node_name.as_deref() == Some(node_name);
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<Ipv4Addr>() else { continue };
                let b = Backend {
                    ip,
                    port: target,
                    node_local,
                    terminating,
                };
                match out.iter_mut().find(|o| o.ip == ip && o.port == target) {
                    // The same address in two slices (during a slice split): ready wins.
                    Some(o) => o.terminating &= terminating,
                    None => out.push(b),
                }
            }
        }
    }
    out
}

/// Whether an endpoint is a backend, and if so whether it is terminating
/// (`Some(false)`: ready, gets new flows; `Some(true)`: serving and
/// terminating, keeps its flows; `None`: not a backend).
/// Unset conditions mean ready/serving and not terminating (API semantics).
fn admission(ep: &Endpoint) -> Option<bool> {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    if ready && !terminating {
        Some(false)
    } else if serving && terminating {
        Some(true)
    } else {
        None
    }
}

/// Parse `loadBalancerSourceRanges` (IPv4 CIDRs; IPv6 entries ignored).
/// `None` when the list is non-empty but nothing in it is usable: the caller
/// closes the node ports rather than opening them to everyone.
fn parse_source_ranges(ranges: &[String]) -> Option<Vec<(Ipv4Addr, u8)>> {
    let parsed: Vec<(Ipv4Addr, u8)> = ranges
        .iter()
        .filter_map(|r| {
            let r = r.trim();
            let (ip, len) = r.split_once('/').unwrap_or((r, "32"));
            let ip: Ipv4Addr = ip.parse().ok()?;
            let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some((Ipv4Addr::from(u32::from(ip) & mask), len))
        })
        .collect();
    if parsed.is_empty() && !ranges.is_empty() {
        None
    } else {
        Some(parsed)
    }
}

#[cfg(test)]
mod tests;
