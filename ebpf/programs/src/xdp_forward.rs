//! The NodePort fast path: a frame [`crate::nodeport_xdp`] translated leaves
//! from XDP, without entering the kernel's stack, when the settings switch
//! `XDP_FORWARD` is on.
//!
//! - To a pod of this node (`endpoints`): Ethernet addresses of the pod's
//!   link, `bpf_redirect` into its host-side veth, so the frame arrives in
//!   the pod. The pod's end must accept XDP frames: sluice-cni turns GRO on
//!   there, which gives the veth the NAPI context such frames need.
//! - Elsewhere: `bpf_fib_lookup` on the kernel's routes and neighbours gives
//!   the next hop; the TTL is decremented as a router does. Out of the
//!   interface the frame came in on (a backend on another node behind the
//!   same link, or a reply on its way back to the client): `XDP_TX`. Out of
//!   another interface: `bpf_redirect`.
//! - Anything the lookup cannot settle goes on through the kernel
//!   (`XDP_PASS`, counted as `XdpToKernel`): no neighbour entry yet (the
//!   kernel resolves it, and the flow's next frames take the fast path), a
//!   local or unreachable destination, a frame above the route's MTU, a
//!   TTL about to expire (the kernel sends the ICMP error).
//!
//! The TC hook (`nodeport_tc`) is the fallback where XDP is not used: it
//! hands frames for local pods over with `bpf_redirect_peer` and leaves the
//! rest to the kernel.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup, bpf_redirect},
    programs::XdpContext,
};
use sluice_common::{settings_flags, EndpointKey, Event};

use crate::lb::{
    self,
    maps::ENDPOINTS,
    packet::{Flow, IP_CSUM_OFF, IP_OFF},
    Rewrite,
};

/// `AF_INET`, the FIB lookup's address family.
const AF_INET: u8 = 2;
/// Offsets in the IPv4 header of what parsing did not keep.
const IP_TOS_OFF: usize = IP_OFF + 1;
const IP_TTL_OFF: usize = IP_OFF + 8;
/// The end of the IPv4 header without options: everything touched here.
const IP_FIXED_END: usize = IP_OFF + 20;

/// Whether the settings switch is on (read once per forwarded frame).
#[inline(always)]
fn enabled() -> bool {
    lb::setting_on(settings_flags::XDP_FORWARD)
}

/// Set the frame's Ethernet destination and source.
///
/// # Safety
/// `data` must point at 12 bytes inside the packet.
#[inline(always)]
unsafe fn set_macs(data: usize, dst: &[u8; 6], src: &[u8; 6]) {
    let eth = data as *mut [u8; 12];
    let mut addrs = [0u8; 12];
    addrs[..6].copy_from_slice(dst);
    addrs[6..].copy_from_slice(src);
    core::ptr::write_unaligned(eth, addrs);
}

/// Send on the IPv4 frame of `flow`, translated to `to` (see the module
/// docs); returns the XDP action.
#[inline(always)]
pub fn forward(ctx: &XdpContext, flow: &Flow, to: &Rewrite) -> u32 {
    if !enabled() {
        return xdp_action::XDP_PASS;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + IP_FIXED_END > data_end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the IPv4 header without options lies inside the packet
    // (checked just above); each field is copied out at once.
    let (tos, ttl) = unsafe { (*((data + IP_TOS_OFF) as *const u8), *((data + IP_TTL_OFF) as *const u8)) };

    // A pod of this node.
    if let Some(ep) = ENDPOINTS.get_ptr(EndpointKey { addr: to.daddr }) {
        // SAFETY: map value, copied out at once.
        let ep = unsafe { *ep };
        // SAFETY: the Ethernet header lies inside the packet (checked above).
        unsafe { set_macs(data, &ep.pod_mac, &ep.host_mac) };
        lb::count(Event::XdpRedirect);
        // SAFETY: helper call with plain integers.
        return unsafe { bpf_redirect(ep.ifindex, 0) } as u32;
    }

    // Anywhere else: the kernel's routes and neighbours.
    if ttl <= 1 {
        lb::count(Event::XdpToKernel);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: plain-old-data C struct; all zeroes is a valid value.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = flow.proto;
    fib.__bindgen_anon_1.tot_len = flow.ip_len;
    fib.__bindgen_anon_2.tos = tos;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(to.saddr);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(to.daddr);
    fib.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: helper call on this program's context and a stack struct of the size given.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        lb::count(Event::XdpToKernel);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the IPv4 header lies inside the packet (checked above). The
    // TTL drops by one and the header checksum follows (RFC 1624: the TTL
    // is the high byte of its 16-bit word).
    unsafe {
        *((data + IP_TTL_OFF) as *mut u8) = ttl - 1;
        let csum = (data + IP_CSUM_OFF) as *mut u16;
        let sum = core::ptr::read_unaligned(csum) as u32 + 0x0100u16.to_be() as u32;
        core::ptr::write_unaligned(csum, (sum + (sum >= 0xffff) as u32) as u16);
        set_macs(data, &fib.dmac, &fib.smac);
    }
    if fib.ifindex == ctx.ingress_ifindex() as u32 {
        lb::count(Event::XdpTx);
        return xdp_action::XDP_TX;
    }
    lb::count(Event::XdpRedirect);
    // SAFETY: helper call with plain integers.
    unsafe { bpf_redirect(fib.ifindex, 0) as u32 }
}
