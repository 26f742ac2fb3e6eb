//! `ctl dataplane flows`: the data plane's recent flows — every new flow a
//! node balanced to a backend (from a packet, or at a node process's
//! `connect()`/`sendmsg()`: hook `socket`, the client shown as `node`), every
//! new pod flow it masqueraded out of the cluster (`(masqueraded as
//! IP:PORT)`), and every new flow it dropped or rejected — as `hubble
//! observe` shows them, with Service and pod names.
//!
//! The eBPF programs write these events to a ring buffer that the node
//! daemon drains (a ring buffer has one consumer), so this command asks the
//! node daemons rather than bpffs: `GET /dataplane/flows` on each node's
//! kubelet port (address and port from the Node object, the kubeconfig's
//! credentials, authorized as `nodes/proxy`), with `follow=true` for
//! `--follow`. It therefore works from any machine with a kubeconfig, not
//! only on the node. Names missing from a node's answer (pods that are no
//! Service endpoint) are filled in from the API's pod list. The filters
//! (`-n`, `--service`, `--pod`, `--verdict`, [`sluice_datapath::flow_filter`])
//! go to the nodes as query parameters, so a node sends only the flows that
//! match (or may, for pods it cannot name), and apply again here once every
//! name is known; the layout is a pure function, unit-tested.

use super::names::Names;
use crate::api::{Api, RawRequest};
use anyhow::{bail, Context, Result};
use futures::{AsyncBufReadExt, StreamExt};
use serde_json::Value;
use sluice_datapath::{Frontend, Protocol, ServiceKind};
use std::net::Ipv4Addr;

pub use sluice_datapath::flow_filter::FlowFilter;
use sluice_datapath::flow_filter::{matches, pod_of, service_of, Unnamed};

fn addr(side: &Value) -> Option<(Ipv4Addr, u16)> {
    let ip = side.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(side.get("port")?.as_u64()?).ok()?;
    Some((ip, port))
}

fn set_pod(side: &mut Value, names: &Names) {
    // Named already, or the node itself (a socket-level flow's client).
    if side.get("pod").is_some() || side.get("node").is_some() {
        return;
    }
    let Some((ip, port)) = addr(side) else { return };
    if let Some(full) = names.pod(&std::net::SocketAddrV4::new(ip, port)) {
        if let Some((ns, name)) = full.split_once('/') {
            side["pod"] = serde_json::json!({"namespace": ns, "name": name});
        }
    }
}

/// Fill in the names a node did not know from the API's Services and pods.
pub fn enrich(flow: &mut Value, names: &Names) {
    if !names.known {
        return;
    }
    set_pod(&mut flow["source"], names);
    if flow.get("backend").is_some() {
        set_pod(&mut flow["backend"], names);
    }
    let known = flow.get("service").and_then(|s| s.get("name")).is_some();
    let kind = match flow.pointer("/service/type").and_then(Value::as_str) {
        Some("ClusterIP") => ServiceKind::ClusterIp,
        Some("NodePort") => ServiceKind::NodePort,
        Some("External") => ServiceKind::External,
        _ => return,
    };
    if known {
        return;
    }
    let (Some((ip, port)), Some(proto)) = (
        addr(&flow["destination"]),
        match flow.get("protocol").and_then(Value::as_str) {
            Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            _ => None,
        },
    ) else {
        return;
    };
    let frontend = Frontend {
        kind,
        ip: if kind == ServiceKind::NodePort {
            Ipv4Addr::UNSPECIFIED
        } else {
            ip
        },
        port,
        proto,
    };
    if let Some(s) = names.service(&frontend) {
        flow["service"]["namespace"] = Value::from(s.namespace.clone());
        flow["service"]["name"] = Value::from(s.name.clone());
        flow["service"]["port"] = Value::from(s.port.clone());
    }
}

fn endpoint(side: &Value) -> String {
    let at = addr(side).map_or_else(|| "?".to_string(), |(ip, port)| format!("{ip}:{port}"));
    if let Some((ns, name)) = pod_of(side) {
        return format!("{ns}/{name} ({at})");
    }
    if side.get("node").is_some() {
        // A process of the node (socket-level balancing): its address is
        // often unknown (0.0.0.0) when it connects.
        return match addr(side) {
            Some((ip, _)) if ip.is_unspecified() => "node".to_string(),
            Some((ip, 0)) => format!("node ({ip})"),
            _ => format!("node ({at})"),
        };
    }
    at
}

