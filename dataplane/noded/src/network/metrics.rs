//! The data plane's Prometheus series on the kubelet port's `/metrics`,
//! read from the eBPF maps at each scrape (Kubernetes has no names for these,
//! so they carry a `sluice_datapath_` prefix):
//!
//! | series | type | labels |
//! | --- | --- | --- |
//! | `sluice_datapath_service_packets_total`, `_bytes_total`, `_new_flows_total` | counter | frontend |
//! | `sluice_datapath_backend_packets_total`, `_bytes_total`, `_new_flows_total` | counter | frontend, `backend`, `pod` |
//! | `sluice_datapath_service_conntrack_flows` | gauge | frontend: its tracked flows (forward entries) |
//! | `sluice_datapath_conntrack_entries` | gauge | none: every entry, both directions |
//! | `sluice_datapath_drops_total` | counter | `reason` (`NoBackendReject`, `SourceDenied`, `NoLocalBackend`, `SnatExhausted`) |
//! | `sluice_datapath_events_total` | counter | `event`: every datapath event counter |
//!
//! Frontend labels: `namespace`, `service`, `port` (the Service port's name),
//! `frontend_type` (`ClusterIP`, `NodePort`, `External`, `HostPort`),
//! `frontend` (`10.96.0.10:80` or `*:30080` for node ports) and `protocol`;
//! names come from the Service proxy ([`sluice_proxy::names`]) and are empty
//! for frontends it does not know (hostPorts). Packets and bytes count both
//! directions of a frontend's flows; counters restart from zero when a
//! Service is deleted and recreated (its id is released), as Prometheus
//! counters may.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sluice_datapath::inspect::{CtDirection, Snapshot};
use sluice_datapath::{Frontend, Protocol, ServiceKind};
use sluice_proxy::names::ServiceNames;
use std::collections::HashMap;

/// Labels of a frontend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendLabels {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The Service port's name.
    pub port: String,
    /// `ClusterIP`, `NodePort`, `External` or `HostPort`.
    pub frontend_type: String,
    /// `10.96.0.10:80`, `*:30080`.
    pub frontend: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// Labels of a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The Service port's name.
    pub port: String,
    /// `ClusterIP`, `NodePort`, `External` or `HostPort`.
    pub frontend_type: String,
    /// `10.96.0.10:80`, `*:30080`.
    pub frontend: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// The endpoint, `10.244.0.5:8080`.
    pub backend: String,
    /// The endpoint's pod name (empty when not known).
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

fn kind(k: ServiceKind) -> &'static str {
    match k {
        ServiceKind::ClusterIp => "ClusterIP",
        ServiceKind::NodePort => "NodePort",
        ServiceKind::External => "External",
        ServiceKind::HostPort => "HostPort",
    }
}

