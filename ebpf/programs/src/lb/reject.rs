//! Rejecting a new flow to a service without ready backends the way
//! Kubernetes does: the packet is turned, in place, into a TCP RST (for TCP)
//! or an ICMP port unreachable (for UDP) and sent back out of the interface
//! it came from, so the client fails fast instead of timing out.

use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use sluice_common::{PROTO_TCP, PROTO_UDP};

use super::{
    csum,
    packet::{Flow, ETH_LEN, IP_OFF, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// Build a 20-byte IPv4 header (no options) with its checksum.
#[inline(always)]
fn ip_header(total_len: u16, proto: u8, saddr: [u8; 4], daddr: [u8; 4]) -> [u8; 20] {
    let len = total_len.to_be_bytes();
    let mut h = [
        0x45, 0, len[0], len[1], 0, 0, 0x40, 0, 64, proto, 0, 0, saddr[0], saddr[1], saddr[2], saddr[3], daddr[0],
        daddr[1], daddr[2], daddr[3],
    ];
    let c = csum::finish(csum::sum(&h, 0)).to_ne_bytes();
    h[10] = c[0];
    h[11] = c[1];
    h
}

/// Answer the packet behind `ctx` with a reject; returns the TC action.
#[inline(always)]
pub fn reject_tc(ctx: &TcContext, flow: &Flow) -> i32 {
    let r = match flow.proto {
        PROTO_TCP => tcp_reset(ctx, flow),
        PROTO_UDP => icmp_unreachable(ctx, flow),
        _ => Err(0),
    };
    if r.is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call on this skb's own interface.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}

#[inline(always)]
fn swapped_eth(ctx: &TcContext) -> Result<[u8; 14], i64> {
    let eth: [u8; 14] = ctx.load(0)?;
    let mut out = [0u8; 14];
    let mut i = 0;
    while i < 6 {
        out[i] = eth[i + 6];
        out[i + 6] = eth[i];
        i += 1;
    }
    out[12] = 0x08;
    out[13] = 0x00;
    Ok(out)
}

fn tcp_reset(ctx: &TcContext, flow: &Flow) -> Result<(), i64> {
    if flow.tcp_flags & TCP_RST != 0 {
        return Err(0); // never answer a reset with a reset
    }
    let eth = swapped_eth(ctx)?;
    let ip: [u8; 20] = ctx.load(IP_OFF)?;
    let tcp: [u8; 20] = ctx.load(flow.l4_off)?;
    let ihl = ((ip[0] & 0x0f) as u32) * 4;
    let doff = ((tcp[12] >> 4) as u32) * 4;
    let payload = (flow.ip_len as u32).saturating_sub(ihl + doff);
    let in_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let in_ack = [tcp[8], tcp[9], tcp[10], tcp[11]];
    let (seq, ack, flags) = if flow.tcp_flags & TCP_ACK != 0 {
        (in_ack, [0u8; 4], TCP_RST)
    } else {
        let mut n = payload;
        if flow.tcp_flags & TCP_SYN != 0 {
            n += 1;
        }
        if flow.tcp_flags & TCP_FIN != 0 {
            n += 1;
        }
        ([0u8; 4], in_seq.wrapping_add(n).to_be_bytes(), TCP_RST | TCP_ACK)
    };
    let mut th = [
        tcp[2], tcp[3], tcp[0], tcp[1], seq[0], seq[1], seq[2], seq[3], ack[0], ack[1], ack[2], ack[3], 0x50, flags, 0,
        0, 0, 0, 0, 0,
    ];
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&flow.daddr);
    pseudo[4..8].copy_from_slice(&flow.saddr);
    pseudo[9] = PROTO_TCP;
    pseudo[11] = 20;
    let c = csum::finish(csum::sum(&th, csum::sum(&pseudo, 0))).to_ne_bytes();
    th[16] = c[0];
    th[17] = c[1];
    let iph = ip_header(40, PROTO_TCP, flow.daddr, flow.saddr);
    // SAFETY: helper on this program's own skb.
    let ret = unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_LEN + 40) as u32, 0) };
    if ret != 0 {
        return Err(ret);
    }
    ctx.store(0, &eth, 0)?;
    ctx.store(IP_OFF, &iph, 0)?;
    ctx.store(IP_OFF + 20, &th, 0)?;
    Ok(())
}

fn icmp_unreachable(ctx: &TcContext, flow: &Flow) -> Result<(), i64> {
    if flow.l4_off != IP_OFF + 20 {
        return Err(0); // IP options: quote would not fit our fixed layout
    }
    let eth = swapped_eth(ctx)?;
    let quote: [u8; 28] = ctx.load(IP_OFF)?;
    let mut icmp = [3u8, 3, 0, 0, 0, 0, 0, 0];
    let c = csum::finish(csum::sum(&quote, csum::sum(&icmp, 0))).to_ne_bytes();
    icmp[2] = c[0];
    icmp[3] = c[1];
    let iph = ip_header(20 + 8 + 28, 1, flow.daddr, flow.saddr);
    // SAFETY: helper on this program's own skb.
    let ret = unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_LEN + 56) as u32, 0) };
    if ret != 0 {
        return Err(ret);
    }
    ctx.store(0, &eth, 0)?;
    ctx.store(IP_OFF, &iph, 0)?;
    ctx.store(IP_OFF + 20, &icmp, 0)?;
    ctx.store(IP_OFF + 28, &quote, 0)?;
    Ok(())
}
