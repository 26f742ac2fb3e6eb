//! Loads and programs the eBPF datapath: Service load balancing for
//! ClusterIP (TC on pod veths) and NodePort (XDP on the node's external
//! interface), with Maglev backend choice and connection tracking in the
//! kernel; and pod routing: veth-to-veth delivery to the pods of this node
//! ([`Datapath::upsert_endpoint`]), masquerade of pod flows leaving the
//! cluster ([`Datapath::set_routing`]) and native routes to other nodes'
//! podCIDRs ([`routes`]).
//!
//! One [`Datapath`] per node. It owns everything under its pin root
//! (default `/sys/fs/bpf/sluice`): the maps (pinned by name, see
//! [`sluice_common::map_names`]) and one pinned link per attached program
//! (`links/<ifname>_<ifindex>_<hook>`). Because the kernel objects live in
//! bpffs, a restarted node daemon calls [`Datapath::open_or_adopt`] and finds
//! the same maps and attachments: established connections never notice.
//!
//! The eBPF object is embedded at build time (see `build.rs`; build it with
//! `cargo xtask build-ebpf`).
//!
//! ```no_run
//! use sluice_datapath::*;
//! use std::net::Ipv4Addr;
//! let mut dp = Datapath::open_or_adopt(DatapathConfig::default())?;
//! dp.attach_pod_interface("veth1234")?;
//! dp.upsert_service(&ServiceSpec::cluster_ip(
//!     Frontend::tcp(Ipv4Addr::new(198, 19, 0, 10), 80),
//!     vec![Backend::new(Ipv4Addr::new(198, 18, 1, 2), 8080)],
//! ))?;
//! # Ok::<(), DatapathError>(())
//! ```

mod announce;
mod bpffs;
mod endpoint;
mod error;
pub mod flow_filter;
pub mod flows;
pub mod inspect;
mod logs;
pub mod maglev;
pub mod routes;
mod service;

pub use endpoint::{
    accept_xdp_frames, checksum_in_software, interface_mac, interface_with_address, Mac, PodEndpoint, RoutingSettings,
};
pub use error::DatapathError;
pub use service::{Backend, Frontend, Protocol, ServiceKind, ServiceSpec};
pub use sluice_common::{Event, TrafficCounter};

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use sluice_common::{
    backend_flags, map_names, program_names, service_flags, AffinityKey, AffinityValue, BackendValue, CtKey, CtValue,
    EndpointKey, EndpointValue, MaglevKey, MaglevTable, NodeAddrKey, NodeAddrValue, ServiceKey, ServiceValue,
    SourceRangeKey, MAGLEV_LOCAL, MAGLEV_MAX, MAX_BACKENDS, MAX_SERVICES,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// The eBPF object, embedded by build.rs (empty when it was not built).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice.bpf.o"));

/// How to open the datapath.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// Directory in bpffs holding the maps and links (one per node; tests use their own).
    pub pin_root: PathBuf,
    /// Maglev table size for new services: a prime ≤ [`MAGLEV_MAX`], ≫ backends per service.
    pub maglev_size: u32,
    /// Which hook serves NodePorts on external interfaces.
    pub external_hook: ExternalHook,
    /// Write flow events (new flows, drops, rejects) to the `flows` ring
    /// buffer ([`flows`]); switchable at runtime with [`Datapath::set_flow_events`].
    pub flow_events: bool,
    /// With the XDP hook, forward translated NodePort frames from XDP (the
    /// fast path: `bpf_redirect` into a local pod's veth, `XDP_TX` or
    /// `bpf_redirect` to the next hop after a FIB lookup) instead of handing
    /// them to the kernel's stack. A pod's veth must accept frames
    /// redirected into it ([`accept_xdp_frames`], as sluice-cni sets up); a
    /// veth as the external interface needs an XDP program on its peer for
    /// XDP_TX (a physical NIC needs nothing). Off: the kernel routes them,
    /// as on TC.
    pub xdp_forward: bool,
    /// Direct server return for NodePort, LoadBalancer and external IP
    /// flows to backends on other nodes: destination NAT only (the backend
    /// sees the client's address), the frontend carried to the backend's
    /// node in an IPv4 option, replies sent by that node straight to the
    /// client. Off (the default): source NAT to this node, replies come
    /// back through it. Every node reads the option whatever this setting;
    /// switchable at runtime with [`Datapath::set_dsr`].
    pub dsr: bool,
}

/// The hook of the NodePort program on external interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalHook {
    /// XDP (native when the driver supports it): fastest on a NIC.
    #[default]
    Xdp,
    /// TC ingress: for veth or devices without XDP, where TC is faster.
    Tc,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        Self {
            pin_root: PathBuf::from("/sys/fs/bpf/sluice"),
            maglev_size: sluice_common::MAGLEV_DEFAULT,
            external_hook: ExternalHook::Xdp,
            flow_events: true,
            xdp_forward: true,
            dsr: false,
        }
    }
}

impl DatapathConfig {
    /// A config with another pin root (tests, several simulated nodes on one host).
    pub fn with_pin_root(pin_root: impl Into<PathBuf>) -> Self {
        Self {
            pin_root: pin_root.into(),
            ..Self::default()
        }
    }
}

/// Which program of the object (for [`Datapath::test_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// TC ingress of a pod veth.
    PodIngress,
    /// TC egress of a pod veth.
    PodEgress,
    /// TC ingress of the external interface.
    NodePortTc,
    /// XDP of the external interface.
    NodePortXdp,
    /// The benchmark's XDP_TX bounce.
    BounceXdp,
}

/// What a program did with a test packet.
#[derive(Debug)]
pub struct TestRunOutput {
    /// The program's return code (TC action or XDP action).
    pub action: u32,
    /// The packet after the program ran.
    pub packet: Vec<u8>,
}

/// Counters of one service frontend (summed over CPUs).
#[derive(Clone, Debug)]
pub struct ServiceCounters {
    /// The frontend.
    pub frontend: Frontend,
    /// Packets and bytes of all its flows, both directions.
    pub total: TrafficCounter,
    /// Per current backend.
    pub backends: Vec<(SocketAddrV4, TrafficCounter)>,
}

