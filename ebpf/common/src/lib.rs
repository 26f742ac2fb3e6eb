//! Map keys and values shared by the eBPF programs (`ebpf/programs`) and
//! userspace (`sluice-datapath`).
//!
//! This is the ONE place a map layout is declared. Every type is `#[repr(C)]`
//! with explicit padding fields (so the kernel's BTF, the programs and
//! userspace agree byte for byte) and a compile-time size check.
//!
//! Conventions, chosen so `bpftool map dump` is readable:
//! - IPv4 addresses are `[u8; 4]` in network order (`bpftool` prints
//!   `[198,18,0,1]`);
//! - ports are `u16` in *host* order (`bpftool` prints `80`); the programs
//!   convert once per packet;
//! - times are `bpf_ktime_get_ns()` nanoseconds (CLOCK_MONOTONIC).
//!
//! With the `user` feature every type implements `aya::Pod`.
#![no_std]

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Largest Maglev lookup table (entries); a service's own size is a prime ≤ this.
pub const MAGLEV_MAX: usize = 1021;
/// Default Maglev table size (prime). Needs to be ≫ the backend count for an even spread.
pub const MAGLEV_DEFAULT: u32 = 1021;
/// Compiled-in capacity of service-indexed maps (service ids are `0..MAX_SERVICES`).
pub const MAX_SERVICES: u32 = 65_536;
/// Compiled-in capacity of backend-indexed maps (backend ids are `0..MAX_BACKENDS`).
pub const MAX_BACKENDS: u32 = 262_144;
/// Compiled-in capacity of the connection-tracking map (two entries per flow).
pub const MAX_CONNTRACK: u32 = 262_144;

/// Names of the maps, as pinned under the pin root (e.g. `/sys/fs/bpf/sluice/services`).
pub mod map_names {
    /// `ServiceKey` → `ServiceValue`: the frontends (VIP or NodePort).
    pub const SERVICES: &str = "services";
    /// backend id (`u32`) → `BackendValue`.
    pub const BACKENDS: &str = "backends";
    /// `MaglevKey` → `MaglevTable`: each service's lookup tables.
    pub const MAGLEV: &str = "maglev";
    /// `CtKey` → `CtValue`: connection tracking and NAT state (LRU).
    pub const CONNTRACK: &str = "conntrack";
    /// `AffinityKey` → `AffinityValue`: sessionAffinity ClientIP (LRU).
    pub const AFFINITY: &str = "affinity";
    /// LPM trie of `SourceRangeKey` → `u8`: allowed client ranges per service.
    pub const SOURCE_RANGES: &str = "source_ranges";
    /// `NodeAddrKey` → `NodeAddrValue`: this node's addresses (NodePort frontends).
    pub const NODE_ADDRS: &str = "node_addrs";
    /// Per-CPU `TrafficCounter` per service id.
    pub const SERVICE_STATS: &str = "service_stats";
    /// Per-CPU `TrafficCounter` per backend id.
    pub const BACKEND_STATS: &str = "backend_stats";
    /// Per-CPU `u64` per [`Event`](super::Event).
    pub const EVENTS: &str = "events";
    /// `SockRevKey` → `SockRevValue`: socket-level LB, backend → frontend per UDP socket (LRU).
    pub const SOCK_REVNAT: &str = "sock_revnat";
    /// aya-log's ring buffer of log records (pinned so records of adopted programs still arrive).
    pub const LOGS: &str = "AYA_LOGS";
    /// `EndpointKey` → `EndpointValue`: pods on this node, for veth-to-veth delivery.
    pub const ENDPOINTS: &str = "endpoints";
    /// `u32` 0 → `RoutingConfig`: cluster CIDR and the node's masquerade address.
    pub const ROUTING: &str = "routing";
    /// `NodeAddrKey` → `u32` (1): every node's InternalIP; pod traffic to them is never masqueraded.
    pub const CLUSTER_NODES: &str = "cluster_nodes";
    /// `NodeAddrKey` → `AnnounceValue`: LoadBalancer IPs this node answers ARP for.
    pub const ANNOUNCE: &str = "announce";
    /// Ring buffer of [`FlowEvent`](super::FlowEvent)s: new flows (balanced, socket-level, masqueraded),
    /// drops and rejects, read by the node daemon.
    pub const FLOWS: &str = "flows";
    /// `u32` 0 → [`Settings`](super::Settings): runtime switches of the programs.
    pub const SETTINGS: &str = "settings";
    /// Every map, for pinning, adoption and uninstall.
    pub const ALL: &[&str] = &[
        SERVICES,
        BACKENDS,
        MAGLEV,
        CONNTRACK,
        AFFINITY,
        SOURCE_RANGES,
        NODE_ADDRS,
        SERVICE_STATS,
        BACKEND_STATS,
        EVENTS,
        SOCK_REVNAT,
        LOGS,
        ENDPOINTS,
        ROUTING,
        CLUSTER_NODES,
        ANNOUNCE,
        FLOWS,
        SETTINGS,
    ];
}

