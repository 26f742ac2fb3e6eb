//! Direct server return (DSR) for NodePort, LoadBalancer and external IP
//! flows to a backend on another node, when the `settings` switch `DSR` is
//! on (noded `--nodeport-mode dsr`).
//!
//! - **The node the client reached** translates the destination only (the
//!   backend sees the client's address, as with externalTrafficPolicy
//!   Local) and records a forward conntrack entry flagged `DSR`. A packet
//!   that opens the flow (a TCP SYN, every UDP datagram) carries the
//!   frontend (address and port the client reached) to the backend's node in
//!   an IPv4 option of type [`DSR_IP_OPTION`], 8 bytes, inserted after the
//!   fixed header ([`push_xdp`], [`push_tc`]). Later TCP segments go without
//!   it. Replies never come back here, so no reply entry is kept.
//! - **The backend's node** (whatever its own setting) reads the option on
//!   its external hook for a pod of its own ([`record`]) and keeps a reply
//!   entry, backend → client, flagged `REPLY | DSR`. The packet goes on to
//!   the pod with the option in place (Linux passes over option types it
//!   does not know). The pod's replies are translated at `pod_ingress` like
//!   any reply: their source becomes the frontend, and the node sends them
//!   straight to the client.
//!
//! A packet that already has IP options gets no DSR option: a new flow with
//! options is source-NATed as without DSR. So is a flow to a backend outside
//! the cluster CIDR (a hostNetwork pod at its node's address, a host outside
//! the cluster): no Sluice node would read the option for it. The option makes the packet 8
//! bytes longer: a frame that no longer fits the next hop's MTU leaves XDP
//! for the kernel, which fragments it or answers "fragmentation needed".

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_NET,
    helpers::bpf_xdp_adjust_head,
    programs::{TcContext, XdpContext},
};
use sluice_common::{
    ct_flags, scope, settings_flags, CtKey, CtValue, EndpointKey, Event, ServiceKey, DSR_IP_OPTION, DSR_IP_OPTION_LEN,
    PROTO_UDP,
};

use super::{
    conntrack::{self, NO_SERVICE},
    count, csum,
    maps::{CONNTRACK, ENDPOINTS, SERVICES},
    packet::{Flow, ETH_LEN, IP_OFF, IP_OPTIONS_OFF},
};

/// The address and port (host order) a client reached, carried to the
/// backend's node; port 0 (no frontend has it) for none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    /// Frontend address (the node address, LoadBalancer or external IP).
    pub addr: [u8; 4],
    /// Frontend port, host order.
    pub port: u16,
}

impl Frontend {
    /// No frontend.
    pub const NONE: Frontend = Frontend { addr: [0; 4], port: 0 };

    /// Whether this is a frontend (not [`Frontend::NONE`]).
    #[inline(always)]
    pub fn is_some(&self) -> bool {
        self.port != 0
    }
}

/// The IPv4 header with the option: fixed part and option.
const HEADER_LEN: usize = 20 + DSR_IP_OPTION_LEN;

/// Whether new NodePort flows to remote backends use DSR (read once per new flow).
#[inline(always)]
pub fn enabled() -> bool {
    super::setting_on(settings_flags::DSR)
}

/// Whether a packet can take the option: no IP options of its own.
#[inline(always)]
pub fn fits(flow: &Flow) -> bool {
    flow.l4_off == IP_OPTIONS_OFF
}

/// Whether a packet of a DSR flow carries the frontend: one that opens the
/// flow (TCP SYN; every UDP datagram, since any may be the first the
/// backend's node sees).
#[inline(always)]
pub fn carries_frontend(flow: &Flow) -> bool {
    flow.proto == PROTO_UDP || super::opens_connection(flow)
}

