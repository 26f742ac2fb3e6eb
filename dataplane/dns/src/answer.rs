//! What a question about the cluster domain answers — the rules of CoreDNS's
//! kubernetes plugin as a pure function of a [`Snapshot`].
//!
//! Names are matched case-insensitively, as label lists read from the right:
//! `<svc>.<ns>.svc`, `<endpoint>.<svc>.<ns>.svc`, `_<port>._<proto>.<svc>.<ns>.svc`,
//! `<a-b-c-d>.<ns>.pod`, `dns-version`, and reverse names under `in-addr.arpa`
//! and `ip6.arpa`. A name that exists but has no record of the asked type is
//! NODATA, a name that does not exist is NXDOMAIN (both carry the SOA, added
//! by the server); a reverse name of an address the cluster does not know is
//! not ours ([`Answer::NotOurs`]) and goes to the upstream resolvers, as with
//! CoreDNS's `fallthrough in-addr.arpa ip6.arpa`.

use crate::records::{dashed, undashed, EndpointRecord, PortRecord, ServiceKind, Snapshot};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The record types the cluster domain answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Reverse name.
    Ptr,
    /// Alias.
    Cname,
    /// Text (`dns-version`).
    Txt,
    /// Zone authority.
    Soa,
    /// All types (answered like A + AAAA + SRV).
    Any,
    /// Anything else (NS, MX, ...): NODATA for names that exist.
    Other,
}

/// Record data, with names as fully qualified lower-case strings without the
/// trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// An IPv4 or IPv6 address (A or AAAA by its family).
    Ip(IpAddr),
    /// Alias target.
    Cname(String),
    /// Service location (priority 0).
    Srv {
        /// Share of answers (100 split between the records, as CoreDNS does).
        weight: u16,
        /// Port.
        port: u16,
        /// Target name.
        target: String,
    },
    /// Reverse name.
    Ptr(String),
    /// Text.
    Txt(String),
    /// The zone's SOA.
    Soa,
}

/// One resource record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    /// Owner name (fully qualified, no trailing dot).
    pub name: String,
    /// Data.
    pub data: Data,
}

/// The answer to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Records for the answer and additional sections.
    Records {
        /// Answer section.
        answers: Vec<Rr>,
        /// Additional section (addresses of SRV targets).
        additional: Vec<Rr>,
        /// An ExternalName target outside the cluster domain, for the server
        /// to resolve upstream and append.
        chase: Option<String>,
    },
    /// The name exists, without records of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not the cluster's: forward upstream.
    NotOurs,
}

/// The version `dns-version.<domain>` answers (Kubernetes DNS specification).
pub const SCHEMA_VERSION: &str = "1.1.0";

fn strip_suffix<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    if name == suffix {
        return Some("");
    }
    name.strip_suffix(suffix)?.strip_suffix('.')
}

/// Answer `qname` (lower case, without the trailing dot) of type `qtype`
/// for the cluster domain `domain` (e.g. `cluster.local`).
pub fn answer(snap: &Snapshot, domain: &str, qname: &str, qtype: QType) -> Answer {
    if let Some(ip) = reverse_ip(qname) {
        return match snap.reverse.get(&ip) {
            Some(target) if matches!(qtype, QType::Ptr | QType::Any) => records(vec![Rr {
                name: qname.into(),
                data: Data::Ptr(format!("{target}.{domain}")),
            }]),
            Some(_) => Answer::NoData,
            None => Answer::NotOurs,
        };
    }
    let Some(rest) = strip_suffix(qname, domain) else {
        return Answer::NotOurs;
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.rsplit('.').collect()
    };
    match labels.as_slice() {
        [] => match qtype {
            QType::Soa | QType::Any => records(vec![Rr {
                name: qname.into(),
                data: Data::Soa,
            }]),
            _ => Answer::NoData,
        },
        ["dns-version"] => match qtype {
            QType::Txt | QType::Any => records(vec![Rr {
                name: qname.into(),
                data: Data::Txt(SCHEMA_VERSION.into()),
            }]),
            _ => Answer::NoData,
        },
        ["svc"] | ["pod"] => Answer::NoData,
        ["svc", ns] | ["pod", ns] => {
            if snap.namespaces.contains(*ns) {
                Answer::NoData
            } else {
                Answer::NxDomain
            }
        }
        ["svc", ns, svc] => service(snap, domain, qname, ns, svc, qtype),
        ["svc", ns, svc, endpoint] => endpoint_name(snap, domain, qname, ns, svc, endpoint, qtype),
        ["svc", ns, svc, proto, port] => srv(snap, domain, qname, ns, svc, port, proto, qtype),
        ["pod", ns, dashed_ip] => match undashed(dashed_ip) {
            Some(ip) if snap.pods.contains(&((*ns).to_string(), ip)) => address(qname, &[ip], qtype),
            _ => Answer::NxDomain,
        },
        _ => Answer::NxDomain,
    }
}