/// Names of the programs in the object, one per attach point.
pub mod program_names {
    /// TC ingress on a pod's host-side veth: packets *from* the pod (ClusterIP DNAT, replies of local backends).
    pub const POD_INGRESS: &str = "pod_ingress";
    /// TC egress on a pod's host-side veth: packets *to* the pod (reverse NAT of service replies).
    pub const POD_EGRESS: &str = "pod_egress";
    /// XDP on the node's external interface: NodePort and replies of remote backends.
    pub const NODEPORT_XDP: &str = "nodeport_xdp";
    /// TC ingress on the node's external interface: the NodePort logic where XDP is not wanted.
    pub const NODEPORT_TC: &str = "nodeport_tc";
    /// A trivial XDP program that bounces every frame (the benchmark's ceiling).
    pub const BOUNCE_XDP: &str = "bounce_xdp";
    /// A no-op XDP program (benchmark plumbing for veth peers).
    pub const PASS_XDP: &str = "pass_xdp";
    /// cgroup connect4: socket-level ClusterIP for the node's own clients (TCP, connected UDP).
    pub const SOCK_CONNECT4: &str = "sock_connect4";
    /// cgroup sendmsg4: socket-level ClusterIP for unconnected UDP.
    pub const SOCK_SENDMSG4: &str = "sock_sendmsg4";
    /// cgroup recvmsg4: UDP replies appear to come from the ClusterIP.
    pub const SOCK_RECVMSG4: &str = "sock_recvmsg4";
}

/// Which kind of frontend a [`ServiceKey`] is.
pub mod scope {
    /// A ClusterIP: `addr` is the virtual IP.
    pub const CLUSTER_IP: u8 = 0;
    /// A NodePort: `addr` is `0.0.0.0` and matches every address in `node_addrs`.
    pub const NODE_PORT: u8 = 1;
    /// An address from outside the cluster: a LoadBalancer ingress IP or one
    /// of `spec.externalIPs`; `addr` is that address (reached from outside
    /// on the external interface and from pods).
    pub const EXTERNAL: u8 = 2;
    /// A pod's `hostPort`: `addr` is `0.0.0.0` and matches every address in
    /// `node_addrs` (a NodePort frontend is looked up first).
    pub const HOST_PORT: u8 = 3;
    /// No frontend: only in a [`FlowEvent`](super::FlowEvent) of a flow no
    /// Service balanced (a masqueraded one), never in a [`ServiceKey`](super::ServiceKey).
    pub const NONE: u8 = u8::MAX;
}

/// A service frontend: (address, port, protocol, scope).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    /// VIP for a ClusterIP, the address for an external frontend, `0.0.0.0`
    /// for a NodePort or a hostPort.
    pub addr: [u8; 4],
    /// Service port (ClusterIP) or node port, host order.
    pub port: u16,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub proto: u8,
    /// One of [`scope`].
    pub scope: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 8);

/// Flags of a [`ServiceValue`].
pub mod service_flags {
    /// sessionAffinity: ClientIP.
    pub const AFFINITY: u8 = 1;
    /// externalTrafficPolicy: Local (NodePort): local backends only, client IP kept.
    pub const EXTERNAL_LOCAL: u8 = 2;
    /// Clients must match the service's `source_ranges` entries.
    pub const SOURCE_RANGES: u8 = 4;
}

