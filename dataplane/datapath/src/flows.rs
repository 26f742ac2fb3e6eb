//! Flow events: what the programs write to the `flows` ring buffer for every
//! new flow they balance (packet or socket level), every new pod flow they
//! masquerade out of the cluster, and every new flow they drop or reject
//! (never for packets of established flows), decoded into typed
//! [`FlowRecord`]s.
//!
//! A BPF ring buffer has a single consumer position, so exactly one reader
//! may drain it: the node daemon ([`FlowReader`] on the pinned map), which
//! keeps the recent flows and serves them to `ctl dataplane flows` and other
//! API clients. A second reader would steal events from the first.
//!
//! The programs write only while the switch in `settings` is on
//! ([`crate::Datapath::set_flow_events`]); when the buffer is full (nobody
//! reads) new events are lost, never the packets.

use crate::inspect::event_info;
use crate::{map_err, DatapathError, Frontend, Protocol, ServiceKind, ALL_EVENTS};
use aya::maps::{Map, MapData, RingBuf};
use sluice_common::{flow_flags, flow_hook, flow_verdict, map_names, scope, Event, FlowEvent, PROTO_TCP, PROTO_UDP};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

/// What happened to a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowVerdict {
    /// Balanced to a backend.
    Forwarded,
    /// Dropped.
    Dropped,
    /// Answered with a TCP RST / ICMP port unreachable.
    Rejected,
}

impl FlowVerdict {
    /// `FORWARDED`, `DROPPED` or `REJECTED` (as `hubble observe` spells verdicts).
    pub fn as_str(self) -> &'static str {
        match self {
            FlowVerdict::Forwarded => "FORWARDED",
            FlowVerdict::Dropped => "DROPPED",
            FlowVerdict::Rejected => "REJECTED",
        }
    }

    /// Parse `forwarded`, `dropped` or `rejected` (any case).
    pub fn parse(s: &str) -> Option<FlowVerdict> {
        match s.to_ascii_lowercase().as_str() {
            "forwarded" => Some(FlowVerdict::Forwarded),
            "dropped" => Some(FlowVerdict::Dropped),
            "rejected" => Some(FlowVerdict::Rejected),
            _ => None,
        }
    }
}

/// Where a flow was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowHook {
    /// A packet leaving a pod (TC on its host veth).
    FromPod,
    /// A packet entering the node from outside (XDP or TC on the external interface).
    External,
    /// A socket's `connect()`/`sendmsg()` (socket-level ClusterIP on the node's cgroup).
    Socket,
}

impl FlowHook {
    /// `from-pod`, `external` or `socket` (the served JSON's `hook`).
    pub fn as_str(self) -> &'static str {
        match self {
            FlowHook::FromPod => "from-pod",
            FlowHook::External => "external",
            FlowHook::Socket => "socket",
        }
    }
}

/// One decoded flow event.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    /// `CLOCK_MONOTONIC` nanoseconds of the event (see [`crate::inspect::monotonic_ns`]).
    pub time_ns: u64,
    /// The client; `0.0.0.0:0` for a socket whose address was not known yet
    /// ([`FlowHook::Socket`]: a process of the node).
    pub source: SocketAddrV4,
    /// What the client addressed (ClusterIP, node address and NodePort,
    /// LoadBalancer IP, or any address outside the cluster when masqueraded).
    pub destination: SocketAddrV4,
    /// The frontend that matched (NodePort and hostPort frontends have
    /// address `0.0.0.0`); `None` for a flow no Service balanced (masqueraded).
    pub frontend: Option<Frontend>,
    /// The backend chosen (forwarded flows of a Service only).
    pub backend: Option<SocketAddrV4>,
    /// Service id of the frontend (0 without a frontend).
    pub service_id: u32,
    /// Backend id (forwarded flows only).
    pub backend_id: u32,
    /// Transport protocol.
    pub proto: Protocol,
    /// What happened.
    pub verdict: FlowVerdict,
    /// The datapath event that decided (`NewFlow`, `Rebalanced`, `NoBackendReject`, `SocketLb`, `Masquerade`, ...).
    pub reason: Event,
    /// Where the flow was seen.
    pub hook: FlowHook,
    /// The node's address and port the client's source was translated to,
    /// when the flow left the cluster masqueraded.
    pub masquerade: Option<SocketAddrV4>,
}

impl FlowRecord {
    /// The reason's name (`NewFlow`, `NoBackendReject`, ...).
    pub fn reason_name(&self) -> &'static str {
        event_info(self.reason).0
    }
}

