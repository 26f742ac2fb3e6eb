//! The typed description of a service as the node daemon hands it to the
//! datapath: a frontend (ClusterIP, NodePort, external address or hostPort),
//! its backends and policies.

use crate::DatapathError;
use sluice_common::{scope, ServiceKey, PROTO_TCP, PROTO_UDP};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }
}

/// What kind of frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// A virtual IP reachable from pods on this node.
    ClusterIp,
    /// A port on every node address given to `attach_external_interface`.
    NodePort,
    /// An address from outside the cluster (a LoadBalancer ingress IP or one
    /// of `spec.externalIPs`): reached on the external interface and from pods.
    External,
    /// A pod's `hostPort`: a port on every node address, looked up after the NodePorts.
    HostPort,
}

/// One frontend: where clients send traffic. A Kubernetes Service of type
/// NodePort is programmed as two frontends (its ClusterIP and its node port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frontend {
    /// ClusterIP or NodePort.
    pub kind: ServiceKind,
    /// The VIP (ClusterIP) or the external address; ignored (0.0.0.0) for NodePort and HostPort.
    pub ip: Ipv4Addr,
    /// Service port or node port.
    pub port: u16,
    /// Protocol.
    pub proto: Protocol,
}

impl Frontend {
    /// A TCP ClusterIP frontend.
    pub fn tcp(ip: Ipv4Addr, port: u16) -> Self {
        Self {
            kind: ServiceKind::ClusterIp,
            ip,
            port,
            proto: Protocol::Tcp,
        }
    }
    /// A UDP ClusterIP frontend.
    pub fn udp(ip: Ipv4Addr, port: u16) -> Self {
        Self {
            kind: ServiceKind::ClusterIp,
            ip,
            port,
            proto: Protocol::Udp,
        }
    }
    /// A NodePort frontend.
    pub fn node_port(port: u16, proto: Protocol) -> Self {
        Self {
            kind: ServiceKind::NodePort,
            ip: Ipv4Addr::UNSPECIFIED,
            port,
            proto,
        }
    }

    /// An external frontend (LoadBalancer IP or external IP).
    pub fn external(ip: Ipv4Addr, port: u16, proto: Protocol) -> Self {
        Self {
            kind: ServiceKind::External,
            ip,
            port,
            proto,
        }
    }
    /// A hostPort frontend.
    pub fn host_port(port: u16, proto: Protocol) -> Self {
        Self {
            kind: ServiceKind::HostPort,
            ip: Ipv4Addr::UNSPECIFIED,
            port,
            proto,
        }
    }

    pub(crate) fn key(&self) -> ServiceKey {
        let (addr, scope) = match self.kind {
            ServiceKind::ClusterIp => (self.ip.octets(), scope::CLUSTER_IP),
            ServiceKind::NodePort => ([0; 4], scope::NODE_PORT),
            ServiceKind::External => (self.ip.octets(), scope::EXTERNAL),
            ServiceKind::HostPort => ([0; 4], scope::HOST_PORT),
        };
        ServiceKey {
            addr,
            port: self.port,
            proto: self.proto.number(),
            scope,
        }
    }

    pub(crate) fn from_key(k: &ServiceKey) -> Option<Self> {
        let proto = match k.proto {
            PROTO_TCP => Protocol::Tcp,
            PROTO_UDP => Protocol::Udp,
            _ => return None,
        };
        let kind = match k.scope {
            scope::CLUSTER_IP => ServiceKind::ClusterIp,
            scope::NODE_PORT => ServiceKind::NodePort,
            scope::EXTERNAL => ServiceKind::External,
            scope::HOST_PORT => ServiceKind::HostPort,
            _ => return None,
        };
        Some(Self {
            kind,
            ip: Ipv4Addr::from(k.addr),
            port: k.port,
            proto,
        })
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        match self.kind {
            ServiceKind::ClusterIp => write!(f, "{}:{}/{proto}", self.ip, self.port),
            ServiceKind::NodePort => write!(f, "nodeport:{}/{proto}", self.port),
            ServiceKind::External => write!(f, "external:{}:{}/{proto}", self.ip, self.port),
            ServiceKind::HostPort => write!(f, "hostport:{}/{proto}", self.port),
        }
    }
}

