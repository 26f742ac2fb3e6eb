//! cgroup/connect4, sendmsg4 and recvmsg4 on the node's cgroup (v2): socket
//! level ClusterIP for the node's own clients (host-network processes,
//! probes). The destination is translated once, when the socket connects or
//! sends, so no packet is ever NATed and no conntrack entry is needed. UDP
//! replies are made to appear from the VIP through `sock_revnat`.
//! Node-local clients have no per-client affinity here (they all share the
//! node's address); a service without backends fails the connect with
//! ECONNREFUSED.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use sluice_common::{scope, Event, ServiceKey, SockRevKey, SockRevValue, PROTO_TCP, PROTO_UDP};

use crate::lb::{
    self,
    maps::{SERVICES, SOCK_REVNAT},
    service,
};

/// Allow the operation (cgroup sock_addr return code).
const ALLOW: i32 = 1;
/// Refuse the operation.
const REFUSE: i32 = 0;
/// errno of a refused connection.
const ECONNREFUSED: i32 = 111;

/// Entry point: `connect()` of TCP and UDP sockets.
#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

/// Entry point: `sendmsg()`/`sendto()` of unconnected UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
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
fn translate(ctx: &SockAddrContext) -> i32 {
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
    let Some((_, backend)) = service::maglev_pick(&svc, hash, false) else {
        lb::count(Event::NoBackendReject);
        // Fail like a rejected connection (ECONNREFUSED), not EPERM.
        // SAFETY: plain helper.
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REFUSE;
    };
    if proto == PROTO_UDP {
        let rev = SockRevKey {
            // SAFETY: helper on this program's context.
            cookie: unsafe { bpf_get_socket_cookie(sa.cast()) },
            addr: backend.addr,
            port: backend.port,
            pad: 0,
        };
        let _ = SOCK_REVNAT.insert(
            rev,
            SockRevValue {
                addr: key.addr,
                port: key.port,
                pad: 0,
            },
            0,
        );
    }
    // SAFETY: context fields are writable for these attach types.
    unsafe {
        (*sa).user_ip4 = u32::from_ne_bytes(backend.addr);
        (*sa).user_port = backend.port.to_be() as u32;
    }
    lb::count(Event::SocketLb);
    ALLOW
}