/// On the backend's node: keep the reply entry of a DSR flow to a pod of
/// this node whose packet carries its frontend. Returns whether the packet
/// was one (it then goes on to the pod untranslated).
#[inline(always)]
pub fn record(flow: &Flow, now: u64) -> bool {
    let fe = flow.dsr;
    if !fe.is_some() {
        return false;
    }
    if ENDPOINTS.get_ptr(EndpointKey { addr: flow.daddr }).is_none() {
        return false;
    }
    let key = CtKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        pad: [0; 3],
    };
    if let Some(old) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: a pointer into the map value; a racing writer of the
        // same flow writes the same values.
        let old = unsafe { &mut *old };
        if old.flags & ct_flags::DSR != 0 && old.nat_addr == fe.addr && old.nat_port == fe.port {
            // The same flow again (a retransmitted SYN, the next datagram)
            // or a new connection on a reused client port: the entry is
            // fresh and open again (one that closed would expire 10 s
            // after its FIN and leave the new connection's replies
            // untranslated).
            old.flags &= !ct_flags::CLOSING;
            old.last_seen_ns = now;
            return true;
        }
    }
    let reply = CtValue {
        nat_addr: fe.addr,
        nat_port: fe.port,
        flags: ct_flags::REPLY | ct_flags::DSR,
        proto: flow.proto,
        service_id: local_service(&fe, flow.proto),
        backend_id: NO_SERVICE,
        last_seen_ns: now,
        ..CtValue::default()
    };
    if conntrack::insert(&key, &reply, 0).is_ok() {
        count(Event::DsrRecorded);
    }
    true
}

/// This node's id of the service behind a frontend (its NodePort, else a
/// LoadBalancer or external IP), so replies count on it; [`NO_SERVICE`]
/// when this node does not know it.
#[inline(always)]
fn local_service(fe: &Frontend, proto: u8) -> u32 {
    for (addr, frontend_scope) in [([0; 4], scope::NODE_PORT), (fe.addr, scope::EXTERNAL)] {
        let key = ServiceKey {
            addr,
            port: fe.port,
            proto,
            scope: frontend_scope,
        };
        if let Some(s) = SERVICES.get_ptr(key) {
            // SAFETY: map value pointer, read at once.
            return unsafe { (*s).id };
        }
    }
    NO_SERVICE
}

/// The IPv4 header of `fixed` (the 20 bytes without options) with the
/// option for `fe` after it: header length 7 words, total length 8 bytes
/// more, checksum computed anew.
#[inline(always)]
fn header_with_option(fixed: &[u8; 20], fe: &Frontend) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..20].copy_from_slice(fixed);
    h[0] = 0x40 | (HEADER_LEN / 4) as u8;
    let len = u16::from_be_bytes([fixed[2], fixed[3]]).wrapping_add(DSR_IP_OPTION_LEN as u16);
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[10] = 0;
    h[11] = 0;
    h[20] = DSR_IP_OPTION;
    h[21] = DSR_IP_OPTION_LEN as u8;
    h[22..24].copy_from_slice(&fe.port.to_be_bytes());
    h[24..28].copy_from_slice(&fe.addr);
    let check = csum::finish(csum::sum(&h, 0));
    h[10..12].copy_from_slice(&check.to_ne_bytes());
    h
}

/// Insert the option into the frame behind an XDP context (the frame grows
/// at its head: Ethernet and fixed IPv4 header move 8 bytes forward).
#[inline(always)]
pub fn push_xdp(ctx: &XdpContext, fe: &Frontend) -> Option<()> {
    // SAFETY: helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(DSR_IP_OPTION_LEN as i32)) } != 0 {
        return None;
    }
    let (data, data_end) = (ctx.data(), ctx.data_end());
    if data + ETH_LEN + HEADER_LEN > data_end {
        return None;
    }
    // SAFETY: [data, data + ETH_LEN + HEADER_LEN) lies inside the frame
    // (checked just above); the old headers start DSR_IP_OPTION_LEN bytes in.
    unsafe {
        let eth = core::ptr::read_unaligned((data + DSR_IP_OPTION_LEN) as *const [u8; ETH_LEN]);
        let fixed = core::ptr::read_unaligned((data + DSR_IP_OPTION_LEN + IP_OFF) as *const [u8; 20]);
        core::ptr::write_unaligned(data as *mut [u8; ETH_LEN], eth);
        core::ptr::write_unaligned((data + IP_OFF) as *mut [u8; HEADER_LEN], header_with_option(&fixed, fe));
    }
    Some(())
}

/// Insert the option into the packet behind a TC context (room made after
/// the fixed IPv4 header).
#[inline(always)]
pub fn push_tc(ctx: &TcContext, fe: &Frontend) -> Result<(), i64> {
    let fixed: [u8; 20] = ctx.load(IP_OFF)?;
    ctx.adjust_room(DSR_IP_OPTION_LEN as i32, BPF_ADJ_ROOM_NET, 0)?;
    ctx.store(IP_OFF, &header_with_option(&fixed, fe), 0)?;
    Ok(())
}
