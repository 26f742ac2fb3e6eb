//! The pod's network interface: a veth pair, one end in the pod, no bridge.
//!
//! Routing scheme (as in Cilium): the pod end gets the pod address as a
//! `/32`, a link-scope route to the link-local gateway [`GATEWAY`], a default
//! route via it, and a permanent neighbour entry mapping the gateway to the
//! host end's MAC, so the pod never ARPs for its gateway. The host end has no
//! address; the host reaches the pod by a `/32` route on the host end. Every
//! packet from the pod thus enters the host on its own veth, where the eBPF
//! programs attached by `noded` see it first.
//!
//! All netlink work goes through rtnetlink; work inside the pod's network
//! namespace runs on a thread that entered that namespace.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The pod's next hop: link-local, answered by the static neighbour entry.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Errors of interface setup.
#[derive(Debug, thiserror::Error)]
pub enum VethError {
    /// A netlink request failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// The network namespace could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An interface that must exist does not.
    #[error("interface {0} not found")]
    Missing(String),
    /// The interface exists but differs from what ADD set up.
    #[error("{0}")]
    Mismatch(String),
    /// GRO could not be turned on for the pod end.
    #[error("turning GRO on for the pod end: {0}")]
    Gro(#[from] sluice_datapath::DatapathError),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VethError {
    let what = what.into();
    move |source| VethError::Netlink { what, source }
}

/// The host-side veth name for a pod interface: `lxc` + 12 hex digits of a
/// stable hash (FNV-1a) of the container id and interface name; 15 bytes, the
/// kernel's limit.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!("lxc{:012x}", fnv1a(container_id, ifname) & 0xffff_ffff_ffff)
}

fn temp_peer_name(container_id: &str, ifname: &str) -> String {
    format!("tmp{:012x}", (fnv1a(container_id, ifname) >> 16) & 0xffff_ffff_ffff)
}

fn fnv1a(container_id: &str, ifname: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What ADD created.
#[derive(Debug, Clone)]
pub struct PodInterface {
    /// Host-side veth name.
    pub host_veth: String,
    /// Host-side veth ifindex.
    pub host_ifindex: u32,
    /// Host-side veth MAC.
    pub host_mac: String,
    /// Pod-side MAC.
    pub pod_mac: String,
}

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn mac_of(link: &LinkMessage) -> Vec<u8> {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Find a link by name; `Ok(None)` when there is none.
async fn find_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, VethError> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(source) => Err(VethError::Netlink {
            what: format!("looking up {name}"),
            source,
        }),
    }
}

/// Run `work` with an rtnetlink handle bound to the network namespace at `netns`.
///
/// The work runs on its own thread, which enters the namespace before opening
/// the netlink socket (a socket stays bound to the namespace it was made in).
fn in_netns<T, F, Fut>(netns: &Path, work: F) -> Result<T, VethError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, VethError>>,
{
    let ns_err = |source| VethError::Netns {
        path: netns.display().to_string(),
        source,
    };
    let file = File::open(netns).map_err(ns_err)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns on a namespace fd we own, affecting only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(ns_err(std::io::Error::last_os_error()));
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ns_err)?;
                runtime.block_on(async move {
                    let (connection, handle, _) = rtnetlink::new_connection().map_err(ns_err)?;
                    tokio::spawn(connection);
                    work(handle).await
                })
            })
            .join()
            .unwrap_or_else(|_| Err(VethError::Mismatch("netns worker thread panicked".into())))
    })
}

/// A handle in the plugin's own (the node's) network namespace.
fn host_handle() -> Result<Handle, VethError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|source| VethError::Netns {
        path: "self".into(),
        source,
    })?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Create the veth pair, move one end into the pod as `ifname` with