fn records(answers: Vec<Rr>) -> Answer {
    Answer::Records {
        answers,
        additional: Vec::new(),
        chase: None,
    }
}

fn wants(qtype: QType, ip: &IpAddr) -> bool {
    match qtype {
        QType::A => ip.is_ipv4(),
        QType::Aaaa => ip.is_ipv6(),
        QType::Any => true,
        _ => false,
    }
}

fn address(qname: &str, ips: &[IpAddr], qtype: QType) -> Answer {
    let answers: Vec<Rr> = ips
        .iter()
        .filter(|ip| wants(qtype, ip))
        .map(|ip| Rr {
            name: qname.into(),
            data: Data::Ip(*ip),
        })
        .collect();
    if answers.is_empty() {
        Answer::NoData
    } else {
        records(answers)
    }
}

fn service(snap: &Snapshot, domain: &str, qname: &str, ns: &str, svc: &str, qtype: QType) -> Answer {
    let Some(record) = snap.services.get(&(ns.to_string(), svc.to_string())) else {
        return Answer::NxDomain;
    };
    match &record.kind {
        ServiceKind::ExternalName(target) => {
            let answers = vec![Rr {
                name: qname.into(),
                data: Data::Cname(target.clone()),
            }];
            if matches!(qtype, QType::Cname) {
                return records(answers);
            }
            let chase = Some(target.clone());
            Answer::Records {
                answers,
                additional: Vec::new(),
                chase,
            }
        }
        ServiceKind::ClusterIp(ips) => {
            if qtype == QType::Srv {
                let targets: Vec<(&PortRecord, String)> = record.ports.iter().map(|p| (p, qname.to_string())).collect();
                return srv_answer(qname, &targets, ips);
            }
            address(qname, ips, qtype)
        }
        ServiceKind::Headless(endpoints) => {
            if endpoints.is_empty() {
                // CoreDNS: a headless Service without endpoints has no name.
                return Answer::NxDomain;
            }
            if qtype == QType::Srv {
                let targets: Vec<(&PortRecord, String)> = endpoints
                    .iter()
                    .flat_map(|e| {
                        e.ports
                            .iter()
                            .map(move |p| (p, format!("{}.{svc}.{ns}.svc.{domain}", e.label)))
                    })
                    .collect();
                return headless_srv(qname, &targets, endpoints);
            }
            let ips: Vec<IpAddr> = endpoints.iter().map(|e| e.ip).collect();
            address(qname, &ips, qtype)
        }
    }
}

fn endpoint_name(
    snap: &Snapshot,
    _domain: &str,
    qname: &str,
    ns: &str,
    svc: &str,
    label: &str,
    qtype: QType,
) -> Answer {
    let Some(record) = snap.services.get(&(ns.to_string(), svc.to_string())) else {
        return Answer::NxDomain;
    };
    let ServiceKind::Headless(endpoints) = &record.kind else {
        return Answer::NxDomain;
    };
    let ips: Vec<IpAddr> = endpoints.iter().filter(|e| e.label == label).map(|e| e.ip).collect();
    if ips.is_empty() {
        return Answer::NxDomain;
    }
    address(qname, &ips, qtype)
}

