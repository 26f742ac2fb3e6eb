//! Story: an operator scrapes the API server's Prometheus metrics.
//!
//! After some traffic (creates, lists, a watch), `/metrics` has Kubernetes'
//! series with values that match what was done: `apiserver_request_total`
//! by verb, resource and code, `apiserver_request_duration_seconds`,
//! `apiserver_longrunning_requests` for the open watch, and
//! `etcd_request_duration_seconds`. The endpoint is authenticated: a user
//! without a binding gets 403, a member of `system:monitoring` may scrape, as
//! may `kubectl get --raw /metrics`.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;
use sluice_tests::metrics::value;
use sluice_tests::{eventually, ControlPlane};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_scrapes_the_api_servers_metrics() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let admin = cp.raw().await;

    // Some traffic: 5 ConfigMap creates, a list, a refused create (409).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("m-{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "m-0"}})).unwrap();
    assert!(cms.create(&PostParams::default(), &cm).await.is_err(), "m-0 exists");
    assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 5);

    // A watch stays open while we scrape.
    let mut watch = cms.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    assert!(watch.next().await.is_some(), "the watch delivers the existing objects");

    let scrape = admin.get("/metrics").await;
    assert_eq!(scrape.status, 200);
    let content_type = scrape.headers[http::header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = scrape.text();
    let creates = [
        ("verb", "POST"),
        ("group", ""),
        ("version", "v1"),
        ("resource", "configmaps"),
        ("scope", "namespace"),
        ("component", "apiserver"),
    ];
    assert_eq!(
        value(
            &text,
            "apiserver_request_total",
            &[&creates[..], &[("code", "201")]].concat()
        ),
        Some(5.0),
        "five created ConfigMaps:\n{text}"
    );
    assert_eq!(
        value(
            &text,
            "apiserver_request_total",
            &[&creates[..], &[("code", "409")]].concat()
        ),
        Some(1.0),
        "one conflict"
    );
    assert!(
        value(
            &text,
            "apiserver_request_total",
            &[("verb", "LIST"), ("resource", "configmaps"), ("code", "200")]
        )
        .is_some_and(|v| v >= 1.0),
        "the list"
    );
    assert_eq!(
        value(&text, "apiserver_request_duration_seconds_count", &creates),
        Some(6.0),
        "every create is timed"
    );
    let under_a_minute = value(
        &text,
        "apiserver_request_duration_seconds_bucket",
        &[&creates[..], &[("le", "60.0")]].concat(),
    );
    assert_eq!(under_a_minute, Some(6.0), "and took less than a minute");
    assert_eq!(
        value(
            &text,
            "apiserver_longrunning_requests",
            &[("verb", "WATCH"), ("resource", "configmaps")]
        ),
        Some(1.0),
        "the open watch"
    );
    assert!(
        value(
            &text,
            "etcd_request_duration_seconds_count",
            &[("operation", "create"), ("type", "configmaps")]
        )
        .is_some_and(|v| v >= 5.0),
        "etcd creates of configmaps:\n{text}"
    );

    // Closing the watch ends the long-running request: it is counted then.
    drop(watch);
    eventually(Duration::from_secs(10), "the watch counted as finished", || async {
        let text = admin.get("/metrics").await.text();
        let open = value(
            &text,
            "apiserver_longrunning_requests",
            &[("verb", "WATCH"), ("resource", "configmaps")],
        );
        let done = value(
            &text,
            "apiserver_request_total",
            &[("verb", "WATCH"), ("resource", "configmaps")],
        );
        (open == Some(0.0) && done == Some(1.0)).then_some(())
    })
    .await;

    // Authenticated and authorized like any non-resource URL.
    assert_eq!(cp.anonymous().await.get("/metrics").await.status, 401);
    let nobody = cp.apiserver.raw_as(&cp.apiserver.user_kubeconfig("nobody", &[])).await;
    let refused = nobody.get("/metrics").await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json()["message"],
        "forbidden: User \"nobody\" cannot get path \"/metrics\""
    );
    let prometheus = cp
        .apiserver
        .raw_as(&cp.apiserver.user_kubeconfig("prometheus", &["system:monitoring"]))
        .await;
    assert_eq!(prometheus.get("/metrics").await.status, 200);
    let out = cp.kubectl().args(["get", "--raw", "/metrics"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        value(&text, "apiserver_request_total", &[("verb", "GET"), ("code", "403")]).is_some_and(|v| v >= 1.0),
        "the refused scrape is counted:\n{text}"
    );
}
