//! Helpers shared by the datapath tests: crafted packets, a per-test pin root,
//! network-namespace topologies ([`netns`]).
#![allow(dead_code)]

pub mod netns;

use sluice_datapath::{Datapath, DatapathConfig};
use std::net::Ipv4Addr;

/// A datapath in its own pin root, uninstalled (everything unpinned) on drop.
pub struct TestDatapath(pub Option<Datapath>);

impl TestDatapath {
    pub fn new(tag: &str) -> Self {
        let root = format!("/sys/fs/bpf/sluice-test-{tag}-{}", std::process::id());
        Self(Some(
            Datapath::open_or_adopt(DatapathConfig::with_pin_root(root)).expect("open datapath"),
        ))
    }
}

impl std::ops::Deref for TestDatapath {
    type Target = Datapath;
    fn deref(&self) -> &Datapath {
        self.0.as_ref().unwrap()
    }
}
impl std::ops::DerefMut for TestDatapath {
    fn deref_mut(&mut self) -> &mut Datapath {
        self.0.as_mut().unwrap()
    }
}
impl Drop for TestDatapath {
    fn drop(&mut self) {
        if let Some(dp) = self.0.take() {
            let _ = dp.uninstall();
        }
    }
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;

/// One's-complement sum of big-endian 16-bit words (an odd byte padded).
pub fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    for c in bytes.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        acc += w as u32;
    }
    acc
}
/// The checksum of a [`sum`]: folded and inverted.
pub fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A parsed IPv4 TCP/UDP/ICMP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkt {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
}

impl Pkt {
    pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Self {
        Self {
            src: src.0,
            dst: dst.0,
            proto: TCP,
            sport: src.1,
            dport: dst.1,
            flags,
            seq: 1000,
            ack: 0,
            payload: b"hello".to_vec(),
        }
    }
    pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Self {
        Self {
            src: src.0,
            dst: dst.0,
            proto: UDP,
            sport: src.1,
            dport: dst.1,
            flags: 0,
            seq: 0,
            ack: 0,
            payload: b"ping".to_vec(),
        }
    }

    /// Ethernet frame with valid checksums.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        if self.proto == TCP {
            l4.extend_from_slice(&self.seq.to_be_bytes());
            l4.extend_from_slice(&self.ack.to_be_bytes());
            l4.extend_from_slice(&[0x50, self.flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&[0, self.proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        let c = fold(sum(&l4, sum(&pseudo, 0)));
        let off = if self.proto == TCP { 16 } else { 6 };
        l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        let total = (20 + l4.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, self.proto, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let c = fold(sum(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f
    }

    /// Parse a frame and verify its IP and L4 checksums (panics when wrong).
    pub fn parse(f: &[u8]) -> Self {
        assert!(f.len() >= 34, "frame too short: {}", f.len());
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..34];
        assert_eq!(fold(sum(ip, 0)), 0, "bad IP header checksum");
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let l4 = &f[34..14 + total];
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let proto = ip[9];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        match proto {
            TCP | UDP => assert_eq!(fold(sum(l4, sum(&pseudo, 0))), 0, "bad L4 checksum"),
            _ => assert_eq!(fold(sum(l4, 0)), 0, "bad ICMP checksum"),
        }
        let (sport, dport) = if proto == 1 {
            (0, 0)
        } else {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        };
        let (flags, seq, ack, payload) = match proto {
            TCP => (
                l4[13],
                u32::from_be_bytes(l4[4..8].try_into().unwrap()),
                u32::from_be_bytes(l4[8..12].try_into().unwrap()),
                l4[((l4[12] >> 4) as usize * 4)..].to_vec(),
            ),
            UDP => (0, 0, 0, l4[8..].to_vec()),
            _ => (0, 0, 0, l4.to_vec()),
        };
        Self {
            src,
            dst,
            proto,
            sport,
            dport,
            flags,
            seq,
            ack,
            payload,
        }
    }
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

impl TestDatapath {
    /// A datapath opened inside network namespace `ns` (as the node daemon of
    /// that "node" would), with its own pin root.
    pub fn in_ns(tag: &str, ns: &str) -> Self {
        Self(Some(open_in_ns(&pin_root(tag), ns)))
    }

    /// Like [`Self::in_ns`] with a given config (its pin root is replaced).
    pub fn in_ns_with(tag: &str, ns: &str, mut config: DatapathConfig) -> Self {
        config.pin_root = pin_root(tag).into();
        Self(Some(netns::in_ns(ns, || {
            Datapath::open_or_adopt(config).expect("open datapath")
        })))
    }
}

/// The pin root of a test datapath.
pub fn pin_root(tag: &str) -> String {
    format!("/sys/fs/bpf/sluice-test-{tag}-{}", std::process::id())
}

/// Open (or adopt) a datapath from inside network namespace `ns`.
pub fn open_in_ns(root: &str, ns: &str) -> Datapath {
    netns::in_ns(ns, || {
        Datapath::open_or_adopt(DatapathConfig::with_pin_root(root)).expect("open datapath")
    })
}

/// Attach a node's external programs to its `eth0` on the wire, as noded
/// does, and let the wire take the frames the node sends back out with
/// XDP_TX (a physical link would).
pub fn attach_node_to_wire(topo: &mut netns::Topology, node: &str, dp: &mut Datapath, ip: &str) {
    netns::in_ns(&topo.ns(node), || {
        dp.attach_external_interface("eth0", ip.parse().unwrap())
            .expect("attach external");
    });
    topo.wire_takes_xdp_tx(node);
}