/// The time of a flow as `hubble observe` prints it, in local time: `Dec  2 12:40:01.123`.
pub fn time(flow: &Value) -> String {
    flow.get("time")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Local).format("%b %e %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// One flow on one line, as `hubble observe` lays it out:
/// `TIME [NODE]: SOURCE -> DESTINATION SERVICE => BACKEND PROTO VERDICT (REASON)`,
/// with `(masqueraded as IP:PORT)` after the destination (and backend) of a
/// flow that left the cluster with the node's address.
pub fn line(flow: &Value) -> String {
    let mut out = format!(
        "{} [{}]: {} -> {}",
        time(flow),
        flow.get("node").and_then(Value::as_str).unwrap_or("-"),
        endpoint(&flow["source"]),
        endpoint(&flow["destination"]),
    );
    if let Some(kind) = flow.pointer("/service/type").and_then(Value::as_str) {
        let service = match service_of(flow) {
            Some((ns, name)) => {
                let port = flow.pointer("/service/port").and_then(Value::as_str).unwrap_or("");
                if port.is_empty() {
                    format!("{ns}/{name}")
                } else {
                    format!("{ns}/{name}:{port}")
                }
            }
            None => "-".to_string(),
        };
        out.push_str(&format!(" {kind} {service}"));
    }
    if flow.get("backend").is_some() {
        out.push_str(&format!(" => {}", endpoint(&flow["backend"])));
    }
    if let Some(m) = flow.get("masquerade") {
        out.push_str(&format!(" (masqueraded as {})", endpoint(m)));
    }
    out.push_str(&format!(
        " {} {} ({})",
        flow.get("protocol").and_then(Value::as_str).unwrap_or("-"),
        flow.get("verdict").and_then(Value::as_str).unwrap_or("-"),
        flow.get("reason").and_then(Value::as_str).unwrap_or("-"),
    ));
    out
}

/// Where a node daemon serves: its InternalIP and kubelet port, from the Node object.
pub fn node_endpoint(node: &Value) -> Option<(String, Ipv4Addr, u16)> {
    let name = node.pointer("/metadata/name")?.as_str()?.to_string();
    let ip = node
        .pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))?
        .get("address")?
        .as_str()?
        .parse()
        .ok()?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)?;
    Some((name, ip, port))
}

/// A client for a node daemon's HTTPS port, with the kubeconfig's credentials and CA.
async fn node_client(api: &Api, ip: Ipv4Addr, port: u16) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", api.kubeconfig.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    config.cluster_url = format!("https://{ip}:{port}").parse().context("node URL")?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// What `ctl dataplane flows` was asked.
pub struct FlowsRequest {
    /// Only this node (else every node).
    pub node: Option<String>,
    /// Filters.
    pub filter: FlowFilter,
    /// Keep streaming.
    pub follow: bool,
    /// Print JSON.
    pub json: bool,
    /// At most this many of each node's kept flows (after filtering).
    pub last: usize,
}

fn print(flow: &Value, json: bool) {
    if json {
        println!("{flow}");
    } else {
        println!("{}", line(flow));
    }
}

