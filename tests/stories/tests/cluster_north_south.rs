//! Traffic from outside the cluster, served by the eBPF data plane of two
//! real nodes: LoadBalancer IPs, source ranges, external IPs, hostPorts,
//! healthCheckNodePorts, and pods reaching their own node's NodePort and
//! LoadBalancer IP.
//!
//! `cargo xtask up --nodes 2` (LoadBalancer pool: the top /28 of the node
//! subnet, xtask's default). The user runs `web` on node 1 behind a
//! LoadBalancer Service with `externalTrafficPolicy: Local` and a
//! `healthCheckNodePort`, and a pod with a `hostPort` on node 2. They see:
//! the Service gets an address of the pool in `status.loadBalancer.ingress`
//! (`ipMode: VIP`) and an `IPAllocated` Event; a machine on the nodes'
//! network (a client namespace on the bridge) reaches it, its ARP request
//! answered by node 1 — the node with the endpoint — from eBPF (the
//! neighbour entry holds node 1's MAC); node 1's health check answers 200
//! with one local endpoint, node 2's 503; a second LoadBalancer Service
//! with `loadBalancerSourceRanges` naming the first client answers it and
//! not another client; an `externalIPs` address routed to node 1 answers;
//! the hostPort on node 2's address answers; the hostPort pod on node 2
//! reaches its own node's NodePort and the LoadBalancer IP; a Service with
//! another `loadBalancerClass` is left pending; and neither the host nor
//! the nodes hold an iptables or nftables rule.
//!
//! Needs root. Build first: `cargo build --workspace --bins` (or `cargo xtask test`).

use serde_json::Value;
use sluice_tests::cluster::{sh_ok, wait_for, Client, TestCluster};
use std::process::Command;
use std::time::Duration;

fn web(node: &str, hp_node: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hp, labels: {{app: hp}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {hp_node}}}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
    ports: [{{containerPort: 8080, hostPort: 8081}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

fn services(allowed_client: &str, external_ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: lb}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ranged}}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: ["{allowed_client}/32"]
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ext}}
spec:
  externalIPs: ["{external_ip}"]
  selector: {{app: web}}
  ports: [{{port: 8090, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: other}}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/elsewhere
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    )
}

fn service(cluster: &TestCluster, name: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "service", name, "-o", "json"])).expect("service json")
}

/// The Service's LoadBalancer ingress, once it has one.
fn ingress(cluster: &TestCluster, name: &str) -> Value {
    let found = wait_for(Duration::from_secs(30), || {
        let svc = service(cluster, name);
        let i = svc["status"]["loadBalancer"]["ingress"][0].clone();
        i["ip"].is_string().then_some(i)
    });
    found.unwrap_or_else(|| panic!("{name} got no LoadBalancer IP: {}", service(cluster, name)))
}

/// `curl` from a client namespace: status code and body (`None` if nothing answered).
fn curl(client: &Client, url: &str) -> Option<(u16, String)> {
    let out = Command::new("ip")
        .args(["netns", "exec", &client.netns, "curl", "-s", "--max-time", "2"])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (out.status.success() && code != 0).then(|| (code, body.trim().to_string()))
}

fn answers(client: &Client, url: &str, expected: &str) {
    let got = wait_for(Duration::from_secs(30), || {
        curl(client, url).filter(|(code, body)| *code == 200 && body == expected)
    });
    assert!(
        got.is_some(),
        "{url} from {} answered by {expected}; last: {:?}",
        client.ip,
        curl(client, url)
    );
}

