//! Looking into the eBPF data plane with `ctl dataplane`, as an operator on
//! the node does.
//!
//! `cargo xtask up --nodes 1`. The user runs `web` (2 busybox httpd
//! replicas) behind a NodePort Service and a second NodePort Service,
//! `empty`, whose selector matches no pod. From a machine on the node's
//! network (a client namespace on the bridge) they curl `web`'s NodePort.
//! They see: `ctl dataplane services` lists `default/web`'s ClusterIP and
//! NodePort frontends by name, with 2 backends; `ctl dataplane backends
//! --service default/web` shows both pods as backends of the NodePort, their
//! packet counts rising with more requests; `ctl dataplane conntrack` shows
//! the client's flows to the NodePort balanced to a `web` pod; a curl to
//! `empty`'s NodePort is refused and counted under `NoBackendReject` in
//! `ctl dataplane drops`; and without an API server the same tables still
//! show the addresses. `ctl dataplane flows` (from the node daemon's flow
//! events, like `hubble observe`) shows each of the client's curls as a new
//! flow to the NodePort forwarded to a named `web` pod, and the curl to
//! `empty` as `REJECTED (NoBackendReject)`; the node's `/metrics` carries
//! the same traffic as `sluice_datapath_*` series per Service, backend pod
//! and drop reason.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{wait_for, TestCluster};
use sluice_tests::workspace_bin;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// `ctl dataplane ARGS --node NODE` with the cluster's kubeconfig; its stdout (panics on failure).
fn dataplane(kubeconfig: &std::path::Path, node: &str, args: &[&str]) -> String {
    let out = Command::new(workspace_bin("ctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("dataplane")
        .args(args)
        .args(["--node", node])
        .output()
        .expect("ctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ctl dataplane {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn items(text: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("json ({e}): {text}"));
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Packets per backend pod of `web`'s NodePort frontend.
fn nodeport_backend_packets(kubeconfig: &std::path::Path, node: &str) -> BTreeMap<String, u64> {
    let text = dataplane(
        kubeconfig,
        node,
        &["backends", "--service", "default/web", "-o", "json"],
    );
    items(&text)
        .iter()
        .filter(|b| b["frontend"]["type"] == "NodePort")
        .map(|b| {
            (
                b["pod"].as_str().unwrap_or("?").to_string(),
                b["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn service(cluster: &TestCluster, name: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "service", name, "-o", "json"])).expect("service json")
}

/// `ctl dataplane flows ARGS --node NODE -o json`: the flows' JSON objects.
fn flow_items(kubeconfig: &std::path::Path, node: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["flows", "--last", "1000", "-o", "json"];
    all.extend_from_slice(args);
    items(&dataplane(kubeconfig, node, &all))
}

/// GET `path` on the node daemon's kubelet port with the kubeconfig's (admin) credentials.
fn node_get(kubeconfig: &std::path::Path, node_ip: &str, port: u64, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use http_body_util::BodyExt;
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
        cfg.cluster_url = format!("https://{node_ip}:{port}").parse().expect("url");
        cfg.default_retry = false;
        let client = kube::Client::try_from(cfg).expect("client");
        let req = http::Request::get(path).body(Vec::new()).expect("request");
        let resp = client
            .send(req.map(kube::client::Body::from))
            .await
            .expect("the node answers");
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    })
}

/// The value of the sample `series` (name and labels exactly) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn no_backend_rejects(kubeconfig: &std::path::Path, node: &str) -> u64 {
    items(&dataplane(kubeconfig, node, &["drops", "-o", "json"]))
        .iter()
        .find(|e| e["reason"] == "NoBackendReject")
        .and_then(|e| e["count"].as_u64())
        .expect("NoBackendReject is listed")
}

#[test]
fn ctl_dataplane_shows_services_backends_flows_and_drops_of_a_node() {
    let cluster = TestCluster::up(1, &[]);
    let node = cluster.node_name(1);
    let node_ip = cluster.node_ip(1);
    let kubeconfig = cluster.kubeconfig();
    cluster.apply(APP);
    let pods = cluster.wait_running("app=web", 2, Duration::from_secs(120));
    let pod_names: BTreeSet<String> = pods.iter().map(|p| format!("default/{}", p.name)).collect();
    let web = service(&cluster, "web");
    let node_port = web["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
    let cluster_ip = web["spec"]["clusterIP"].as_str().expect("clusterIP").to_string();
    let empty_port = service(&cluster, "empty")["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    let client = cluster.client();
    let url = format!("http://{node_ip}:{node_port}/");
    let both: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let served = wait_for(Duration::from_secs(60), || {
        let tally = client.tally(&url, 20);
        (tally.keys().cloned().collect::<BTreeSet<_>>() == both).then_some(tally)
    });
    assert!(served.is_some(), "both pods answer {url}: {:?}", client.tally(&url, 20));

    // The frontends, by Service name, with their backend counts.
    let services = dataplane(&kubeconfig, &node, &["services"]);
    eprintln!("{services}");
    let header = services.lines().next().unwrap_or_default();
    for column in ["NODE", "SERVICE", "TYPE", "FRONTEND", "BACKENDS", "PACKETS", "BYTES"] {
        assert!(header.contains(column), "{column} in {header}");
    }
    let row = |needle: &str| {
        services
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("a row with {needle}:\n{services}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (np_front, vip_front, empty_front) = (
        format!("*:{node_port}/TCP"),
        format!("{cluster_ip}:80/TCP"),
        format!("*:{empty_port}/TCP"),
    );
    let np_row = row(&np_front);
    assert_eq!(
        np_row[..5],
        [node.as_str(), "default/web:http", "NodePort", np_front.as_str(), "2"]
    );
    assert!(np_row[5].parse::<u64>().expect("packets") > 0, "{np_row:?}");
    let vip_row = row(&vip_front);
    assert_eq!(
        vip_row[1..5],
        ["default/web:http", "ClusterIP", vip_front.as_str(), "2"]
    );
    let empty_row = row(&empty_front);
    assert_eq!(
        empty_row[1..5],
        ["default/empty", "NodePort", empty_front.as_str(), "0"]
    );

    // Both pods are backends of the NodePort, and their packet counts rise with traffic.
    let before = nodeport_backend_packets(&kubeconfig, &node);
    assert_eq!(before.keys().cloned().collect::<BTreeSet<_>>(), pod_names, "{before:?}");
    let tally = client.tally(&url, 40);
    assert_eq!(tally.values().sum::<usize>(), 40);
    assert!(!tally.contains_key(""), "every request answered: {tally:?}");
    let after = nodeport_backend_packets(&kubeconfig, &node);
    for (pod, packets) in &after {
        assert!(*packets > before[pod], "{pod}: {} → {packets} packets", before[pod]);
    }
    let table = dataplane(&kubeconfig, &node, &["backends", "--service", "default/web"]);
    eprintln!("{table}");
    for p in &pods {
        assert!(table.contains(&p.name), "{} in\n{table}", p.name);
        assert!(
            table.contains(&format!("{}:8080", p.ip.as_deref().unwrap_or("?"))),
            "{:?} in\n{table}",
            p.ip
        );
    }
    assert!(table.contains('%'), "a SHARE column: {table}");
    assert!(
        !table.contains("default/empty"),
        "--service keeps only default/web:\n{table}"
    );

    // The flows: client → NodePort, balanced to a web pod.
    client.tally(&url, 5);
    let flows = dataplane(&kubeconfig, &node, &["conntrack", "--service", "default/web"]);
    eprintln!("{flows}");
    let pod_ips: Vec<String> = pods
        .iter()
        .map(|p| format!("{}:8080", p.ip.as_deref().unwrap_or("?")))
        .collect();
    let client_flows: Vec<&str> = flows
        .lines()
        .filter(|l| l.contains(&format!("{}:", client.ip)) && l.contains(&format!("{node_ip}:{node_port}")))
        .collect();
    assert!(!client_flows.is_empty(), "flows of {} in\n{flows}", client.ip);
    for l in &client_flows {
        assert!(
            l.contains("TCP") && l.contains("default/web:http") && pod_ips.iter().any(|ip| l.contains(ip.as_str())),
            "a TCP flow of default/web to a web pod: {l}"
        );
    }

    // A Service without endpoints: the connection is refused, and counted as a reject.
    let rejects = no_backend_rejects(&kubeconfig, &node);
    let empty_url = format!("http://{node_ip}:{empty_port}/");
    assert_eq!(client.get(&empty_url), None, "{empty_url} has no endpoints");
    let counted = wait_for(Duration::from_secs(10), || {
        (no_backend_rejects(&kubeconfig, &node) > rejects).then_some(())
    });
    assert!(counted.is_some(), "NoBackendReject rose above {rejects}");
    let drops = dataplane(&kubeconfig, &node, &["drops"]);
    eprintln!("{drops}");
    assert!(drops.lines().next().unwrap_or_default().contains("REASON"), "{drops}");
    assert!(
        drops.contains("NoBackendReject") && drops.contains("SourceDenied"),
        "{drops}"
    );

    // The flows, as the node daemon saw them: every curl of the client is a
    // new flow to web's NodePort, forwarded to a web pod, named.
    let forwarded = flow_items(
        &kubeconfig,
        &node,
        &["--service", "default/web", "--verdict", "forwarded"],
    );
    let from_client: Vec<&Value> = forwarded
        .iter()
        .filter(|f| f["source"]["ip"] == client.ip.as_str() && f["destination"]["port"] == node_port)
        .collect();
    assert!(
        from_client.len() >= 60,
        "one flow per curl (65 so far) of {}: {} in {forwarded:?}",
        client.ip,
        from_client.len()
    );
    let mut flow_pods = BTreeSet::new();
    for f in &from_client {
        assert_eq!(
            (&f["verdict"], &f["protocol"]),
            (&Value::from("FORWARDED"), &Value::from("TCP")),
            "{f}"
        );
        // (Rebalanced: the client reused the port of an earlier, closing flow.)
        assert!(f["reason"] == "NewFlow" || f["reason"] == "Rebalanced", "{f}");
        assert_eq!(f["service"]["type"], "NodePort", "{f}");
        assert_eq!(f["service"]["port"], "http", "{f}");
        assert_eq!(f["destination"]["ip"], node_ip.as_str(), "{f}");
        assert_eq!(f["backend"]["port"], 8080, "{f}");
        flow_pods.insert(format!(
            "{}/{}",
            f["backend"]["pod"]["namespace"].as_str().unwrap_or("?"),
            f["backend"]["pod"]["name"].as_str().unwrap_or("?")
        ));
    }
    assert_eq!(flow_pods, pod_names, "flows went to both web pods, by name");
    let rejected = flow_items(&kubeconfig, &node, &["--verdict", "rejected"]);
    let to_empty = rejected
        .iter()
        .find(|f| f["source"]["ip"] == client.ip.as_str() && f["destination"]["port"] == empty_port)
        .unwrap_or_else(|| panic!("the curl to {empty_url} among the rejected flows: {rejected:?}"));
    assert_eq!(to_empty["reason"], "NoBackendReject", "{to_empty}");
    assert_eq!(
        (&to_empty["service"]["namespace"], &to_empty["service"]["name"]),
        (&Value::from("default"), &Value::from("empty")),
        "{to_empty}"
    );
    assert!(to_empty.get("backend").is_none(), "{to_empty}");
    let pod_one = &pods[0].name;
    let text = dataplane(&kubeconfig, &node, &["flows", "--last", "1000", "--pod", pod_one]);
    eprintln!("{}", text.lines().rev().take(3).collect::<Vec<_>>().join("\n"));
    let line = text
        .lines()
        .rfind(|l| l.contains(&format!("{}:", client.ip)))
        .unwrap_or_else(|| panic!("a flow of {} to {pod_one}:\n{text}", client.ip));
    assert!(
        line.contains(&format!(
            "-> {node_ip}:{node_port} NodePort default/web:http => default/{pod_one} ("
        )) && line.contains(" TCP FORWARDED ("),
        "hubble-like line: {line}"
    );
    assert!(
        text.lines().all(|l| l.contains(pod_one.as_str())),
        "--pod keeps the flows of {pod_one}:\n{text}"
    );
    let text = dataplane(&kubeconfig, &node, &["flows", "--verdict", "rejected"]);
    assert!(
        text.lines()
            .any(|l| l.contains("NodePort default/empty TCP REJECTED (NoBackendReject)")),
        "{text}"
    );

    // The node's /metrics (kubelet port, admin credentials): the same traffic as Prometheus series.
    let node_json: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "node", &node, "-o", "json"])).expect("node json");
    let kubelet_port = node_json["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("kubelet port");
    let (code, metrics) = node_get(&kubeconfig, &node_ip, kubelet_port, "/metrics");
    assert_eq!(code, 200, "{metrics}");
    // noded drains the flows ring buffer: no flow event was lost.
    assert_eq!(
        sample(&metrics, r#"sluice_datapath_events_total{event="FlowEventLost"}"#),
        Some(0.0),
        "{metrics}"
    );

    // The node filters flows itself (what ctl asks for above), as raw HTTP shows.
    let flow_lines = |path: &str| -> Vec<Value> {
        let (code, body) = node_get(&kubeconfig, &node_ip, kubelet_port, path);
        assert_eq!(code, 200, "{path}: {body}");
        body.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let rejected = flow_lines("/dataplane/flows?verdict=rejected");
    assert!(
        !rejected.is_empty() && rejected.iter().all(|f| f["verdict"] == "REJECTED"),
        "{rejected:?}"
    );
    let web = flow_lines("/dataplane/flows?service=default%2Fweb&limit=5");
    assert_eq!(web.len(), 5, "the last 5 flows of default/web: {web:?}");
    assert!(web.iter().all(|f| f["service"]["name"] == "web"), "{web:?}");
    for bad in ["verdict=lost", "service=web", "follow=yes", "node=x"] {
        let (code, body) = node_get(&kubeconfig, &node_ip, kubelet_port, &format!("/dataplane/flows?{bad}"));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let front = format!(
        r#"namespace="default",service="web",port="http",frontend_type="NodePort",frontend="*:{node_port}",protocol="TCP""#
    );
    let series = |name: &str, extra: &str| {
        let s = format!("{name}{{{front}{extra}}}");
        sample(&metrics, &s).unwrap_or_else(|| panic!("{s} in\n{metrics}"))
    };
    assert!(series("sluice_datapath_service_packets_total", "") > 300.0, "{metrics}");
    assert!(
        series("sluice_datapath_service_bytes_total", "") > 10_000.0,
        "{metrics}"
    );
    assert!(
        series("sluice_datapath_service_new_flows_total", "") >= 65.0,
        "{metrics}"
    );
    for p in &pods {
        let backend = format!(r#",backend="{}:8080",pod="{}""#, p.ip.as_deref().unwrap_or("?"), p.name);
        assert!(
            series("sluice_datapath_backend_packets_total", &backend) > 0.0,
            "{metrics}"
        );
        assert!(
            series("sluice_datapath_backend_new_flows_total", &backend) > 0.0,
            "{metrics}"
        );
    }
    assert!(
        sample(&metrics, r#"sluice_datapath_drops_total{reason="NoBackendReject"}"#).is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "sluice_datapath_conntrack_entries").is_some_and(|v| v > 0.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubelet_running_pods") && metrics.ends_with("# EOF\n"),
        "{metrics}"
    );

    // Without an API server the tables still show what the maps hold, by address.
    let out = Command::new(workspace_bin("ctl"))
        .args([
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "dataplane",
            "services",
            "--node",
            &node,
        ])
        .output()
        .expect("ctl runs");
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{raw}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        raw.contains(&format!("*:{node_port}/TCP")) && !raw.contains("default/web"),
        "{raw}"
    );
}
