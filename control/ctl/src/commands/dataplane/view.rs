//! The tables and JSON of `ctl dataplane`, from snapshots of the maps: pure
//! functions (no bpffs, no API), so every column is unit-tested.
//!
//! Compared with `cilium bpf lb list` (one line per frontend/backend pair,
//! raw addresses, revNAT ids and slots): every row says which node and
//! which Service (`namespace/name:port`) it is, the backend's pod, its
//! packets, bytes and share of the Service's packets; with `--follow` each
//! counter also gets its rate since the previous read.

use super::names::Names;
use crate::printer::Grid;
use serde_json::{json, Value};
use sluice_datapath::inspect::{BackendRow, ConntrackRow, CtDirection, EventRow, ServiceRow, Snapshot};
use sluice_datapath::{Frontend, Protocol, ServiceKind};

/// One node's snapshot.
#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    /// Node name (the pin directory's name).
    pub node: String,
    /// What its maps held.
    pub snapshot: Snapshot,
}

/// How to show rows.
#[derive(Clone, Debug, Default)]
pub struct ViewOptions {
    /// `-o wide`: more columns (and reply conntrack entries, every event).
    pub wide: bool,
    /// Only rows of this Service (`namespace/name`).
    pub service: Option<String>,
    /// Only rows of Services in this namespace.
    pub namespace: Option<String>,
}

/// Per-second rate of a counter between two reads `elapsed_ns` apart. A
/// counter that went down was reset (its map was replaced): its whole
/// current value counts as the delta.
pub fn rate(previous: u64, current: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    let delta = if current >= previous {
        current - previous
    } else {
        current
    };
    delta as f64 * 1e9 / elapsed_ns as f64
}

/// Bytes for people: `512B`, `9.1KiB`, `3.0MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b}B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// A rate for people: `0/s`, `12/s`, `3.4k/s`, `1.2M/s`.
pub fn human_rate(r: f64) -> String {
    if r < 0.05 {
        "0/s".to_string()
    } else if r < 10.0 {
        format!("{r:.1}/s")
    } else if r < 1000.0 {
        format!("{r:.0}/s")
    } else if r < 1e6 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{:.1}M/s", r / 1e6)
    }
}

/// An idle time for people, as kubectl prints ages: `850ms`, `42s`, `5m3s`, `2h10m`.
pub fn human_idle(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ms / 1000;
    if s == 0 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Kubernetes' word for a frontend's kind.
pub fn kind(k: ServiceKind) -> &'static str {
    match k {
        ServiceKind::ClusterIp => "ClusterIP",
        ServiceKind::NodePort => "NodePort",
        ServiceKind::External => "External",
        ServiceKind::HostPort => "HostPort",
    }
}

/// A frontend as `10.96.0.10:80/TCP`; NodePort and hostPort frontends answer on every node address: `*:30080/TCP`.
pub fn frontend(f: &Frontend) -> String {
    match f.kind {
        ServiceKind::NodePort | ServiceKind::HostPort => format!("*:{}/{}", f.port, proto(f.proto)),
        _ => format!("{}:{}/{}", f.ip, f.port, proto(f.proto)),
    }
}

fn service_label(names: &Names, f: Option<&Frontend>) -> String {
    match f {
        Some(f) if f.kind == ServiceKind::HostPort => "<hostPort>".to_string(),
        Some(f) => names.service(f).map(|s| s.display()).unwrap_or_else(|| "-".to_string()),
        None => "-".to_string(),
    }
}

/// Whether a frontend passes the `--service` / namespace filters.
pub fn wanted(names: &Names, f: Option<&Frontend>, opts: &ViewOptions) -> bool {
    if opts.service.is_none() && opts.namespace.is_none() {
        return true;
    }
    let Some(s) = f.and_then(|f| names.service(f)) else {
        return false;
    };
    opts.service.as_ref().is_none_or(|want| s.key() == *want)
        && opts.namespace.as_ref().is_none_or(|ns| s.namespace == *ns)
}

fn previous<'a>(prev: Option<&'a [NodeSnapshot]>, node: &str) -> Option<&'a Snapshot> {
    prev?.iter().find(|n| n.node == node).map(|n| &n.snapshot)
}

fn elapsed(prev: &Snapshot, cur: &Snapshot) -> u64 {
    cur.taken_ns.saturating_sub(prev.taken_ns)
}

fn service_rows<'a>(
    nodes: &'a [NodeSnapshot],
    names: &'a Names,
    opts: &'a ViewOptions,
) -> impl Iterator<Item = (&'a NodeSnapshot, &'a ServiceRow)> {
    nodes.iter().flat_map(move |n| {
        n.snapshot
            .services
            .iter()
            .filter(move |s| wanted(names, Some(&s.frontend), opts))
            .map(move |s| (n, s))
    })
}

