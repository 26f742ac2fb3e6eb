//! Pods of this node as the routing programs see them: address → host veth
//! and MACs (the `endpoints` map), and the node's routing settings (the
//! `routing` map: cluster CIDR, masquerade address).

use crate::DatapathError;
use sluice_common::{EndpointKey, EndpointValue, RoutingConfig};
use std::ffi::CString;
use std::fmt;
use std::net::Ipv4Addr;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = DatapathError;
    /// Parse `aa:bb:cc:dd:ee:ff`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DatapathError::InvalidConfig(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            *b = u8::from_str_radix(parts.next().ok_or_else(bad)?, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A pod on this node: packets to `ip` go into the peer of the host veth
/// `ifindex` with destination `pod_mac` and source `host_mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodEndpoint {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Index of its host-side veth in the node's network namespace.
    pub ifindex: u32,
    /// MAC of the pod's interface.
    pub pod_mac: Mac,
    /// MAC of the host-side veth (the pod's gateway).
    pub host_mac: Mac,
}

impl PodEndpoint {
    /// The endpoint of a pod behind host veth `host_veth` (resolved in the
    /// calling thread's network namespace: ifindex and the veth's MAC).
    pub fn on_interface(ip: Ipv4Addr, host_veth: &str, pod_mac: Mac) -> Result<Self, DatapathError> {
        Ok(Self {
            ip,
            ifindex: crate::bpffs::ifindex(host_veth)?,
            pod_mac,
            host_mac: interface_mac(host_veth)?,
        })
    }

    pub(crate) fn key(&self) -> EndpointKey {
        EndpointKey { addr: self.ip.octets() }
    }

    pub(crate) fn value(&self) -> EndpointValue {
        EndpointValue {
            ifindex: self.ifindex,
            pod_mac: self.pod_mac.0,
            host_mac: self.host_mac.0,
        }
    }

    pub(crate) fn from_entry(k: &EndpointKey, v: &EndpointValue) -> Self {
        Self {
            ip: Ipv4Addr::from(k.addr),
            ifindex: v.ifindex,
            pod_mac: Mac(v.pod_mac),
            host_mac: Mac(v.host_mac),
        }
    }
}

/// The node's routing settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingSettings {
    /// The cluster's pod CIDR (every node's podCIDR lies inside): traffic to it is never NATed.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// Source address for pod flows leaving the cluster (the node's InternalIP); `None`: no masquerade.
    pub masquerade: Option<Ipv4Addr>,
}

impl RoutingSettings {
    pub(crate) fn to_config(self) -> Result<RoutingConfig, DatapathError> {
        let (addr, len) = self.cluster_cidr;
        if len > 32 {
            return Err(DatapathError::InvalidConfig(format!(
                "cluster CIDR {addr}/{len}: prefix longer than 32"
            )));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(RoutingConfig {
            cluster_cidr: (u32::from(addr) & mask).to_be_bytes(),
            cluster_mask: mask.to_be_bytes(),
            masquerade_addr: self.masquerade.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
            flags: if self.masquerade.is_some() {
                sluice_common::routing_flags::MASQUERADE
            } else {
                0
            },
        })
    }
}

/// The MAC of an interface in the calling thread's network namespace
/// (SIOCGIFHWADDR: sysfs may show another namespace's interfaces).
pub fn interface_mac(ifname: &str) -> Result<Mac, DatapathError> {
    let req = ifreq_ioctl(ifname, libc::SIOCGIFHWADDR, |_| {})?;
    // SAFETY: SIOCGIFHWADDR answered in the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(Mac([
        sa[0] as u8,
        sa[1] as u8,
        sa[2] as u8,
        sa[3] as u8,
        sa[4] as u8,
        sa[5] as u8,
    ]))
}

/// One `ifreq` ioctl on interface `ifname` of the calling thread's network
/// namespace: `fill` sets the request's union, the kernel's answer comes back.
fn ifreq_ioctl(ifname: &str, request: u64, fill: impl FnOnce(&mut libc::ifreq)) -> Result<libc::ifreq, DatapathError> {
    let err = |source| DatapathError::Interface {
        ifname: ifname.to_string(),
        source,
    };
    let name = CString::new(ifname).map_err(|_| err(std::io::Error::other("NUL in name")))?;
    if name.as_bytes_with_nul().len() > libc::IFNAMSIZ {
        return Err(err(std::io::Error::other("name too long")));
    }
    // SAFETY: an all-zero ifreq is valid; its name is filled within IFNAMSIZ.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes_with_nul()) {
        *dst = *src as libc::c_char;
    }
    fill(&mut req);
    // SAFETY: a datagram socket, closed below; the ioctl reads and writes
    // only the ifreq (and what `fill` pointed it at, which the caller keeps
    // alive across this call).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let rc = libc::ioctl(fd, request as _, &mut req);
        let os = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err(os));
        }
    }
    Ok(req)
}

