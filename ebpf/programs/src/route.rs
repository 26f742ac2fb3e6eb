//! Pod routing, shared by the TC programs: veth-to-veth delivery to pods of
//! this node ([`deliver_local`]) and source NAT of pod traffic leaving the
//! cluster ([`masquerade`]).
//!
//! Delivery: a packet leaving a pod whose (possibly service-translated)
//! destination is in the `endpoints` map gets the Ethernet header a router
//! would give it and goes straight into the destination pod's namespace with
//! `bpf_redirect_peer`, skipping the node's IP stack (no bridge, no route
//! lookup, no netfilter). Anything else continues into the kernel, which
//! routes it: to another node (native routing, one route per podCIDR) or out.
//!
//! Masquerade: a new TCP/UDP flow from a pod address to a destination outside
//! the cluster CIDR, not on this node and not another node of the cluster
//! (`cluster_nodes`: replies to another node's NodePort source NAT must keep
//! the pod's address) gets the node's address as source
//! and a port claimed in the conntrack map; both directions are then
//! ordinary tracked flows of [`crate::lb`] (the reply is translated back on
//! the external interface's hook). A ClusterIP flow balanced to a backend
//! outside the cluster by the same rule (the `kubernetes` Service, whose
//! endpoints are the API servers' addresses) is masqueraded too, in the same
//! conntrack entries as its destination NAT: the reply gets the VIP back as
//! source and the pod as destination. ICMP is not masqueraded.
//!
//! Flow events: a new masqueraded flow writes one (hook from-pod, no
//! Service, flag `MASQUERADED` with the node's address and port), when its
//! conntrack entries are created; its later packets are tracked and write none.

use aya_ebpf::{bindings::TC_ACT_SHOT, helpers::bpf_redirect_peer, programs::TcContext};
use sluice_common::{
    ct_flags, flow_flags, flow_hook, flow_verdict, routing_flags, scope, CtKey, CtValue, EndpointKey, Event, FlowEvent,
    NodeAddrKey, RoutingConfig,
};

use crate::lb::{
    self,
    conntrack::{self, NO_SERVICE},
    maps::{CLUSTER_NODES, ENDPOINTS, ROUTING},
    packet::{Flow, IP_DADDR_OFF},
    service, Verdict,
};

#[inline(always)]
fn in_cidr(addr: [u8; 4], cfg: &RoutingConfig) -> bool {
    let mask = u32::from_ne_bytes(cfg.cluster_mask);
    u32::from_ne_bytes(addr) & mask == u32::from_ne_bytes(cfg.cluster_cidr) & mask
}

/// Whether `addr` lies in the cluster CIDR of `routing`: a pod's address
/// (every address while no CIDR is set).
#[inline(always)]
pub fn in_cluster_cidr(addr: [u8; 4]) -> bool {
    match ROUTING.get_ptr(0) {
        // SAFETY: array value, read in place at once.
        Some(cfg) => in_cidr(addr, unsafe { &*cfg }),
        None => true,
    }
}

/// The node's address when a pod flow from `saddr` to `daddr` leaves the
/// cluster and must be masqueraded to it (see the module docs), else `None`.
/// Also asked for a service's flow after balancing: a backend outside the
/// cluster (the `kubernetes` Service's API servers) answers the node.
#[inline(always)]
pub fn masquerade_address(saddr: [u8; 4], daddr: [u8; 4]) -> Option<[u8; 4]> {
    let cfg = ROUTING.get_ptr(0)?;
    // SAFETY: array value, copied out at once.
    let cfg = unsafe { *cfg };
    if cfg.flags & routing_flags::MASQUERADE == 0
        || !in_cidr(saddr, &cfg)
        || in_cidr(daddr, &cfg)
        || daddr == cfg.masquerade_addr
        || service::is_node_addr(daddr)
        || CLUSTER_NODES.get_ptr(NodeAddrKey { addr: daddr }).is_some()
    {
        return None;
    }
    Some(cfg.masquerade_addr)
}

