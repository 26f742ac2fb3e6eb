//! XDP on any interface, benchmark only: swap the Ethernet addresses and
//! bounce every frame out of the interface it came in on (XDP_TX). The
//! fastest anything can forward on that interface: Sluice's ceiling. Also a
//! no-op XDP program for a veth peer, which must run XDP to receive XDP_TX'd
//! frames (a physical NIC needs no such thing).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Entry point (see the module docs).
#[xdp]
pub fn bounce_xdp(ctx: XdpContext) -> u32 {
    let data = ctx.data();
    if data + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let eth = data as *mut [u8; 12];
    // SAFETY: bounds checked above.
    unsafe {
        let mut addrs = *eth;
        let (dst, src) = addrs.split_at_mut(6);
        dst.swap_with_slice(src);
        *eth = addrs;
    }
    xdp_action::XDP_TX
}

/// Pass every frame (lets a veth peer receive XDP_TX'd frames).
#[xdp]
pub fn pass_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