fn rules(netns: Option<&str>, cmd: &[&str]) -> String {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    c.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[test]
fn load_balancer_ips_external_ips_host_ports_and_health_checks_from_outside() {
    let cluster = TestCluster::up(2, &[]);
    let (n1, n2) = (cluster.node_name(1), cluster.node_name(2));
    let (ip1, ip2) = (cluster.node_ip(1), cluster.node_ip(2));
    let subnet = ip1.rsplit_once('.').expect("node ip").0.to_string();
    let (c1, c2) = (cluster.client(), cluster.client());
    let external_ip = format!("{subnet}.230");

    cluster.apply(&web(&n1, &n2));
    cluster.apply(&services(&c1.ip, &external_ip));
    let hp = cluster.wait_running("app=hp", 1, Duration::from_secs(120));
    let web_pods = cluster.wait_running("app=web", 1, Duration::from_secs(120));
    assert_eq!(web_pods[0].node.as_deref(), Some(n1.as_str()));
    assert_eq!(hp[0].node.as_deref(), Some(n2.as_str()));
    let web_name = web_pods[0].name.clone();

    // The LoadBalancer Service gets an address from the pool, shown as kubectl users expect.
    let lb = ingress(&cluster, "lb");
    let lb_ip = lb["ip"].as_str().unwrap().to_string();
    assert_eq!(lb["ipMode"], "VIP");
    let last: u8 = lb_ip.rsplit_once('.').unwrap().1.parse().unwrap();
    assert!(
        lb_ip.starts_with(&format!("{subnet}.")) && (241..=254).contains(&last),
        "{lb_ip} in the pool"
    );
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=lb",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("IPAllocated") && events.contains(&lb_ip),
        "IPAllocated event: {events}"
    );
    let wide = cluster.kubectl_ok(&["get", "service", "lb"]);
    assert!(wide.contains(&lb_ip), "EXTERNAL-IP column: {wide}");

    // A machine on the nodes' network reaches it; node 1 (the endpoint's node) answered its ARP.
    answers(&c1, &format!("http://{lb_ip}/"), &web_name);
    let neigh = sh_ok(&format!("ip -n {} neigh show {lb_ip}", c1.netns));
    let mac1 = sh_ok(&format!("ip -n {n1} -o link show eth0"));
    let mac1 = mac1
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("node 1 MAC");
    assert!(
        neigh.contains(&format!("lladdr {mac1}")),
        "ARP for {lb_ip} answered by node 1 ({mac1}): {neigh}"
    );

    // healthCheckNodePort (allocated by the API server for `externalTrafficPolicy: Local`):
    // 200 where the endpoint is, 503 elsewhere, with kube-proxy's body.
    let hc_port = service(&cluster, "lb")["spec"]["healthCheckNodePort"]
        .as_i64()
        .expect("healthCheckNodePort allocated");
    assert!((30000..=32767).contains(&hc_port), "{hc_port} in the node port range");
    let hc_port = hc_port.to_string();
    let health = |ip: &str| {
        wait_for(Duration::from_secs(30), || {
            curl(&c1, &format!("http://{ip}:{hc_port}/"))
        })
    };
    let (code1, body1) = health(&ip1).expect("node 1 health check");
    assert_eq!(code1, 200, "{body1}");
    let body1: Value = serde_json::from_str(&body1).expect("json");
    assert_eq!(
        body1["service"],
        serde_json::json!({"namespace": "default", "name": "lb"})
    );
    assert_eq!(body1["localEndpoints"], 1);
    let (code2, body2) = health(&ip2).expect("node 2 health check");
    assert_eq!(code2, 503, "{body2}");
    assert_eq!(serde_json::from_str::<Value>(&body2).unwrap()["localEndpoints"], 0);

    // loadBalancerSourceRanges: the listed client gets in, another does not.
    let ranged = ingress(&cluster, "ranged")["ip"].as_str().unwrap().to_string();
    assert_ne!(ranged, lb_ip, "each Service its own address");
    answers(&c1, &format!("http://{ranged}/"), &web_name);
    assert_eq!(
        curl(&c2, &format!("http://{ranged}/")),
        None,
        "{} is outside the source ranges",
        c2.ip
    );

    // externalIPs: routed to node 1 by the client, answered there.
    sh_ok(&format!("ip -n {} route add {external_ip}/32 via {ip1}", c1.netns));
    answers(&c1, &format!("http://{external_ip}:8090/"), &web_name);

    // hostPort: node 2's address, port 8081, is the hp pod.
    answers(&c1, &format!("http://{ip2}:8081/"), "hp");

    // A pod reaches its own node's NodePort and the LoadBalancer IP.
    let node_port = service(&cluster, "lb")["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort") as u16;
    for (ip, port) in [(ip2.as_str(), node_port), (lb_ip.as_str(), 80)] {
        let got = wait_for(Duration::from_secs(20), || cluster.http_from_pod(&hp[0], ip, port));
        assert_eq!(got.as_deref(), Some(web_name.as_str()), "hp (node 2) → {ip}:{port}");
    }

    // Another implementation's class: left alone.
    std::thread::sleep(Duration::from_secs(2));
    assert!(service(&cluster, "other")["status"]["loadBalancer"]["ingress"].is_null());

    // No iptables or nftables rules for any of it, on the host or the nodes.
    for netns in [None, Some(n1.as_str()), Some(n2.as_str())] {
        for cmd in [&["iptables-save"][..], &["nft", "list", "ruleset"][..]] {
            let text = rules(netns, cmd);
            for ours in [
                lb_ip.as_str(),
                external_ip.as_str(),
                "8081",
                hc_port.as_str(),
                "KUBE-",
                "sluice",
            ] {
                assert!(!text.contains(ours), "{cmd:?} in {netns:?} mentions {ours}:\n{text}");
            }
        }
    }
}
