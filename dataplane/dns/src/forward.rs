//! Forwarding of names outside the cluster domain to the node's upstream
//! resolvers (those of its `resolv.conf`), through hickory-resolver, whose
//! cache keeps positive answers for their TTL and negative ones for the SOA
//! minimum — CoreDNS's `forward . /etc/resolv.conf` plus `cache`.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::ProtoErrorKind;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveErrorKind, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;

/// Entries the forwarding cache keeps.
pub const CACHE_SIZE: usize = 10_000;

/// What upstream said.
#[derive(Debug)]
pub enum Forwarded {
    /// The answer records (CNAME chains included).
    Records(Vec<Record>),
    /// NXDOMAIN or NODATA, with the upstream SOA if it sent one.
    Negative {
        /// `NXDomain` or `NoError`.
        code: ResponseCode,
        /// Authority section.
        soa: Option<Box<Record>>,
    },
    /// No usable answer (timeouts, refused, no upstream): SERVFAIL.
    Failed,
}

/// A caching forwarder to fixed upstream resolvers.
pub struct Forwarder {
    resolver: Option<TokioResolver>,
}

impl Forwarder {
    /// Forward to `upstreams` (UDP, falling back to TCP on truncation),
    /// tried in order; none means every outside name fails (SERVFAIL).
    pub fn new(upstreams: &[SocketAddr]) -> Self {
        if upstreams.is_empty() {
            return Self { resolver: None };
        }
        let mut config = ResolverConfig::new();
        for addr in upstreams {
            for protocol in [Protocol::Udp, Protocol::Tcp] {
                let mut ns = NameServerConfig::new(*addr, protocol);
                ns.trust_negative_responses = true;
                config.add_name_server(ns);
            }
        }
        let mut opts = ResolverOpts::default();
        opts.ndots = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        opts.cache_size = CACHE_SIZE;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.edns0 = true;
        opts.preserve_intermediates = true;
        opts.recursion_desired = true;
        let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        *builder.options_mut() = opts;
        Self {
            resolver: Some(builder.build()),
        }
    }

    /// Look `name` up upstream (or in the cache).
    pub async fn lookup(&self, name: Name, rtype: RecordType) -> Forwarded {
        let Some(resolver) = &self.resolver else {
            return Forwarded::Failed;
        };
        let mut name = name;
        name.set_fqdn(true);
        match resolver.lookup(name.clone(), rtype).await {
            Ok(lookup) => Forwarded::Records(lookup.records().to_vec()),
            Err(e) => {
                if let ResolveErrorKind::Proto(p) = e.kind() {
                    if let ProtoErrorKind::NoRecordsFound { soa, response_code, .. } = p.kind() {
                        return Forwarded::Negative {
                            code: *response_code,
                            soa: soa.as_ref().map(|s| Box::new(Record::clone(s).into_record_of_rdata())),
                        };
                    }
                }
                tracing::debug!(%name, %rtype, error = %e, "forwarding failed");
                Forwarded::Failed
            }
        }
    }
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("enabled", &self.resolver.is_some())
            .finish()
    }
}
