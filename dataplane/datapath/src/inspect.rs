//! Read-only inspection of a node's pinned datapath maps, for
//! `ctl dataplane` and anything else that wants to *look* at the data plane.
//!
//! [`Inspector::open`] opens the maps pinned under a pin root (one node:
//! `/sys/fs/bpf/sluice/<node>`) without loading the eBPF object, so it works
//! beside a running node daemon and never changes what it sees: no map is
//! written, no program attached, no pin created or removed. A
//! [`Inspector::snapshot`] is one pass over the maps turned into typed rows:
//! frontends with their counters, backends with their share of the
//! frontend's packets, conntrack entries with their age, and the event
//! counters by name. Counters are per-CPU in the kernel and summed here.
//!
//! The maps are read while the programs keep writing them, so a snapshot is
//! not atomic: a flow may appear in conntrack a moment before its counters
//! grow, exactly as with `bpftool map dump`.

use crate::{map_err, DatapathError, Frontend, ALL_EVENTS};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use sluice_common::{
    backend_flags, ct_flags, map_names, service_flags, BackendValue, CtKey, CtValue, Event, ServiceKey, ServiceValue,
    TrafficCounter, PROTO_TCP, PROTO_UDP,
};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// Where node daemons pin their maps: one directory per node below it.
pub const PIN_BASE: &str = "/sys/fs/bpf/sluice";

/// The pin roots below `base` that hold a datapath, as (node name, path),
/// sorted by name. `base` itself counts (named `""`) when it holds one
/// directly (a datapath opened with the default pin root).
pub fn node_pin_roots(base: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if base.join(map_names::SERVICES).exists() {
        out.push((String::new(), base.to_path_buf()));
    }
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && path.join(map_names::SERVICES).exists() {
            out.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    out.sort();
    out
}

/// One frontend as the `services` map holds it, with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRow {
    /// Service id (index of `service_stats`).
    pub id: u32,
    /// The frontend (kind, address, port, protocol).
    pub frontend: Frontend,
    /// Backends that take new flows.
    pub backend_count: u16,
    /// Of those, on this node.
    pub local_backend_count: u16,
    /// Names of the set [`service_flags`] (`affinity`, `external-local`, `source-ranges`).
    pub flags: Vec<&'static str>,
    /// Maglev table size.
    pub maglev_size: u32,
    /// sessionAffinity timeout in seconds (0 without affinity).
    pub affinity_timeout_s: u32,
    /// Packets and bytes of all the frontend's flows, both directions.
    pub traffic: TrafficCounter,
}

/// One backend of a frontend, with its counters.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendRow {
    /// Backend id (index of `backend_stats`).
    pub id: u32,
    /// Id of the service this backend belongs to.
    pub service_id: u32,
    /// That service's frontend, when it is still in the `services` map.
    pub frontend: Option<Frontend>,
    /// Endpoint address and port.
    pub addr: SocketAddrV4,
    /// The endpoint runs on this node.
    pub local: bool,
    /// The endpoint is terminating (keeps its flows, gets no new ones).
    pub terminating: bool,
    /// Packets and bytes of this backend's flows.
    pub traffic: TrafficCounter,
    /// This backend's part of its service's packets (0.0..=1.0; 0 when the service has none).
    pub share: f64,
}

/// Direction of a conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDirection {
    /// Keyed by client → frontend: the destination is rewritten to the backend.
    Forward,
    /// Keyed by backend → client: the source is rewritten back to the frontend.
    Reply,
}

/// One conntrack entry (one direction of a flow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackRow {
    /// `tcp`, `udp` or the protocol number.
    pub proto: String,
    /// Source of the packets this entry matches.
    pub source: SocketAddrV4,
    /// Their destination.
    pub destination: SocketAddrV4,
    /// Forward or reply entry.
    pub direction: CtDirection,
    /// Forward: the backend the destination becomes. Reply: the frontend the source becomes.
    pub nat: SocketAddrV4,
    /// The source-NAT address of the flow, when it is source-NATed.
    pub snat: Option<SocketAddrV4>,
    /// A FIN or RST was seen.
    pub closing: bool,
    /// The service that balanced the flow.
    pub service_id: u32,
    /// The backend chosen for it.
    pub backend_id: u32,
    /// Time since its last packet, in nanoseconds (0 if the clock is behind the entry).
    pub idle_ns: u64,
}

