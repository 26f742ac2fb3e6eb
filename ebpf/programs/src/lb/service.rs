//! Service lookup and backend choice: frontends, source ranges,
//! sessionAffinity, and Maglev consistent hashing (tables computed by
//! userspace, indexed here by a hash of the 5-tuple).

use aya_ebpf::btf_maps::lpm_trie::Key;
use sluice_common::{
    backend_flags, scope, service_flags, AffinityKey, AffinityValue, BackendValue, MaglevKey, NodeAddrKey, ServiceKey,
    ServiceValue, SourceRangeKey, MAGLEV_LOCAL, MAGLEV_MAX,
};

use super::{
    maps::{AFFINITY, ANNOUNCE, BACKENDS, MAGLEV, NODE_ADDRS, ROUTING, SERVICES, SOURCE_RANGES},
    packet::Flow,
};

/// Whether `addr` is one of this node's NodePort addresses.
#[inline(always)]
pub fn is_node_addr(addr: [u8; 4]) -> bool {
    NODE_ADDRS.get_ptr(NodeAddrKey { addr }).is_some()
}

/// The frontend of `frontend_scope` a new flow is addressed to, if any.
#[inline(always)]
pub fn lookup(flow: &Flow, frontend_scope: u8) -> Option<ServiceValue> {
    let key = ServiceKey {
        addr: if frontend_scope == scope::NODE_PORT || frontend_scope == scope::HOST_PORT {
            [0; 4]
        } else {
            flow.daddr
        },
        port: flow.dport,
        proto: flow.proto,
        scope: frontend_scope,
    };
    // SAFETY: the value is copied out at once.
    SERVICES.get_ptr(key).map(|p| unsafe { *p })
}

/// Where a new flow's frontend was found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A ClusterIP (from pods only).
    ClusterIp,
    /// A NodePort on one of this node's addresses.
    NodePort,
    /// A hostPort on one of this node's addresses.
    HostPort,
    /// A LoadBalancer IP or an external IP.
    External,
}

impl Found {
    /// The frontend's [`scope`] (for flow events).
    #[inline(always)]
    pub fn scope(self) -> u8 {
        match self {
            Found::ClusterIp => scope::CLUSTER_IP,
            Found::NodePort => scope::NODE_PORT,
            Found::HostPort => scope::HOST_PORT,
            Found::External => scope::EXTERNAL,
        }
    }
}

/// The frontend a new flow seen from a pod (`from_pod`) or from outside is
/// addressed to: a ClusterIP (pods only); on this node's addresses a
/// NodePort, else a hostPort; else an external address (LoadBalancer IP,
/// `externalIPs`). Pods reach their own node's NodePorts, hostPorts and
/// LoadBalancer IPs through this same lookup.
#[inline(always)]
pub fn find(flow: &Flow, from_pod: bool) -> Option<(ServiceValue, Found)> {
    if from_pod {
        if let Some(s) = lookup(flow, scope::CLUSTER_IP) {
            return Some((s, Found::ClusterIp));
        }
    }
    if is_node_addr(flow.daddr) {
        if let Some(s) = lookup(flow, scope::NODE_PORT) {
            return Some((s, Found::NodePort));
        }
        return lookup(flow, scope::HOST_PORT).map(|s| (s, Found::HostPort));
    }
    lookup(flow, scope::EXTERNAL).map(|s| (s, Found::External))
}

/// This node's own address (the masquerade address of `routing`), if set.
#[inline(always)]
pub fn node_address() -> Option<[u8; 4]> {
    // SAFETY: array value, copied out at once.
    let cfg = unsafe { *ROUTING.get_ptr(0)? };
    (cfg.masquerade_addr != [0; 4]).then_some(cfg.masquerade_addr)
}

/// Whether this node announces `addr` (a LoadBalancer IP it answers ARP for).
#[inline(always)]
pub fn is_announced(addr: [u8; 4]) -> bool {
    ANNOUNCE.get_ptr(NodeAddrKey { addr }).is_some()
}

