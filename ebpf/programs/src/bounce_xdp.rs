//! XDP on any interface, benchmark only: swap the Ethernet addresses and
//! bounce every frame out of the interface it came in on (XDP_TX). The
//! fastest anything can forward on that interface: Sluice's ceiling.

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
