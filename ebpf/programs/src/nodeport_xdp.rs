//! XDP on the node's external interface(s): every frame entering the node.
//!
//! The same balancing serves hostPorts (a NodePort with one local backend),
//! LoadBalancer IPs and `externalIPs` (frontends on those addresses), and
//! ARP requests for the LoadBalancer IPs this node announces are answered
//! here ([`crate::arp`]).
//!
//! New flows to `<node address>:<nodePort>` are balanced: a local backend gets
//! destination NAT only; a remote one also gets source NAT to the node
//! address (policy Cluster) so its replies come back here, where they are
//! translated back to `<node address>:<nodePort>` → client. With
//! externalTrafficPolicy Local only local backends are used and the client's
//! address is kept. Translated frames leave from XDP when forwarding is on
//! ([`crate::xdp_forward`]: into a local pod's veth, or XDP_TX / redirect to
//! the next hop), else continue into the kernel (XDP_PASS), which routes
//! them. With direct server return on ([`crate::lb::dsr`]) a remote backend
//! gets destination NAT only, and the frontend rides along in an IP option
//! on the flow's first packets. A NodePort without backends is passed too: nothing
//! listens on that port, so the kernel itself answers RST / ICMP unreachable.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::{info, warn};
use sluice_common::{Event, DSR_IP_OPTION_LEN};

use crate::arp;
use crate::lb::{self, dsr, nat, packet, packet::Flow, Hook, Verdict};
use crate::xdp_forward;

/// Entry point (see the module docs).
#[xdp]
pub fn nodeport_xdp(ctx: XdpContext) -> u32 {
    let flow = match packet::parse(ctx.data(), ctx.data_end()) {
        packet::Parsed::Flow(f) => f,
        packet::Parsed::Other => return arp::answer_xdp(&ctx).unwrap_or(xdp_action::XDP_PASS),
        packet::Parsed::Malformed => {
            lb::count(Event::Malformed);
            return xdp_action::XDP_PASS;
        }
    };
    match lb::balance(&flow, Hook::External) {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Reject => {
            warn!(
                &ctx,
                "no ready backend for NodePort {}, {:i}:{} gets the kernel's reject",
                flow.dport,
                u32::from_be_bytes(flow.saddr),
                flow.sport
            );
            xdp_action::XDP_PASS
        }
        Verdict::Drop => {
            info!(
                &ctx,
                "dropped new flow {:i}:{} -> NodePort {} (source range or policy Local)",
                u32::from_be_bytes(flow.saddr),
                flow.sport,
                flow.dport
            );
            xdp_action::XDP_DROP
        }
        Verdict::Rewrite(to) => {
            if nat::rewrite_xdp(&ctx, &flow, &to).is_none() {
                return xdp_action::XDP_DROP;
            }
            if !to.dsr.is_some() {
                return xdp_forward::forward(&ctx, &flow, &to);
            }
            if dsr::push_xdp(&ctx, &to.dsr).is_none() {
                return xdp_action::XDP_DROP;
            }
            let grown = Flow {
                ip_len: flow.ip_len + DSR_IP_OPTION_LEN as u16,
                ..flow
            };
            xdp_forward::forward(&ctx, &grown, &to)
        }
    }
}