/// What the programs need to balance one frontend.
///
/// Userspace writes the backends and the Maglev table of a new revision into
/// the inactive `slot` first and then replaces this value (one atomic map
/// update), so no packet sees a half-written service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceValue {
    /// Service id: index of `service_stats`, part of `MaglevKey` and `AffinityKey`.
    pub id: u32,
    /// Backends that take new flows (0: reject new flows with RST / ICMP unreachable).
    pub backend_count: u16,
    /// Of those, backends on this node (used with [`service_flags::EXTERNAL_LOCAL`]).
    pub local_backend_count: u16,
    /// Active Maglev slot (0 or 1); [`MaglevKey::slot`] adds [`MAGLEV_LOCAL`] for the local-only table.
    pub slot: u8,
    /// [`service_flags`].
    pub flags: u8,
    /// Explicit padding.
    pub pad: u16,
    /// Number of entries used in the Maglev tables (a prime ≤ [`MAGLEV_MAX`]).
    pub maglev_size: u32,
    /// sessionAffinity timeout in seconds.
    pub affinity_timeout_s: u32,
}
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 20);

/// Added to a slot number for the table of node-local backends only.
pub const MAGLEV_LOCAL: u32 = 2;

/// Key of one Maglev lookup table: (service id, slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MaglevKey {
    /// The service's id.
    pub service_id: u32,
    /// 0 or 1 (all backends), 2 or 3 (node-local backends).
    pub slot: u32,
}
const _: () = assert!(core::mem::size_of::<MaglevKey>() == 8);

/// A Maglev lookup table: entry `hash % maglev_size` is the backend id of a new flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    /// Backend ids; only the first `maglev_size` entries are used.
    pub backend_ids: [u32; MAGLEV_MAX],
    /// Explicit padding to 8-byte alignment.
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<MaglevTable>() == 4 * (MAGLEV_MAX + 1));

/// Flags of a [`BackendValue`].
pub mod backend_flags {
    /// The backend runs on this node.
    pub const LOCAL: u8 = 1;
    /// The backend is terminating: it keeps its flows but gets no new ones.
    pub const TERMINATING: u8 = 2;
}

/// One backend (an endpoint address and port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BackendValue {
    /// Endpoint address.
    pub addr: [u8; 4],
    /// Endpoint port, host order.
    pub port: u16,
    /// [`backend_flags`].
    pub flags: u8,
    /// Explicit padding.
    pub pad: u8,
    /// The service this backend belongs to (lets userspace rebuild its state on restart).
    pub service_id: u32,
}
const _: () = assert!(core::mem::size_of::<BackendValue>() == 12);

/// A connection-tracking key: the 5-tuple of a packet as it arrives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtKey {
    /// Source address.
    pub saddr: [u8; 4],
    /// Destination address.
    pub daddr: [u8; 4],
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding.
    pub pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 16);

/// Flags of a [`CtValue`].
pub mod ct_flags {
    /// This entry is keyed by the *reply* tuple: rewrite the source back to the frontend.
    pub const REPLY: u8 = 1;
    /// The flow is source-NATed (NodePort to a remote backend).
    pub const SNAT: u8 = 2;
    /// A FIN or RST was seen: the short closing timeout applies.
    pub const CLOSING: u8 = 4;
    /// Direct server return. Forward entry (on the node that balanced a
    /// NodePort flow to a remote backend): no source NAT, and each SYN and
    /// UDP datagram carries the frontend to the backend's node in a
    /// [`DSR_IP_OPTION`]. Reply entry (on the backend's node, keyed by
    /// backend → client): rewrite the source to the frontend and send the
    /// reply straight to the client.
    pub const DSR: u8 = 8;
}

/// IPv4 option type carrying a direct-server-return flow's frontend to the
/// backend's node: 158 (copied, class 0, number 30), an RFC 4727
/// experimental value, which the Linux stack passes over untouched.
pub const DSR_IP_OPTION: u8 = 158;
/// Length of that option: type, length, frontend port (network order),
/// frontend address.
pub const DSR_IP_OPTION_LEN: usize = 8;

/// Connection-tracking and NAT state of one direction of a flow.
///
/// Forward entry (keyed by client → frontend): rewrite the destination to
/// (`nat_addr`, `nat_port`) and, with [`ct_flags::SNAT`], the source to
/// (`snat_addr`, `snat_port`).
/// Reply entry (keyed by backend → client or backend → node): rewrite the
/// source to (`nat_addr`, `nat_port`) = the frontend and, with SNAT, the
/// destination to (`snat_addr`, `snat_port`) = the original client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtValue {
    /// Forward: backend address. Reply: frontend address.
    pub nat_addr: [u8; 4],
    /// Source-NAT address (see the type docs).
    pub snat_addr: [u8; 4],
    /// Forward: backend port. Reply: frontend port. Host order.
    pub nat_port: u16,
    /// Source-NAT port (see the type docs). Host order.
    pub snat_port: u16,
    /// [`ct_flags`].
    pub flags: u8,
    /// IP protocol of the flow (picks the idle timeout).
    pub proto: u8,
    /// Explicit padding.
    pub pad: [u8; 2],
    /// The service this flow was balanced by.
    pub service_id: u32,
    /// The backend chosen for this flow.
    pub backend_id: u32,
    /// Explicit padding.
    pub pad2: u32,
    /// Last packet seen, `bpf_ktime_get_ns()`.
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<CtValue>() == 40);

