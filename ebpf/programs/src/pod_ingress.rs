//! TC ingress on a pod's host-side veth: every packet the pod sends.
//!
//! New flows to a ClusterIP are balanced and destination-NATed to a backend
//! (the kernel then routes them, locally or to the backend's node); packets
//! of tracked flows are translated; replies of a local backend get their
//! source rewritten back to the frontend; a new flow to a service without
//! backends is answered with a reject. Hairpin: a pod whose flow lands on
//! itself sees it coming from the VIP (source NAT), not from its own address.
//! Then routing ([`crate::route`]): flows leaving the cluster are
//! masqueraded to the node's address, and packets for a pod of this node go
//! straight into it (`bpf_redirect_peer`) instead of through the kernel.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::{info, warn};
use sluice_common::Event;

use crate::arp;
use crate::lb::{self, dsr, nat, packet, reject, Hook, Verdict};
use crate::route;

/// The most header bytes a TC program reads: Ethernet, IPv4 with options,
/// a TCP header without options (UDP and ICMP headers are shorter).
const HEADERS_MAX: u32 = 14 + 60 + 20;

/// Entry point (see the module docs).
#[classifier]
pub fn pod_ingress(ctx: TcContext) -> i32 {
    handle(&ctx, Hook::FromPod)
}

/// Shared by every TC entry point: parse, balance, apply; from a pod also
/// masquerade; from a pod or from outside, deliver to local pods.
#[inline(always)]
pub fn handle(ctx: &TcContext, hook: Hook) -> i32 {
    // Headers outside the linear area the program reads (a zero-copy
    // PF_PACKET sender such as trafgen leaves only the Ethernet header
    // there): pull them in, else the packet would pass unbalanced as
    // malformed. Linear packets, nearly all, skip the helper.
    let want = core::cmp::min(ctx.len(), HEADERS_MAX);
    if ctx.data() + want as usize > ctx.data_end() {
        let _ = ctx.pull_data(want);
    }
    match packet::parse(ctx.data(), ctx.data_end()) {
        packet::Parsed::Flow(flow) => {
            let mut verdict = lb::balance(&flow, hook);
            if hook == Hook::FromPod && matches!(verdict, Verdict::Pass) {
                verdict = route::masquerade(&flow);
            }
            match verdict {
                Verdict::Pass => {}
                Verdict::Drop => {
                    info!(
                        ctx,
                        "dropped new flow {:i}:{} -> {:i}:{} (source range, policy Local or SNAT ports)",
                        u32::from_be_bytes(flow.saddr),
                        flow.sport,
                        u32::from_be_bytes(flow.daddr),
                        flow.dport
                    );
                    return TC_ACT_SHOT;
                }
                Verdict::Reject => {
                    warn!(
                        ctx,
                        "no ready backend for {:i}:{} (proto {}), rejecting {:i}:{}",
                        u32::from_be_bytes(flow.daddr),
                        flow.dport,
                        flow.proto,
                        u32::from_be_bytes(flow.saddr),
                        flow.sport
                    );
                    return reject::reject_tc(ctx, &flow);
                }
                Verdict::Rewrite(to) => {
                    if nat::rewrite_tc(ctx, &flow, &to).is_err() {
                        return TC_ACT_SHOT;
                    }
                    if to.dsr.is_some() && dsr::push_tc(ctx, &to.dsr).is_err() {
                        return TC_ACT_SHOT;
                    }
                }
            }
        }
        packet::Parsed::Other => {
            if hook == Hook::External {
                if let Some(action) = arp::answer_tc(ctx) {
                    return action;
                }
            }
        }
        packet::Parsed::Malformed => {
            lb::count(Event::Malformed);
            return TC_ACT_OK;
        }
    }
    // From a pod or from outside (TC hook of the external interface): a
    // packet for a pod of this node goes straight into it.
    if hook != Hook::ToPod {
        if let Some(action) = route::deliver_local(ctx) {
            return action;
        }
    }
    TC_ACT_OK
}
