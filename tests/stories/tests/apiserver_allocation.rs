//! Story: two API servers share one etcd and users create hundreds of
//! Services at once through both; every Service gets its own ClusterIP and
//! NodePort, asking for a taken or out-of-range value is a clear 422, and
//! deleting a Service gives its values back.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use sluice_tests::{ApiServer, Etcd, RawClient};

fn service(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}})
}

async fn create_many(raw: RawClient, prefix: &str, n: usize) -> Vec<Value> {
    stream::iter(0..n)
        .map(|i| {
            let raw = raw.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let r = raw.post("/api/v1/namespaces/default/services", &service(&name)).await;
                assert_eq!(r.status, 201, "{name}: {}", r.text());
                r.json()
            }
        })
        .buffer_unordered(24)
        .collect()
        .await
}

#[tokio::test]
async fn concurrent_creates_on_two_apiservers_never_share_an_ip_or_port() {
    let etcd = Etcd::start().await;
    // A small node-port range makes collisions between the servers likely.
    let flags = ["--service-node-port-range", "30000-30499"];
    let a = ApiServer::start(&etcd, &flags).await;
    let b = ApiServer::start_sharing(&etcd, &a, &flags).await;
    let (ra, rb) = (a.raw().await, b.raw().await);
    let (left, right) = tokio::join!(create_many(ra.clone(), "a", 200), create_many(rb.clone(), "b", 200));
    let all: Vec<Value> = left.into_iter().chain(right).collect();
    assert_eq!(all.len(), 400);
    let ips: HashSet<String> = all
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    let ports: HashSet<i64> = all
        .iter()
        .map(|s| s["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
        .collect();
    assert_eq!(ips.len(), 400, "duplicate ClusterIPs handed out");
    assert_eq!(ports.len(), 400, "duplicate NodePorts handed out");
    assert!(ports.iter().all(|p| (30000..=30499).contains(p)));
    assert!(!ips.contains("10.96.0.1"), "10.96.0.1 is the kubernetes Service's");
    // What is stored agrees with what was returned.
    let listed = ra.get("/api/v1/namespaces/default/services").await.json();
    let stored: HashSet<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
        .collect();
    assert!(ips.is_subset(&stored));
}

#[tokio::test]
async fn taken_or_out_of_range_values_are_rejected_and_released_on_delete() {
    let etcd = Etcd::start().await;
    let api = ApiServer::start(&etcd, &[]).await;
    let raw = api.raw().await;
    let path = "/api/v1/namespaces/default/services";

    let mut first = service("first");
    first["spec"]["clusterIP"] = json!("10.96.7.7");
    first["spec"]["ports"][0]["nodePort"] = json!(31000);
    let r = raw.post(path, &first).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let mut same_ip = service("second");
    same_ip["spec"]["clusterIP"] = json!("10.96.7.7");
    let r = raw.post(path, &same_ip).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["reason"], "Invalid");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("provided IP is already allocated"),
        "{body}"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.clusterIPs");

    let mut same_port = service("third");
    same_port["spec"]["ports"][0]["nodePort"] = json!(31000);
    let r = raw.post(path, &same_port).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["details"]["causes"][0]["field"], "spec.ports[0].nodePort");

    let mut outside = service("fourth");
    outside["spec"]["clusterIP"] = json!("192.168.0.10");
    outside["spec"]["ports"][0]["nodePort"] = json!(80);
    let r = raw.post(path, &outside).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{msg}"
    );
    assert!(msg.contains("The range of valid ports is 30000-32767"), "{msg}");
    // None of the rejected services exists.
    for name in ["second", "third", "fourth"] {
        assert_eq!(raw.get(&format!("{path}/{name}")).await.status, 404);
    }

    // clusterIP is immutable.
    let mut current = raw.get(&format!("{path}/first")).await.json();
    current["spec"]["clusterIP"] = json!("10.96.7.8");
    current["spec"]["clusterIPs"] = json!(["10.96.7.8"]);
    let r = raw.put(&format!("{path}/first"), &current).await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Headless services get no IP.
    let r = raw
        .post(
            path,
            &json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "selector": {"a": "b"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["clusterIP"], "None");

    // Deleting gives the values back.
    assert_eq!(raw.delete(&format!("{path}/first")).await.status, 200);
    let r = raw.post(path, &same_ip).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = raw.post(path, &same_port).await;
    assert_eq!(r.status, 201, "{}", r.text());
}