/// `pod_ip/32`, routes and the gateway neighbour, and route `pod_ip` to the
/// host end. A leftover pair from an interrupted ADD is replaced.
pub async fn create(
    container_id: &str,
    netns: &Path,
    ifname: &str,
    pod_ip: Ipv4Addr,
    mtu: u32,
) -> Result<PodInterface, VethError> {
    let host = host_handle()?;
    let host_veth = host_veth_name(container_id, ifname);
    let peer = temp_peer_name(container_id, ifname);
    for stale in [&host_veth, &peer] {
        if let Some(link) = find_link(&host, stale).await? {
            host.link()
                .del(link.header.index)
                .execute()
                .await
                .map_err(nl(format!("deleting stale {stale}")))?;
        }
    }
    host.link()
        .add(LinkVeth::new(&host_veth, &peer).mtu(mtu).build())
        .execute()
        .await
        .map_err(nl(format!("creating veth {host_veth}")))?;
    let result = async {
        let peer_link = find_link(&host, &peer)
            .await?
            .ok_or_else(|| VethError::Missing(peer.clone()))?;
        // The pod end accepts frames the NodePort fast path redirects into
        // the host end from XDP (GRO gives a veth the NAPI context they
        // are queued to). Set here, before the move, from the host.
        sluice_datapath::accept_xdp_frames(&peer)?;
        let ns_file = File::open(netns).map_err(|source| VethError::Netns {
            path: netns.display().to_string(),
            source,
        })?;
        host.link()
            .set(
                LinkUnspec::new_with_index(peer_link.header.index)
                    .setns_by_fd(ns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("moving the pod end into the pod's namespace"))?;
        let host_link = find_link(&host, &host_veth)
            .await?
            .ok_or_else(|| VethError::Missing(host_veth.clone()))?;
        let host_index = host_link.header.index;
        let host_mac = mac_of(&host_link);
        host.link()
            .set(LinkUnspec::new_with_index(host_index).up().build())
            .execute()
            .await
            .map_err(nl(format!("setting {host_veth} up")))?;
        let pod_mac = {
            let (peer, ifname, host_mac) = (peer.clone(), ifname.to_owned(), host_mac.clone());
            in_netns(netns, move |pod| async move {
                configure_pod_end(&pod, &peer, &ifname, pod_ip, mtu, &host_mac).await
            })?
        };
        host.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(pod_ip, 32)
                    .output_interface(host_index)
                    .scope(RouteScope::Link)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .map_err(nl(format!("routing {pod_ip} to {host_veth}")))?;
        Ok(PodInterface {
            host_veth: host_veth.clone(),
            host_ifindex: host_index,
            host_mac: format_mac(&host_mac),
            pod_mac,
        })
    }
    .await;
    if result.is_err() {
        // Deleting the host end deletes the pair wherever its peer is.
        let _ = delete(&host_veth).await;
    }
    result
}

/// Inside the pod: rename, address, up, routes, gateway neighbour; returns the pod MAC.
async fn configure_pod_end(
    pod: &Handle,
    temp_name: &str,
    ifname: &str,
    pod_ip: Ipv4Addr,
    mtu: u32,
    host_mac: &[u8],
) -> Result<String, VethError> {
    let link = find_link(pod, temp_name)
        .await?
        .ok_or_else(|| VethError::Missing(temp_name.to_owned()))?;
    let index = link.header.index;
    pod.link()
        .set(
            LinkUnspec::new_with_index(index)
                .name(ifname.to_owned())
                .mtu(mtu)
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("renaming the pod end to {ifname}")))?;
    if let Some(lo) = find_link(pod, "lo").await? {
        pod.link()
            .set(LinkUnspec::new_with_index(lo.header.index).up().build())
            .execute()
            .await
            .map_err(nl("setting lo up"))?;
    }
    pod.address()
        .add(index, IpAddr::V4(pod_ip), 32)
        .execute()
        .await
        .map_err(nl(format!("adding {pod_ip}/32 to {ifname}")))?;
    pod.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {ifname} up")))?;
    pod.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(GATEWAY, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
        )
        .execute()
        .await
        .map_err(nl("adding the gateway route"))?;
    pod.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(GATEWAY)
                .output_interface(index)
                .build(),
        )
        .execute()
        .await
        .map_err(nl("adding the default route"))?;
    pod.neighbours()
        .add(index, IpAddr::V4(GATEWAY))
        .link_layer_address(host_mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(nl("adding the gateway neighbour"))?;
    let link = find_link(pod, ifname)
        .await?
        .ok_or_else(|| VethError::Missing(ifname.to_owned()))?;
    Ok(format_mac(&mac_of(&link)))
}

/// Delete the pair by its host end (idempotent: a missing link is fine).
pub async fn delete(host_veth: &str) -> Result<(), VethError> {
    let host = host_handle()?;
    if let Some(link) = find_link(&host, host_veth).await? {
        match host.link().del(link.header.index).execute().await {
            Ok(()) => {}
            // Raced with the namespace going away, which deletes the pair too.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
            Err(source) => {
                return Err(VethError::Netlink {
                    what: format!("deleting {host_veth}"),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Verify the host end exists and is up, and the pod end carries `pod_ip`.
pub async fn check(host_veth: &str, netns: &Path, ifname: &str, pod_ip: Ipv4Addr) -> Result<(), VethError> {
    let host = host_handle()?;
    let link = find_link(&host, host_veth)
        .await?
        .ok_or_else(|| VethError::Missing(host_veth.to_owned()))?;
    if link.header.flags.bits() & libc::IFF_UP as u32 == 0 {
        return Err(VethError::Mismatch(format!("{host_veth} is down")));
    }
    let ifname = ifname.to_owned();
    in_netns(netns, move |pod| async move {
        let link = find_link(&pod, &ifname)
            .await?
            .ok_or_else(|| VethError::Missing(ifname.clone()))?;
        let mut addresses = pod.address().get().set_link_index_filter(link.header.index).execute();
        while let Some(address) = addresses.try_next().await.map_err(nl("listing pod addresses"))? {
            let has_ip = address.attributes.iter().any(|a| {
                matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) if *ip == pod_ip)
            });
            if has_ip {
                return Ok(());
            }
        }
        Err(VethError::Mismatch(format!(
            "{ifname} in the pod does not carry {pod_ip}"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_distinct_and_fit_the_kernel_limit() {
        let a = host_veth_name("0123456789abcdef", "eth0");
        assert_eq!(a, host_veth_name("0123456789abcdef", "eth0"));
        assert_ne!(a, host_veth_name("0123456789abcdef", "eth1"));
        assert_ne!(a, host_veth_name("fedcba9876543210", "eth0"));
        assert!(a.starts_with("lxc") && a.len() == 15);
        assert_eq!(temp_peer_name("x", "eth0").len(), 15);
    }
}