/// One event counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// The event.
    pub event: Event,
    /// Its name (the variant's, e.g. `NoBackendReject`).
    pub name: &'static str,
    /// The packet was dropped or rejected (not forwarded).
    pub drop: bool,
    /// What it means.
    pub description: &'static str,
    /// Count, summed over CPUs.
    pub count: u64,
}

/// One read of every inspected map.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `CLOCK_MONOTONIC` when the snapshot was taken, nanoseconds (the clock of `last_seen_ns`).
    pub taken_ns: u64,
    /// Frontends, sorted by kind, address, port.
    pub services: Vec<ServiceRow>,
    /// Backends, sorted by service id and address.
    pub backends: Vec<BackendRow>,
    /// Conntrack entries, sorted by protocol and tuple.
    pub conntrack: Vec<ConntrackRow>,
    /// Every event counter, in [`Event`] order.
    pub events: Vec<EventRow>,
}

/// Name, drop-or-not and meaning of an event.
pub fn event_info(e: Event) -> (&'static str, bool, &'static str) {
    match e {
        Event::NewFlow => ("NewFlow", false, "new flow balanced to a backend"),
        Event::TrackedFlow => ("TrackedFlow", false, "packet of a tracked flow translated"),
        Event::ReverseNat => ("ReverseNat", false, "reply translated back to the frontend"),
        Event::NoBackendReject => (
            "NoBackendReject",
            true,
            "new flow to a service without endpoints rejected (TCP RST / ICMP unreachable)",
        ),
        Event::SourceDenied => ("SourceDenied", true, "client outside loadBalancerSourceRanges dropped"),
        Event::Malformed => ("Malformed", false, "truncated or malformed packet passed untouched"),
        Event::NoLocalBackend => (
            "NoLocalBackend",
            true,
            "externalTrafficPolicy Local without a local endpoint: dropped",
        ),
        Event::SnatExhausted => ("SnatExhausted", true, "no free source-NAT port: dropped"),
        Event::SocketLb => ("SocketLb", false, "node socket translated at connect/sendmsg"),
        Event::RedirectPeer => ("RedirectPeer", false, "delivered straight into a pod on this node"),
        Event::Masquerade => ("Masquerade", false, "pod flow leaving the cluster source-NATed"),
        Event::ArpReply => ("ArpReply", false, "ARP for an announced LoadBalancer IP answered"),
        Event::Rebalanced => (
            "Rebalanced",
            false,
            "SYN on a closing flow or a gone backend balanced again",
        ),
        Event::FlowEventLost => (
            "FlowEventLost",
            false,
            "flow event lost: the flows ring buffer was full (the flow was handled)",
        ),
        Event::XdpTx => (
            "XdpTx",
            false,
            "translated frame sent back out of its interface from XDP (NodePort fast path)",
        ),
        Event::XdpRedirect => (
            "XdpRedirect",
            false,
            "translated frame redirected from XDP into a local pod or another interface (fast path)",
        ),
        Event::XdpToKernel => (
            "XdpToKernel",
            false,
            "translated frame left to the kernel: no neighbour yet, local route, MTU or TTL",
        ),
        Event::DsrForward => (
            "DsrForward",
            false,
            "NodePort packet to a remote backend by direct server return (frontend in an IP option)",
        ),
        Event::DsrRecorded => (
            "DsrRecorded",
            false,
            "direct-server-return flow recorded for a local pod: its replies go straight to the client",
        ),
    }
}

/// Names of the set service flags.
pub fn service_flag_names(flags: u8) -> Vec<&'static str> {
    [
        (service_flags::AFFINITY, "affinity"),
        (service_flags::EXTERNAL_LOCAL, "external-local"),
        (service_flags::SOURCE_RANGES, "source-ranges"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// The part `part` is of `total` (0.0 when `total` is 0).
pub fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// The current `CLOCK_MONOTONIC` time in nanoseconds (what `bpf_ktime_get_ns` returns).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "tcp".to_string(),
        PROTO_UDP => "udp".to_string(),
        other => other.to_string(),
    }
}

fn sum(values: &[TrafficCounter]) -> TrafficCounter {
    values.iter().fold(TrafficCounter::default(), |a, c| a.add(*c))
}

