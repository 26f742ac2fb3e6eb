//! The cluster's DNS data as one immutable [`Snapshot`], built from the
//! Services, EndpointSlices and Pods the watches cache.
//!
//! The snapshot holds exactly what the CoreDNS kubernetes plugin derives
//! from those objects: a ClusterIP Service's addresses and ports, a headless
//! Service's endpoints (ready ones, or all with `publishNotReadyAddresses`)
//! with their hostnames and the ports of their slices, an ExternalName
//! Service's target, the pods' addresses per namespace (`pods verified`),
//! and a reverse map for PTR answers. Building it is pure, so every rule is
//! unit-tested without an API server; the server swaps whole snapshots, so a
//! query never sees half of an update.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A port as DNS publishes it in SRV records.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRecord {
    /// The port's name (SRV records exist only for named ports).
    pub name: String,
    /// `tcp`, `udp` or `sctp` (lower case, as in `_http._tcp`).
    pub protocol: String,
    /// The port number.
    pub port: u16,
}

/// One address of a headless Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    /// The endpoint's address.
    pub ip: IpAddr,
    /// The first label of its own name: the endpoint's `hostname` (a pod's
    /// `spec.hostname` under a matching `spec.subdomain`), else the address
    /// with dashes (`10-244-1-5`).
    pub label: String,
    /// The ports of the slice the address came from.
    pub ports: Vec<PortRecord>,
}

/// What a Service name answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A/AAAA with the cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// A/AAAA with the endpoints' addresses.
    Headless(Vec<EndpointRecord>),
    /// A CNAME to this name.
    ExternalName(String),
}

/// A Service as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    /// What its name answers.
    pub kind: ServiceKind,
    /// Its named ports (for ClusterIP Services; headless ones use the
    /// endpoints' ports).
    pub ports: Vec<PortRecord>,
}

/// Everything the server answers for the cluster domain, at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Services by (namespace, name).
    pub services: HashMap<(String, String), ServiceRecord>,
    /// Namespaces that hold a Service or a Pod (`<ns>.svc.<domain>` exists).
    pub namespaces: HashSet<String>,
    /// Pod addresses by namespace (`a-b-c-d.<ns>.pod.<domain>` exists).
    pub pods: HashSet<(String, IpAddr)>,
    /// Reverse names (without the domain suffix, e.g. `web.prod.svc`).
    pub reverse: HashMap<IpAddr, String>,
}

/// `10.0.0.1` → `10-0-0-1`, `fd00::1` → `fd00--1` (Kubernetes' dashed form).
pub fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The inverse of [`dashed`].
pub fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains(':') {
        if let Ok(ip) = label.replace('-', ".").parse::<std::net::Ipv4Addr>() {
            return Some(IpAddr::V4(ip));
        }
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<(String, String)> {
    Some((
        meta.namespace
            .clone()
            .unwrap_or_else(|| "default".into())
            .to_ascii_lowercase(),
        meta.name.clone()?.to_ascii_lowercase(),
    ))
}

fn service_ports(svc: &Service) -> Vec<PortRecord> {
    let mut ports: Vec<PortRecord> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some(PortRecord {
                name: name.to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    ports.sort();
    ports
}

fn slice_ports(slice: &EndpointSlice) -> Vec<PortRecord> {
    let mut ports: Vec<PortRecord> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty())?;
            Some(PortRecord {
                name: name.to_ascii_lowercase(),
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: u16::try_from(p.port?).ok()?,
            })
        })
        .collect();
    ports.sort();
    ports
}

impl Snapshot {
    /// Build the snapshot from the watched objects.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Snapshot {
        let mut snap = Snapshot::default();
        let mut slices_by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
                continue;
            };
            let ns = slice
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
                .to_ascii_lowercase();
            slices_by_service
                .entry((ns, svc.to_ascii_lowercase()))
                .or_default()
                .push(slice);
        }
        // Services, sorted so that reverse entries are deterministic.
        let mut sorted: BTreeMap<(String, String), &Service> = BTreeMap::new();
        for svc in services {
            if let Some(key) = ns_name(&svc.metadata) {
                sorted.insert(key, svc);
            }
        }
        for (key, svc) in sorted {
            let Some(spec) = svc.spec.as_ref() else { continue };
            let fqdn_base = format!("{}.{}.svc", key.1, key.0);
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                let Some(target) = spec.external_name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                ServiceKind::ExternalName(target.trim_end_matches('.').to_ascii_lowercase())
            } else if spec
                .cluster_ip
                .as_deref()
                .is_none_or(|ip| ip == "None" || ip.is_empty())
            {
                let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
                let mut endpoints = Vec::new();
                let mut seen = HashSet::new();
                for slice in slices_by_service.get(&key).into_iter().flatten() {
                    let ports = slice_ports(slice);
                    for ep in slice.endpoints.iter().flatten() {
                        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                        if !ready && !publish_not_ready {
                            continue;
                        }
                        for addr in &ep.addresses {
                            let Ok(ip) = addr.parse::<IpAddr>() else { continue };
                            if !seen.insert(ip) {
                                continue;
                            }
                            let label = ep
                                .hostname
                                .as_deref()
                                .filter(|h| !h.is_empty())
                                .map(str::to_ascii_lowercase)
                                .unwrap_or_else(|| dashed(&ip));
                            snap.reverse.entry(ip).or_insert_with(|| format!("{label}.{fqdn_base}"));
                            endpoints.push(EndpointRecord {
                                ip,
                                label,
                                ports: ports.clone(),
                            });
                        }
                    }
                }
                endpoints.sort_by_key(|e| e.ip);
                ServiceKind::Headless(endpoints)
            } else {
                let mut ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.iter())
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                ips.sort();
                ips.dedup();
                for ip in &ips {
                    snap.reverse.insert(*ip, fqdn_base.clone());
                }
                ServiceKind::ClusterIp(ips)
            };
            snap.namespaces.insert(key.0.clone());
            snap.services.insert(
                key,
                ServiceRecord {
                    kind,
                    ports: service_ports(svc),
                },
            );
        }
        for pod in pods {
            let Some((ns, _)) = ns_name(&pod.metadata) else {
                continue;
            };
            let Some(status) = pod.status.as_ref() else { continue };
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                continue; // its address may already be another pod's
            }
            if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                continue; // the node's address, not the pod's
            }
            let ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref());
            for ip in ips {
                let Ok(ip) = ip.parse::<IpAddr>() else { continue };
                snap.reverse
                    .entry(ip)
                    .or_insert_with(|| format!("{}.{ns}.pod", dashed(&ip)));
                snap.pods.insert((ns.clone(), ip));
            }
            snap.namespaces.insert(ns);
        }
        snap
    }
}