/// Conntrack timeout of an established TCP flow.
pub const CT_TCP_TIMEOUT_NS: u64 = 6 * 3600 * 1_000_000_000;
/// Conntrack timeout of a TCP flow after FIN or RST.
pub const CT_CLOSING_TIMEOUT_NS: u64 = 10 * 1_000_000_000;
/// Conntrack timeout of a UDP flow.
pub const CT_UDP_TIMEOUT_NS: u64 = 60 * 1_000_000_000;

/// sessionAffinity key: (client address, service id).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AffinityKey {
    /// The client's address.
    pub client: [u8; 4],
    /// The service's id.
    pub service_id: u32,
}
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 8);

/// sessionAffinity value: the backend a client sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AffinityValue {
    /// The chosen backend.
    pub backend_id: u32,
    /// Explicit padding.
    pub pad: u32,
    /// Last new flow of this client, `bpf_ktime_get_ns()`.
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);

/// Data of a source-range LPM key: (service id, client address).
///
/// The service id is big-endian so that the first 32 prefix bits select the
/// service: prefix length = 32 + the range's mask length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceRangeKey {
    /// Service id, big-endian bytes.
    pub service_id_be: [u8; 4],
    /// Range address.
    pub addr: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<SourceRangeKey>() == 8);

/// Key of `node_addrs`: an address of this node that NodePort frontends answer on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodeAddrKey {
    /// The node address.
    pub addr: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<NodeAddrKey>() == 4);

/// Value of `node_addrs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeAddrValue {
    /// Interface the address lives on.
    pub ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<NodeAddrValue>() == 4);

/// Packet, byte and new-flow counter (per CPU in the maps; userspace sums the CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficCounter {
    /// Packets.
    pub packets: u64,
    /// Bytes (IP length).
    pub bytes: u64,
    /// New flows balanced (conntrack entries created; rebalanced SYNs count again).
    pub flows: u64,
}
const _: () = assert!(core::mem::size_of::<TrafficCounter>() == 24);

impl TrafficCounter {
    /// The sum of two counters (per-CPU values added up).
    pub const fn add(self, other: TrafficCounter) -> TrafficCounter {
        TrafficCounter {
            packets: self.packets + other.packets,
            bytes: self.bytes + other.bytes,
            flows: self.flows + other.flows,
        }
    }
}

/// Datapath events counted in the `events` map (index = discriminant).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new flow was balanced to a backend (destination NAT).
    NewFlow = 0,
    /// A packet of a tracked flow was translated.
    TrackedFlow = 1,
    /// A reply was reverse-translated.
    ReverseNat = 2,
    /// A new flow to a service without backends was rejected (TCP RST / ICMP unreachable).
    NoBackendReject = 3,
    /// A client outside the service's source ranges was dropped.
    SourceDenied = 4,
    /// A truncated or malformed packet was passed untouched.
    Malformed = 5,
    /// NodePort with externalTrafficPolicy Local and no local backend: dropped.
    NoLocalBackend = 6,
    /// Source-NAT port allocation failed (dropped).
    SnatExhausted = 7,
    /// A node-local socket's destination was translated at connect/sendmsg time.
    SocketLb = 8,
    /// A packet from a pod was delivered straight into a pod on this node (bpf_redirect_peer).
    RedirectPeer = 9,
    /// A new flow from a pod to outside the cluster was source-NATed to the node's address.
    Masquerade = 10,
    /// An ARP request for an announced LoadBalancer IP was answered.
    ArpReply = 11,
    /// A TCP SYN matched a flow whose backend is gone, or that was closing
    /// (the client reused the port): balanced again as a new flow.
    Rebalanced = 12,
    /// A flow event was lost: the `flows` ring buffer was full (its reader
    /// fell behind). The flow itself was handled and counted.
    FlowEventLost = 13,
    /// A translated frame left by the interface it came in on, from XDP
    /// (XDP_TX after a FIB lookup): a NodePort flow to a backend on another
    /// node, or a reply going back to the client.
    XdpTx = 14,
    /// A translated frame was redirected from XDP: into a pod of this node
    /// (its veth), or out of another interface after a FIB lookup.
    XdpRedirect = 15,
    /// A translated frame went on through the kernel's stack although XDP
    /// forwarding is on: no neighbour entry for the next hop yet, a route
    /// XDP cannot take (local, unreachable, MTU), or a TTL about to expire.
    XdpToKernel = 16,
    /// A NodePort frame went to a remote backend by direct server return:
    /// destination NAT only, the frontend in a [`DSR_IP_OPTION`] when the
    /// packet opens the flow (TCP SYN, every UDP datagram).
    DsrForward = 17,
    /// A backend's node read the frontend of a direct-server-return flow
    /// from its IP option: its replies leave from here, source rewritten
    /// to the frontend, straight to the client.
    DsrRecorded = 18,
}
/// Number of [`Event`] kinds (size of the `events` map).
pub const EVENT_COUNT: u32 = 19;