/// Decide on a new pod flow that no service claimed: source NAT to the node
/// when it leaves the cluster, else leave it alone.
#[inline(always)]
pub fn masquerade(flow: &Flow) -> Verdict {
    let Some(masquerade_addr) = masquerade_address(flow.saddr, flow.daddr) else {
        return Verdict::Pass;
    };
    let now = conntrack::now();
    let mut forward = CtValue {
        nat_addr: flow.daddr,
        nat_port: flow.dport,
        snat_addr: masquerade_addr,
        flags: ct_flags::SNAT,
        proto: flow.proto,
        service_id: NO_SERVICE,
        backend_id: NO_SERVICE,
        last_seen_ns: now,
        ..CtValue::default()
    };
    // The reply (outside → node) gets its destination back to the pod.
    let reply = CtValue {
        nat_addr: flow.daddr,
        nat_port: flow.dport,
        snat_addr: flow.saddr,
        snat_port: flow.sport,
        flags: ct_flags::REPLY | ct_flags::SNAT,
        proto: flow.proto,
        service_id: NO_SERVICE,
        backend_id: NO_SERVICE,
        last_seen_ns: now,
        ..CtValue::default()
    };
    let mut reply_key = CtKey {
        saddr: flow.daddr,
        daddr: masquerade_addr,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        pad: [0; 3],
    };
    let Some(port) = conntrack::claim_snat_port(&mut reply_key, &reply, flow.sport, service::flow_hash(flow)) else {
        lb::count(Event::SnatExhausted);
        masquerade_flow_event(flow, flow_verdict::DROPPED, Event::SnatExhausted, None);
        return Verdict::Drop;
    };
    forward.snat_port = port;
    let _ = conntrack::insert(&conntrack::key_of(flow), &forward, 0);
    lb::count(Event::Masquerade);
    // Only here, where the flow's source-NAT entries were just created: the
    // packets after it are tracked flows and never reach `masquerade`.
    masquerade_flow_event(
        flow,
        flow_verdict::FORWARDED,
        Event::Masquerade,
        Some((masquerade_addr, port)),
    );
    Verdict::Rewrite(lb::tracked(flow, &forward))
}

/// The flow event of a new pod flow leaving the cluster: no Service (id 0,
/// scope `NONE`), no backend, and when masqueraded the node's address and
/// port the client now has.
#[inline(always)]
fn masquerade_flow_event(flow: &Flow, verdict: u8, reason: Event, masqueraded: Option<([u8; 4], u16)>) {
    if !lb::flow_events_on() {
        return;
    }
    let (flags, masquerade_addr, masquerade_port) = match masqueraded {
        Some((addr, port)) => (flow_flags::MASQUERADED, addr, port),
        None => (0, [0; 4], 0),
    };
    lb::output_flow_event(&FlowEvent {
        time_ns: conntrack::now(),
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        verdict,
        reason: reason as u8,
        scope: scope::NONE,
        hook: flow_hook::FROM_POD,
        flags,
        masquerade_addr,
        masquerade_port,
        ..FlowEvent::default()
    });
}

/// If the IPv4 packet behind `ctx` is addressed to a pod of this node, hand
/// it to that pod (Ethernet header rewritten, `bpf_redirect_peer`) and
/// return the TC action; `None` lets the kernel route it.
#[inline(always)]
pub fn deliver_local(ctx: &TcContext) -> Option<i32> {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + IP_DADDR_OFF + 4 > data_end {
        return None;
    }
    // SAFETY: bounds checked just above.
    let (ethertype, daddr) = unsafe {
        (
            core::ptr::read_unaligned((data + 12) as *const [u8; 2]),
            core::ptr::read_unaligned((data + IP_DADDR_OFF) as *const [u8; 4]),
        )
    };
    if ethertype != [0x08, 0x00] {
        return None;
    }
    // SAFETY: copied out at once.
    let ep = unsafe { *ENDPOINTS.get_ptr(EndpointKey { addr: daddr })? };
    let mut eth = [0u8; 12];
    eth[..6].copy_from_slice(&ep.pod_mac);
    eth[6..].copy_from_slice(&ep.host_mac);
    if ctx.store(0, &eth, 0).is_err() {
        return Some(TC_ACT_SHOT);
    }
    lb::count(Event::RedirectPeer);
    // SAFETY: helper call with plain integers; returns TC_ACT_REDIRECT or TC_ACT_SHOT.
    Some(unsafe { bpf_redirect_peer(ep.ifindex, 0) } as i32)
}