/// Whether `client` may use the service (loadBalancerSourceRanges).
#[inline(always)]
pub fn source_allowed(svc: &ServiceValue, client: [u8; 4]) -> bool {
    if svc.flags & service_flags::SOURCE_RANGES == 0 {
        return true;
    }
    let key = Key::new(
        64,
        SourceRangeKey {
            service_id_be: svc.id.to_be_bytes(),
            addr: client,
        },
    );
    SOURCE_RANGES.get(&key).is_some()
}

#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Hash of a flow's 5-tuple (picks the Maglev entry).
#[inline(always)]
pub fn flow_hash(flow: &Flow) -> u32 {
    let mut h = 0x9e37_79b9u32;
    h = mix(h ^ u32::from_ne_bytes(flow.saddr));
    h = mix(h ^ u32::from_ne_bytes(flow.daddr));
    h = mix(h ^ (((flow.sport as u32) << 16) | flow.dport as u32));
    mix(h ^ flow.proto as u32)
}

#[inline(always)]
fn usable(b: &BackendValue, local_only: bool) -> bool {
    b.flags & backend_flags::TERMINATING == 0 && (!local_only || b.flags & backend_flags::LOCAL != 0)
}

/// Choose the backend of a new flow: the client's affine backend if still
/// usable, else the Maglev table's entry for the flow hash.
#[inline(always)]
pub fn choose_backend(flow: &Flow, svc: &ServiceValue, local_only: bool, now: u64) -> Option<(u32, BackendValue)> {
    let affinity = svc.flags & service_flags::AFFINITY != 0;
    let akey = AffinityKey {
        client: flow.saddr,
        service_id: svc.id,
    };
    if affinity {
        if let Some(a) = AFFINITY.get_ptr_mut(akey) {
            // SAFETY: map value pointer; a racing update is harmless.
            let a = unsafe { &mut *a };
            let timeout_ns = svc.affinity_timeout_s as u64 * 1_000_000_000;
            if now.wrapping_sub(a.last_seen_ns) <= timeout_ns {
                if let Some(b) = BACKENDS.get_ptr(a.backend_id) {
                    // SAFETY: copied out at once.
                    let b = unsafe { *b };
                    if usable(&b, local_only) {
                        a.last_seen_ns = now;
                        return Some((a.backend_id, b));
                    }
                }
            }
        }
    }
    let (id, b) = maglev_pick(svc, flow_hash(flow), local_only)?;
    if affinity {
        let _ = AFFINITY.insert(
            akey,
            AffinityValue {
                backend_id: id,
                pad: 0,
                last_seen_ns: now,
            },
            0,
        );
    }
    Some((id, b))
}

/// The backend at entry `hash % maglev_size` of the service's active Maglev
/// table (all serving backends, or only the node-local ones).
#[inline(always)]
pub fn maglev_pick(svc: &ServiceValue, hash: u32, local_only: bool) -> Option<(u32, BackendValue)> {
    let count = if local_only {
        svc.local_backend_count
    } else {
        svc.backend_count
    };
    if count == 0 {
        return None;
    }
    // When every serving backend is local the local table would be the
    // same as the full one: userspace writes only the full one.
    let slot = svc.slot as u32
        + if local_only && svc.local_backend_count != svc.backend_count {
            MAGLEV_LOCAL
        } else {
            0
        };
    let table = MAGLEV.get_ptr(MaglevKey {
        service_id: svc.id,
        slot,
    })?;
    let size = svc.maglev_size;
    if size == 0 {
        return None;
    }
    let idx = (hash % size) as usize;
    if idx >= MAGLEV_MAX {
        return None;
    }
    // SAFETY: idx < MAGLEV_MAX, the table's length.
    let id = unsafe { (*table).backend_ids[idx] };
    // SAFETY: copied out at once.
    let b = unsafe { *BACKENDS.get_ptr(id)? };
    Some((id, b))
}