/// Socket-level reverse translation key: (socket cookie, backend address and port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockRevKey {
    /// `bpf_get_socket_cookie()` of the client socket.
    pub cookie: u64,
    /// Backend address.
    pub addr: [u8; 4],
    /// Backend port, host order.
    pub port: u16,
    /// Explicit padding.
    pub pad: u16,
}
const _: () = assert!(core::mem::size_of::<SockRevKey>() == 16);

/// Socket-level reverse translation value: the frontend the socket addressed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockRevValue {
    /// Frontend (VIP) address.
    pub addr: [u8; 4],
    /// Frontend port, host order.
    pub port: u16,
    /// Explicit padding.
    pub pad: u16,
}
const _: () = assert!(core::mem::size_of::<SockRevValue>() == 8);

/// Key of `endpoints`: a pod address on this node.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    /// The pod's IPv4 address.
    pub addr: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<EndpointKey>() == 4);

/// A pod on this node: where to put a packet addressed to it.
///
/// `pod_ingress` rewrites the Ethernet header (destination `pod_mac`, source
/// `host_mac`, as if the node had routed it) and hands the packet to the
/// peer of `ifindex` with `bpf_redirect_peer`: no bridge, no kernel routing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EndpointValue {
    /// Index of the pod's host-side veth (in the node's network namespace).
    pub ifindex: u32,
    /// MAC of the pod's interface.
    pub pod_mac: [u8; 6],
    /// MAC of the host-side veth (the pod's gateway).
    pub host_mac: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<EndpointValue>() == 16);

/// Flags of a [`RoutingConfig`].
pub mod routing_flags {
    /// Source-NAT pod traffic leaving the cluster CIDR to `masquerade_addr`.
    pub const MASQUERADE: u32 = 1;
}

/// The node's routing settings (entry 0 of the `routing` array).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RoutingConfig {
    /// Cluster pod CIDR address (every node's podCIDR lies inside).
    pub cluster_cidr: [u8; 4],
    /// Its netmask (e.g. `[255,255,0,0]`).
    pub cluster_mask: [u8; 4],
    /// Source address for pod traffic leaving the cluster (the node's InternalIP).
    pub masquerade_addr: [u8; 4],
    /// [`routing_flags`].
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<RoutingConfig>() == 16);

/// Value of `announce`: how this node answers ARP for a LoadBalancer IP
/// (MetalLB's L2 mode, from eBPF: one node per IP answers, the others stay silent).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AnnounceValue {
    /// Interface the IP is announced on (the external interface).
    pub ifindex: u32,
    /// Its MAC: the sender hardware address of the ARP reply.
    pub mac: [u8; 6],
    /// Explicit padding.
    pub pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<AnnounceValue>() == 12);

/// What happened to the flow of a [`FlowEvent`].
pub mod flow_verdict {
    /// Balanced to a backend (a new conntrack entry).
    pub const FORWARDED: u8 = 0;
    /// Dropped (source range, policy Local without a local backend, no SNAT port).
    pub const DROPPED: u8 = 1;
    /// Answered with a TCP RST / ICMP port unreachable (a Service without endpoints).
    pub const REJECTED: u8 = 2;
}

/// Where a [`FlowEvent`] was seen.
pub mod flow_hook {
    /// Leaving a pod (TC ingress of its host veth).
    pub const FROM_POD: u8 = 0;
    /// Entering the node from outside (XDP or TC on the external interface).
    pub const EXTERNAL: u8 = 1;
    /// A socket's `connect()` or `sendmsg()` (cgroup socket-level ClusterIP):
    /// the client is a process of the node whose address is often not known
    /// yet (an unbound socket), so `saddr` and `sport` may be zero.
    pub const SOCKET: u8 = 2;
}

