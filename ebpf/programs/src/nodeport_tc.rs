//! TC ingress on the node's external interface: the same NodePort and
//! reverse-NAT logic as [`crate::nodeport_xdp`], for interfaces where XDP is
//! slower than TC (veth fed by locally built packets, where native XDP must
//! copy every packet into a new buffer first) or unavailable. Chosen per
//! datapath by `DatapathConfig::external_hook`. Unlike XDP it also hands
//! packets for pods of this node (NodePort to a local backend, other nodes'
//! pods, masqueraded replies) straight to the pod (`bpf_redirect_peer`).

use aya_ebpf::{macros::classifier, programs::TcContext};

use crate::{lb::Hook, pod_ingress::handle};

/// Entry point (see the module docs).
#[classifier]
pub fn nodeport_tc(ctx: TcContext) -> i32 {
    handle(&ctx, Hook::External)
}
