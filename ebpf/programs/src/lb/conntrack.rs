//! Connection tracking: LRU map of both directions of every balanced flow,
//! with TCP (FIN/RST aware) and UDP idle timeouts. Established flows keep
//! their backend and NAT state here, whatever happens to the service since.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use sluice_common::{ct_flags, CtKey, CtValue, CT_CLOSING_TIMEOUT_NS, CT_TCP_TIMEOUT_NS, CT_UDP_TIMEOUT_NS, PROTO_TCP};

use super::{
    maps::{BACKENDS, CONNTRACK},
    packet::{Flow, TCP_FIN, TCP_RST},
};

/// Ports tried for a source NAT before the packet is dropped.
const SNAT_TRIES: u32 = 8;

/// Refresh `last_seen` at most this often (saves writes to a shared cache line).
const TOUCH_EVERY_NS: u64 = 1_000_000_000;

/// Monotonic time in nanoseconds.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The conntrack key of a packet as it arrives.
#[inline(always)]
pub fn key_of(flow: &Flow) -> CtKey {
    CtKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        pad: [0; 3],
    }
}

#[inline(always)]
fn timeout(v: &CtValue) -> u64 {
    if v.flags & ct_flags::CLOSING != 0 {
        CT_CLOSING_TIMEOUT_NS
    } else if v.proto == PROTO_TCP {
        CT_TCP_TIMEOUT_NS
    } else {
        CT_UDP_TIMEOUT_NS
    }
}

/// Look up a packet's entry; an idle-expired entry counts as missing.
/// Refreshes the entry and notes FIN/RST.
#[inline(always)]
pub fn lookup(flow: &Flow, now: u64) -> Option<CtValue> {
    let key = key_of(flow);
    let ptr = CONNTRACK.get_ptr_mut(key)?;
    // SAFETY: a pointer into the map value returned by the kernel; concurrent
    // writers only touch `last_seen_ns`/`flags`, for which a torn view is harmless.
    let v = unsafe { &mut *ptr };
    if now.wrapping_sub(v.last_seen_ns) > timeout(v) && now > v.last_seen_ns {
        return None;
    }
    if flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 && v.flags & ct_flags::CLOSING == 0 {
        v.flags |= ct_flags::CLOSING;
    }
    if now.wrapping_sub(v.last_seen_ns) > TOUCH_EVERY_NS {
        v.last_seen_ns = now;
    }
    Some(*v)
}

/// `service_id`/`backend_id` of conntrack entries that belong to no service
/// (masqueraded flows, [`crate::route`]).
pub const NO_SERVICE: u32 = u32::MAX;

/// Whether the backend a flow was balanced to is still a backend of its
/// service at the same address (ids are reused once released). A flow of no
/// service (masqueraded) has no backend to lose: a retransmitted SYN keeps
/// its entry (and writes no second flow event).
#[inline(always)]
pub fn backend_alive(ct: &CtValue) -> bool {
    if ct.service_id == NO_SERVICE {
        return true;
    }
    match BACKENDS.get_ptr(ct.backend_id) {
        // SAFETY: map value pointer, fields copied out at once.
        Some(b) => unsafe { (*b).addr == ct.nat_addr && (*b).port == ct.nat_port && (*b).service_id == ct.service_id },
        None => false,
    }
}

/// Store an entry.
#[inline(always)]
pub fn insert(key: &CtKey, value: &CtValue, flags: u64) -> Result<(), i32> {
    CONNTRACK.insert(key, value, flags)
}

/// Insert a source-NATed flow's reply entry under a free port of the NAT
/// address: `preferred` first (the client's own port, when free), then a few
/// pseudo-random ones from 32768..60768. Returns the port, or `None` when
/// all tries collide (the caller drops and counts `SnatExhausted`).
#[inline(always)]
pub fn claim_snat_port(reply_key: &mut CtKey, reply: &CtValue, preferred: u16, seed: u32) -> Option<u16> {
    let now = reply.last_seen_ns;
    let mut port = preferred;
    for i in 0..SNAT_TRIES {
        reply_key.dport = port;
        if insert(reply_key, reply, aya_ebpf::bindings::BPF_NOEXIST as u64).is_ok() {
            return Some(port);
        }
        // Taken. Reclaim it when it holds this very client's earlier flow
        // on the same port (the client reused its port: that connection is
        // over, and the backend accepts the new SYN over its TIME_WAIT as
        // the sequence numbers of one client tuple only grow), or a flow
        // idle past its timeout. Another client's live flow is never taken.
        if let Some(old) = CONNTRACK.get_ptr(*reply_key) {
            // SAFETY: map value pointer, copied out at once.
            let old = unsafe { *old };
            let own = old.snat_addr == reply.snat_addr && old.snat_port == reply.snat_port;
            let expired = now.wrapping_sub(old.last_seen_ns) > timeout(&old) && now > old.last_seen_ns;
            if (own || expired) && insert(reply_key, reply, 0).is_ok() {
                return Some(port);
            }
        }
        port = 32768 + (seed.wrapping_add(i.wrapping_mul(7919)) % 28000) as u16;
    }
    None
}
