//! Story: a platform engineer creates Pods with probes and resources and reads
//! back what Kubernetes would show: probe timings and HTTP probe path/scheme
//! defaulted (no `timeout=0s #success=0 #failure=0` in `kubectl describe`),
//! requests filled from limits, and the QoS class recorded at create.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice_tests::ControlPlane;

#[tokio::test]
async fn pods_get_probe_defaults_and_a_qos_class() {
    let cp = ControlPlane::start().await;
    let pods: Api<Pod> = Api::namespaced(cp.client().await, "default");

    let probed: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
        "spec": {"containers": [{
            "name": "web", "image": "nginx:1.25",
            "livenessProbe": {"httpGet": {"port": 80}},
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2},
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}
        }]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &probed).await.unwrap();
    let c = &created.spec.as_ref().unwrap().containers[0];
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        (
            live.timeout_seconds,
            live.period_seconds,
            live.success_threshold,
            live.failure_threshold
        ),
        (Some(1), Some(10), Some(1), Some(3))
    );
    let http = live.http_get.as_ref().unwrap();
    assert_eq!(
        (http.path.as_deref(), http.scheme.as_deref()),
        (Some("/"), Some("HTTP"))
    );
    let ready = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        (ready.period_seconds, ready.failure_threshold),
        (Some(2), Some(3)),
        "explicit values are kept"
    );
    assert_eq!(c.termination_message_path.as_deref(), Some("/dev/termination-log"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "64Mi");
    assert_eq!(
        created.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Guaranteed")
    );
    // Stored, not just echoed.
    let got = pods.get("probed").await.unwrap();
    assert_eq!(
        got.spec.unwrap().containers[0]
            .liveness_probe
            .as_ref()
            .unwrap()
            .failure_threshold,
        Some(3)
    );
    assert_eq!(got.status.unwrap().qos_class.as_deref(), Some("Guaranteed"));

    let plain: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &plain).await.unwrap();
    assert_eq!(created.status.unwrap().qos_class.as_deref(), Some("BestEffort"));

    let burst: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burst"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &burst).await.unwrap();
    assert_eq!(created.status.unwrap().qos_class.as_deref(), Some("Burstable"));
}
