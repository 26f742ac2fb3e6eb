//! Native routing between nodes: one kernel route per other node,
//! `<its podCIDR> via <its InternalIP>`, in the calling thread's network
//! namespace (rtnetlink).
//!
//! Sluice's routes carry their own route protocol number
//! ([`ROUTE_PROTOCOL`], shown by `ip route` as `proto 201`), so a restarted
//! node daemon finds the ones it made and [`sync_node_routes`] replaces,
//! adds and deletes exactly those: routes of other owners are never touched.
//! Pods therefore reach pods of other nodes by their own addresses (no NAT,
//! no tunnel); the nodes must share an L2 network or a router that knows the
//! podCIDRs.

use crate::DatapathError;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use tracing::info;

/// The route protocol number marking Sluice's routes (`ip route show proto 201`).
pub const ROUTE_PROTOCOL: u8 = 201;
/// The kernel's main routing table.
const MAIN_TABLE: u8 = 254;

/// A route to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRoute {
    /// The other node's podCIDR (address, prefix length).
    pub pod_cidr: (Ipv4Addr, u8),
    /// Its InternalIP (the next hop).
    pub via: Ipv4Addr,
}

impl std::fmt::Display for NodeRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} via {}", self.pod_cidr.0, self.pod_cidr.1, self.via)
    }
}

/// What [`sync_node_routes`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Routes added or given a new next hop.
    pub set: Vec<NodeRoute>,
    /// Routes deleted (their node is gone).
    pub deleted: Vec<NodeRoute>,
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Route { what, source }
}

fn handle() -> Result<Handle, DatapathError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|source| DatapathError::PinDir {
        path: "netlink socket".into(),
        source,
    })?;
    tokio::spawn(connection);
    Ok(handle)
}

fn parse(msg: &RouteMessage) -> Option<NodeRoute> {
    let mut dst = None;
    let mut via = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(*ip),
            _ => {}
        }
    }
    Some(NodeRoute {
        pod_cidr: (
            dst.unwrap_or(Ipv4Addr::UNSPECIFIED),
            msg.header.destination_prefix_length,
        ),
        via: via?,
    })
}

async fn owned(handle: &Handle) -> Result<Vec<(NodeRoute, RouteMessage)>, DatapathError> {
    let mut dump = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(msg) = dump.try_next().await.map_err(nl("listing routes"))? {
        if msg.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) || msg.header.table != MAIN_TABLE {
            continue;
        }
        if let Some(route) = parse(&msg) {
            out.push((route, msg));
        }
    }
    Ok(out)
}

/// Sluice's node routes in this network namespace.
pub async fn node_routes() -> Result<Vec<NodeRoute>, DatapathError> {
    let mut routes: Vec<NodeRoute> = owned(&handle()?).await?.into_iter().map(|(r, _)| r).collect();
    routes.sort();
    Ok(routes)
}

/// Make Sluice's node routes exactly `desired` (one per podCIDR): set the
/// missing or changed ones, delete the others. Needs a tokio runtime; acts
/// in the calling thread's network namespace.
pub async fn sync_node_routes(desired: &[NodeRoute]) -> Result<RouteChanges, DatapathError> {
    let handle = handle()?;
    let want: BTreeMap<(Ipv4Addr, u8), Ipv4Addr> = desired.iter().map(|r| (r.pod_cidr, r.via)).collect();
    let have = owned(&handle).await?;
    let mut changes = RouteChanges::default();
    for (route, msg) in have.iter() {
        if !want.contains_key(&route.pod_cidr) {
            handle
                .route()
                .del(msg.clone())
                .execute()
                .await
                .map_err(nl(format!("deleting route {route}")))?;
            changes.deleted.push(*route);
        }
    }
    for (cidr, via) in want {
        let route = NodeRoute { pod_cidr: cidr, via };
        if have.iter().any(|(r, _)| *r == route) {
            continue;
        }
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.0, cidr.1)
            .gateway(via)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build();
        handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("setting route {route}")))?;
        changes.set.push(route);
    }
    if !changes.set.is_empty() || !changes.deleted.is_empty() {
        info!(set = ?changes.set.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            deleted = ?changes.deleted.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "node routes updated");
    }
    Ok(changes)
}