/// `ctl dataplane services` as a table; with `prev`, packet and byte rates too.
pub fn services_grid(nodes: &[NodeSnapshot], prev: Option<&[NodeSnapshot]>, names: &Names, opts: &ViewOptions) -> Grid {
    let mut headers = vec!["NODE", "SERVICE", "TYPE", "FRONTEND", "BACKENDS", "PACKETS", "BYTES"];
    if prev.is_some() {
        headers.extend(["PKT/S", "BYTES/S"]);
    }
    if opts.wide {
        headers.extend(["ID", "LOCAL", "FLAGS", "MAGLEV"]);
    }
    let rows = service_rows(nodes, names, opts)
        .map(|(n, s)| {
            let mut row = vec![
                n.node.clone(),
                service_label(names, Some(&s.frontend)),
                kind(s.frontend.kind).to_string(),
                frontend(&s.frontend),
                s.backend_count.to_string(),
                s.traffic.packets.to_string(),
                human_bytes(s.traffic.bytes),
            ];
            if let Some(p) = previous(prev, &n.node) {
                let before = p.services.iter().find(|x| x.id == s.id && x.frontend == s.frontend);
                let t = elapsed(p, &n.snapshot);
                let (bp, bb) = before.map_or((0, 0), |b| (b.traffic.packets, b.traffic.bytes));
                row.push(human_rate(rate(bp, s.traffic.packets, t)));
                row.push(human_bytes(rate(bb, s.traffic.bytes, t) as u64) + "/s");
            } else if prev.is_some() {
                row.extend(["-".to_string(), "-".to_string()]);
            }
            if opts.wide {
                let mut flags = s.flags.join(",");
                if s.affinity_timeout_s > 0 {
                    flags = format!("{flags}({}s)", s.affinity_timeout_s);
                }
                row.extend([
                    s.id.to_string(),
                    s.local_backend_count.to_string(),
                    if flags.is_empty() { "-".into() } else { flags },
                    s.maglev_size.to_string(),
                ]);
            }
            row
        })
        .collect();
    Grid {
        headers: headers.into_iter().map(String::from).collect(),
        rows,
    }
}

fn backend_rows<'a>(
    nodes: &'a [NodeSnapshot],
    names: &'a Names,
    opts: &'a ViewOptions,
) -> impl Iterator<Item = (&'a NodeSnapshot, &'a BackendRow)> {
    nodes.iter().flat_map(move |n| {
        n.snapshot
            .backends
            .iter()
            .filter(move |b| wanted(names, b.frontend.as_ref(), opts))
            .map(move |b| (n, b))
    })
}

/// A share as a percentage with a ten-step bar: `52% █████`.
pub fn share_bar(share: f64) -> String {
    let pct = (share * 100.0).round().clamp(0.0, 100.0);
    let blocks = (share * 10.0).round().clamp(0.0, 10.0) as usize;
    format!("{pct:>3.0}% {}", "█".repeat(blocks))
}

/// `ctl dataplane backends` as a table.
pub fn backends_grid(nodes: &[NodeSnapshot], prev: Option<&[NodeSnapshot]>, names: &Names, opts: &ViewOptions) -> Grid {
    let mut headers = vec![
        "NODE", "SERVICE", "FRONTEND", "BACKEND", "POD", "STATE", "PACKETS", "BYTES", "SHARE",
    ];
    if prev.is_some() {
        headers.push("PKT/S");
    }
    if opts.wide {
        headers.extend(["ID", "SERVICE-ID", "LOCAL"]);
    }
    let rows = backend_rows(nodes, names, opts)
        .map(|(n, b)| {
            let mut row = vec![
                n.node.clone(),
                service_label(names, b.frontend.as_ref()),
                b.frontend.as_ref().map_or_else(|| "-".to_string(), frontend),
                b.addr.to_string(),
                names.pod(&b.addr).unwrap_or("-").to_string(),
                if b.terminating { "terminating" } else { "active" }.to_string(),
                b.traffic.packets.to_string(),
                human_bytes(b.traffic.bytes),
                share_bar(b.share),
            ];
            if let Some(p) = previous(prev, &n.node) {
                let before = p
                    .backends
                    .iter()
                    .find(|x| x.id == b.id && x.addr == b.addr)
                    .map_or(0, |x| x.traffic.packets);
                row.push(human_rate(rate(before, b.traffic.packets, elapsed(p, &n.snapshot))));
            } else if prev.is_some() {
                row.push("-".into());
            }
            if opts.wide {
                row.extend([
                    b.id.to_string(),
                    b.service_id.to_string(),
                    if b.local { "yes" } else { "no" }.to_string(),
                ]);
            }
            row
        })
        .collect();
    Grid {
        headers: headers.into_iter().map(String::from).collect(),
        rows,
    }
}