/// Turn one conntrack entry into a row.
pub fn conntrack_row(k: &CtKey, v: &CtValue, now_ns: u64) -> ConntrackRow {
    ConntrackRow {
        proto: proto_name(k.proto),
        source: SocketAddrV4::new(Ipv4Addr::from(k.saddr), k.sport),
        destination: SocketAddrV4::new(Ipv4Addr::from(k.daddr), k.dport),
        direction: if v.flags & ct_flags::REPLY != 0 {
            CtDirection::Reply
        } else {
            CtDirection::Forward
        },
        nat: SocketAddrV4::new(Ipv4Addr::from(v.nat_addr), v.nat_port),
        snat: (v.flags & ct_flags::SNAT != 0).then(|| SocketAddrV4::new(Ipv4Addr::from(v.snat_addr), v.snat_port)),
        closing: v.flags & ct_flags::CLOSING != 0,
        service_id: v.service_id,
        backend_id: v.backend_id,
        idle_ns: now_ns.saturating_sub(v.last_seen_ns),
    }
}

/// The pinned maps of one node, opened for reading.
pub struct Inspector {
    pin_root: PathBuf,
    services: BpfHashMap<MapData, ServiceKey, ServiceValue>,
    backends: BpfHashMap<MapData, u32, BackendValue>,
    conntrack: BpfHashMap<MapData, CtKey, CtValue>,
    service_stats: PerCpuArray<MapData, TrafficCounter>,
    backend_stats: PerCpuArray<MapData, TrafficCounter>,
    events: PerCpuArray<MapData, u64>,
}

