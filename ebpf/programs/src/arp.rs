//! ARP responder for LoadBalancer IPs (MetalLB's L2 mode, answered in eBPF
//! as Cilium's L2 announcements are): on the node's external interface, an
//! ARP request for an address in the `announce` map is turned into the reply
//! in place and sent back out of the interface it came in on. Only the node
//! userspace chose for an IP has it in its map, so exactly one node answers;
//! the address is on no interface, so the kernel never answers for it.

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT},
    helpers::bpf_redirect,
    programs::{TcContext, XdpContext},
};
use sluice_common::{AnnounceValue, Event, NodeAddrKey};

use crate::lb::{self, maps::ANNOUNCE};

/// Ethernet header + ARP for IPv4 over Ethernet.
const LEN: usize = 42;

/// The reply to `req` if it is an ARP request for an announced address.
#[inline(always)]
fn reply(req: &[u8; LEN]) -> Option<[u8; LEN]> {
    // Ethertype ARP; htype Ethernet, ptype IPv4, hlen 6, plen 4, op request.
    if req[12..14] != [0x08, 0x06] || req[14..22] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
        return None;
    }
    let sha = [req[22], req[23], req[24], req[25], req[26], req[27]];
    let spa = [req[28], req[29], req[30], req[31]];
    let tpa = [req[38], req[39], req[40], req[41]];
    if spa == tpa {
        return None; // gratuitous ARP / address probe of someone else
    }
    // SAFETY: copied out at once.
    let ours: AnnounceValue = unsafe { *ANNOUNCE.get_ptr(NodeAddrKey { addr: tpa })? };
    let mut out = [0u8; LEN];
    out[0..6].copy_from_slice(&sha);
    out[6..12].copy_from_slice(&ours.mac);
    out[12..14].copy_from_slice(&[0x08, 0x06]);
    out[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    out[22..28].copy_from_slice(&ours.mac);
    out[28..32].copy_from_slice(&tpa);
    out[32..38].copy_from_slice(&sha);
    out[38..42].copy_from_slice(&spa);
    Some(out)
}

/// XDP: answer an ARP request for an announced address (`XDP_TX`), else `None`.
#[inline(always)]
pub fn answer_xdp(ctx: &XdpContext) -> Option<u32> {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + LEN > data_end {
        return None;
    }
    // SAFETY: bounds checked just above.
    let req = unsafe { core::ptr::read_unaligned(data as *const [u8; LEN]) };
    let out = reply(&req)?;
    // SAFETY: the same bounds-checked bytes.
    unsafe { core::ptr::write_unaligned(data as *mut [u8; LEN], out) };
    lb::count(Event::ArpReply);
    Some(xdp_action::XDP_TX)
}

/// TC ingress: answer an ARP request for an announced address (redirected
/// out of the receiving interface), else `None`.
#[inline(always)]
pub fn answer_tc(ctx: &TcContext) -> Option<i32> {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + LEN > data_end {
        return None;
    }
    // SAFETY: bounds checked just above.
    let req = unsafe { core::ptr::read_unaligned(data as *const [u8; LEN]) };
    let out = reply(&req)?;
    if ctx.store(0, &out, 0).is_err() {
        return Some(TC_ACT_SHOT);
    }
    lb::count(Event::ArpReply);
    // SAFETY: reading the context's own interface index.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: helper call with plain integers (flags 0: egress of that interface).
    Some(unsafe { bpf_redirect(ifindex, 0) } as i32)
}