fn ct_frontend<'a>(n: &'a NodeSnapshot, c: &ConntrackRow) -> Option<&'a Frontend> {
    n.snapshot
        .services
        .iter()
        .find(|s| s.id == c.service_id)
        .map(|s| &s.frontend)
}

fn ct_state(c: &ConntrackRow) -> &'static str {
    match (c.proto.as_str(), c.closing) {
        (_, true) => "closing",
        ("tcp", false) => "established",
        _ => "active",
    }
}

fn conntrack_rows<'a>(
    nodes: &'a [NodeSnapshot],
    names: &'a Names,
    opts: &'a ViewOptions,
) -> impl Iterator<Item = (&'a NodeSnapshot, &'a ConntrackRow)> {
    nodes.iter().flat_map(move |n| {
        n.snapshot
            .conntrack
            .iter()
            .filter(move |c| opts.wide || c.direction == CtDirection::Forward)
            .filter(move |c| wanted(names, ct_frontend(n, c), opts))
            .map(move |c| (n, c))
    })
}

/// `ctl dataplane conntrack` as a table: one row per flow (its forward
/// entry: client → frontend, balanced to a backend); `-o wide` adds the
/// reply entries and the source NAT.
pub fn conntrack_grid(nodes: &[NodeSnapshot], names: &Names, opts: &ViewOptions) -> Grid {
    let mut headers = vec![
        "NODE",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "BACKEND",
        "SERVICE",
        "STATE",
        "IDLE",
    ];
    if opts.wide {
        headers = vec![
            "NODE",
            "DIR",
            "PROTO",
            "SOURCE",
            "DESTINATION",
            "NAT",
            "SNAT",
            "SERVICE",
            "STATE",
            "IDLE",
            "SERVICE-ID",
            "BACKEND-ID",
        ];
    }
    let rows = conntrack_rows(nodes, names, opts)
        .map(|(n, c)| {
            let service = service_label(names, ct_frontend(n, c));
            if opts.wide {
                vec![
                    n.node.clone(),
                    match c.direction {
                        CtDirection::Forward => "forward",
                        CtDirection::Reply => "reply",
                    }
                    .to_string(),
                    c.proto.to_uppercase(),
                    c.source.to_string(),
                    c.destination.to_string(),
                    c.nat.to_string(),
                    c.snat.map_or_else(|| "-".to_string(), |s| s.to_string()),
                    service,
                    ct_state(c).to_string(),
                    human_idle(c.idle_ns),
                    c.service_id.to_string(),
                    c.backend_id.to_string(),
                ]
            } else {
                vec![
                    n.node.clone(),
                    c.proto.to_uppercase(),
                    c.source.to_string(),
                    c.destination.to_string(),
                    c.nat.to_string(),
                    service,
                    ct_state(c).to_string(),
                    human_idle(c.idle_ns),
                ]
            }
        })
        .collect();
    Grid {
        headers: headers.into_iter().map(String::from).collect(),
        rows,
    }
}

fn event_rows<'a>(
    nodes: &'a [NodeSnapshot],
    opts: &'a ViewOptions,
) -> impl Iterator<Item = (&'a NodeSnapshot, &'a EventRow)> {
    nodes.iter().flat_map(move |n| {
        n.snapshot
            .events
            .iter()
            .filter(move |e| opts.wide || e.drop)
            .map(move |e| (n, e))
    })
}

/// `ctl dataplane drops` as a table: every drop and reject reason with its
/// count (zeros too, so "none" is visible); `-o wide`: every event.
pub fn drops_grid(nodes: &[NodeSnapshot], prev: Option<&[NodeSnapshot]>, opts: &ViewOptions) -> Grid {
    let mut headers = vec!["NODE", "REASON", "COUNT"];
    if prev.is_some() {
        headers.push("RATE");
    }
    if opts.wide {
        headers.push("VERDICT");
    }
    headers.push("DESCRIPTION");
    let rows = event_rows(nodes, opts)
        .map(|(n, e)| {
            let mut row = vec![n.node.clone(), e.name.to_string(), e.count.to_string()];
            if let Some(p) = previous(prev, &n.node) {
                let before = p.events.iter().find(|x| x.event == e.event).map_or(0, |x| x.count);
                row.push(human_rate(rate(before, e.count, elapsed(p, &n.snapshot))));
            } else if prev.is_some() {
                row.push("-".into());
            }
            if opts.wide {
                row.push(if e.drop { "dropped" } else { "forwarded" }.to_string());
            }
            row.push(e.description.to_string());
            row
        })
        .collect();
    Grid {
        headers: headers.into_iter().map(String::from).collect(),
        rows,
    }
}

