//! Story: a team runs its own API server for a group (the way metrics-server
//! serves `metrics.k8s.io`) and registers it with an APIService
//! (`apiregistration.k8s.io/v1`, issue 10). The API server lists the group
//! in discovery, proxies `/apis/<group>/<version>/...` to it with the
//! caller's identity in `X-Remote-User`/`X-Remote-Group` (and never the
//! caller's credentials), and kubectl uses it like any other resource.
//!
//! How the extension server is reached: an APIService names a Service, not
//! a URL. Kubernetes resolves it either to the Service's cluster IP (the
//! default) or, with `--enable-aggregator-routing=true`, to one of its
//! endpoints; in these control-plane-only tests nothing routes cluster IPs,
//! so the test publishes the server as a Service without selector plus a
//! hand-written Endpoints and EndpointSlice, as an operator would for a
//! server outside the cluster. The endpoint address is this machine's
//! non-loopback IP (`sluice_tests::https::host_ip`), because Kubernetes
//! refuses loopback endpoint addresses (`may not be in the loopback range
//! (127.0.0.0/8, ::1/128)`). The server's certificate is for
//! `metrics.default.svc` (the name Kubernetes verifies) and is trusted
//! through `spec.caBundle`.
//!
//! Run just this file (builds the API server first; real etcd and kubectl
//! must be installed):
//!
//! ```sh
//! cargo build -p sluice-apiserver && cargo test -p sluice-stories --test apiserver_aggregation -- --nocapture
//! ```

use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::https::{host_ip, HttpsServer, Reply, Seen, TestCa};
use sluice_tests::{eventually, run_ok, ControlPlane, RawClient};

/// Extra `apiserver serve` flags for these stories. If Sluice follows
/// kube-apiserver and routes to the cluster IP by default, endpoint routing
/// must be switched on here (`--enable-aggregator-routing=true`).
const APISERVER_FLAGS: &[&str] = &[];

const GROUP: &str = "metrics.stories.sluice.dev";
const VERSION: &str = "v1alpha1";
const APISERVICE: &str = "v1alpha1.metrics.stories.sluice.dev";
const APISERVICES: &str = "/apis/apiregistration.k8s.io/v1/apiservices";

/// The extension API server: discovery for one group/version with a
/// namespaced `gauges` resource, whose list echoes who asked.
fn extension(seen: &Seen) -> Reply {
    let gv = format!("{GROUP}/{VERSION}");
    let user = seen.header("x-remote-user").unwrap_or_default();
    let gauge = |name: &str, value: i64| {
        json!({"apiVersion": gv, "kind": "Gauge",
               "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2025-01-01T00:00:00Z"},
               "value": value, "seenUser": user})
    };
    let path = seen.path.as_str();
    let body = if path == "/apis" {
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": GROUP, "versions": [{"groupVersion": gv, "version": VERSION}],
             "preferredVersion": {"groupVersion": gv, "version": VERSION}}]})
    } else if path == format!("/apis/{GROUP}") {
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
               "versions": [{"groupVersion": gv, "version": VERSION}],
               "preferredVersion": {"groupVersion": gv, "version": VERSION}})
    } else if path == format!("/apis/{gv}") {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
            {"name": "gauges", "singularName": "gauge", "namespaced": true, "kind": "Gauge", "verbs": ["get", "list"]}]})
    } else if path == format!("/apis/{gv}/namespaces/default/gauges") {
        json!({"kind": "GaugeList", "apiVersion": gv, "metadata": {"resourceVersion": "1"},
               "items": [gauge("cpu", 42), gauge("memory", 7)]})
    } else if path == format!("/apis/{gv}/namespaces/default/gauges/cpu") {
        gauge("cpu", 42)
    } else {
        return Reply::json(
            404,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                    "message": format!("{path} not found")}),
        );
    };
    Reply::json(200, &body)
}