/// Run `ctl dataplane flows`.
pub async fn run(api: Option<&Api>, names: &Names, req: FlowsRequest) -> Result<()> {
    let Some(api) = api else {
        bail!("ctl dataplane flows asks the node daemons, found through the API server, which did not answer (check --kubeconfig)");
    };
    let nodes: Vec<Value> = match &req.node {
        Some(n) => vec![api
            .request(RawRequest::get(format!("/api/v1/nodes/{n}")))
            .await
            .map_err(crate::api::server_error)?],
        None => api
            .request(RawRequest::get("/api/v1/nodes".into()))
            .await
            .map_err(crate::api::server_error)?
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    let mut streams = Vec::new();
    let mut items = Vec::new();
    for node in &nodes {
        let Some((name, ip, port)) = node_endpoint(node) else {
            eprintln!(
                "warning: node {} reports no InternalIP or kubelet port; skipped",
                node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?")
            );
            continue;
        };
        let client = node_client(api, ip, port).await?;
        // The node filters (and takes the last flows) first; the pod names
        // it could not know are filled in and filtered here.
        let mut path = format!("/dataplane/flows?limit={}", req.last);
        if req.follow {
            path.push_str("&follow=true");
        }
        let query = req.filter.to_query();
        if !query.is_empty() {
            path = format!("{path}&{query}");
        }
        let request = http::Request::get(path).body(Vec::new())?;
        if req.follow {
            let body = client
                .request_stream(request)
                .await
                .with_context(|| format!("asking node {name} ({ip}:{port}) for its flows"))?;
            streams.push(body.lines().boxed());
            continue;
        }
        let text = client
            .request_text(request)
            .await
            .with_context(|| format!("asking node {name} ({ip}:{port}) for its flows"))?;
        let mut kept: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|mut f| {
                enrich(&mut f, names);
                f
            })
            .filter(|f| matches(f, &req.filter, Unnamed::NoPod))
            .collect();
        let skip = kept.len().saturating_sub(req.last);
        items.extend(kept.drain(skip..));
    }
    if !req.follow {
        items.sort_by(|a, b| {
            a.get("time")
                .and_then(Value::as_str)
                .cmp(&b.get("time").and_then(Value::as_str))
        });
        if req.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "items": items }))?
            );
        } else if items.is_empty() {
            println!("No flows found.");
        } else {
            for f in &items {
                print(f, false);
            }
        }
        return Ok(());
    }
    let mut merged = futures::stream::select_all(streams);
    loop {
        tokio::select! {
            next = merged.next() => match next {
                Some(Ok(l)) => {
                    let Ok(mut f) = serde_json::from_str::<Value>(&l) else { continue };
                    enrich(&mut f, names);
                    if matches(&f, &req.filter, Unnamed::NoPod) {
                        print(&f, req.json);
                    }
                }
                Some(Err(e)) => bail!("reading flows: {e}"),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_datapath::flows::FlowVerdict;

    fn forwarded() -> Value {
        json!({
            "time": "2026-12-02T12:40:01.123456Z", "node": "node-1", "verdict": "FORWARDED", "reason": "NewFlow",
            "protocol": "TCP", "hook": "external",
            "source": {"ip": "10.0.0.9", "port": 40000},
            "destination": {"ip": "10.0.0.2", "port": 30080},
            "service": {"type": "NodePort", "namespace": "default", "name": "web", "port": "http"},
            "backend": {"ip": "10.244.0.5", "port": 8080, "pod": {"namespace": "default", "name": "web-1"}}
        })
    }

    fn rejected() -> Value {
        json!({
            "time": "2026-12-02T12:40:02Z", "node": "node-1", "verdict": "REJECTED", "reason": "NoBackendReject",
            "protocol": "TCP", "hook": "from-pod",
            "source": {"ip": "10.244.0.7", "port": 5000},
            "destination": {"ip": "10.96.0.20", "port": 80},
            "service": {"type": "ClusterIP"}
        })
    }

    fn names() -> Names {
        Names::from_lists(
            &json!({"items": [{"metadata": {"namespace": "shop", "name": "empty"},
                               "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}]}),
            &json!({"items": [{"metadata": {"namespace": "shop", "name": "client"}, "status": {"podIP": "10.244.0.7"}}]}),
        )
    }

    #[test]
    fn a_line_reads_like_hubble_observe() {
        let l = line(&forwarded());
        assert!(
            l.ends_with(
                "[node-1]: 10.0.0.9:40000 -> 10.0.0.2:30080 NodePort default/web:http => default/web-1 (10.244.0.5:8080) TCP FORWARDED (NewFlow)"
            ),
            "{l}"
        );
        assert!(l.contains(":40:01.123"), "{l}");
        let mut r = rejected();
        assert!(
            line(&r).contains("ClusterIP - TCP REJECTED (NoBackendReject)"),
            "{}",
            line(&r)
        );
        enrich(&mut r, &names());
        assert!(
            line(&r).contains("shop/client (10.244.0.7:5000) -> 10.96.0.20:80 ClusterIP shop/empty TCP REJECTED"),
            "{}",
            line(&r)
        );
    }

    #[test]
    fn a_socket_flow_comes_from_the_node_and_a_masqueraded_one_says_as_what() {
        let socket = json!({
            "time": "2026-12-02T12:40:03Z", "node": "node-1", "verdict": "FORWARDED", "reason": "SocketLb",
            "protocol": "TCP", "hook": "socket",
            "source": {"ip": "0.0.0.0", "port": 0, "node": "node-1"},
            "destination": {"ip": "10.96.0.20", "port": 80},
            "service": {"type": "ClusterIP"},
            "backend": {"ip": "10.244.0.7", "port": 8080}
        });
        let mut s = socket.clone();
        enrich(&mut s, &names());
        let l = line(&s);
        assert!(
            l.ends_with(
                "[node-1]: node -> 10.96.0.20:80 ClusterIP shop/empty => shop/client (10.244.0.7:8080) TCP FORWARDED (SocketLb)"
            ),
            "{l}"
        );
        assert!(s["source"].get("pod").is_none(), "the node is no pod");
        // A client address the socket asked for (IP_PKTINFO) is shown.
        let mut known = socket.clone();
        known["source"]["ip"] = json!("10.0.0.2");
        assert!(
            line(&known).contains("]: node (10.0.0.2) -> 10.96.0.20:80"),
            "{}",
            line(&known)
        );

        let mut masq = json!({
            "time": "2026-12-02T12:40:04Z", "node": "node-1", "verdict": "FORWARDED", "reason": "Masquerade",
            "protocol": "UDP", "hook": "from-pod",
            "source": {"ip": "10.244.0.7", "port": 41000},
            "destination": {"ip": "192.0.2.80", "port": 53},
            "masquerade": {"ip": "10.0.0.2", "port": 41000}
        });
        enrich(&mut masq, &names());
        let l = line(&masq);
        assert!(
            l.ends_with(
                "[node-1]: shop/client (10.244.0.7:41000) -> 192.0.2.80:53 (masqueraded as 10.0.0.2:41000) UDP FORWARDED (Masquerade)"
            ),
            "{l}"
        );
        // No Service: only its pod, namespace and verdict filters match it.
        let pass = |filter: FlowFilter| matches(&masq, &filter, Unnamed::NoPod);
        assert!(pass(FlowFilter {
            pod: Some("shop/client".into()),
            ..Default::default()
        }));
        assert!(!pass(FlowFilter {
            service: Some("shop/empty".into()),
            ..Default::default()
        }));
    }

    #[test]
    fn filters_by_namespace_service_pod_and_verdict() {
        let f = forwarded();
        let mut r = rejected();
        enrich(&mut r, &names());
        let only = |filter: FlowFilter| -> Vec<&str> {
            [&f, &r]
                .into_iter()
                .filter(|x| matches(x, &filter, Unnamed::NoPod))
                .map(|x| x["reason"].as_str().unwrap_or(""))
                .collect()
        };
        assert_eq!(only(FlowFilter::default()), ["NewFlow", "NoBackendReject"]);
        let ns = |n: &str| FlowFilter {
            namespace: Some(n.into()),
            ..Default::default()
        };
        assert_eq!(only(ns("shop")), ["NoBackendReject"]);
        assert_eq!(only(ns("default")), ["NewFlow"]);
        assert_eq!(
            only(FlowFilter {
                service: Some("default/web".into()),
                ..Default::default()
            }),
            ["NewFlow"]
        );
        for pod in ["web-1", "default/web-1"] {
            assert_eq!(
                only(FlowFilter {
                    pod: Some(pod.into()),
                    ..Default::default()
                }),
                ["NewFlow"]
            );
        }
        assert_eq!(
            only(FlowFilter {
                pod: Some("other/web-1".into()),
                ..Default::default()
            }),
            Vec::<&str>::new()
        );
        assert_eq!(
            only(FlowFilter {
                verdict: Some(FlowVerdict::Rejected),
                ..Default::default()
            }),
            ["NoBackendReject"]
        );
    }

    #[test]
    fn a_node_is_reached_at_its_internal_ip_and_kubelet_port() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(
            node_endpoint(&node),
            Some(("n1".to_string(), Ipv4Addr::new(10, 0, 0, 2), 10250))
        );
        assert_eq!(node_endpoint(&json!({"metadata": {"name": "n2"}})), None);
    }
}