fn frontend_json(f: &Frontend) -> Value {
    json!({
        "type": kind(f.kind),
        "address": f.ip.to_string(),
        "port": f.port,
        "protocol": proto(f.proto),
    })
}

fn service_json(names: &Names, f: Option<&Frontend>) -> Value {
    match f.and_then(|f| names.service(f)) {
        Some(s) => json!({"namespace": s.namespace, "name": s.name, "port": s.port}),
        None => Value::Null,
    }
}

/// Which table `-o json` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// Frontends.
    Services,
    /// Backends.
    Backends,
    /// Conntrack entries.
    Conntrack,
    /// Event counters (drop reasons; every event with wide).
    Drops,
}

/// The rows as JSON objects (raw counters, no rounding), filtered as the table would be.
pub fn json_rows(what: What, nodes: &[NodeSnapshot], names: &Names, opts: &ViewOptions) -> Vec<Value> {
    match what {
        What::Services => service_rows(nodes, names, opts)
            .map(|(n, s)| {
                json!({
                    "node": n.node,
                    "service": service_json(names, Some(&s.frontend)),
                    "frontend": frontend_json(&s.frontend),
                    "id": s.id,
                    "backends": s.backend_count,
                    "localBackends": s.local_backend_count,
                    "flags": s.flags,
                    "affinityTimeoutSeconds": s.affinity_timeout_s,
                    "maglevSize": s.maglev_size,
                    "packets": s.traffic.packets,
                    "bytes": s.traffic.bytes,
                })
            })
            .collect(),
        What::Backends => backend_rows(nodes, names, opts)
            .map(|(n, b)| {
                json!({
                    "node": n.node,
                    "service": service_json(names, b.frontend.as_ref()),
                    "frontend": b.frontend.as_ref().map(frontend_json),
                    "id": b.id,
                    "serviceId": b.service_id,
                    "address": b.addr.ip().to_string(),
                    "port": b.addr.port(),
                    "pod": names.pod(&b.addr),
                    "local": b.local,
                    "terminating": b.terminating,
                    "packets": b.traffic.packets,
                    "bytes": b.traffic.bytes,
                    "share": b.share,
                })
            })
            .collect(),
        What::Conntrack => conntrack_rows(nodes, names, opts)
            .map(|(n, c)| {
                json!({
                    "node": n.node,
                    "direction": match c.direction { CtDirection::Forward => "forward", CtDirection::Reply => "reply" },
                    "protocol": c.proto.to_uppercase(),
                    "source": c.source.to_string(),
                    "destination": c.destination.to_string(),
                    "nat": c.nat.to_string(),
                    "snat": c.snat.map(|s| s.to_string()),
                    "service": service_json(names, ct_frontend(n, c)),
                    "serviceId": c.service_id,
                    "backendId": c.backend_id,
                    "state": ct_state(c),
                    "idleSeconds": c.idle_ns as f64 / 1e9,
                })
            })
            .collect(),
        What::Drops => event_rows(nodes, opts)
            .map(|(n, e)| {
                json!({
                    "node": n.node,
                    "reason": e.name,
                    "drop": e.drop,
                    "count": e.count,
                    "description": e.description,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_datapath::{Event, TrafficCounter};
    use std::net::Ipv4Addr;

    fn snapshot(taken_ns: u64, service_packets: u64, backend_packets: [u64; 2], rejects: u64) -> Snapshot {
        let np = Frontend::node_port(30080, Protocol::Tcp);
        let total = service_packets.max(1);
        Snapshot {
            taken_ns,
            services: vec![ServiceRow {
                id: 4,
                frontend: np,
                backend_count: 2,
                local_backend_count: 2,
                flags: vec![],
                maglev_size: 1021,
                affinity_timeout_s: 0,
                traffic: TrafficCounter {
                    packets: service_packets,
                    bytes: service_packets * 100,
                    flows: 0,
                },
            }],
            backends: backend_packets
                .iter()
                .enumerate()
                .map(|(i, p)| BackendRow {
                    id: 10 + i as u32,
                    service_id: 4,
                    frontend: Some(np),
                    addr: std::net::SocketAddrV4::new(Ipv4Addr::new(10, 252, 0, 5 + i as u8), 8080),
                    local: true,
                    terminating: i == 1,
                    traffic: TrafficCounter {
                        packets: *p,
                        bytes: p * 100,
                        flows: 0,
                    },
                    share: *p as f64 / total as f64,
                })
                .collect(),
            conntrack: vec![],
            events: vec![EventRow {
                event: Event::NoBackendReject,
                name: "NoBackendReject",
                drop: true,
                description: "rejected",
                count: rejects,
            }],
        }
    }

    fn names() -> Names {
        Names::from_lists(
            &json!({"items": [{"metadata": {"namespace": "shop", "name": "web"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]}}]}),
            &json!({"items": [{"metadata": {"namespace": "shop", "name": "web-a"}, "status": {"podIP": "10.252.0.5"}}]}),
        )
    }

    #[test]
    fn rates_are_per_second_and_survive_a_reset() {
        assert_eq!(rate(100, 300, 2_000_000_000), 100.0);
        assert_eq!(rate(500, 20, 1_000_000_000), 20.0, "a reset counter counts from zero");
        assert_eq!(rate(1, 2, 0), 0.0);
    }

    #[test]
    fn humans_read_bytes_rates_idle_times_and_shares() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(9_318), "9.1KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0MiB");
        assert_eq!(human_rate(0.0), "0/s");
        assert_eq!(human_rate(2.5), "2.5/s");
        assert_eq!(human_rate(120.4), "120/s");
        assert_eq!(human_rate(3_400.0), "3.4k/s");
        assert_eq!(human_idle(850_000_000), "850ms");
        assert_eq!(human_idle(303_000_000_000), "5m3s");
        assert_eq!(human_idle(7_800_000_000_000), "2h10m");
        assert_eq!(share_bar(0.52), " 52% █████");
        assert_eq!(share_bar(0.0), "  0% ");
    }

    #[test]
    fn services_table_names_the_service_and_shows_rates_when_following() {
        let prev = [NodeSnapshot {
            node: "n1".into(),
            snapshot: snapshot(1_000_000_000, 10, [6, 4], 0),
        }];
        let cur = [NodeSnapshot {
            node: "n1".into(),
            snapshot: snapshot(2_000_000_000, 40, [28, 12], 3),
        }];
        let g = services_grid(&cur, Some(&prev), &names(), &ViewOptions::default());
        assert_eq!(
            g.headers,
            ["NODE", "SERVICE", "TYPE", "FRONTEND", "BACKENDS", "PACKETS", "BYTES", "PKT/S", "BYTES/S"]
        );
        assert_eq!(
            g.rows,
            [[
                "n1",
                "shop/web",
                "NodePort",
                "*:30080/TCP",
                "2",
                "40",
                "3.9KiB",
                "30/s",
                "2.9KiB/s"
            ]]
        );
        let g = backends_grid(&cur, None, &names(), &ViewOptions::default());
        assert_eq!(
            g.rows[0][3..9],
            [
                "10.252.0.5:8080",
                "shop/web-a",
                "active",
                "28",
                "2.7KiB",
                " 70% ███████"
            ]
        );
        assert_eq!(g.rows[1][4..6], ["-", "terminating"]);
        let g = drops_grid(&cur, Some(&prev), &ViewOptions::default());
        assert_eq!(g.rows, [["n1", "NoBackendReject", "3", "3.0/s", "rejected"]]);
    }

    #[test]
    fn service_filter_keeps_only_that_service_and_needs_names() {
        let cur = [NodeSnapshot {
            node: "n1".into(),
            snapshot: snapshot(1, 1, [1, 0], 0),
        }];
        let mine = ViewOptions {
            service: Some("shop/web".into()),
            ..Default::default()
        };
        let other = ViewOptions {
            service: Some("shop/cart".into()),
            ..Default::default()
        };
        assert_eq!(backends_grid(&cur, None, &names(), &mine).rows.len(), 2);
        assert!(backends_grid(&cur, None, &names(), &other).rows.is_empty());
        assert!(services_grid(&cur, None, &Names::default(), &mine).rows.is_empty());
        let ns = ViewOptions {
            namespace: Some("shop".into()),
            ..Default::default()
        };
        assert_eq!(json_rows(What::Services, &cur, &names(), &ns).len(), 1);
        let j = &json_rows(What::Backends, &cur, &names(), &mine)[0];
        assert_eq!(j["pod"], "shop/web-a");
        assert_eq!(j["service"]["name"], "web");
        assert_eq!(j["frontend"]["type"], "NodePort");
    }
}
