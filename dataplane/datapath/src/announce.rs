//! LoadBalancer IPs this node announces: the `announce` map the external
//! interface's program answers ARP requests from (see `ebpf/programs/src/arp.rs`).
//! The caller decides which node announces which IP (one node per IP); this
//! module only keeps the map equal to that set.

use crate::{map_err, remove_ok, Datapath, DatapathError, Mac};
use sluice_common::{map_names, AnnounceValue, NodeAddrKey};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

impl Datapath {
    /// The interface (index and MAC) ARP replies for announced IPs are sent
    /// with. [`Datapath::attach_external_interface`] sets it; tests that run
    /// the programs on crafted frames set it directly.
    pub fn set_announce_interface(&mut self, ifindex: u32, mac: Mac) {
        self.external = Some((ifindex, mac));
    }

    /// Answer ARP for exactly `ips` on the external interface (replaces the
    /// previous set). Fails when no external interface is attached.
    pub fn set_announced(&mut self, ips: &[Ipv4Addr]) -> Result<(), DatapathError> {
        let want: BTreeSet<[u8; 4]> = ips.iter().map(|ip| ip.octets()).collect();
        let have: Vec<NodeAddrKey> = self.announce_map.keys().filter_map(|k| k.ok()).collect();
        for k in &have {
            if !want.contains(&k.addr) {
                remove_ok(&mut self.announce_map, k, map_names::ANNOUNCE)?;
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        let Some((ifindex, mac)) = self.external else {
            return Err(DatapathError::InvalidConfig(
                "no external interface attached: cannot announce LoadBalancer IPs".into(),
            ));
        };
        let value = AnnounceValue {
            ifindex,
            mac: mac.0,
            pad: [0; 2],
        };
        for addr in want {
            self.announce_map
                .insert(NodeAddrKey { addr }, value, 0)
                .map_err(map_err(map_names::ANNOUNCE))?;
        }
        Ok(())
    }

    /// The LoadBalancer IPs this node answers ARP for, sorted.
    pub fn announced(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .announce_map
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| Ipv4Addr::from(k.addr))
            .collect();
        v.sort();
        v
    }
}
