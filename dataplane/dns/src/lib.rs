//! Cluster DNS: the names of the cluster domain (`cluster.local` by default)
//! answered from Services, EndpointSlices and Pods, as CoreDNS's kubernetes
//! plugin answers them, and every other name forwarded to the node's
//! upstream resolvers with a cache.
//!
//! Layers, pure to effectful: [`records`] builds an immutable [`Snapshot`]
//! from the objects; [`answer`] decides what one question answers (records,
//! NODATA, NXDOMAIN or "not ours"); [`server`] speaks DNS over UDP and TCP
//! with hickory-proto (SOA on negative answers, truncation, EDNS) and asks
//! [`forward`] (hickory-resolver) for outside names; [`watch`] keeps the
//! snapshot current from kube reflectors. The node daemon runs one server
//! per node (see ARCHITECTURE.md, "Cluster DNS").
//!
//! ```ignore
//! let zone = Zone::new("cluster.local", Forwarder::new(&upstreams));
//! let server = Server::bind(&DnsConfig { domain, listen }, zone.clone()).await?;
//! sluice_dns::watch::feed(client, zone).await?;
//! ```

pub mod answer;
mod error;
pub mod forward;
pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod watch;

pub use error::DnsError;
pub use forward::Forwarder;
pub use records::Snapshot;
pub use resolv_conf::ResolvConf;
pub use server::{DnsConfig, Server, Zone, TTL};