/// Let a veth receive frames redirected from XDP into its peer
/// (`bpf_redirect`, as the NodePort fast path does into pods' host-side
/// veths): turns GRO on, which gives a veth the NAPI context such frames are
/// queued to; without it (or an XDP program of its own) they are dropped.
/// Frames its peer sends back out with `XDP_TX` need more: the kernel
/// (6.18) wakes the receiving veth for those only when it runs an XDP
/// program ([`crate::Datapath::attach_pass`]). For the calling thread's network
/// namespace; works on a veth that is down or about to move to another
/// namespace.
pub fn accept_xdp_frames(ifname: &str) -> Result<(), DatapathError> {
    /// `ETHTOOL_SGRO` from `linux/ethtool.h`.
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_set(ifname, ETHTOOL_SGRO, 1)
}

/// Have `ifname` send packets with complete checksums, as a packet on a
/// wire has: turns transmit checksum offload off. For a veth whose peer
/// runs an XDP program that may forward what it receives: a packet built on
/// this host otherwise leaves with only the pseudo-header sum in its TCP/UDP
/// checksum (the rest is left to offload metadata that a frame forwarded
/// from XDP no longer has), and its receiver would drop it.
pub fn checksum_in_software(ifname: &str) -> Result<(), DatapathError> {
    /// `ETHTOOL_STXCSUM` from `linux/ethtool.h`.
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ethtool_set(ifname, ETHTOOL_STXCSUM, 0)
}

/// One legacy ethtool "set" command (`struct ethtool_value`) on an
/// interface of the calling thread's network namespace.
fn ethtool_set(ifname: &str, cmd: u32, data: u32) -> Result<(), DatapathError> {
    /// `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    let ptr = (&mut value as *mut EthtoolValue).cast();
    ifreq_ioctl(ifname, libc::SIOCETHTOOL, |req| req.ifr_ifru.ifru_data = ptr)?;
    Ok(())
}

/// The interface carrying `ip` in the calling thread's network namespace
/// (e.g. the node's external interface from its InternalIP).
pub fn interface_with_address(ip: Ipv4Addr) -> Result<Option<String>, DatapathError> {
    let mut found = None;
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return Err(DatapathError::Interface {
                ifname: ip.to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                if Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)) == ip {
                    found = Some(std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned());
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_carries_127_0_0_1() {
        assert_eq!(
            interface_with_address(Ipv4Addr::LOCALHOST).unwrap().as_deref(),
            Some("lo")
        );
        assert_eq!(interface_with_address(Ipv4Addr::new(192, 0, 2, 251)).unwrap(), None);
    }

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "02:0a:ff:00:01:9c".parse().unwrap();
        assert_eq!(m.0, [2, 10, 255, 0, 1, 0x9c]);
        assert_eq!(m.to_string(), "02:0a:ff:00:01:9c");
        assert!("02:0a:ff:00:01".parse::<Mac>().is_err());
        assert!("02:0a:ff:00:01:9c:00".parse::<Mac>().is_err());
        assert!("zz:0a:ff:00:01:9c".parse::<Mac>().is_err());
    }

    #[test]
    fn routing_settings_mask_the_cidr() {
        let c = RoutingSettings {
            cluster_cidr: (Ipv4Addr::new(10, 244, 3, 7), 16),
            masquerade: Some(Ipv4Addr::new(192, 0, 2, 1)),
        }
        .to_config()
        .unwrap();
        assert_eq!(c.cluster_cidr, [10, 244, 0, 0]);
        assert_eq!(c.cluster_mask, [255, 255, 0, 0]);
        assert_eq!(c.masquerade_addr, [192, 0, 2, 1]);
        assert_eq!(c.flags, sluice_common::routing_flags::MASQUERADE);
        let off = RoutingSettings {
            cluster_cidr: (Ipv4Addr::new(10, 0, 0, 0), 8),
            masquerade: None,
        }
        .to_config()
        .unwrap();
        assert_eq!(off.flags, 0);
        assert!(RoutingSettings {
            cluster_cidr: (Ipv4Addr::new(10, 0, 0, 0), 33),
            masquerade: None
        }
        .to_config()
        .is_err());
    }
}
