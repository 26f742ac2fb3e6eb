//! Applying a [`Rewrite`] to a packet, with incremental checksum updates.
//! Under TC the kernel's checksum helpers are used (they handle offloaded,
//! CHECKSUM_PARTIAL packets); under XDP the packet memory is written directly.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::{TcContext, XdpContext},
};

use super::{
    csum,
    packet::{Flow, IP_CSUM_OFF, IP_DADDR_OFF, IP_OFF, IP_SADDR_OFF},
    zero_csum_allowed, Rewrite,
};

/// Rewrite the packet behind a TC context.
#[inline(always)]
pub fn rewrite_tc(ctx: &TcContext, flow: &Flow, to: &Rewrite) -> Result<(), i64> {
    let l4c = flow.l4_csum_off();
    let zero_ok = if zero_csum_allowed(flow.proto) {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    if to.saddr != flow.saddr {
        let (from, new) = (
            u32::from_ne_bytes(flow.saddr) as u64,
            u32::from_ne_bytes(to.saddr) as u64,
        );
        ctx.l4_csum_replace(l4c, from, new, BPF_F_PSEUDO_HDR as u64 | zero_ok | 4)?;
        ctx.l3_csum_replace(IP_CSUM_OFF, from, new, 4)?;
        ctx.store(IP_SADDR_OFF, &to.saddr, 0)?;
    }
    if to.daddr != flow.daddr {
        let (from, new) = (
            u32::from_ne_bytes(flow.daddr) as u64,
            u32::from_ne_bytes(to.daddr) as u64,
        );
        ctx.l4_csum_replace(l4c, from, new, BPF_F_PSEUDO_HDR as u64 | zero_ok | 4)?;
        ctx.l3_csum_replace(IP_CSUM_OFF, from, new, 4)?;
        ctx.store(IP_DADDR_OFF, &to.daddr, 0)?;
    }
    if to.sport != flow.sport {
        let (from, new) = (flow.sport.to_be(), to.sport.to_be());
        ctx.l4_csum_replace(l4c, from as u64, new as u64, zero_ok | 2)?;
        ctx.store(flow.l4_off, &new, 0)?;
    }
    if to.dport != flow.dport {
        let (from, new) = (flow.dport.to_be(), to.dport.to_be());
        ctx.l4_csum_replace(l4c, from as u64, new as u64, zero_ok | 2)?;
        ctx.store(flow.l4_off + 2, &new, 0)?;
    }
    Ok(())
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + off + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Rewrite the packet behind an XDP context.
#[inline(always)]
pub fn rewrite_xdp(ctx: &XdpContext, flow: &Flow, to: &Rewrite) -> Option<()> {
    let ip_csum = ptr_at::<u16>(ctx, IP_CSUM_OFF)?;
    let saddr = ptr_at::<u32>(ctx, IP_SADDR_OFF)?;
    let daddr = ptr_at::<u32>(ctx, IP_DADDR_OFF)?;
    // Bound the variable L4 offset for the verifier.
    let l4_off = flow.l4_off;
    if !(IP_OFF + 20..=IP_OFF + 60).contains(&l4_off) {
        return None;
    }
    let l4_csum = ptr_at::<u16>(ctx, flow.l4_csum_off())?;
    let sport = ptr_at::<u16>(ctx, l4_off)?;
    let dport = ptr_at::<u16>(ctx, l4_off + 2)?;
    // SAFETY: every pointer was bounds-checked against data_end above.
    unsafe {
        let mut ip_check = ip_csum.read_unaligned();
        let mut l4_check = l4_csum.read_unaligned();
        let l4_on = !(zero_csum_allowed(flow.proto) && l4_check == 0);
        let (old_s, new_s) = (u32::from_ne_bytes(flow.saddr), u32::from_ne_bytes(to.saddr));
        let (old_d, new_d) = (u32::from_ne_bytes(flow.daddr), u32::from_ne_bytes(to.daddr));
        if old_s != new_s {
            ip_check = csum::replace4(ip_check, old_s, new_s);
            l4_check = csum::replace4(l4_check, old_s, new_s);
            saddr.write_unaligned(new_s);
        }
        if old_d != new_d {
            ip_check = csum::replace4(ip_check, old_d, new_d);
            l4_check = csum::replace4(l4_check, old_d, new_d);
            daddr.write_unaligned(new_d);
        }
        if to.sport != flow.sport {
            l4_check = csum::replace2(l4_check, flow.sport.to_be(), to.sport.to_be());
            sport.write_unaligned(to.sport.to_be());
        }
        if to.dport != flow.dport {
            l4_check = csum::replace2(l4_check, flow.dport.to_be(), to.dport.to_be());
            dport.write_unaligned(to.dport.to_be());
        }
        ip_csum.write_unaligned(ip_check);
        if l4_on {
            if l4_check == 0 && zero_csum_allowed(flow.proto) {
                l4_check = 0xffff;
            }
            l4_csum.write_unaligned(l4_check);
        }
    }
    Some(())
}
