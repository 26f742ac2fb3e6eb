//! TC egress on a pod's host-side veth: every packet going to the pod.
//! Replies of service flows that no earlier hook translated (e.g. when the
//! external interface has no XDP program) get their source rewritten back to
//! the frontend here, so a client only ever sees the VIP.

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::{lb::Hook, pod_ingress::handle};

/// Entry point (see the module docs).
#[classifier]
pub fn pod_egress(ctx: TcContext) -> i32 {
    handle(&ctx, Hook::ToPod)
}
