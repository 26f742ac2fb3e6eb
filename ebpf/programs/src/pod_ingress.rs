//! TC ingress on a pod's host-side veth: every packet the pod sends.
//!
//! New flows to a ClusterIP are balanced and destination-NATed to a backend
//! (the kernel then routes them, locally or to the backend's node); packets
//! of tracked flows are translated; replies of a local backend get their
//! source rewritten back to the frontend; a new flow to a service without
//! backends is answered with a reject. Hairpin: a pod whose flow lands on
//! itself sees it coming from the VIP (source NAT), not from its own address.

use aya_ebpf::{bindings::{TC_ACT_OK, TC_ACT_SHOT}, macros::classifier, programs::TcContext};
use aya_log_ebpf::{info, warn};
use sluice_common::Event;

use crate::lb::{self, nat, packet, reject, Hook, Verdict};

/// Entry point (see the module docs).
#[classifier]
pub fn pod_ingress(ctx: TcContext) -> i32 {
    handle(&ctx, Hook::FromPod)
}

/// Shared by both TC entry points: parse, balance, apply.
#[inline(always)]
pub fn handle(ctx: &TcContext, hook: Hook) -> i32 {
    let flow = match packet::parse(ctx.data(), ctx.data_end()) {
        packet::Parsed::Flow(f) => f,
        packet::Parsed::Other => return TC_ACT_OK,
        packet::Parsed::Malformed => {
            lb::count(Event::Malformed);
            return TC_ACT_OK;
        }
    };
    match lb::balance(&flow, hook) {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => {
            info!(ctx, "dropped new flow {:i}:{} -> {:i}:{} (source range or policy Local)",
                u32::from_be_bytes(flow.saddr), flow.sport, u32::from_be_bytes(flow.daddr), flow.dport);
            TC_ACT_SHOT
        }
        Verdict::Reject => {
            warn!(ctx, "no ready backend for {:i}:{} (proto {}), rejecting {:i}:{}",
                u32::from_be_bytes(flow.daddr), flow.dport, flow.proto, u32::from_be_bytes(flow.saddr), flow.sport);
            reject::reject_tc(ctx, &flow)
        }
        Verdict::Rewrite(to) => match nat::rewrite_tc(ctx, &flow, &to) {
            Ok(()) => TC_ACT_OK,
            Err(_) => TC_ACT_SHOT,
        },
    }
}