/// Flags of a [`FlowEvent`].
pub mod flow_flags {
    /// The client's source was translated to the node's address
    /// (`masquerade_addr`, `masquerade_port`): a pod flow leaving the cluster.
    pub const MASQUERADED: u8 = 1;
}

/// One event of the `flows` ring buffer: a new flow balanced to a backend, a
/// new flow leaving the cluster masqueraded, or a new flow dropped or
/// rejected. Never written for packets of established flows, so its cost is
/// per connection, not per packet; switched off with
/// [`settings_flags::FLOW_EVENTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when it happened.
    pub time_ns: u64,
    /// Client address (`0.0.0.0` when a socket's address is not known yet, hook [`flow_hook::SOCKET`]).
    pub saddr: [u8; 4],
    /// Destination the client addressed (ClusterIP, node address, LoadBalancer or external IP).
    pub daddr: [u8; 4],
    /// The backend chosen (`0.0.0.0` when dropped or rejected).
    pub backend_addr: [u8; 4],
    /// The frontend's service id (0 without a Service: a masqueraded flow).
    pub service_id: u32,
    /// The backend's id (0 when dropped or rejected).
    pub backend_id: u32,
    /// Client port, host order (0 when not known, hook [`flow_hook::SOCKET`]).
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// Backend port, host order (0 when dropped or rejected).
    pub backend_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// One of [`flow_verdict`].
    pub verdict: u8,
    /// The [`Event`] that decided: `NewFlow`, `Rebalanced`, `NoBackendReject`,
    /// `SourceDenied`, `SocketLb`, `Masquerade`, ...
    pub reason: u8,
    /// The frontend's [`scope`] ([`scope::NONE`] without a Service).
    pub scope: u8,
    /// One of [`flow_hook`].
    pub hook: u8,
    /// [`flow_flags`].
    pub flags: u8,
    /// With [`flow_flags::MASQUERADED`]: the client's new source address (the node's).
    pub masquerade_addr: [u8; 4],
    /// With [`flow_flags::MASQUERADED`]: the client's new source port, host order.
    pub masquerade_port: u16,
    /// Explicit padding.
    pub pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 48);

/// Bytes of the `flows` ring buffer (a power of two of pages): about 9,000
/// events (each takes its 48 bytes plus an 8-byte ring header).
pub const FLOWS_RING_BYTES: u32 = 512 * 1024;

/// Flags of [`Settings`].
pub mod settings_flags {
    /// Write [`FlowEvent`](super::FlowEvent)s to the `flows` ring buffer.
    pub const FLOW_EVENTS: u32 = 1;
    /// Forward frames the external XDP program translated from XDP itself
    /// (XDP_TX, `bpf_redirect` into a local pod's veth or out of another
    /// interface) instead of handing them to the kernel's stack. Every veth
    /// such a frame enters must accept XDP frames (GRO on, or an XDP program).
    pub const XDP_FORWARD: u32 = 2;
    /// NodePort (and LoadBalancer/external IP) flows to a backend on another
    /// node use direct server return instead of source NAT: the backend sees
    /// the client's address and its node answers the client itself. Every
    /// node reads the option whatever its own setting.
    pub const DSR: u32 = 4;
}

/// Runtime switches of the programs (entry 0 of the `settings` array), set by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// [`settings_flags`].
    pub flags: u32,
    /// Explicit padding.
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<Settings>() == 8);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are #[repr(C)], Copy, made only of integers and
    // explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for MaglevKey {}
    unsafe impl aya::Pod for MaglevTable {}
    unsafe impl aya::Pod for BackendValue {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for SourceRangeKey {}
    unsafe impl aya::Pod for NodeAddrKey {}
    unsafe impl aya::Pod for NodeAddrValue {}
    unsafe impl aya::Pod for TrafficCounter {}
    unsafe impl aya::Pod for SockRevKey {}
    unsafe impl aya::Pod for SockRevValue {}
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for EndpointValue {}
    unsafe impl aya::Pod for RoutingConfig {}
    unsafe impl aya::Pod for AnnounceValue {}
    unsafe impl aya::Pod for FlowEvent {}
    unsafe impl aya::Pod for Settings {}
}
