//! The simulated nodes' "physical" network: one Linux bridge in the root
//! network namespace and one network namespace per node, plugged into the
//! bridge by a veth pair.
//!
//! The bridge holds the first address of the node subnet (the nodes' gateway,
//! and the address the API server is reached at from the nodes); node `i`
//! gets address `i + 1` on its `eth0`. Names derive from one prefix so a second
//! cluster (tests) can live beside the default one: bridge `<prefix>-br`,
//! namespace (= node name) `<prefix>-n<i>`, host-side veth `<prefix>-n<i>h`.
//! Everything here is idempotent, so `up` repairs half-made state and `down`
//! removes whatever exists.

use crate::process::NETNS_DIR;
use crate::util::step;
use anyhow::{bail, Context, Result};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// An IPv4 network in CIDR notation (`10.251.0.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// The `n`th address of the network (`0` is the network address itself).
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.len));
        // Keep the broadcast address out.
        (u64::from(n) < size.saturating_sub(1)).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }
}

impl FromStr for Cidr {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Cidr> {
        let (ip, len) = s
            .split_once('/')
            .with_context(|| format!("{s:?} is not a CIDR (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip.parse().with_context(|| format!("{s:?}: bad IPv4 address"))?;
        let len: u8 = len.parse().with_context(|| format!("{s:?}: bad prefix length"))?;
        if len > 30 {
            bail!("{s:?}: prefix length must be at most 30");
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// The names and addresses of one cluster's node network.
#[derive(Clone, Debug)]
pub struct NodeNetwork {
    /// Prefix of every name (bridge, namespaces, links, node names).
    pub prefix: String,
    /// The subnet the bridge and the nodes' `eth0` share.
    pub subnet: Cidr,
}

impl NodeNetwork {
    /// The default LoadBalancer pool: the top /28 of the node subnet (on the
    /// nodes' L2 network, far from the bridge, node and client addresses at
    /// its bottom); none for a subnet smaller than a /26.
    pub fn default_load_balancer_pool(&self) -> Option<Cidr> {
        let size = 1u64 << (32 - u32::from(self.subnet.len));
        (size >= 64).then(|| Cidr {
            network: std::net::Ipv4Addr::from((u64::from(u32::from(self.subnet.network)) + size - 16) as u32),
            len: 28,
        })
    }

    /// Validate the prefix (names must fit in an interface name).
    pub fn new(prefix: &str, subnet: Cidr) -> Result<NodeNetwork> {
        if prefix.is_empty() || prefix.len() > 8 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("network prefix {prefix:?} must be 1-8 characters of [a-zA-Z0-9-]");
        }
        Ok(NodeNetwork {
            prefix: prefix.to_string(),
            subnet,
        })
    }

    /// The bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// The bridge's address: the nodes' gateway and the API server's address for nodes.
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.host(1).expect("a /30 or larger has a first host")
    }

    /// Name of node `i` (1-based); also its network namespace's name.
    pub fn node_name(&self, i: u32) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Address of node `i` on the bridge.
    pub fn node_ip(&self, i: u32) -> Result<Ipv4Addr> {
        self.subnet
            .host(i + 1)
            .with_context(|| format!("node {i} does not fit in {}", self.subnet))
    }

    /// Root-namespace end of node `node`'s veth pair.
    pub fn host_link(node: &str) -> String {
        format!("{node}h")
    }

    /// Create (or repair) the bridge with the gateway address, up.
    pub fn ensure_bridge(&self) -> Result<()> {
        let br = self.bridge();
        if !link_exists(&br) {
            step(&format!("creating bridge {br} ({} on {})", self.gateway(), self.subnet));
            ip(&["link", "add", "name", &br, "type", "bridge"])?;
        }
        ip(&[
            "addr",
            "replace",
            &format!("{}/{}", self.gateway(), self.subnet.len),
            "dev",
            &br,
        ])?;
        ip(&["link", "set", &br, "up"])
    }

    /// Create (or repair) node `i`'s namespace, its veth into the bridge, its
    /// address, default route and IP forwarding.
    pub fn ensure_node(&self, i: u32) -> Result<()> {
        let node = self.node_name(i);
        let host = Self::host_link(&node);
        if host.len() > IFNAME_MAX {
            bail!("interface name {host} is too long");
        }
        let node_ip = self.node_ip(i)?;
        if !netns_exists(&node) {
            step(&format!("creating network namespace {node} ({node_ip})"));
            ip(&["netns", "add", &node])?;
        }
        if !link_exists(&host) {
            // A half-made namespace may hold an old eth0 whose peer is gone.
            let _ = ip(&["-n", &node, "link", "del", "eth0"]);
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &node,
            ])?;
        }
        ip(&["link", "set", &host, "master", &self.bridge(), "up"])?;
        ip(&["-n", &node, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &node,
            "addr",
            "replace",
            &format!("{node_ip}/{}", self.subnet.len),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &node, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n",
            &node,
            "route",
            "replace",
            "default",
            "via",
            &self.gateway().to_string(),
        ])?;
        // Nodes route their pods' traffic. (`ip netns exec` is fine for a one-shot
        // sysctl; written through /proc, as procps' `sysctl` is not on every machine.)
        run_quiet(Command::new("ip").args([
            "netns",
            "exec",
            &node,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]))
    }

    /// Remove node `node`'s namespace and veth (nothing if absent).
    pub fn remove_node(node: &str) -> Result<()> {
        let host = Self::host_link(node);
        if link_exists(&host) {
            ip(&["link", "del", &host])?;
        }
        if netns_exists(node) {
            step(&format!("deleting network namespace {node}"));
            ip(&["netns", "del", node])?;
        }
        Ok(())
    }

    /// Remove the bridge (nothing if absent).
    pub fn remove_bridge(&self) -> Result<()> {
        let br = self.bridge();
        if link_exists(&br) {
            step(&format!("deleting bridge {br}"));
            ip(&["link", "del", &br])?;
        }
        Ok(())
    }
}

/// Whether a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Whether a link exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Run `ip` with `args`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    run_quiet(Command::new("ip").args(args))
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("could not run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_hosts_and_names() {
        let net = NodeNetwork::new("sluice", "10.251.0.7/24".parse().unwrap()).unwrap();
        assert_eq!(net.subnet.to_string(), "10.251.0.0/24");
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 251, 0, 1));
        assert_eq!(net.node_ip(1).unwrap(), Ipv4Addr::new(10, 251, 0, 2));
        assert_eq!(net.node_name(3), "sluice-n3");
        assert_eq!(NodeNetwork::host_link("sluice-n3"), "sluice-n3h");
        assert!(
            net.node_ip(253).is_ok() && net.node_ip(254).is_err(),
            "broadcast never given out"
        );
        assert!(NodeNetwork::new("much-too-long", net.subnet).is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
    }
}
