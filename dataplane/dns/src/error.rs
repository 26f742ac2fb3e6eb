//! Errors of the DNS server.

use std::net::SocketAddr;

/// What can stop the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listener could not be bound.
    #[error("binding the DNS server to {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// A watch ended for good.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}