fn open_map<T>(pin_root: &Path, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let path = pin_root.join(name);
    if !path.exists() {
        return Err(DatapathError::PinDir {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no pinned map here (is noded running?)"),
        });
    }
    let data = MapData::from_pin(&path).map_err(map_err(name))?;
    let map = Map::from_map_data(data).map_err(map_err(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl Inspector {
    /// Open the maps pinned under `pin_root` (e.g. `/sys/fs/bpf/sluice/<node>`).
    /// Fails if one is missing or has another layout than this build's.
    pub fn open(pin_root: impl Into<PathBuf>) -> Result<Self, DatapathError> {
        let pin_root = pin_root.into();
        Ok(Self {
            services: open_map(&pin_root, map_names::SERVICES)?,
            backends: open_map(&pin_root, map_names::BACKENDS)?,
            conntrack: open_map(&pin_root, map_names::CONNTRACK)?,
            service_stats: open_map(&pin_root, map_names::SERVICE_STATS)?,
            backend_stats: open_map(&pin_root, map_names::BACKEND_STATS)?,
            events: open_map(&pin_root, map_names::EVENTS)?,
            pin_root,
        })
    }

    /// The pin root the maps were opened from.
    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    fn counter(
        arr: &PerCpuArray<MapData, TrafficCounter>,
        id: u32,
        name: &'static str,
    ) -> Result<TrafficCounter, DatapathError> {
        let values = arr.get(&id, 0).map_err(map_err(name))?;
        Ok(sum(&values))
    }

    /// Read every map once.
    pub fn snapshot(&self) -> Result<Snapshot, DatapathError> {
        let mut services = Vec::new();
        for entry in self.services.iter() {
            let (k, v) = match entry {
                Ok(kv) => kv,
                // The entry went away between the key walk and the lookup.
                Err(e) if crate::is_not_found(&e) => continue,
                Err(e) => return Err(map_err(map_names::SERVICES)(e)),
            };
            let Some(frontend) = Frontend::from_key(&k) else {
                continue;
            };
            services.push(ServiceRow {
                id: v.id,
                frontend,
                backend_count: v.backend_count,
                local_backend_count: v.local_backend_count,
                flags: service_flag_names(v.flags),
                maglev_size: v.maglev_size,
                affinity_timeout_s: if v.flags & service_flags::AFFINITY != 0 {
                    v.affinity_timeout_s
                } else {
                    0
                },
                traffic: Self::counter(&self.service_stats, v.id, map_names::SERVICE_STATS)?,
            });
        }
        services.sort_by_key(|s| (s.frontend.kind as u8, s.frontend.ip, s.frontend.port, s.id));

        let mut backends = Vec::new();
        for entry in self.backends.iter() {
            let (id, v) = match entry {
                Ok(kv) => kv,
                Err(e) if crate::is_not_found(&e) => continue,
                Err(e) => return Err(map_err(map_names::BACKENDS)(e)),
            };
            let service = services.iter().find(|s| s.id == v.service_id);
            let traffic = Self::counter(&self.backend_stats, id, map_names::BACKEND_STATS)?;
            backends.push(BackendRow {
                id,
                service_id: v.service_id,
                frontend: service.map(|s| s.frontend),
                addr: SocketAddrV4::new(Ipv4Addr::from(v.addr), v.port),
                local: v.flags & backend_flags::LOCAL != 0,
                terminating: v.flags & backend_flags::TERMINATING != 0,
                share: share(traffic.packets, service.map_or(0, |s| s.traffic.packets)),
                traffic,
            });
        }
        backends.sort_by_key(|b| (b.service_id, b.addr, b.id));

        let taken_ns = monotonic_ns();
        let mut conntrack: Vec<ConntrackRow> = self
            .conntrack
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, v)| conntrack_row(&k, &v, taken_ns))
            .collect();
        conntrack.sort_by(|a, b| (&a.proto, a.source, a.destination).cmp(&(&b.proto, b.source, b.destination)));

        let mut events = Vec::new();
        for e in ALL_EVENTS {
            let count = self
                .events
                .get(&(e as u32), 0)
                .map_err(map_err(map_names::EVENTS))?
                .iter()
                .sum();
            let (name, drop, description) = event_info(e);
            events.push(EventRow {
                event: e,
                name,
                drop,
                description,
                count,
            });
        }
        Ok(Snapshot {
            taken_ns,
            services,
            backends,
            conntrack,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_shares() {
        assert_eq!(service_flag_names(0), Vec::<&str>::new());
        assert_eq!(
            service_flag_names(service_flags::AFFINITY | service_flags::SOURCE_RANGES),
            vec!["affinity", "source-ranges"]
        );
        assert_eq!(share(1, 4), 0.25);
        assert_eq!(share(3, 0), 0.0);
    }

    #[test]
    fn every_event_has_a_distinct_name_and_the_drops_are_the_dropping_ones() {
        let names: std::collections::BTreeSet<_> = ALL_EVENTS.iter().map(|e| event_info(*e).0).collect();
        assert_eq!(names.len(), ALL_EVENTS.len());
        let drops: Vec<_> = ALL_EVENTS
            .iter()
            .filter(|e| event_info(**e).1)
            .map(|e| event_info(*e).0)
            .collect();
        assert_eq!(
            drops,
            ["NoBackendReject", "SourceDenied", "NoLocalBackend", "SnatExhausted"]
        );
    }

    #[test]
    fn conntrack_rows_name_direction_nat_and_idle_time() {
        let k = CtKey {
            saddr: [10, 0, 0, 9],
            daddr: [0, 0, 0, 0],
            sport: 40000,
            dport: 30080,
            proto: PROTO_TCP,
            pad: [0; 3],
        };
        let v = CtValue {
            nat_addr: [10, 252, 0, 5],
            snat_addr: [10, 0, 0, 1],
            nat_port: 8080,
            snat_port: 61000,
            flags: ct_flags::SNAT | ct_flags::CLOSING,
            proto: PROTO_TCP,
            service_id: 3,
            backend_id: 7,
            last_seen_ns: 1_000,
            ..Default::default()
        };
        let row = conntrack_row(&k, &v, 3_000);
        assert_eq!(row.proto, "tcp");
        assert_eq!(row.direction, CtDirection::Forward);
        assert_eq!(row.nat.to_string(), "10.252.0.5:8080");
        assert_eq!(row.snat.map(|s| s.to_string()).as_deref(), Some("10.0.0.1:61000"));
        assert!(row.closing);
        assert_eq!(row.idle_ns, 2_000);
        let reply = conntrack_row(
            &k,
            &CtValue {
                flags: ct_flags::REPLY,
                last_seen_ns: 9_000,
                ..v
            },
            3_000,
        );
        assert_eq!(reply.direction, CtDirection::Reply);
        assert_eq!(reply.snat, None);
        assert_eq!(reply.idle_ns, 0, "an entry newer than the clock read is not idle");
    }

    #[test]
    fn a_missing_pin_root_names_the_path() {
        let err = Inspector::open("/nonexistent/sluice-node").err().expect("fails");
        assert!(err.to_string().contains("/nonexistent/sluice-node/services"), "{err}");
    }
}