#[allow(clippy::too_many_arguments)]
fn srv(
    snap: &Snapshot,
    domain: &str,
    qname: &str,
    ns: &str,
    svc: &str,
    port: &str,
    proto: &str,
    qtype: QType,
) -> Answer {
    let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
        return Answer::NxDomain;
    };
    let Some(record) = snap.services.get(&(ns.to_string(), svc.to_string())) else {
        return Answer::NxDomain;
    };
    let matches = |p: &PortRecord| p.name == port && p.protocol == proto;
    let service_name = format!("{svc}.{ns}.svc.{domain}");
    match &record.kind {
        ServiceKind::ClusterIp(ips) => {
            let targets: Vec<(&PortRecord, String)> = record
                .ports
                .iter()
                .filter(|p| matches(p))
                .map(|p| (p, service_name.clone()))
                .collect();
            if targets.is_empty() {
                return Answer::NxDomain;
            }
            if !matches!(qtype, QType::Srv | QType::Any) {
                return Answer::NoData;
            }
            srv_answer(qname, &targets, ips)
        }
        ServiceKind::Headless(endpoints) => {
            let targets: Vec<(&PortRecord, String)> = endpoints
                .iter()
                .flat_map(|e| {
                    e.ports
                        .iter()
                        .filter(|p| matches(p))
                        .map(|p| (p, format!("{}.{service_name}", e.label)))
                })
                .collect();
            if targets.is_empty() {
                return Answer::NxDomain;
            }
            if !matches!(qtype, QType::Srv | QType::Any) {
                return Answer::NoData;
            }
            headless_srv(qname, &targets, endpoints)
        }
        ServiceKind::ExternalName(_) => Answer::NxDomain,
    }
}

fn weight(count: usize) -> u16 {
    u16::try_from(100 / count.max(1)).unwrap_or(100).max(1)
}

/// SRV records of a ClusterIP Service: the Service name as target, its
/// addresses in the additional section.
fn srv_answer(qname: &str, targets: &[(&PortRecord, String)], ips: &[IpAddr]) -> Answer {
    if targets.is_empty() {
        return Answer::NoData;
    }
    let w = weight(targets.len());
    let answers = targets
        .iter()
        .map(|(p, target)| Rr {
            name: qname.into(),
            data: Data::Srv {
                weight: w,
                port: p.port,
                target: target.clone(),
            },
        })
        .collect();
    let mut additional = Vec::new();
    if let Some((_, target)) = targets.first() {
        additional = ips
            .iter()
            .map(|ip| Rr {
                name: target.clone(),
                data: Data::Ip(*ip),
            })
            .collect();
    }
    Answer::Records {
        answers,
        additional,
        chase: None,
    }
}

/// SRV records of a headless Service: one per endpoint and port, each
/// endpoint's own name as target, its address in the additional section.
fn headless_srv(qname: &str, targets: &[(&PortRecord, String)], endpoints: &[EndpointRecord]) -> Answer {
    if targets.is_empty() {
        return Answer::NoData;
    }
    let w = weight(targets.len());
    let answers = targets
        .iter()
        .map(|(p, target)| Rr {
            name: qname.into(),
            data: Data::Srv {
                weight: w,
                port: p.port,
                target: target.clone(),
            },
        })
        .collect();
    let mut additional: Vec<Rr> = Vec::new();
    for (_, target) in targets {
        let label = target.split('.').next().unwrap_or_default();
        for e in endpoints.iter().filter(|e| e.label == label) {
            let rr = Rr {
                name: target.clone(),
                data: Data::Ip(e.ip),
            };
            if !additional.contains(&rr) {
                additional.push(rr);
            }
        }
    }
    Answer::Records {
        answers,
        additional,
        chase: None,
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles under
/// `ip6.arpa`) stands for, if it names one whole address.
pub fn reverse_ip(qname: &str) -> Option<IpAddr> {
    if let Some(rest) = qname.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
        let [d, c, b, a] = octets.as_slice() else { return None };
        return Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
    }
    if let Some(rest) = qname.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<u8> = rest
            .split('.')
            .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
            .collect::<Option<_>>()?;
        if nibbles.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in nibbles.rchunks(2).enumerate() {
            bytes[i] = (pair[1] << 4) | pair[0];
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bytes)));
    }
    None
}