/// A snapshot of the datapath's counters.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// One entry per service frontend.
    pub services: Vec<ServiceCounters>,
    /// Datapath events (new flows, rejects, drops...), summed over CPUs.
    pub events: Vec<(Event, u64)>,
}

impl Counters {
    /// The count of one event.
    pub fn event(&self, e: Event) -> u64 {
        self.events.iter().find(|(k, _)| *k == e).map(|(_, v)| *v).unwrap_or(0)
    }
}

/// Userspace view of one programmed service.
#[derive(Clone, Debug)]
struct ServiceState {
    id: u32,
    slot: u8,
    /// Backend endpoint → backend id (stable across updates).
    backends: HashMap<SocketAddrV4, u32>,
    /// Installed source ranges (address, prefix length).
    source_ranges: Vec<(Ipv4Addr, u8)>,
}

/// Simple id allocator over `0..max`.
#[derive(Debug)]
struct Ids {
    used: BTreeSet<u32>,
    next: u32,
    max: u32,
}

impl Ids {
    fn new(max: u32) -> Self {
        Self {
            used: BTreeSet::new(),
            next: 0,
            max,
        }
    }
    fn take(&mut self, what: &'static str) -> Result<u32, DatapathError> {
        for _ in 0..self.max {
            let id = self.next;
            self.next = (self.next + 1) % self.max;
            if self.used.insert(id) {
                return Ok(id);
            }
        }
        Err(DatapathError::Exhausted(what))
    }
    fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

/// The datapath of one node: maps, programs, attachments and the services in them.
pub struct Datapath {
    config: DatapathConfig,
    ebpf: Ebpf,
    services_map: BpfHashMap<MapData, ServiceKey, ServiceValue>,
    backends_map: BpfHashMap<MapData, u32, BackendValue>,
    maglev_map: BpfHashMap<MapData, MaglevKey, MaglevTable>,
    conntrack_map: BpfHashMap<MapData, CtKey, CtValue>,
    affinity_map: BpfHashMap<MapData, AffinityKey, AffinityValue>,
    source_ranges_map: LpmTrie<MapData, SourceRangeKey, u8>,
    node_addrs_map: BpfHashMap<MapData, NodeAddrKey, NodeAddrValue>,
    service_stats: PerCpuArray<MapData, TrafficCounter>,
    backend_stats: PerCpuArray<MapData, TrafficCounter>,
    events: PerCpuArray<MapData, u64>,
    endpoints_map: BpfHashMap<MapData, EndpointKey, EndpointValue>,
    routing_map: Array<MapData, sluice_common::RoutingConfig>,
    cluster_nodes_map: BpfHashMap<MapData, NodeAddrKey, u32>,
    announce_map: BpfHashMap<MapData, NodeAddrKey, sluice_common::AnnounceValue>,
    settings_map: Array<MapData, sluice_common::Settings>,
    /// The external interface (ifindex, MAC): where LoadBalancer IPs are announced.
    external: Option<(u32, Mac)>,
    services: HashMap<Frontend, ServiceState>,
    _logs: Option<logs::LogForwarder>,
    service_ids: Ids,
    backend_ids: Ids,
    nr_cpus: usize,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingInObject(name))?;
    T::try_from(map).map_err(|source| DatapathError::Map { name, source })
}

pub(crate) fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn prog_err(name: &'static str) -> impl Fn(aya::programs::ProgramError) -> DatapathError {
    move |source| DatapathError::Program { name, source }
}