/// Service `default/metrics` (no selector) with Endpoints and an
/// EndpointSlice pointing at `ip:port`.
async fn publish(raw: &RawClient, ip: &str, port: u16) {
    let r = raw
        .post(
            "/api/v1/namespaces/default/services",
            &json!({"metadata": {"name": "metrics"},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port, "protocol": "TCP"}]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = raw
        .post(
            "/api/v1/namespaces/default/endpoints",
            &json!({"metadata": {"name": "metrics"},
                    "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = raw
        .post(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            &json!({"metadata": {"name": "metrics-manual", "labels": {"kubernetes.io/service-name": "metrics"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

fn apiservice(ca: &TestCa) -> Value {
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
            "service": {"namespace": "default", "name": "metrics", "port": 443},
            "caBundle": ca.ca_bundle(),
        }
    })
}

fn available(apiservice: &Value) -> Value {
    apiservice["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apiservice_is_discovered_and_proxied_with_the_callers_identity() {
    let cp = ControlPlane::start_with(APISERVER_FLAGS).await;
    let raw = cp.raw().await;
    let ca = TestCa::new("stories aggregation CA");
    let ip = host_ip();
    let mut server = HttpsServer::start_with_names(&ca, &format!("{ip}:0"), &["metrics.default.svc"], extension).await;
    let port = server.addr().port();
    publish(&raw, &ip.to_string(), port).await;

    // Kubernetes refuses a loopback endpoint, which is why the test uses the host's address.
    let r = raw
        .post(
            "/api/v1/namespaces/default/endpoints",
            &json!({"metadata": {"name": "loop"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 1}]}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text()
            .contains("may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        "{}",
        r.text()
    );

    // apiregistration.k8s.io itself is discoverable, with the built-in groups as Local APIServices.
    let groups = raw.get("/apis").await.json();
    assert!(
        groups["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == "apiregistration.k8s.io")),
        "{groups}"
    );
    let apps = raw.get(&format!("{APISERVICES}/v1.apps")).await;
    assert_eq!(apps.status, 200, "{}", apps.text());
    assert!(
        apps.json()["spec"]["service"].is_null(),
        "built-in groups are Local: {}",
        apps.text()
    );

    // Register the extension server.
    let r = raw.post(APISERVICES, &apiservice(&ca)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let status = eventually(Duration::from_secs(30), "APIService Available", || async {
        let a = raw.get(&format!("{APISERVICES}/{APISERVICE}")).await.json();
        let c = available(&a);
        (c["status"] == "True").then_some(c)
    })
    .await;
    assert_eq!(status["reason"], "Passed", "{status}");
    assert_eq!(status["message"], "all checks passed");
    let out =
        String::from_utf8_lossy(&run_ok(cp.kubectl().args(["get", "apiservice", APISERVICE])).stdout).into_owned();
    let header: Vec<&str> = out.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{out}");
    let row: Vec<&str> = out.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(&row[..3], [APISERVICE, "default/metrics", "True"], "{out}");

    // Discovery lists the group (the API server answers /apis itself, from the APIService).
    let groups = raw.get("/apis").await.json();
    let group = groups["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == GROUP))
        .unwrap_or_else(|| panic!("{GROUP} in /apis: {groups}"))
        .clone();
    assert_eq!(group["preferredVersion"]["groupVersion"], format!("{GROUP}/{VERSION}"));
    let resources =
        String::from_utf8_lossy(&run_ok(cp.kubectl().args(["api-resources", &format!("--api-group={GROUP}")])).stdout)
            .into_owned();
    assert!(resources.lines().any(|l| l.starts_with("gauges")), "{resources}");
    // Aggregated discovery (what kubectl 1.30+ reads first) includes it too.
    let agg = raw
        .get_accept(
            "/apis",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .await;
    assert_eq!(agg.status, 200, "{}", agg.text());
    let agg = agg.json();
    assert_eq!(agg["kind"], "APIGroupDiscoveryList", "{agg}");
    let entry = agg["items"]
        .as_array()
        .and_then(|i| i.iter().find(|g| g["metadata"]["name"] == GROUP))
        .unwrap_or_else(|| panic!("{GROUP} in aggregated discovery: {agg}"))
        .clone();
    assert_eq!(entry["versions"][0]["version"], VERSION);
    assert!(
        entry["versions"][0]["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["resource"] == "gauges")),
        "{entry}"
    );

    // kubectl get --raw is proxied; the answer is the extension server's.
    let path = format!("/apis/{GROUP}/{VERSION}/namespaces/default/gauges");
    let out = run_ok(cp.kubectl().args(["get", "--raw", &path]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list["kind"], "GaugeList");
    assert_eq!(list["items"][0]["value"], 42);
    assert_eq!(list["items"][0]["seenUser"], "admin");
    // kubectl get works on the aggregated resource as on any other.
    let out = String::from_utf8_lossy(&run_ok(cp.kubectl().args(["get", "gauges"])).stdout).into_owned();
    assert!(out.lines().any(|l| l.starts_with("cpu ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("memory ")), "{out}");

    // What reached the extension server: path and query kept, identity in
    // the front-proxy headers, the caller's credentials not forwarded.
    let r = raw.get(&format!("{path}/cpu?pretty=false")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["name"], "cpu");
    let seen = server
        .requests_to(&format!("{path}/cpu"))
        .pop()
        .expect("the GET of gauges/cpu reached the extension server");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.query, "pretty=false");
    assert_eq!(seen.header_values("x-remote-user"), ["admin"]);
    let groups = seen.header_values("x-remote-group");
    assert!(groups.contains(&"system:masters".to_string()), "{groups:?}");
    assert!(groups.contains(&"system:authenticated".to_string()), "{groups:?}");
    assert!(
        seen.header("authorization").is_none(),
        "the bearer token must not be forwarded: {seen:?}"
    );
    // Every proxied request carries the identity of its caller.
    let again = raw.get(&path).await;
    assert_eq!(again.status, 200);
    for s in server.requests_to(&path) {
        assert_eq!(s.header_values("x-remote-user"), ["admin"], "{s:?}");
    }

    // Errors of the extension server pass through unchanged.
    let r = raw
        .get(&format!("/apis/{GROUP}/{VERSION}/namespaces/default/gauges/nope"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        format!("/apis/{GROUP}/{VERSION}/namespaces/default/gauges/nope not found")
    );

    // The server goes away: the APIService turns unavailable and requests get 503.
    server.stop();
    eventually(Duration::from_secs(60), "APIService not Available", || async {
        let a = raw.get(&format!("{APISERVICES}/{APISERVICE}")).await.json();
        (available(&a)["status"] == "False").then_some(())
    })
    .await;
    let r = raw.get(&path).await;
    assert_eq!(r.status, 503, "{}", r.text());

    // Deleting the APIService removes the group from discovery.
    assert_eq!(raw.delete(&format!("{APISERVICES}/{APISERVICE}")).await.status, 200);
    eventually(Duration::from_secs(10), "group gone from /apis", || async {
        let g = raw.get("/apis").await.json();
        (!g["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == GROUP)))
        .then_some(())
    })
    .await;
    assert_eq!(raw.get(&path).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn apiservice_validation_and_missing_service() {
    let cp = ControlPlane::start_with(APISERVER_FLAGS).await;
    let raw = cp.raw().await;
    let ca = TestCa::new("stories aggregation CA");

    // The name must be <version>.<group>.
    let mut wrong = apiservice(&ca);
    wrong["metadata"]["name"] = json!("metrics");
    let r = raw.post(APISERVICES, &wrong).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("metadata.name"), "{}", r.text());
    // A priority is required.
    let mut no_priority = apiservice(&ca);
    no_priority["spec"]["groupPriorityMinimum"] = json!(0);
    let r = raw.post(APISERVICES, &no_priority).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("spec.groupPriorityMinimum"), "{}", r.text());

    // Registered before its Service exists: not Available, ServiceNotFound, and requests get 503.
    let r = raw.post(APISERVICES, &apiservice(&ca)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let c = eventually(Duration::from_secs(30), "Available=False", || async {
        let a = raw.get(&format!("{APISERVICES}/{APISERVICE}")).await.json();
        let c = available(&a);
        (c["status"] == "False").then_some(c)
    })
    .await;
    assert_eq!(c["reason"], "ServiceNotFound", "{c}");
    assert_eq!(c["message"], "service/metrics in \"default\" is not present");
    let r = raw
        .get(&format!("/apis/{GROUP}/{VERSION}/namespaces/default/gauges"))
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
}