/// One endpoint behind a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Endpoint (pod) address.
    pub ip: Ipv4Addr,
    /// Target port.
    pub port: u16,
    /// The endpoint runs on this node (externalTrafficPolicy Local uses only these;
    /// NodePort to a remote endpoint is source-NATed).
    pub node_local: bool,
    /// The endpoint is terminating: it keeps its flows but gets no new ones.
    pub terminating: bool,
}

impl Backend {
    /// A ready, remote endpoint.
    pub fn new(ip: Ipv4Addr, port: u16) -> Self {
        Self {
            ip,
            port,
            node_local: false,
            terminating: false,
        }
    }
    /// The same endpoint, marked as running on this node.
    pub fn local(mut self) -> Self {
        self.node_local = true;
        self
    }
    pub(crate) fn endpoint(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.port)
    }
}

/// Everything the datapath needs to balance one frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Where clients connect.
    pub frontend: Frontend,
    /// Endpoints (ready and terminating).
    pub backends: Vec<Backend>,
    /// sessionAffinity ClientIP with this timeout (None: no affinity).
    pub affinity_timeout: Option<Duration>,
    /// externalTrafficPolicy Local (NodePort and external frontends): local endpoints only, client IP kept.
    pub external_traffic_local: bool,
    /// loadBalancerSourceRanges: allowed client prefixes (empty: everyone).
    pub source_ranges: Vec<(Ipv4Addr, u8)>,
    /// Maglev table size (a prime); None: the datapath's default.
    pub maglev_size: Option<u32>,
}

impl ServiceSpec {
    /// A ClusterIP service with default policies.
    pub fn cluster_ip(frontend: Frontend, backends: Vec<Backend>) -> Self {
        Self {
            frontend,
            backends,
            affinity_timeout: None,
            external_traffic_local: false,
            source_ranges: Vec::new(),
            maglev_size: None,
        }
    }

    /// A NodePort service with default policies.
    pub fn node_port(port: u16, proto: Protocol, backends: Vec<Backend>) -> Self {
        Self::cluster_ip(Frontend::node_port(port, proto), backends)
    }

    pub(crate) fn validate(&self) -> Result<(), DatapathError> {
        let bad = |reason: String| DatapathError::InvalidService {
            frontend: self.frontend.to_string(),
            reason,
        };
        if self.frontend.port == 0 {
            return Err(bad("port 0".into()));
        }
        if matches!(self.frontend.kind, ServiceKind::ClusterIp | ServiceKind::External)
            && self.frontend.ip.is_unspecified()
        {
            return Err(bad("a ClusterIP or external frontend needs an address".into()));
        }
        if let Some(size) = self.maglev_size {
            if size as usize > sluice_common::MAGLEV_MAX || !crate::maglev::is_prime(size) {
                return Err(bad(format!(
                    "maglev size {size} is not a prime ≤ {}",
                    sluice_common::MAGLEV_MAX
                )));
            }
        }
        for b in &self.backends {
            if b.port == 0 || b.ip.is_unspecified() {
                return Err(bad(format!("backend {}:{} is not an endpoint", b.ip, b.port)));
            }
        }
        for (ip, len) in &self.source_ranges {
            if *len > 32 {
                return Err(bad(format!("source range {ip}/{len}: prefix longer than 32")));
            }
        }
        if let Some(t) = self.affinity_timeout {
            if t.as_secs() == 0 || t.as_secs() > 86_400 {
                return Err(bad(format!("affinity timeout {t:?} outside 1s..=86400s")));
            }
        }
        Ok(())
    }
}