fn is_not_found(e: &aya::maps::MapError) -> bool {
    matches!(e, aya::maps::MapError::KeyNotFound)
        || matches!(e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}

impl Datapath {
    /// Open the datapath: mount bpffs when needed, load the programs, and
    /// create the maps or adopt the ones already pinned under the pin root
    /// (with their services, backends, conntrack and attachments).
    pub fn open_or_adopt(config: DatapathConfig) -> Result<Self, DatapathError> {
        if OBJECT.is_empty() {
            return Err(DatapathError::ObjectNotBuilt);
        }
        if config.maglev_size as usize > MAGLEV_MAX || !maglev::is_prime(config.maglev_size) {
            return Err(DatapathError::InvalidConfig(format!(
                "maglev_size {} must be a prime ≤ {MAGLEV_MAX}",
                config.maglev_size
            )));
        }
        bpffs::ensure_mounted(&config.pin_root)?;
        let links = config.pin_root.join("links");
        std::fs::create_dir_all(&links).map_err(|source| DatapathError::PinDir {
            path: links.clone(),
            source,
        })?;
        replace_incompatible_pins(&config.pin_root);
        let adopted = config.pin_root.join(map_names::SERVICES).exists();
        let root = config.pin_root.clone();
        Self::load(config, adopted).inspect_err(|_| {
            if !adopted {
                remove_new_pins(&root);
            }
        })
    }

    /// Load the object with its maps pinned under the pin root (adopting
    /// the ones already pinned there) and its programs, and bring the
    /// userspace state up from the maps.
    fn load(config: DatapathConfig, adopted: bool) -> Result<Self, DatapathError> {
        let mut loader = EbpfLoader::new();
        let pins: Vec<(&'static str, PathBuf)> = map_names::ALL.iter().map(|n| (*n, config.pin_root.join(n))).collect();
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT)?;
        for name in [
            program_names::POD_INGRESS,
            program_names::POD_EGRESS,
            program_names::NODEPORT_TC,
        ] {
            let p: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingInObject(name))?
                .try_into()
                .map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
        }
        for name in [
            program_names::NODEPORT_XDP,
            program_names::BOUNCE_XDP,
            program_names::PASS_XDP,
        ] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingInObject(name))?
                .try_into()
                .map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
        }
        for name in [
            program_names::SOCK_CONNECT4,
            program_names::SOCK_SENDMSG4,
            program_names::SOCK_RECVMSG4,
        ] {
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingInObject(name))?
                .try_into()
                .map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
        }
        let mut dp = Self {
            services_map: take(&mut ebpf, map_names::SERVICES)?,
            backends_map: take(&mut ebpf, map_names::BACKENDS)?,
            maglev_map: take(&mut ebpf, map_names::MAGLEV)?,
            conntrack_map: take(&mut ebpf, map_names::CONNTRACK)?,
            affinity_map: take(&mut ebpf, map_names::AFFINITY)?,
            source_ranges_map: take(&mut ebpf, map_names::SOURCE_RANGES)?,
            node_addrs_map: take(&mut ebpf, map_names::NODE_ADDRS)?,
            service_stats: take(&mut ebpf, map_names::SERVICE_STATS)?,
            backend_stats: take(&mut ebpf, map_names::BACKEND_STATS)?,
            events: take(&mut ebpf, map_names::EVENTS)?,
            endpoints_map: take(&mut ebpf, map_names::ENDPOINTS)?,
            routing_map: take(&mut ebpf, map_names::ROUTING)?,
            cluster_nodes_map: take(&mut ebpf, map_names::CLUSTER_NODES)?,
            announce_map: take(&mut ebpf, map_names::ANNOUNCE)?,
            settings_map: take(&mut ebpf, map_names::SETTINGS)?,
            external: None,
            _logs: logs::LogForwarder::start(&mut ebpf),
            ebpf,
            services: HashMap::new(),
            service_ids: Ids::new(MAX_SERVICES),
            backend_ids: Ids::new(MAX_BACKENDS),
            nr_cpus: aya::util::nr_cpus().map_err(|(_, source)| DatapathError::PinDir {
                path: "/sys/devices/system/cpu/possible".into(),
                source,
            })?,
            config,
        };
        dp.rebuild_state()?;
        dp.forget_stale_links();
        dp.write_settings()?;
        info!(
            pin_root = %dp.config.pin_root.display(),
            adopted,
            services = dp.services.len(),
            "datapath open"
        );
        Ok(dp)
    }

    /// The pin root this datapath lives in.
    pub fn pin_root(&self) -> &Path {
        &self.config.pin_root
    }

    /// Switch flow events on or off (the programs read the switch per new
    /// flow; the overhead benchmark compares both).
    pub fn set_flow_events(&mut self, on: bool) -> Result<(), DatapathError> {
        self.config.flow_events = on;
        self.write_settings()?;
        debug!(on, "flow events");
        Ok(())
    }

    /// Switch the NodePort fast path on or off (see [`DatapathConfig::xdp_forward`]).
    pub fn set_xdp_forward(&mut self, on: bool) -> Result<(), DatapathError> {
        self.config.xdp_forward = on;
        self.write_settings()?;
        debug!(on, "XDP forwarding");
        Ok(())
    }

    /// Switch direct server return on or off for new flows (see
    /// [`DatapathConfig::dsr`]); flows already tracked keep their mode.
    pub fn set_dsr(&mut self, on: bool) -> Result<(), DatapathError> {
        self.config.dsr = on;
        self.write_settings()?;
        debug!(on, "direct server return");
        Ok(())
    }

    /// The programs' runtime switches from the config.
    fn write_settings(&mut self) -> Result<(), DatapathError> {
        use sluice_common::settings_flags::{DSR, FLOW_EVENTS, XDP_FORWARD};
        let mut flags = 0;
        if self.config.dsr {
            flags |= DSR;
        }
        if self.config.flow_events {
            flags |= FLOW_EVENTS;
        }
        if self.config.xdp_forward {
            flags |= XDP_FORWARD;
        }
        self.settings_map
            .set(0, sluice_common::Settings { flags, pad: 0 }, 0)
            .map_err(map_err(map_names::SETTINGS))
    }

    /// Whether flow events are on.
    pub fn flow_events(&self) -> bool {
        self.config.flow_events
    }

    /// Rebuild the userspace view from the (possibly adopted) maps.
    fn rebuild_state(&mut self) -> Result<(), DatapathError> {
        let mut by_id: HashMap<u32, Frontend> = HashMap::new();
        for item in self.services_map.iter() {
            let (k, v) = item.map_err(map_err(map_names::SERVICES))?;
            let Some(frontend) = Frontend::from_key(&k) else {
                continue;
            };
            self.service_ids.used.insert(v.id);
            by_id.insert(v.id, frontend);
            self.services.insert(
                frontend,
                ServiceState {
                    id: v.id,
                    slot: v.slot,
                    backends: HashMap::new(),
                    source_ranges: Vec::new(),
                },
            );
        }
        for item in self.backends_map.iter() {
            let (id, b) = item.map_err(map_err(map_names::BACKENDS))?;
            self.backend_ids.used.insert(id);
            if let Some(s) = by_id.get(&b.service_id).and_then(|f| self.services.get_mut(f)) {
                s.backends.insert(SocketAddrV4::new(Ipv4Addr::from(b.addr), b.port), id);
            }
        }
        for item in self.source_ranges_map.iter() {
            let (k, _) = item.map_err(map_err(map_names::SOURCE_RANGES))?;
            let data = k.data();
            let id = u32::from_be_bytes(data.service_id_be);
            if let Some(s) = by_id.get(&id).and_then(|f| self.services.get_mut(f)) {
                s.source_ranges
                    .push((Ipv4Addr::from(data.addr), (k.prefix_len() - 32) as u8));
            }
        }
        Ok(())
    }

    /// The frontends currently programmed (after a restart: the adopted ones),
    /// so a caller can delete those that no longer exist.
    pub fn frontends(&self) -> Vec<Frontend> {
        self.services.keys().copied().collect()
    }

    /// Create or update a service: its backends, Maglev tables, flags and
    /// source ranges. Atomic for packets: the new revision is written into the
    /// inactive slot and the service entry is switched last. Backends that
    /// disappear or turn terminating keep their established flows (conntrack)
    /// but get no new ones — except UDP: there a flow is only a source port
    /// the client keeps reusing (a resolver's socket), so the flows of a UDP
    /// backend that left or is terminating are dropped at once and the next
    /// datagram picks a live backend (the classic stale-conntrack DNS
    /// timeout, kubernetes#56903, cannot happen).
    pub fn upsert_service(&mut self, spec: &ServiceSpec) -> Result<(), DatapathError> {
        spec.validate()?;
        let frontend = spec.frontend;
        let mut state = match self.services.get(&frontend) {
            Some(s) => s.clone(),
            None => {
                let id = self.service_ids.take("service")?;
                ServiceState {
                    id,
                    slot: 1,
                    backends: HashMap::new(),
                    source_ranges: Vec::new(),
                }
            }
        };
        let new_slot = 1 - state.slot;

        // 1. Backends: keep ids of endpoints we know, allocate the others.
        let mut new_backends: HashMap<SocketAddrV4, u32> = HashMap::new();
        for b in &spec.backends {
            let ep = b.endpoint();
            if new_backends.contains_key(&ep) {
                continue;
            }
            let id = match state.backends.get(&ep) {
                Some(id) => *id,
                None => self.backend_ids.take("backend")?,
            };
            let mut flags = 0;
            if b.node_local {
                flags |= backend_flags::LOCAL;
            }
            if b.terminating {
                flags |= backend_flags::TERMINATING;
            }
            let value = BackendValue {
                addr: b.ip.octets(),
                port: b.port,
                flags,
                pad: 0,
                service_id: state.id,
            };
            self.backends_map
                .insert(id, value, 0)
                .map_err(map_err(map_names::BACKENDS))?;
            new_backends.insert(ep, id);
        }

        // 2. Maglev tables of the serving backends into the inactive slot.
        let size = spec.maglev_size.unwrap_or(self.config.maglev_size);
        let serving: Vec<&Backend> = dedup(&spec.backends).into_iter().filter(|b| !b.terminating).collect();
        let local: Vec<&Backend> = serving.iter().copied().filter(|b| b.node_local).collect();
        for (list, extra) in [(&serving, 0u32), (&local, MAGLEV_LOCAL)] {
            let key = MaglevKey {
                service_id: state.id,
                slot: new_slot as u32 + extra,
            };
            // All-local: the programs use the full table for local-only picks too.
            let same_as_full = extra == MAGLEV_LOCAL && local.len() == serving.len();
            if list.is_empty() || same_as_full {
                remove_ok(&mut self.maglev_map, &key, map_names::MAGLEV)?;
                continue;
            }
            let endpoints: Vec<SocketAddrV4> = list.iter().map(|b| b.endpoint()).collect();
            let entries = maglev::table(&endpoints, size);
            let mut table = MaglevTable {
                backend_ids: [0; MAGLEV_MAX],
                pad: 0,
            };
            for (slot, idx) in entries.iter().enumerate() {
                table.backend_ids[slot] = new_backends[&endpoints[*idx as usize]];
            }
            self.maglev_map
                .insert(key, table, 0)
                .map_err(map_err(map_names::MAGLEV))?;
        }

        // 3. Source ranges: add the new ones before the switch.
        let sid = state.id.to_be_bytes();
        let range_key = |(ip, len): &(Ipv4Addr, u8)| {
            LpmKey::new(
                32 + *len as u32,
                SourceRangeKey {
                    service_id_be: sid,
                    addr: ip.octets(),
                },
            )
        };
        for r in &spec.source_ranges {
            self.source_ranges_map
                .insert(&range_key(r), 1, 0)
                .map_err(map_err(map_names::SOURCE_RANGES))?;
        }

        // 4. The switch: one map update makes the new revision live.
        let mut flags = 0;
        if spec.affinity_timeout.is_some() {
            flags |= service_flags::AFFINITY;
        }
        if spec.external_traffic_local {
            flags |= service_flags::EXTERNAL_LOCAL;
        }
        if !spec.source_ranges.is_empty() {
            flags |= service_flags::SOURCE_RANGES;
        }
        let value = ServiceValue {
            id: state.id,
            backend_count: serving.len().min(u16::MAX as usize) as u16,
            local_backend_count: local.len().min(u16::MAX as usize) as u16,
            slot: new_slot,
            flags,
            pad: 0,
            maglev_size: size,
            affinity_timeout_s: spec.affinity_timeout.map(|d| d.as_secs() as u32).unwrap_or(0),
        };
        self.services_map
            .insert(frontend.key(), value, 0)
            .map_err(map_err(map_names::SERVICES))?;

        // 5. Clean up what the old revision alone used.
        if frontend.proto == Protocol::Udp {
            let leaving: HashSet<u32> = state
                .backends
                .iter()
                .filter(|(ep, _)| !new_backends.contains_key(ep))
                .map(|(_, id)| *id)
                .chain(
                    spec.backends
                        .iter()
                        .filter(|b| b.terminating)
                        .filter_map(|b| new_backends.get(&b.endpoint()).copied()),
                )
                .collect();
            if !leaving.is_empty() {
                self.drop_flows(state.id, Some(&leaving))?;
            }
        }
        for (ep, id) in &state.backends {
            if !new_backends.contains_key(ep) {
                remove_ok(&mut self.backends_map, id, map_names::BACKENDS)?;
                self.zero_counter(*id, false)?;
                self.backend_ids.release(*id);
            }
        }
        for r in &state.source_ranges {
            if !spec.source_ranges.contains(r) {
                let _ = self.source_ranges_map.remove(&range_key(r));
            }
        }
        state.slot = new_slot;
        state.backends = new_backends;
        state.source_ranges = spec.source_ranges.clone();
        debug!(%frontend, id = state.id, backends = spec.backends.len(), "service programmed");
        self.services.insert(frontend, state);
        Ok(())
    }

    /// Delete a service frontend. Established flows keep working until they
    /// end (their NAT state is in conntrack). Returns whether it existed.
    pub fn delete_service(&mut self, frontend: &Frontend) -> Result<bool, DatapathError> {
        let Some(state) = self.services.remove(frontend) else {
            return Ok(false);
        };
        remove_ok(&mut self.services_map, &frontend.key(), map_names::SERVICES)?;
        if frontend.proto == Protocol::Udp {
            self.drop_flows(state.id, None)?;
        }
        for slot in 0..4 {
            remove_ok(
                &mut self.maglev_map,
                &MaglevKey {
                    service_id: state.id,
                    slot,
                },
                map_names::MAGLEV,
            )?;
        }
        for id in state.backends.values() {
            remove_ok(&mut self.backends_map, id, map_names::BACKENDS)?;
            self.zero_counter(*id, false)?;
            self.backend_ids.release(*id);
        }
        let sid = state.id.to_be_bytes();
        for (ip, len) in &state.source_ranges {
            let _ = self.source_ranges_map.remove(&LpmKey::new(
                32 + *len as u32,
                SourceRangeKey {
                    service_id_be: sid,
                    addr: ip.octets(),
                },
            ));
        }
        self.zero_counter(state.id, true)?;
        self.service_ids.release(state.id);
        debug!(%frontend, "service deleted");
        Ok(true)
    }

    /// Delete the conntrack entries (both directions) of service `service_id`'s
    /// flows to `backends` (all of its flows with `None`). Returns how many.
    fn drop_flows(&mut self, service_id: u32, backends: Option<&HashSet<u32>>) -> Result<usize, DatapathError> {
        let stale: Vec<CtKey> = self
            .conntrack_map
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(_, v)| v.service_id == service_id && backends.is_none_or(|b| b.contains(&v.backend_id)))
            .map(|(k, _)| k)
            .collect();
        for k in &stale {
            remove_ok(&mut self.conntrack_map, k, map_names::CONNTRACK)?;
        }
        if !stale.is_empty() {
            debug!(
                service_id,
                entries = stale.len(),
                "dropped the UDP flows of departed backends"
            );
        }
        Ok(stale.len())
    }

    /// Reset the counters of a released id (ids are reused; fresh maps start at zero).
    fn zero_counter(&mut self, id: u32, service: bool) -> Result<(), DatapathError> {
        let zeros = PerCpuValues::try_from(vec![TrafficCounter::default(); self.nr_cpus]).map_err(|source| {
            DatapathError::PinDir {
                path: "per-cpu values".into(),
                source,
            }
        })?;
        if service {
            self.service_stats
                .set(id, zeros, 0)
                .map_err(map_err(map_names::SERVICE_STATS))
        } else {
            self.backend_stats
                .set(id, zeros, 0)
                .map_err(map_err(map_names::BACKEND_STATS))
        }
    }

    fn link_pin(&self, ifname: &str, ifindex: u32, hook: &str) -> PathBuf {
        self.config
            .pin_root
            .join("links")
            .join(format!("{ifname}_{ifindex}_{hook}"))
    }

    /// Attach the pod programs (TC ingress + egress) to a pod's host-side
    /// veth. Idempotent; after a restart the pinned attachment is adopted and
    /// its program atomically replaced by this build's (no packet is missed).
    /// Call it from the node's network namespace; it also sets the
    /// interface's `accept_local` sysctl (NodePort replies carry the node's
    /// own address as source).
    pub fn attach_pod_interface(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let ifindex = bpffs::ifindex(ifname)?;
        bpffs::accept_local(ifname)?;
        for (name, hook, ty) in [
            (program_names::POD_INGRESS, "ingress", TcAttachType::Ingress),
            (program_names::POD_EGRESS, "egress", TcAttachType::Egress),
        ] {
            self.attach_tc(name, ifname, ifindex, hook, ty)?;
        }
        debug!(ifname, ifindex, "pod interface attached");
        Ok(())
    }

    /// Detach the pod programs from an interface (a no-op when not attached).
    pub fn detach_pod_interface(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.unpin_links_of(ifname, &["ingress", "egress"])
    }

    /// Attach NodePort XDP to the node's external interface and serve
    /// NodePorts and hostPorts on `node_ip`, external frontends (LoadBalancer
    /// and external IPs) and ARP for announced LoadBalancer IPs
    /// ([`Self::set_announced`]) on the interface. Idempotent and kept across restarts.
    pub fn attach_external_interface(&mut self, ifname: &str, node_ip: Ipv4Addr) -> Result<(), DatapathError> {
        let ifindex = bpffs::ifindex(ifname)?;
        bpffs::accept_local(ifname)?;
        self.node_addrs_map
            .insert(NodeAddrKey { addr: node_ip.octets() }, NodeAddrValue { ifindex }, 0)
            .map_err(map_err(map_names::NODE_ADDRS))?;
        self.external = Some((ifindex, interface_mac(ifname)?));
        match self.config.external_hook {
            ExternalHook::Xdp => self.attach_xdp(program_names::NODEPORT_XDP, ifname, ifindex, "xdp")?,
            ExternalHook::Tc => self.attach_tc(
                program_names::NODEPORT_TC,
                ifname,
                ifindex,
                "tcext",
                TcAttachType::Ingress,
            )?,
        }
        debug!(ifname, %node_ip, hook = ?self.config.external_hook, "external interface attached");
        Ok(())
    }

    /// Serve NodePorts on another address of this node (`attach_external_interface`
    /// does this for the interface's address).
    pub fn add_node_address(&mut self, node_ip: Ipv4Addr, ifindex: u32) -> Result<(), DatapathError> {
        self.node_addrs_map
            .insert(NodeAddrKey { addr: node_ip.octets() }, NodeAddrValue { ifindex }, 0)
            .map_err(map_err(map_names::NODE_ADDRS))
    }

    /// Deliver packets for a pod of this node straight into it: pods'
    /// packets to `endpoint.ip` skip the node's IP stack (`bpf_redirect_peer`
    /// from `pod_ingress`). Attach the pod interface first
    /// ([`Self::attach_pod_interface`]) so the pod's own packets are seen.
    pub fn upsert_endpoint(&mut self, endpoint: &PodEndpoint) -> Result<(), DatapathError> {
        self.endpoints_map
            .insert(endpoint.key(), endpoint.value(), 0)
            .map_err(map_err(map_names::ENDPOINTS))?;
        debug!(ip = %endpoint.ip, ifindex = endpoint.ifindex, "pod endpoint programmed");
        Ok(())
    }

    /// Forget a pod endpoint (its packets fall back to kernel routing).
    /// Returns whether it existed.
    pub fn delete_endpoint(&mut self, ip: Ipv4Addr) -> Result<bool, DatapathError> {
        let key = EndpointKey { addr: ip.octets() };
        let existed = self.endpoints_map.get(&key, 0).is_ok();
        remove_ok(&mut self.endpoints_map, &key, map_names::ENDPOINTS)?;
        Ok(existed)
    }

    /// Every pod endpoint in the (possibly adopted) map, by address.
    pub fn endpoints(&self) -> Result<Vec<PodEndpoint>, DatapathError> {
        let mut out = Vec::new();
        for item in self.endpoints_map.iter() {
            let (k, v) = item.map_err(map_err(map_names::ENDPOINTS))?;
            out.push(PodEndpoint::from_entry(&k, &v));
        }
        out.sort_by_key(|e| e.ip);
        Ok(out)
    }

    /// Set the node's routing settings: the cluster CIDR (never NATed) and
    /// the address pod flows leaving the cluster are masqueraded to.
    pub fn set_routing(&mut self, settings: &RoutingSettings) -> Result<(), DatapathError> {
        let config = settings.to_config()?;
        self.routing_map
            .set(0, config, 0)
            .map_err(map_err(map_names::ROUTING))?;
        info!(cluster_cidr = %format!("{}/{}", settings.cluster_cidr.0, settings.cluster_cidr.1),
            masquerade = ?settings.masquerade, "routing settings programmed");
        Ok(())
    }

    /// Set the InternalIPs of every node of the cluster: pod traffic to them
    /// is never masqueraded (the pods' replies to another node's NodePort
    /// source NAT must keep their address). Replaces the previous set.
    pub fn set_cluster_nodes(&mut self, nodes: &[Ipv4Addr]) -> Result<(), DatapathError> {
        let want: BTreeSet<[u8; 4]> = nodes.iter().map(|ip| ip.octets()).collect();
        let have: Vec<NodeAddrKey> = self.cluster_nodes_map.keys().filter_map(|k| k.ok()).collect();
        for k in &have {
            if !want.contains(&k.addr) {
                remove_ok(&mut self.cluster_nodes_map, k, map_names::CLUSTER_NODES)?;
            }
        }
        for addr in want {
            if !have.iter().any(|k| k.addr == addr) {
                self.cluster_nodes_map
                    .insert(NodeAddrKey { addr }, 1, 0)
                    .map_err(map_err(map_names::CLUSTER_NODES))?;
            }
        }
        Ok(())
    }

    /// The node addresses set by [`Self::set_cluster_nodes`], sorted.
    pub fn cluster_nodes(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .cluster_nodes_map
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| Ipv4Addr::from(k.addr))
            .collect();
        v.sort();
        v
    }

    /// The routing settings in the map (`None` before [`Self::set_routing`]).
    pub fn routing(&self) -> Result<Option<RoutingSettings>, DatapathError> {
        let c = self.routing_map.get(&0, 0).map_err(map_err(map_names::ROUTING))?;
        if c.cluster_mask == [0; 4] && c.flags == 0 && c.cluster_cidr == [0; 4] {
            return Ok(None);
        }
        let len = u32::from_be_bytes(c.cluster_mask).count_ones() as u8;
        let masquerade =
            (c.flags & sluice_common::routing_flags::MASQUERADE != 0).then(|| Ipv4Addr::from(c.masquerade_addr));
        Ok(Some(RoutingSettings {
            cluster_cidr: (Ipv4Addr::from(c.cluster_cidr), len),
            masquerade,
        }))
    }

    /// Stop serving NodePorts on `node_ip` and detach XDP from `ifname`.
    pub fn detach_external_interface(&mut self, ifname: &str, node_ip: Ipv4Addr) -> Result<(), DatapathError> {
        remove_ok(
            &mut self.node_addrs_map,
            &NodeAddrKey { addr: node_ip.octets() },
            map_names::NODE_ADDRS,
        )?;
        self.unpin_links_of(ifname, &["xdp", "tcext"])
    }

    /// Attach the trivial XDP_TX bounce program (benchmark ceiling only).
    pub fn attach_bounce(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let ifindex = bpffs::ifindex(ifname)?;
        self.attach_xdp(program_names::BOUNCE_XDP, ifname, ifindex, "bounce")
    }

    /// Detach the bounce program.
    pub fn detach_bounce(&mut self, ifname: &str) -> Result<(), DatapathError> {
        self.unpin_links_of(ifname, &["bounce"])
    }

    /// Attach a no-op XDP program (benchmark plumbing: a veth peer must run
    /// XDP to receive frames another veth sends with XDP_TX).
    pub fn attach_pass(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let ifindex = bpffs::ifindex(ifname)?;
        self.attach_xdp(program_names::PASS_XDP, ifname, ifindex, "pass")
    }

    fn attach_tc(
        &mut self,
        name: &'static str,
        ifname: &str,
        ifindex: u32,
        hook: &str,
        ty: TcAttachType,
    ) -> Result<(), DatapathError> {
        let pin = self.link_pin(ifname, ifindex, hook);
        let p: &mut SchedClassifier = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingInObject(name))?
            .try_into()
            .map_err(prog_err(name))?;
        if pin.exists() {
            // Adopted attachment: swap in this build's program atomically
            // (bpf_link_update); the interface is never without a program.
            let link_err = |e| DatapathError::Link {
                path: pin.clone(),
                source: e,
            };
            let old = FdLink::from(PinnedLink::from_pin(&pin).map_err(link_err)?);
            let id = p
                .attach_to_link(old.try_into().map_err(link_err)?)
                .map_err(prog_err(name))?;
            drop(p.take_link(id).map_err(prog_err(name))?); // the pin keeps the link
            return Ok(());
        }
        let id = p.attach(ifname, ty).map_err(prog_err(name))?;
        let link = p.take_link(id).map_err(prog_err(name))?;
        let fd: FdLink = link.try_into().map_err(|e| DatapathError::Link {
            path: pin.clone(),
            source: e,
        })?;
        fd.pin(&pin).map_err(|source| DatapathError::Pin {
            path: pin.clone(),
            source,
        })?;
        Ok(())
    }

    fn attach_xdp(&mut self, name: &'static str, ifname: &str, ifindex: u32, hook: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin(ifname, ifindex, hook);
        let p: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingInObject(name))?
            .try_into()
            .map_err(prog_err(name))?;
        if pin.exists() {
            // Adopted attachment: swap in this build's program atomically.
            let link_err = |e| DatapathError::Link {
                path: pin.clone(),
                source: e,
            };
            let old = FdLink::from(PinnedLink::from_pin(&pin).map_err(link_err)?);
            let id = p
                .attach_to_link(old.try_into().map_err(link_err)?)
                .map_err(prog_err(name))?;
            drop(p.take_link(id).map_err(prog_err(name))?); // the pin keeps the link
            return Ok(());
        }
        let id = p.attach(ifname, XdpMode::default()).map_err(prog_err(name))?;
        let link = p.take_link(id).map_err(prog_err(name))?;
        let fd: FdLink = link.try_into().map_err(|e| DatapathError::Link {
            path: pin.clone(),
            source: e,
        })?;
        fd.pin(&pin).map_err(|source| DatapathError::Pin {
            path: pin.clone(),
            source,
        })?;
        Ok(())
    }

    /// Attach the socket-level ClusterIP programs (connect4, sendmsg4,
    /// recvmsg4) to a cgroup v2 directory, typically the node's root cgroup
    /// (`/sys/fs/cgroup/unified` here): the node's own clients then reach
    /// services without any packet NAT. Idempotent, kept across restarts.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let dir = self.config.pin_root.join("links").join("cgroup");
        std::fs::create_dir_all(&dir).map_err(|source| DatapathError::PinDir {
            path: dir.clone(),
            source,
        })?;
        let file = std::fs::File::open(cgroup).map_err(|source| DatapathError::PinDir {
            path: cgroup.to_path_buf(),
            source,
        })?;
        for name in [
            program_names::SOCK_CONNECT4,
            program_names::SOCK_SENDMSG4,
            program_names::SOCK_RECVMSG4,
        ] {
            let pin = dir.join(name);
            if pin.exists() {
                continue;
            }
            let p: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingInObject(name))?
                .try_into()
                .map_err(prog_err(name))?;
            let id = p.attach(&file, CgroupAttachMode::Single).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            let fd: FdLink = link.try_into().map_err(|e| DatapathError::Link {
                path: pin.clone(),
                source: e,
            })?;
            fd.pin(&pin).map_err(|source| DatapathError::Pin {
                path: pin.clone(),
                source,
            })?;
        }
        debug!(cgroup = %cgroup.display(), "socket-level load balancing attached");
        Ok(())
    }

    /// Detach the socket-level programs (a no-op when not attached).
    pub fn detach_cgroup(&mut self) -> Result<(), DatapathError> {
        let dir = self.config.pin_root.join("links").join("cgroup");
        for name in [
            program_names::SOCK_CONNECT4,
            program_names::SOCK_SENDMSG4,
            program_names::SOCK_RECVMSG4,
        ] {
            let pin = dir.join(name);
            if pin.exists() {
                unpin(&pin)?;
            }
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    /// Pinned links as (path, ifname, ifindex, hook).
    fn pinned_links(&self) -> Vec<(PathBuf, String, u32, String)> {
        let Ok(dir) = std::fs::read_dir(self.config.pin_root.join("links")) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let mut parts = name.rsplitn(3, '_');
                let hook = parts.next()?.to_string();
                let ifindex = parts.next()?.parse().ok()?;
                let ifname = parts.next()?.to_string();
                Some((e.path(), ifname, ifindex, hook))
            })
            .collect()
    }

    fn unpin_links_of(&mut self, ifname: &str, hooks: &[&str]) -> Result<(), DatapathError> {
        for (path, name, _, hook) in self.pinned_links() {
            if name == ifname && hooks.contains(&hook.as_str()) {
                unpin(&path)?;
            }
        }
        Ok(())
    }

    /// Drop pins of links whose interface is gone (e.g. a deleted pod veth).
    fn forget_stale_links(&mut self) {
        for (path, ifname, ifindex, _) in self.pinned_links() {
            if bpffs::ifindex(&ifname).ok() != Some(ifindex) {
                if let Err(e) = unpin(&path) {
                    warn!(path = %path.display(), error = %e, "could not drop a stale link pin");
                }
            }
        }
    }

    /// Interfaces with programs attached, as (ifname, hook).
    pub fn attachments(&self) -> Vec<(String, String)> {
        self.pinned_links().into_iter().map(|(_, n, _, h)| (n, h)).collect()
    }

    /// Read all counters (summed over CPUs).
    pub fn counters(&self) -> Result<Counters, DatapathError> {
        let sum = |arr: &PerCpuArray<MapData, TrafficCounter>, id: u32, name: &'static str| {
            arr.get(&id, 0)
                .map_err(map_err(name))
                .map(|v| v.iter().fold(TrafficCounter::default(), |a, c| a.add(*c)))
        };
        let mut out = Counters::default();
        for (frontend, s) in &self.services {
            let total = sum(&self.service_stats, s.id, map_names::SERVICE_STATS)?;
            let mut backends = Vec::new();
            for (ep, id) in &s.backends {
                backends.push((*ep, sum(&self.backend_stats, *id, map_names::BACKEND_STATS)?));
            }
            backends.sort_by_key(|(ep, _)| *ep);
            out.services.push(ServiceCounters {
                frontend: *frontend,
                total,
                backends,
            });
        }
        for e in ALL_EVENTS {
            let v = self.events.get(&(e as u32), 0).map_err(map_err(map_names::EVENTS))?;
            out.events.push((e, v.iter().sum()));
        }
        Ok(out)
    }

    /// Number of conntrack entries (two per flow).
    pub fn conntrack_len(&self) -> usize {
        self.conntrack_map.keys().filter(|k| k.is_ok()).count()
    }

    /// Forget every tracked flow and affinity (tests and diagnostics only:
    /// established connections through a NAT lose their state).
    pub fn flush_conntrack(&mut self) -> Result<(), DatapathError> {
        let keys: Vec<CtKey> = self.conntrack_map.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            remove_ok(&mut self.conntrack_map, &k, map_names::CONNTRACK)?;
        }
        let keys: Vec<AffinityKey> = self.affinity_map.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            remove_ok(&mut self.affinity_map, &k, map_names::AFFINITY)?;
        }
        Ok(())
    }

    /// Run one program on a packet with BPF_PROG_TEST_RUN (no interface
    /// needed): for unit tests of the datapath on crafted packets.
    pub fn test_run(&mut self, kind: ProgramKind, packet: &[u8]) -> Result<TestRunOutput, DatapathError> {
        use aya::programs::{TestRun, TestRunOptions};
        let name = match kind {
            ProgramKind::PodIngress => program_names::POD_INGRESS,
            ProgramKind::PodEgress => program_names::POD_EGRESS,
            ProgramKind::NodePortTc => program_names::NODEPORT_TC,
            ProgramKind::NodePortXdp => program_names::NODEPORT_XDP,
            ProgramKind::BounceXdp => program_names::BOUNCE_XDP,
        };
        let mut out = vec![0u8; packet.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.data_out = Some(&mut out);
        let prog = self
            .ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingInObject(name))?;
        let result = match kind {
            ProgramKind::PodIngress | ProgramKind::PodEgress | ProgramKind::NodePortTc => {
                let p: &mut SchedClassifier = prog.try_into().map_err(prog_err(name))?;
                p.test_run(opts)
            }
            ProgramKind::NodePortXdp | ProgramKind::BounceXdp => {
                let p: &mut Xdp = prog.try_into().map_err(prog_err(name))?;
                p.test_run(opts)
            }
        }
        .map_err(prog_err(name))?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            action: result.return_value,
            packet: out,
        })
    }

    /// Detach every program and remove every pin under the pin root: the
    /// node no longer has a Sluice datapath.
    pub fn uninstall(mut self) -> Result<(), DatapathError> {
        self.detach_cgroup()?;
        for (path, ..) in self.pinned_links() {
            unpin(&path)?;
        }
        let root = self.config.pin_root.clone();
        drop(self);
        for name in map_names::ALL {
            let p = root.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|source| DatapathError::PinDir {
                    path: p.clone(),
                    source,
                })?;
            }
        }
        let _ = std::fs::remove_dir(root.join("links"));
        let _ = std::fs::remove_dir(&root);
        info!(pin_root = %root.display(), "datapath uninstalled");
        Ok(())
    }
}

