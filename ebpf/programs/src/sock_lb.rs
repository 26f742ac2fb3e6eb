//! cgroup/connect4, sendmsg4 and recvmsg4 on the node's cgroup (v2): socket
//! level ClusterIP for the node's own clients (host-network processes,
//! probes). The destination is translated once, when the socket connects or
//! sends, so no packet is ever NATed and no conntrack entry is needed. UDP
//! replies are made to appear from the VIP through `sock_revnat`.
//! Node-local clients have no per-client affinity here (they all share the
//! node's address); a service without backends fails the connect with
//! ECONNREFUSED.
//!
//! Flow events (hook `SOCKET`): one per `connect()` to a ClusterIP
//! (forwarded, or rejected without backends). An unconnected UDP socket
//! passes here on every `sendmsg()`, so it writes one only when a datagram
//! creates its socket's `sock_revnat` entry for the backend picked (the first
//! datagram of each (socket, backend) pair; later ones find the entry), and
//! one per refused datagram as the TC path does per rejected packet. The
//! client's address is what the context knows: none at `connect()` (the
//! socket is usually not bound yet), the source a `sendmsg()` asked for
//! (IP_PKTINFO), else none; userspace shows the node as the client.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use sluice_common::{
    flow_hook, flow_verdict, scope, BackendValue, Event, FlowEvent, ServiceKey, SockRevKey, SockRevValue, PROTO_TCP,
    PROTO_UDP,
};

use crate::lb::{
    self, conntrack,
    maps::{SERVICES, SOCK_REVNAT},
    service,
};

/// Allow the operation (cgroup sock_addr return code).
const ALLOW: i32 = 1;
/// Refuse the operation.
const REFUSE: i32 = 0;
/// errno of a refused connection.
const ECONNREFUSED: i32 = 111;

/// Which entry point asks [`translate`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `connect()`: once per connection.
    Connect,
    /// `sendmsg()` of an unconnected UDP socket, with the source address the
    /// message asked for (`0.0.0.0` when none): once per datagram.
    Sendmsg([u8; 4]),
}

/// Entry point: `connect()` of TCP and UDP sockets.
#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, Op::Connect)
}

/// Entry point: `sendmsg()`/`sendto()` of unconnected UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel's context; `msg_src_ip4` is readable in sendmsg4.
    let src = unsafe { (*ctx.sock_addr).msg_src_ip4 };
    translate(&ctx, Op::Sendmsg(src.to_ne_bytes()))
}

/// Entry point: `recvmsg()` of UDP sockets: backend source → VIP.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel's context for this program type.
    let (ip, port) = unsafe { ((*sa).user_ip4, (*sa).user_port) };
    let key = SockRevKey {
        // SAFETY: helper on this program's context.
        cookie: unsafe { bpf_get_socket_cookie(sa.cast()) },
        addr: ip.to_ne_bytes(),
        port: u16::from_be(port as u16),
        pad: 0,
    };
    if let Some(v) = SOCK_REVNAT.get_ptr(key) {
        // SAFETY: map value pointer, copied at once; context fields are writable here.
        unsafe {
            let v = *v;
            (*sa).user_ip4 = u32::from_ne_bytes(v.addr);
            (*sa).user_port = v.port.to_be() as u32;
        }
    }
    ALLOW
}

#[inline(always)]
fn translate(ctx: &SockAddrContext, op: Op) -> i32 {
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    // SAFETY: the kernel's context for this program type.
    let (ip, port, proto) = unsafe { ((*sa).user_ip4, (*sa).user_port, (*sa).protocol) };
    let proto = proto as u8;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return ALLOW;
    }
    let key = ServiceKey {
        addr: ip.to_ne_bytes(),
        port: u16::from_be(port as u16),
        proto,
        scope: scope::CLUSTER_IP,
    };
    // SAFETY: copied out at once.
    let Some(svc) = SERVICES.get_ptr(key).map(|p| unsafe { *p }) else {
        return ALLOW;
    };
    // SAFETY: plain helper.
    let hash = unsafe { bpf_get_prandom_u32() };
    let Some((backend_id, backend)) = service::maglev_pick(&svc, hash, false) else {
        lb::count(Event::NoBackendReject);
        flow_event(op, &key, svc.id, flow_verdict::REJECTED, Event::NoBackendReject, None);
        // Fail like a rejected connection (ECONNREFUSED), not EPERM.
        // SAFETY: plain helper.
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REFUSE;
    };
    let mut new_flow = op == Op::Connect;
    if proto == PROTO_UDP {
        let rev = SockRevKey {
            // SAFETY: helper on this program's context.
            cookie: unsafe { bpf_get_socket_cookie(sa.cast()) },
            addr: backend.addr,
            port: backend.port,
            pad: 0,
        };
        let frontend = SockRevValue {
            addr: key.addr,
            port: key.port,
            pad: 0,
        };
        // SAFETY: map value pointer, compared at once.
        let known = SOCK_REVNAT
            .get_ptr(rev)
            .is_some_and(|v| unsafe { (*v).addr == frontend.addr && (*v).port == frontend.port });
        // A datagram that finds its entry is one more packet of a known
        // (socket, backend) pair: no write, no flow event.
        if !known {
            new_flow |= SOCK_REVNAT.insert(rev, frontend, 0).is_ok();
        }
    }
    // SAFETY: context fields are writable for these attach types.
    unsafe {
        (*sa).user_ip4 = u32::from_ne_bytes(backend.addr);
        (*sa).user_port = backend.port.to_be() as u32;
    }
    lb::count(Event::SocketLb);
    if new_flow {
        flow_event(
            op,
            &key,
            svc.id,
            flow_verdict::FORWARDED,
            Event::SocketLb,
            Some((backend_id, &backend)),
        );
    }
    ALLOW
}

/// The flow event of a socket's new flow to the ClusterIP `key` (see the
/// module docs for when), unless flow events are off.
#[inline(always)]
fn flow_event(
    op: Op,
    key: &ServiceKey,
    service_id: u32,
    verdict: u8,
    reason: Event,
    backend: Option<(u32, &BackendValue)>,
) {
    if !lb::flow_events_on() {
        return;
    }
    let saddr = match op {
        Op::Connect => [0; 4],
        Op::Sendmsg(src) => src,
    };
    let (backend_id, backend_addr, backend_port) = match backend {
        Some((id, b)) => (id, b.addr, b.port),
        None => (0, [0; 4], 0),
    };
    lb::output_flow_event(&FlowEvent {
        time_ns: conntrack::now(),
        saddr,
        daddr: key.addr,
        backend_addr,
        service_id,
        backend_id,
        dport: key.port,
        backend_port,
        proto: key.proto,
        verdict,
        reason: reason as u8,
        scope: scope::CLUSTER_IP,
        hook: flow_hook::SOCKET,
        ..FlowEvent::default()
    });
}