/// The labels of frontend `f`.
pub fn frontend_labels(f: &Frontend, names: &ServiceNames) -> FrontendLabels {
    let named = names.service(f);
    FrontendLabels {
        namespace: named.map(|n| n.namespace.clone()).unwrap_or_default(),
        service: named.map(|n| n.name.clone()).unwrap_or_default(),
        port: named.map(|n| n.port.clone()).unwrap_or_default(),
        frontend_type: kind(f.kind).into(),
        frontend: match f.kind {
            ServiceKind::NodePort | ServiceKind::HostPort => format!("*:{}", f.port),
            _ => format!("{}:{}", f.ip, f.port),
        },
        protocol: match f.proto {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
        .into(),
    }
}

/// Register the data plane's series for one snapshot of the maps into `registry`.
pub fn register(registry: &mut Registry, snapshot: &Snapshot, names: &ServiceNames) {
    let counter_family = || Family::<FrontendLabels, Counter>::default();
    let (svc_packets, svc_bytes, svc_flows) = (counter_family(), counter_family(), counter_family());
    let svc_ct = Family::<FrontendLabels, Gauge>::default();
    let backend_family = || Family::<BackendLabels, Counter>::default();
    let (be_packets, be_bytes, be_flows) = (backend_family(), backend_family(), backend_family());
    let drops = Family::<ReasonLabels, Counter>::default();
    let events = Family::<EventLabels, Counter>::default();
    let ct_entries = Gauge::<i64>::default();

    let mut tracked: HashMap<u32, i64> = HashMap::new();
    for row in &snapshot.conntrack {
        if row.direction == CtDirection::Forward {
            *tracked.entry(row.service_id).or_default() += 1;
        }
    }
    ct_entries.set(snapshot.conntrack.len() as i64);
    for s in &snapshot.services {
        let labels = frontend_labels(&s.frontend, names);
        svc_packets.get_or_create(&labels).inc_by(s.traffic.packets);
        svc_bytes.get_or_create(&labels).inc_by(s.traffic.bytes);
        svc_flows.get_or_create(&labels).inc_by(s.traffic.flows);
        svc_ct
            .get_or_create(&labels)
            .set(tracked.get(&s.id).copied().unwrap_or(0));
    }
    for b in &snapshot.backends {
        let Some(f) = &b.frontend else { continue };
        let fl = frontend_labels(f, names);
        let labels = BackendLabels {
            namespace: fl.namespace,
            service: fl.service,
            port: fl.port,
            frontend_type: fl.frontend_type,
            frontend: fl.frontend,
            protocol: fl.protocol,
            backend: b.addr.to_string(),
            pod: names.pod(b.addr.ip()).map(|p| p.name.clone()).unwrap_or_default(),
        };
        be_packets.get_or_create(&labels).inc_by(b.traffic.packets);
        be_bytes.get_or_create(&labels).inc_by(b.traffic.bytes);
        be_flows.get_or_create(&labels).inc_by(b.traffic.flows);
    }
    for e in &snapshot.events {
        events
            .get_or_create(&EventLabels { event: e.name.into() })
            .inc_by(e.count);
        if e.drop {
            drops
                .get_or_create(&ReasonLabels { reason: e.name.into() })
                .inc_by(e.count);
        }
    }
    let r = registry;
    r.register(
        "sluice_datapath_service_packets",
        "Packets of a Service frontend's flows, both directions",
        svc_packets,
    );
    r.register(
        "sluice_datapath_service_bytes",
        "Bytes (IP length) of a Service frontend's flows, both directions",
        svc_bytes,
    );
    r.register(
        "sluice_datapath_service_new_flows",
        "New flows balanced by a Service frontend",
        svc_flows,
    );
    r.register(
        "sluice_datapath_service_conntrack_flows",
        "Flows of a Service frontend in the connection-tracking table",
        svc_ct,
    );
    r.register(
        "sluice_datapath_backend_packets",
        "Packets of the flows a frontend balanced to a backend, both directions",
        be_packets,
    );
    r.register(
        "sluice_datapath_backend_bytes",
        "Bytes (IP length) of the flows a frontend balanced to a backend, both directions",
        be_bytes,
    );
    r.register(
        "sluice_datapath_backend_new_flows",
        "New flows a frontend balanced to a backend",
        be_flows,
    );
    r.register(
        "sluice_datapath_conntrack_entries",
        "Entries of the connection-tracking table (two per flow)",
        ct_entries,
    );
    r.register(
        "sluice_datapath_drops",
        "New flows dropped or rejected by the data plane, by reason",
        drops,
    );
    r.register(
        "sluice_datapath_events",
        "Data plane events (new flows, translations, drops, ...), by event",
        events,
    );
}

/// The series of one snapshot as OpenMetrics text, without the closing `# EOF`.
pub fn render(snapshot: &Snapshot, names: &ServiceNames) -> String {
    let mut registry = Registry::default();
    register(&mut registry, snapshot, names);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;
    use sluice_datapath::inspect::{event_info, BackendRow, ConntrackRow, EventRow, ServiceRow};
    use sluice_datapath::{Event, TrafficCounter};

    fn names() -> ServiceNames {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}]
        }))
        .unwrap();
        ServiceNames::build(&[&svc], &[&slice])
    }

    fn event(e: Event, count: u64) -> EventRow {
        let (name, drop, description) = event_info(e);
        EventRow {
            event: e,
            name,
            drop,
            description,
            count,
        }
    }

    #[test]
    fn series_carry_service_backend_and_pod_names() {
        let np = Frontend::node_port(30080, Protocol::Tcp);
        let host = Frontend::host_port(8443, Protocol::Tcp);
        let traffic = TrafficCounter {
            packets: 12,
            bytes: 3400,
            flows: 2,
        };
        let snapshot = Snapshot {
            taken_ns: 0,
            services: vec![
                ServiceRow {
                    id: 4,
                    frontend: np,
                    backend_count: 1,
                    local_backend_count: 1,
                    flags: vec![],
                    maglev_size: 1021,
                    affinity_timeout_s: 0,
                    traffic,
                },
                ServiceRow {
                    id: 5,
                    frontend: host,
                    backend_count: 1,
                    local_backend_count: 1,
                    flags: vec![],
                    maglev_size: 1021,
                    affinity_timeout_s: 0,
                    traffic: TrafficCounter::default(),
                },
            ],
            backends: vec![BackendRow {
                id: 9,
                service_id: 4,
                frontend: Some(np),
                addr: "10.244.0.5:8080".parse().unwrap(),
                local: true,
                terminating: false,
                traffic,
                share: 1.0,
            }],
            conntrack: vec![
                ConntrackRow {
                    proto: "tcp".into(),
                    source: "10.0.0.9:40000".parse().unwrap(),
                    destination: "10.0.0.2:30080".parse().unwrap(),
                    direction: CtDirection::Forward,
                    nat: "10.244.0.5:8080".parse().unwrap(),
                    snat: None,
                    closing: false,
                    service_id: 4,
                    backend_id: 9,
                    idle_ns: 0,
                },
                ConntrackRow {
                    proto: "tcp".into(),
                    source: "10.244.0.5:8080".parse().unwrap(),
                    destination: "10.0.0.9:40000".parse().unwrap(),
                    direction: CtDirection::Reply,
                    nat: "10.0.0.2:30080".parse().unwrap(),
                    snat: None,
                    closing: false,
                    service_id: 4,
                    backend_id: 9,
                    idle_ns: 0,
                },
            ],
            events: vec![event(Event::NewFlow, 2), event(Event::NoBackendReject, 3)],
        };
        let text = render(&snapshot, &names());
        let front =
            r#"namespace="shop",service="web",port="http",frontend_type="NodePort",frontend="*:30080",protocol="TCP""#;
        for line in [
            format!("sluice_datapath_service_packets_total{{{front}}} 12"),
            format!("sluice_datapath_service_bytes_total{{{front}}} 3400"),
            format!("sluice_datapath_service_new_flows_total{{{front}}} 2"),
            format!("sluice_datapath_service_conntrack_flows{{{front}}} 1"),
            format!(r#"sluice_datapath_backend_packets_total{{{front},backend="10.244.0.5:8080",pod="web-1"}} 12"#),
            format!(r#"sluice_datapath_backend_new_flows_total{{{front},backend="10.244.0.5:8080",pod="web-1"}} 2"#),
            r#"sluice_datapath_service_packets_total{namespace="",service="",port="",frontend_type="HostPort",frontend="*:8443",protocol="TCP"} 0"#.to_string(),
            "sluice_datapath_conntrack_entries 2".to_string(),
            r#"sluice_datapath_drops_total{reason="NoBackendReject"} 3"#.to_string(),
            r#"sluice_datapath_events_total{event="NewFlow"} 2"#.to_string(),
            "# TYPE sluice_datapath_service_packets counter".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains(r#"sluice_datapath_drops_total{reason="NewFlow"}"#),
            "only drops are drops"
        );
        assert!(
            !text.contains("# EOF"),
            "the kubelet's series follow in the same exposition"
        );
    }
}
