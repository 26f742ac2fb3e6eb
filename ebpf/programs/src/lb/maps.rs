//! Every map of the data plane, declared once, as BTF maps so `bpftool map
//! dump` prints named fields. Userspace pins them by name under the pin root
//! (see `sluice_common::map_names`); key and value layouts live in
//! `sluice-common`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use sluice_common::{
    AffinityKey, AffinityValue, AnnounceValue, BackendValue, CtKey, CtValue, EndpointKey, EndpointValue, FlowEvent,
    MaglevKey, MaglevTable, NodeAddrKey, NodeAddrValue, RoutingConfig, ServiceKey, ServiceValue, Settings, SockRevKey,
    SockRevValue, SourceRangeKey, TrafficCounter, EVENT_COUNT, FLOWS_RING_BYTES, MAX_BACKENDS, MAX_CONNTRACK,
    MAX_SERVICES,
};

const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

/// Frontends: (VIP or 0.0.0.0, port, proto, scope) → service.
#[btf_map(name = "services")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue, { MAX_SERVICES as usize }> = HashMap::new();

/// Backend id → endpoint.
#[btf_map(name = "backends")]
pub static BACKENDS: HashMap<u32, BackendValue, { MAX_BACKENDS as usize }> = HashMap::new();

/// (service id, slot) → Maglev lookup table. Not preallocated: tables are 4 KiB.
#[btf_map(name = "maglev")]
pub static MAGLEV: HashMap<MaglevKey, MaglevTable, { 4 * MAX_SERVICES as usize }, NO_PREALLOC> = HashMap::new();

/// Connection tracking and NAT state, both directions of every flow.
#[btf_map(name = "conntrack")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue, { MAX_CONNTRACK as usize }> = LruHashMap::new();

/// sessionAffinity: (client, service) → backend.
#[btf_map(name = "affinity")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue, 65536> = LruHashMap::new();

/// Allowed client ranges per service (loadBalancerSourceRanges).
#[btf_map(name = "source_ranges")]
pub static SOURCE_RANGES: LpmTrie<SourceRangeKey, u8, 16384> = LpmTrie::new();

/// Addresses of this node that NodePort frontends answer on.
#[btf_map(name = "node_addrs")]
pub static NODE_ADDRS: HashMap<NodeAddrKey, NodeAddrValue, 64> = HashMap::new();

/// Per-CPU packet/byte counters per service id.
#[btf_map(name = "service_stats")]
pub static SERVICE_STATS: PerCpuArray<TrafficCounter, { MAX_SERVICES as usize }> = PerCpuArray::new();

/// Per-CPU packet/byte counters per backend id.
#[btf_map(name = "backend_stats")]
pub static BACKEND_STATS: PerCpuArray<TrafficCounter, { MAX_BACKENDS as usize }> = PerCpuArray::new();

/// Per-CPU event counters, indexed by `sluice_common::Event`.
#[btf_map(name = "events")]
pub static EVENTS: PerCpuArray<u64, { EVENT_COUNT as usize }> = PerCpuArray::new();

/// Socket-level LB: (socket, backend) → frontend, to make UDP replies come from the VIP.
#[btf_map(name = "sock_revnat")]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevValue, 65536> = LruHashMap::new();

/// Pods on this node: address → host veth and MACs (veth-to-veth delivery).
#[btf_map(name = "endpoints")]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointValue, 4096> = HashMap::new();

/// The node's routing settings (entry 0): cluster CIDR, masquerade address.
#[btf_map(name = "routing")]
pub static ROUTING: Array<RoutingConfig, 1> = Array::new();

/// Every node's InternalIP: pod traffic to a node is routed as is, never
/// masqueraded (a node's NodePort SNAT flows need the pod's replies untouched).
#[btf_map(name = "cluster_nodes")]
pub static CLUSTER_NODES: HashMap<NodeAddrKey, u32, 4096> = HashMap::new();

/// LoadBalancer IPs this node answers ARP for, with the interface and MAC to answer with.
#[btf_map(name = "announce")]
pub static ANNOUNCE: HashMap<NodeAddrKey, AnnounceValue, 4096> = HashMap::new();

/// Flow events (new flows, drops, rejects) for the node daemon; never one per
/// packet of an established flow.
#[btf_map(name = "flows")]
pub static FLOWS: RingBuf<FlowEvent, { FLOWS_RING_BYTES as usize }> = RingBuf::new();

/// Runtime switches (entry 0), e.g. whether flow events are written.
#[btf_map(name = "settings")]
pub static SETTINGS: Array<Settings, 1> = Array::new();
