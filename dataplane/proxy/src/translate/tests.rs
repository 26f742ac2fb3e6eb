//! Table-driven tests of the Service → frontends translation.

use super::*;
use serde_json::json;

const NODE: &str = "node-a";

fn service(v: serde_json::Value) -> Service {
    let mut base = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    });
    merge(&mut base, v);
    serde_json::from_value(base).expect("service json")
}

fn slice(name: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": ports, "endpoints": endpoints
    }))
    .expect("slice json")
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn ep(
    ip: &str,
    node: &str,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> serde_json::Value {
    json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn http_port() -> serde_json::Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

fn b(ip: &str, port: u16, local: bool, terminating: bool) -> Backend {
    Backend {
        ip: ip.parse().unwrap(),
        port,
        node_local: local,
        terminating,
    }
}

fn vip(port: u16) -> Frontend {
    Frontend::tcp("10.96.0.10".parse().unwrap(), port)
}

fn cip(port: u16, backends: Vec<Backend>) -> ServiceSpec {
    ServiceSpec::cluster_ip(vip(port), backends)
}

fn np(port: u16, backends: Vec<Backend>) -> ServiceSpec {
    ServiceSpec::node_port(port, Protocol::Tcp, backends)
}

#[test]
fn translation_table() {
    let two_ready = || {
        slice(
            "web-1",
            http_port(),
            json!([
                ep("10.1.0.1", NODE, Some(true), None, None),
                ep("10.1.1.1", "node-b", Some(true), None, None)
            ]),
        )
    };
    let both = vec![b("10.1.0.1", 8080, true, false), b("10.1.1.1", 8080, false, false)];
    struct Case {
        name: &'static str,
        service: Service,
        slices: Vec<EndpointSlice>,
        want: Vec<ServiceSpec>,
    }
    let cases = vec![
        Case {
            name: "ClusterIP: one frontend, ready endpoints, local flag",
            service: service(json!({})),
            slices: vec![two_ready()],
            want: vec![cip(80, both.clone())],
        },
        Case {
            name: "no slices: frontend without backends (rejects)",
            service: service(json!({})),
            slices: vec![],
            want: vec![cip(80, vec![])],
        },
        Case {
            name: "NodePort: ClusterIP + node port frontends",
            service: service(
                json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            ),
            slices: vec![two_ready()],
            want: vec![cip(80, both.clone()), np(30080, both.clone())],
        },
        Case {
            name: "headless Service is skipped",
            service: service(json!({"spec": {"clusterIP": "None"}})),
            slices: vec![two_ready()],
            want: vec![],
        },
        Case {
            name: "ExternalName Service is skipped",
            service: service(json!({"spec": {"type": "ExternalName", "externalName": "example.invalid"}})),
            slices: vec![],
            want: vec![],
        },
        Case {
            name: "not ready is dropped; serving+terminating kept as terminating; terminating not serving dropped",
            service: service(json!({})),
            slices: vec![slice(
                "web-1",
                http_port(),
                json!([
                    ep("10.1.0.1", NODE, Some(true), Some(true), Some(false)),
                    ep("10.1.0.2", NODE, Some(false), Some(false), Some(false)),
                    ep("10.1.0.3", NODE, Some(false), Some(true), Some(true)),
                    ep("10.1.0.4", NODE, Some(false), Some(false), Some(true)),
                    json!({"addresses": ["10.1.0.5"]}),
                ]),
            )],
            want: vec![cip(
                80,
                vec![
                    b("10.1.0.1", 8080, true, false),
                    b("10.1.0.3", 8080, true, true),
                    b("10.1.0.5", 8080, false, false),
                ],
            )],
        },
        Case {
            name: "targetPort resolved by port name, per port and protocol",
            service: service(json!({"spec": {"ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "sctp", "port": 99, "protocol": "SCTP"}
            ]}})),
            slices: vec![slice(
                "web-1",
                json!([{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "http", "port": 8080, "protocol": "TCP"}]),
                json!([ep("10.1.0.1", "node-b", Some(true), None, None)]),
            )],
            want: vec![
                cip(80, vec![b("10.1.0.1", 8080, false, false)]),
                ServiceSpec::cluster_ip(
                    Frontend::udp("10.96.0.10".parse().unwrap(), 53),
                    vec![b("10.1.0.1", 5353, false, false)],
                ),
            ],
        },
        Case {
            name: "a slice without the port gives no backends for it; slices of other services are ignored",
            service: service(json!({})),
            slices: vec![
                slice(
                    "web-1",
                    json!([{"name": "metrics", "port": 9090}]),
                    json!([ep("10.1.0.1", NODE, Some(true), None, None)]),
                ),
                {
                    let mut other = slice(
                        "db-1",
                        http_port(),
                        json!([ep("10.1.9.9", NODE, Some(true), None, None)]),
                    );
                    other.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "db".to_string())].into());
                    other
                },
                {
                    let mut v6 = slice(
                        "web-v6",
                        http_port(),
                        json!([ep("fd00::1", NODE, Some(true), None, None)]),
                    );
                    v6.address_type = "IPv6".into();
                    v6
                },
            ],
            want: vec![cip(80, vec![])],
        },
        Case {
            name: "endpoints from several slices are merged and deduplicated",
            service: service(json!({})),
            slices: vec![
                slice(
                    "web-1",
                    http_port(),
                    json!([ep("10.1.0.1", NODE, Some(true), None, None)]),
                ),
                slice(
                    "web-2",
                    http_port(),
                    json!([
                        ep("10.1.0.1", NODE, Some(true), None, None),
                        ep("10.1.0.2", "node-b", Some(true), None, None)
                    ]),
                ),
            ],
            want: vec![cip(
                80,
                vec![b("10.1.0.1", 8080, true, false), b("10.1.0.2", 8080, false, false)],
            )],
        },
        Case {
            name: "ClientIP affinity with its timeout; default timeout when unset",
            service: service(
                json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [{"name": "http", "port": 80}, {"name": "alt", "port": 81}]}}),
            ),
            slices: vec![],
            want: vec![
                ServiceSpec {
                    affinity_timeout: Some(Duration::from_secs(60)),
                    ..cip(80, vec![])
                },
                ServiceSpec {
                    affinity_timeout: Some(Duration::from_secs(60)),
                    ..cip(81, vec![])
                },
            ],
        },
        Case {
            name: "ClientIP affinity without config uses 10800 s",
            service: service(json!({"spec": {"sessionAffinity": "ClientIP"}})),
            slices: vec![],
            want: vec![ServiceSpec {
                affinity_timeout: Some(DEFAULT_AFFINITY_TIMEOUT),
                ..cip(80, vec![])
            }],
        },
        Case {
            name: "externalTrafficPolicy Local applies to the node port only",
            service: service(
                json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            ),
            slices: vec![two_ready()],
            want: vec![
                cip(80, both.clone()),
                ServiceSpec {
                    external_traffic_local: true,
                    ..np(30080, both.clone())
                },
            ],
        },
        Case {
            name: "internalTrafficPolicy Local keeps local endpoints on the ClusterIP only",
            service: service(
                json!({"spec": {"type": "NodePort", "internalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            ),
            slices: vec![two_ready()],
            want: vec![cip(80, vec![both[0]]), np(30080, both.clone())],
        },
        Case {
            name: "trafficDistribution PreferSameNode: the local endpoint while it is ready",
            service: service(json!({"spec": {"trafficDistribution": "PreferSameNode"}})),
            slices: vec![two_ready()],
            want: vec![cip(80, vec![both[0]])],
        },
        Case {
            name: "trafficDistribution PreferSameNode: every endpoint when none is local and ready",
            service: service(json!({"spec": {"trafficDistribution": "PreferSameNode"}})),
            slices: vec![slice(
                "s",
                http_port(),
                json!([
                    ep("10.1.0.1", NODE, Some(false), Some(false), Some(false)),
                    ep("10.1.1.1", "node-b", Some(true), None, None)
                ]),
            )],
            want: vec![cip(80, vec![both[1]])],
        },
        Case {
            name: "LoadBalancer: node port with normalised source ranges (IPv6 ignored)",
            service: service(
                json!({"spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["192.0.2.77/24", "198.51.100.7", "2001:db8::/32"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            ),
            slices: vec![],
            want: vec![
                cip(80, vec![]),
                ServiceSpec {
                    source_ranges: vec![
                        ("192.0.2.0".parse().unwrap(), 24),
                        ("198.51.100.7".parse().unwrap(), 32),
                    ],
                    ..np(30080, vec![])
                },
            ],
        },
        Case {
            name: "LoadBalancer whose source ranges are all unusable keeps its node ports closed",
            service: service(
                json!({"spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["2001:db8::/32", "bogus"],
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
            ),
            slices: vec![],
            want: vec![cip(80, vec![])],
        },
        Case {
            name: "ClusterIP type ignores a stray nodePort; unnamed port matches unnamed slice port",
            service: service(json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}})),
            slices: vec![slice(
                "web-1",
                json!([{"port": 9000}]),
                json!([ep("10.1.0.1", NODE, Some(true), None, None)]),
            )],
            want: vec![cip(80, vec![b("10.1.0.1", 9000, true, false)])],
        },
    ];
    for c in cases {
        let refs: Vec<&EndpointSlice> = c.slices.iter().collect();
        let got = desired_frontends(&c.service, &refs, NODE);
        assert_eq!(got, c.want, "{}", c.name);
    }
}

fn ext(ip: &str, port: u16, backends: Vec<Backend>) -> ServiceSpec {
    ServiceSpec::cluster_ip(Frontend::external(ip.parse().unwrap(), port, Protocol::Tcp), backends)
}

#[test]
fn load_balancer_and_external_ips_become_external_frontends() {
    let one = || {
        slice(
            "web-1",
            http_port(),
            json!([ep("10.1.0.1", NODE, Some(true), None, None)]),
        )
    };
    let backends = vec![b("10.1.0.1", 8080, true, false)];
    let lb_status =
        json!({"loadBalancer": {"ingress": [{"ip": "10.251.0.241", "ipMode": "VIP"}, {"hostname": "lb.example"}]}});

    // LoadBalancer: ClusterIP, LB IP (with source ranges and policy Local), NodePort.
    let svc = service(json!({
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                 "loadBalancerSourceRanges": ["192.0.2.0/24"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
        "status": lb_status
    }));
    let s = one();
    let got = desired_frontends(&svc, &[&s], NODE);
    let mut lb = ext("10.251.0.241", 80, backends.clone());
    lb.external_traffic_local = true;
    lb.source_ranges = vec![("192.0.2.0".parse().unwrap(), 24)];
    let mut node_port = np(30080, backends.clone());
    node_port.external_traffic_local = true;
    node_port.source_ranges = lb.source_ranges.clone();
    assert_eq!(got, vec![cip(80, backends.clone()), lb, node_port]);

    // allocateLoadBalancerNodePorts: false (no nodePort): no NodePort frontend; ipMode Proxy: no LB frontend.
    let svc = service(json!({
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.251.0.242", "ipMode": "Proxy"}, {"ip": "10.251.0.243"}]}}
    }));
    let got = desired_frontends(&svc, &[&s], NODE);
    assert_eq!(
        got,
        vec![cip(80, backends.clone()), ext("10.251.0.243", 80, backends.clone())]
    );

    // externalIPs on a ClusterIP Service: no source ranges, any type.
    let svc = service(json!({"spec": {"externalIPs": ["192.0.2.10", "not-an-ip"]}}));
    let got = desired_frontends(&svc, &[&s], NODE);
    assert_eq!(
        got,
        vec![cip(80, backends.clone()), ext("192.0.2.10", 80, backends.clone())]
    );

    // Unusable source ranges close the LB IP as they close the node ports.
    let svc = service(json!({
        "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["nonsense"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
        "status": lb_status
    }));
    assert_eq!(desired_frontends(&svc, &[&s], NODE), vec![cip(80, backends)]);
}

#[test]
fn host_ports_of_this_nodes_running_pods() {
    let pod = |name: &str, node: &str, ip: Option<&str>, phase: &str, host_network: bool| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "c", "ports": [
                {"containerPort": 8080, "hostPort": 8081},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                {"containerPort": 9000},
                {"containerPort": 7000, "hostPort": 7000, "protocol": "SCTP"}
            ]}]},
            "status": {"phase": phase, "podIP": ip}
        }))
        .unwrap()
    };
    let pods = [
        pod("a", NODE, Some("10.1.0.5"), "Running", false),
        pod("other-node", "node-b", Some("10.1.1.5"), "Running", false),
        pod("no-ip", NODE, None, "Pending", false),
        pod("done", NODE, Some("10.1.0.6"), "Succeeded", false),
        pod("host", NODE, Some("10.0.0.1"), "Running", true),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let local = |ip: &str, port| vec![b(ip, port, true, false)];
    assert_eq!(
        host_port_frontends(&refs, NODE),
        vec![
            ServiceSpec::cluster_ip(Frontend::host_port(8081, Protocol::Tcp), local("10.1.0.5", 8080)),
            ServiceSpec::cluster_ip(Frontend::host_port(5353, Protocol::Udp), local("10.1.0.5", 53)),
        ]
    );
}
