//! The Sluice eBPF programs: one entry point per attach point, shared load
//! balancing logic in [`lb`], pod routing in [`route`].
//!
//! | program | attach point | job |
//! | --- | --- | --- |
//! | [`pod_ingress`] | TC ingress, pod's host-side veth (packets from the pod) | ClusterIP DNAT of new and tracked flows, reverse NAT of replies of local backends, reject with no backend; masquerade of flows leaving the cluster, veth-to-veth delivery to local pods ([`route`]) |
//! | [`pod_egress`] | TC egress, pod's host-side veth (packets to the pod) | reverse NAT of replies not yet translated |
//! | [`nodeport_xdp`] | XDP, node's external interface | NodePort, hostPort, LoadBalancer and external IP DNAT (+SNAT to the node for remote backends, or direct server return: the frontend in an IP option, [`lb::dsr`]), reverse NAT of replies from remote backends, ARP replies for announced LoadBalancer IPs ([`arp`]) |
//! | [`xdp_forward`] | (called by `nodeport_xdp`) | the NodePort fast path: translated frames into local pods' veths (`bpf_redirect`) or to the next hop (`bpf_fib_lookup`, XDP_TX / `bpf_redirect`) |
//! | [`nodeport_tc`] | TC ingress, node's external interface (alternative to XDP) | same as `nodeport_xdp` |
//! | [`sock_lb`] | cgroup connect4/sendmsg4/recvmsg4, the node's cgroup | socket-level ClusterIP for the node's own clients |
//! | [`bounce_xdp`] | XDP, any interface (benchmark only) | bounce every frame back (XDP_TX): the practical ceiling |
#![no_std]
#![no_main]

mod arp;
mod bounce_xdp;
mod lb;
mod nodeport_tc;
mod nodeport_xdp;
mod pod_egress;
mod pod_ingress;
mod route;
mod sock_lb;
mod xdp_forward;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Kernel license: helpers such as `bpf_fib_lookup` need a GPL-compatible one.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