/// Decode one event as the programs wrote it; `None` for a short or unknown record.
pub fn decode(bytes: &[u8]) -> Option<FlowRecord> {
    if bytes.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: FlowEvent is repr(C) plain integers (any bit pattern is valid);
    // the length was checked and read_unaligned needs no alignment.
    let e: FlowEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    record(&e)
}

/// Turn a raw event into a record; `None` for an unknown protocol, verdict,
/// reason or hook.
pub fn record(e: &FlowEvent) -> Option<FlowRecord> {
    let proto = match e.proto {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let verdict = match e.verdict {
        flow_verdict::FORWARDED => FlowVerdict::Forwarded,
        flow_verdict::DROPPED => FlowVerdict::Dropped,
        flow_verdict::REJECTED => FlowVerdict::Rejected,
        _ => return None,
    };
    let reason = *ALL_EVENTS.get(e.reason as usize)?;
    let hook = match e.hook {
        flow_hook::FROM_POD => FlowHook::FromPod,
        flow_hook::EXTERNAL => FlowHook::External,
        flow_hook::SOCKET => FlowHook::Socket,
        _ => return None,
    };
    // `scope::NONE` (a masqueraded flow) and anything unknown: no frontend.
    let kind = match e.scope {
        scope::CLUSTER_IP => Some(ServiceKind::ClusterIp),
        scope::NODE_PORT => Some(ServiceKind::NodePort),
        scope::EXTERNAL => Some(ServiceKind::External),
        scope::HOST_PORT => Some(ServiceKind::HostPort),
        _ => None,
    };
    let frontend = kind.map(|kind| Frontend {
        kind,
        ip: match kind {
            ServiceKind::NodePort | ServiceKind::HostPort => Ipv4Addr::UNSPECIFIED,
            _ => Ipv4Addr::from(e.daddr),
        },
        port: e.dport,
        proto,
    });
    Some(FlowRecord {
        time_ns: e.time_ns,
        source: SocketAddrV4::new(Ipv4Addr::from(e.saddr), e.sport),
        destination: SocketAddrV4::new(Ipv4Addr::from(e.daddr), e.dport),
        backend: (verdict == FlowVerdict::Forwarded && frontend.is_some())
            .then(|| SocketAddrV4::new(Ipv4Addr::from(e.backend_addr), e.backend_port)),
        frontend,
        service_id: e.service_id,
        backend_id: e.backend_id,
        proto,
        verdict,
        reason,
        hook,
        masquerade: (e.flags & flow_flags::MASQUERADED != 0)
            .then(|| SocketAddrV4::new(Ipv4Addr::from(e.masquerade_addr), e.masquerade_port)),
    })
}

/// The one consumer of a node's pinned `flows` ring buffer.
pub struct FlowReader {
    ring: RingBuf<MapData>,
}

impl FlowReader {
    /// Open the ring buffer pinned under `pin_root` (e.g. `/sys/fs/bpf/sluice/<node>`).
    pub fn open(pin_root: &Path) -> Result<FlowReader, DatapathError> {
        let path = pin_root.join(map_names::FLOWS);
        let data = MapData::from_pin(&path).map_err(map_err(map_names::FLOWS))?;
        let map = Map::from_map_data(data).map_err(map_err(map_names::FLOWS))?;
        let ring = RingBuf::try_from(map).map_err(map_err(map_names::FLOWS))?;
        Ok(FlowReader { ring })
    }

    /// Take every event written so far (undecodable ones are skipped).
    pub fn drain(&mut self, out: &mut Vec<FlowRecord>) {
        while let Some(item) = self.ring.next() {
            if let Some(r) = decode(&item) {
                out.push(r);
            }
        }
    }

    /// Wait up to `timeout_ms` for events (`poll` on the ring buffer's fd).
    pub fn wait(&self, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd that lives across the call.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    fn fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(e: &FlowEvent) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) value of plain integers.
        unsafe { std::slice::from_raw_parts((e as *const FlowEvent).cast::<u8>(), std::mem::size_of::<FlowEvent>()) }
            .to_vec()
    }

    #[test]
    fn a_forwarded_nodeport_flow_names_frontend_and_backend() {
        let e = FlowEvent {
            time_ns: 42,
            saddr: [10, 0, 0, 9],
            daddr: [10, 0, 0, 2],
            backend_addr: [10, 244, 0, 5],
            service_id: 3,
            backend_id: 7,
            sport: 40000,
            dport: 30080,
            backend_port: 8080,
            proto: PROTO_TCP,
            verdict: flow_verdict::FORWARDED,
            reason: Event::NewFlow as u8,
            scope: scope::NODE_PORT,
            hook: flow_hook::EXTERNAL,
            ..Default::default()
        };
        let r = decode(&bytes(&e)).expect("decodes");
        assert_eq!(r.source.to_string(), "10.0.0.9:40000");
        assert_eq!(r.destination.to_string(), "10.0.0.2:30080");
        assert_eq!(r.frontend, Some(Frontend::node_port(30080, Protocol::Tcp)));
        assert_eq!(r.backend.map(|b| b.to_string()).as_deref(), Some("10.244.0.5:8080"));
        assert_eq!(
            (r.verdict, r.reason_name(), r.hook.as_str()),
            (FlowVerdict::Forwarded, "NewFlow", "external")
        );
        assert_eq!(r.time_ns, 42);
        assert_eq!(r.masquerade, None);
    }

    #[test]
    fn a_reject_has_no_backend_and_bad_records_are_refused() {
        let e = FlowEvent {
            saddr: [10, 244, 0, 3],
            daddr: [10, 96, 0, 20],
            sport: 5000,
            dport: 80,
            proto: PROTO_UDP,
            verdict: flow_verdict::REJECTED,
            reason: Event::NoBackendReject as u8,
            scope: scope::CLUSTER_IP,
            hook: flow_hook::FROM_POD,
            ..Default::default()
        };
        let r = record(&e).expect("decodes");
        assert_eq!(r.frontend, Some(Frontend::udp(Ipv4Addr::new(10, 96, 0, 20), 80)));
        assert_eq!(r.backend, None);
        assert_eq!(
            (r.verdict.as_str(), r.reason_name(), r.hook.as_str()),
            ("REJECTED", "NoBackendReject", "from-pod")
        );
        assert!(decode(&bytes(&e)[..20]).is_none(), "short record");
        assert!(
            record(&FlowEvent { proto: 1, ..e }).is_none(),
            "ICMP is not a flow here"
        );
        assert!(record(&FlowEvent { reason: 200, ..e }).is_none(), "unknown reason");
        assert!(record(&FlowEvent { hook: 9, ..e }).is_none(), "unknown hook");
        assert_eq!(FlowVerdict::parse("Dropped"), Some(FlowVerdict::Dropped));
        assert_eq!(FlowVerdict::parse("lost"), None);
    }

    #[test]
    fn a_socket_flow_has_an_unknown_client_and_a_backend() {
        let e = FlowEvent {
            daddr: [10, 96, 0, 10],
            backend_addr: [10, 244, 1, 5],
            service_id: 4,
            backend_id: 9,
            dport: 53,
            backend_port: 5353,
            proto: PROTO_UDP,
            verdict: flow_verdict::FORWARDED,
            reason: Event::SocketLb as u8,
            scope: scope::CLUSTER_IP,
            hook: flow_hook::SOCKET,
            ..Default::default()
        };
        let r = record(&e).expect("decodes");
        assert_eq!(r.hook, FlowHook::Socket);
        assert_eq!(r.hook.as_str(), "socket");
        assert_eq!(r.source, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), "not bound yet");
        assert_eq!(r.frontend, Some(Frontend::udp(Ipv4Addr::new(10, 96, 0, 10), 53)));
        assert_eq!(r.backend.map(|b| b.to_string()).as_deref(), Some("10.244.1.5:5353"));
        assert_eq!((r.reason_name(), r.masquerade), ("SocketLb", None));
    }

    #[test]
    fn a_masqueraded_flow_has_no_service_and_names_the_node_address() {
        let e = FlowEvent {
            time_ns: 7,
            saddr: [10, 244, 0, 3],
            daddr: [192, 0, 2, 80],
            sport: 41000,
            dport: 443,
            proto: PROTO_TCP,
            verdict: flow_verdict::FORWARDED,
            reason: Event::Masquerade as u8,
            scope: scope::NONE,
            hook: flow_hook::FROM_POD,
            flags: flow_flags::MASQUERADED,
            masquerade_addr: [10, 0, 0, 2],
            masquerade_port: 41000,
            ..Default::default()
        };
        let r = decode(&bytes(&e)).expect("decodes");
        assert_eq!((r.frontend, r.backend, r.service_id), (None, None, 0));
        assert_eq!(r.destination.to_string(), "192.0.2.80:443");
        assert_eq!(r.masquerade.map(|m| m.to_string()).as_deref(), Some("10.0.0.2:41000"));
        assert_eq!(
            (r.verdict, r.reason_name(), r.hook),
            (FlowVerdict::Forwarded, "Masquerade", FlowHook::FromPod)
        );
        // Without the flag the address means nothing.
        let plain = record(&FlowEvent { flags: 0, ..e }).expect("decodes");
        assert_eq!(plain.masquerade, None);
    }
}
