//! Parsing Ethernet/IPv4/TCP/UDP headers out of packet memory, with the
//! bounds checks the verifier wants. Anything else (IPv6, VLAN, ICMP,
//! fragments) is not ours and passes untouched.

use sluice_common::{DSR_IP_OPTION, DSR_IP_OPTION_LEN, PROTO_TCP, PROTO_UDP};

use super::dsr::Frontend;

/// Length of an Ethernet header.
pub const ETH_LEN: usize = 14;
/// Offset of the IPv4 header.
pub const IP_OFF: usize = ETH_LEN;
/// Offset of the IPv4 header checksum.
pub const IP_CSUM_OFF: usize = IP_OFF + 10;
/// Offset of the IPv4 source address.
pub const IP_SADDR_OFF: usize = IP_OFF + 12;
/// Offset of the IPv4 destination address.
pub const IP_DADDR_OFF: usize = IP_OFF + 16;
/// Offset of the IPv4 options (the end of the header without them).
pub const IP_OPTIONS_OFF: usize = IP_OFF + 20;

/// TCP flag bits (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK.
pub const TCP_ACK: u8 = 0x10;

/// The 5-tuple and offsets of one IPv4 TCP/UDP packet.
#[derive(Clone, Copy)]
pub struct Flow {
    /// Offset of the TCP/UDP header.
    pub l4_off: usize,
    /// Source address (network order bytes).
    pub saddr: [u8; 4],
    /// Destination address.
    pub daddr: [u8; 4],
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// IPv4 total length, host order (for byte counters).
    pub ip_len: u16,
    /// The frontend of a direct-server-return flow, when the header's only
    /// option is [`DSR_IP_OPTION`] ([`super::dsr`]); else [`Frontend::NONE`].
    pub dsr: Frontend,
}

impl Flow {
    /// Offset of the L4 checksum field.
    #[inline(always)]
    pub fn l4_csum_off(&self) -> usize {
        if self.proto == PROTO_TCP {
            self.l4_off + 16
        } else {
            self.l4_off + 6
        }
    }
}

/// What parsing found.
pub enum Parsed {
    /// An IPv4 TCP/UDP packet we may balance.
    Flow(Flow),
    /// Not IPv4 TCP/UDP (or a fragment): not ours.
    Other,
    /// Claims to be IPv4 but is truncated or inconsistent.
    Malformed,
}

#[inline(always)]
fn bytes<const N: usize>(data: usize, data_end: usize, off: usize) -> Option<[u8; N]> {
    if data + off + N > data_end {
        return None;
    }
    // SAFETY: bounds checked against data_end just above.
    Some(unsafe { core::ptr::read_unaligned((data + off) as *const [u8; N]) })
}

/// Parse the headers between `data` and `data_end` (packet pointers).
#[inline(always)]
pub fn parse(data: usize, data_end: usize) -> Parsed {
    let Some(eth) = bytes::<14>(data, data_end, 0) else {
        return Parsed::Other;
    };
    if eth[12] != 0x08 || eth[13] != 0x00 {
        return Parsed::Other;
    }
    let Some(ip) = bytes::<20>(data, data_end, IP_OFF) else {
        return Parsed::Malformed;
    };
    if ip[0] >> 4 != 4 {
        return Parsed::Malformed;
    }
    let ihl = (ip[0] & 0x0f) as usize;
    if ihl < 5 {
        return Parsed::Malformed;
    }
    let ip_len = u16::from_be_bytes([ip[2], ip[3]]);
    // (ip_len is not checked against data_end: under TC a GSO packet's
    // payload lies outside the linear area the program sees.)
    if (ip_len as usize) < ihl * 4 {
        return Parsed::Malformed;
    }
    // More fragments, or not the first fragment: no ports to balance on.
    if (ip[6] & 0x3f) != 0 || ip[7] != 0 {
        return Parsed::Other;
    }
    let proto = ip[9];
    let l4_off = IP_OFF + ihl * 4;
    let saddr = [ip[12], ip[13], ip[14], ip[15]];
    let daddr = [ip[16], ip[17], ip[18], ip[19]];
    let dsr = if ihl * 4 == 20 + DSR_IP_OPTION_LEN {
        match bytes::<DSR_IP_OPTION_LEN>(data, data_end, IP_OPTIONS_OFF) {
            Some(o) if o[0] == DSR_IP_OPTION && o[1] as usize == DSR_IP_OPTION_LEN => Frontend {
                port: u16::from_be_bytes([o[2], o[3]]),
                addr: [o[4], o[5], o[6], o[7]],
            },
            Some(_) => Frontend::NONE,
            None => return Parsed::Malformed,
        }
    } else {
        Frontend::NONE
    };
    match proto {
        PROTO_TCP => {
            let Some(tcp) = bytes::<20>(data, data_end, l4_off) else {
                return Parsed::Malformed;
            };
            if ((tcp[12] >> 4) as usize) < 5 {
                return Parsed::Malformed;
            }
            Parsed::Flow(Flow {
                l4_off,
                saddr,
                daddr,
                sport: u16::from_be_bytes([tcp[0], tcp[1]]),
                dport: u16::from_be_bytes([tcp[2], tcp[3]]),
                proto,
                tcp_flags: tcp[13],
                ip_len,
                dsr,
            })
        }
        PROTO_UDP => {
            let Some(udp) = bytes::<8>(data, data_end, l4_off) else {
                return Parsed::Malformed;
            };
            Parsed::Flow(Flow {
                l4_off,
                saddr,
                daddr,
                sport: u16::from_be_bytes([udp[0], udp[1]]),
                dport: u16::from_be_bytes([udp[2], udp[3]]),
                proto,
                tcp_flags: 0,
                ip_len,
                dsr,
            })
        }
        _ => Parsed::Other,
    }
}