/// Remove what a failed first open pinned (its maps, the empty `links`
/// directory, the pin root), so a datapath whose programs the kernel
/// refused leaves nothing behind. Not used when the open adopted pins: a
/// node's running state is never removed because a new object failed.
fn remove_new_pins(root: &Path) {
    for name in map_names::ALL {
        let _ = std::fs::remove_file(root.join(name));
    }
    let _ = std::fs::remove_dir(root.join("links"));
    let _ = std::fs::remove_dir(root);
}

pub(crate) const ALL_EVENTS: [Event; sluice_common::EVENT_COUNT as usize] = [
    Event::NewFlow,
    Event::TrackedFlow,
    Event::ReverseNat,
    Event::NoBackendReject,
    Event::SourceDenied,
    Event::Malformed,
    Event::NoLocalBackend,
    Event::SnatExhausted,
    Event::SocketLb,
    Event::RedirectPeer,
    Event::Masquerade,
    Event::ArpReply,
    Event::Rebalanced,
    Event::FlowEventLost,
    Event::XdpTx,
    Event::XdpRedirect,
    Event::XdpToKernel,
    Event::DsrForward,
    Event::DsrRecorded,
];

/// Key and value sizes each pinned map must have (from `sluice-common`).
fn expected_layouts() -> [(&'static str, usize, usize); 17] {
    use std::mem::size_of;
    [
        (map_names::SERVICES, size_of::<ServiceKey>(), size_of::<ServiceValue>()),
        (map_names::BACKENDS, size_of::<u32>(), size_of::<BackendValue>()),
        (map_names::MAGLEV, size_of::<MaglevKey>(), size_of::<MaglevTable>()),
        (map_names::CONNTRACK, size_of::<CtKey>(), size_of::<CtValue>()),
        (
            map_names::AFFINITY,
            size_of::<AffinityKey>(),
            size_of::<AffinityValue>(),
        ),
        (map_names::SOURCE_RANGES, 4 + size_of::<SourceRangeKey>(), 1),
        (
            map_names::NODE_ADDRS,
            size_of::<NodeAddrKey>(),
            size_of::<NodeAddrValue>(),
        ),
        (map_names::SERVICE_STATS, 4, size_of::<TrafficCounter>()),
        (map_names::BACKEND_STATS, 4, size_of::<TrafficCounter>()),
        (map_names::EVENTS, 4, 8),
        (
            map_names::SOCK_REVNAT,
            size_of::<sluice_common::SockRevKey>(),
            size_of::<sluice_common::SockRevValue>(),
        ),
        (
            map_names::ENDPOINTS,
            size_of::<EndpointKey>(),
            size_of::<EndpointValue>(),
        ),
        (map_names::ROUTING, 4, size_of::<sluice_common::RoutingConfig>()),
        (map_names::CLUSTER_NODES, size_of::<NodeAddrKey>(), 4),
        (
            map_names::ANNOUNCE,
            size_of::<NodeAddrKey>(),
            size_of::<sluice_common::AnnounceValue>(),
        ),
        // A ring buffer has neither keys nor values (its size is checked below).
        (map_names::FLOWS, 0, 0),
        (map_names::SETTINGS, 4, size_of::<sluice_common::Settings>()),
    ]
}

/// A pinned map whose layout differs from this build's (an upgrade changed a
/// struct) cannot be adopted: unpin it so a fresh one is created. Its state
/// (e.g. conntrack) is lost, which is logged.
fn replace_incompatible_pins(pin_root: &Path) {
    for (name, key, value) in expected_layouts() {
        let path = pin_root.join(name);
        if !path.exists() {
            continue;
        }
        let info = MapData::from_pin(&path).and_then(|m| m.info());
        // The events array also grows with new event kinds.
        let entries_ok = |i: &aya::maps::MapInfo| match name {
            map_names::EVENTS => i.max_entries() == sluice_common::EVENT_COUNT,
            map_names::FLOWS => i.max_entries() == sluice_common::FLOWS_RING_BYTES,
            _ => true,
        };
        let compatible =
            matches!(&info, Ok(i) if i.key_size() as usize == key && i.value_size() as usize == value && entries_ok(i));
        if !compatible {
            warn!(
                map = name,
                "pinned map has another layout than this build: replacing it (its entries are lost)"
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn dedup(backends: &[Backend]) -> Vec<&Backend> {
    let mut seen = std::collections::HashSet::new();
    backends.iter().filter(|b| seen.insert(b.endpoint())).collect()
}

fn unpin(path: &Path) -> Result<(), DatapathError> {
    let link = PinnedLink::from_pin(path).map_err(|e| DatapathError::Link {
        path: path.to_path_buf(),
        source: e,
    })?;
    let fd = link.unpin().map_err(|source| DatapathError::PinDir {
        path: path.to_path_buf(),
        source,
    })?;
    drop(fd);
    Ok(())
}

pub(crate) fn remove_ok<K: aya::Pod, V: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), DatapathError> {
    match map.remove(key) {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(DatapathError::Map { name, source }),
    }
}