/// The reverse name of an address (the inverse of [`reverse_ip`]).
pub fn reverse_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(33);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0xf));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".into());
            labels.join(".")
        }
    }
}

/// The pod name of an address (`10-244-1-5.<ns>.pod.<domain>`).
pub fn pod_name(ip: &IpAddr, ns: &str, domain: &str) -> String {
    format!("{}.{ns}.pod.{domain}", dashed(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    const D: &str = "cluster.local";

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn snapshot() -> Snapshot {
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "prod"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}})),
            svc(json!({"metadata": {"name": "db", "namespace": "prod"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
            svc(json!({"metadata": {"name": "empty", "namespace": "prod"},
                "spec": {"clusterIP": "None"}})),
            svc(json!({"metadata": {"name": "lazy", "namespace": "prod"},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}})),
            svc(json!({"metadata": {"name": "ext", "namespace": "prod"},
                "spec": {"type": "ExternalName", "externalName": "db.example.com."}})),
            svc(json!({"metadata": {"name": "v6", "namespace": "prod"},
                "spec": {"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"]}})),
        ];
        let slice = |svc: &str, eps: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": format!("{svc}-x"), "namespace": "prod",
                             "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
                "endpoints": eps
            }))
            .unwrap()
        };
        let slices = vec![
            slice(
                "db",
                json!([
                    {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "hostname": "db-0"},
                    {"addresses": ["10.244.2.6"], "conditions": {"ready": true}},
                    {"addresses": ["10.244.2.7"], "conditions": {"ready": false}}
                ]),
            ),
            slice(
                "lazy",
                json!([{"addresses": ["10.244.3.1"], "conditions": {"ready": false}}]),
            ),
        ];
        let pods: Vec<Pod> = vec![serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "dev"},
            "status": {"phase": "Running", "podIP": "10.244.9.9", "podIPs": [{"ip": "10.244.9.9"}]}
        }))
        .unwrap()];
        Snapshot::build(&services, &slices, &pods)
    }

    fn ips(a: &Answer) -> Vec<String> {
        match a {
            Answer::Records { answers, .. } => answers
                .iter()
                .map(|r| match &r.data {
                    Data::Ip(ip) => ip.to_string(),
                    Data::Cname(t) | Data::Ptr(t) => t.clone(),
                    Data::Srv { weight, port, target } => format!("{weight} {port} {target}"),
                    Data::Txt(t) => t.clone(),
                    Data::Soa => "SOA".into(),
                })
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    fn q(name: &str, t: QType) -> Vec<String> {
        ips(&answer(&snapshot(), D, name, t))
    }

    #[test]
    fn cluster_ip_service() {
        assert_eq!(q("web.prod.svc.cluster.local", QType::A), ["10.96.0.20"]);
        assert_eq!(q("web.prod.svc.cluster.local", QType::Aaaa), ["NoData"]);
        assert_eq!(q("web.prod.svc.cluster.local", QType::Other), ["NoData"]);
        assert_eq!(q("v6.prod.svc.cluster.local", QType::Aaaa), ["fd00::10"]);
        assert_eq!(q("nope.prod.svc.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("web.other.svc.cluster.local", QType::A), ["NxDomain"]);
    }

    #[test]
    fn headless_answers_ready_endpoints_and_their_names() {
        assert_eq!(q("db.prod.svc.cluster.local", QType::A), ["10.244.1.5", "10.244.2.6"]);
        assert_eq!(q("db-0.db.prod.svc.cluster.local", QType::A), ["10.244.1.5"]);
        assert_eq!(q("10-244-2-6.db.prod.svc.cluster.local", QType::A), ["10.244.2.6"]);
        assert_eq!(q("10-244-2-7.db.prod.svc.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("empty.prod.svc.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("lazy.prod.svc.cluster.local", QType::A), ["10.244.3.1"]);
    }

    #[test]
    fn srv_for_named_ports() {
        assert_eq!(
            q("_http._tcp.web.prod.svc.cluster.local", QType::Srv),
            ["100 80 web.prod.svc.cluster.local"]
        );
        assert_eq!(q("_http._udp.web.prod.svc.cluster.local", QType::Srv), ["NxDomain"]);
        assert_eq!(q("_http._tcp.web.prod.svc.cluster.local", QType::A), ["NoData"]);
        assert_eq!(
            q("_pg._tcp.db.prod.svc.cluster.local", QType::Srv),
            [
                "50 5433 db-0.db.prod.svc.cluster.local",
                "50 5433 10-244-2-6.db.prod.svc.cluster.local"
            ]
        );
        let Answer::Records { additional, .. } =
            answer(&snapshot(), D, "_pg._tcp.db.prod.svc.cluster.local", QType::Srv)
        else {
            panic!()
        };
        assert_eq!(additional.len(), 2);
        assert_eq!(additional[0].name, "db-0.db.prod.svc.cluster.local");
    }

    #[test]
    fn external_name_is_a_cname_chased_upstream() {
        let a = answer(&snapshot(), D, "ext.prod.svc.cluster.local", QType::A);
        assert_eq!(ips(&a), ["db.example.com"]);
        assert!(matches!(a, Answer::Records { chase: Some(ref t), .. } if t == "db.example.com"));
    }

    #[test]
    fn pods_by_dashed_address_in_their_namespace() {
        assert_eq!(q("10-244-9-9.dev.pod.cluster.local", QType::A), ["10.244.9.9"]);
        assert_eq!(q("10-244-9-9.prod.pod.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("10-244-9-8.dev.pod.cluster.local", QType::A), ["NxDomain"]);
    }

    #[test]
    fn reverse_names_of_services_endpoints_and_pods() {
        assert_eq!(q("20.0.96.10.in-addr.arpa", QType::Ptr), ["web.prod.svc.cluster.local"]);
        assert_eq!(
            q("5.1.244.10.in-addr.arpa", QType::Ptr),
            ["db-0.db.prod.svc.cluster.local"]
        );
        assert_eq!(
            q("9.9.244.10.in-addr.arpa", QType::Ptr),
            ["10-244-9-9.dev.pod.cluster.local"]
        );
        assert_eq!(q("1.1.1.1.in-addr.arpa", QType::Ptr), ["NotOurs"]);
        let v6: IpAddr = "fd00::10".parse().unwrap();
        assert_eq!(reverse_ip(&reverse_name(&v6)), Some(v6));
        assert_eq!(q(&reverse_name(&v6), QType::Ptr), ["v6.prod.svc.cluster.local"]);
    }

    #[test]
    fn zone_structure_and_outside_names() {
        assert_eq!(q("cluster.local", QType::Soa), ["SOA"]);
        assert_eq!(q("svc.cluster.local", QType::A), ["NoData"]);
        assert_eq!(q("prod.svc.cluster.local", QType::A), ["NoData"]);
        assert_eq!(q("nons.svc.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("a.b.c.d.e.svc.cluster.local", QType::A), ["NxDomain"]);
        assert_eq!(q("dns-version.cluster.local", QType::Txt), ["1.1.0"]);
        assert_eq!(q("example.com", QType::A), ["NotOurs"]);
        assert_eq!(q("notcluster.local", QType::A), ["NotOurs"]);
    }

    #[test]
    fn dashed_addresses_round_trip() {
        for ip in ["10.1.2.3", "fd00::1", "2001:db8::a:b"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed(&dashed(&ip)), Some(ip));
        }
        assert_eq!(undashed("web-0"), None);
    }
}
