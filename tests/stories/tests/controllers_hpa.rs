//! User stories for HorizontalPodAutoscalers that need no resource metrics:
//! a real etcd, API server and controller-manager, and kubectl 1.32.
//!
//! `kubectl autoscale` writes an autoscaling/v1 object; it reads back as
//! autoscaling/v2 with Kubernetes' defaults, `kubectl get hpa` prints
//! kubectl's columns, invalid specs are refused with Kubernetes' field
//! errors, and the controller brings a target below `minReplicas` up to it
//! (with the `SuccessfulRescale` Event) and reports that it cannot compute a
//! replica count while no `metrics.k8s.io` is served.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use sluice_tests::controllers::{eventually, ControllerManager};
use sluice_tests::ControlPlane;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "sluice.local/busybox:latest",
                    "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }))
    .expect("deployment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_autoscale_writes_an_hpa_the_controller_acts_on() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let raw = cp.raw().await;
    let _cm = ControllerManager::start(
        cp.kubeconfig_path(),
        "cm-1",
        &["--horizontal-pod-autoscaler-sync-period=1s"],
    );
    let kubectl = |args: &[&str]| {
        let out = cp.kubectl().args(args).output().expect("kubectl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    deploys
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("create web");

    // kubectl 1.32's autoscale writes autoscaling/v1.
    let (ok, out) = kubectl(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=2",
        "--max=4",
    ]);
    assert!(ok, "kubectl autoscale failed: {out}");
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/web autoscaled"),
        "{out}"
    );

    // It reads back as autoscaling/v2, with the CPU target as a metric.
    let v2 = raw
        .get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web")
        .await
        .json();
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(v2["spec"]["minReplicas"], 2);
    assert_eq!(v2["spec"]["maxReplicas"], 4);
    assert_eq!(
        v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert_eq!(v2["spec"]["scaleTargetRef"]["kind"], "Deployment");

    // kubectl get hpa shows kubectl's columns.
    let (ok, out) = kubectl(&["get", "hpa"]);
    assert!(ok, "{out}");
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"],
        "{out}"
    );
    assert!(out.contains("Deployment/web"), "{out}");
    assert!(out.contains("cpu: <unknown>/50%"), "{out}");

    // A v2 memory metric and a behavior survive a v1 read-modify-write in
    // Kubernetes' annotations.
    let mut with_memory = v2.clone();
    with_memory["spec"]["metrics"] = json!([
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
    ]);
    with_memory["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 10}});
    // The controller writes the status meanwhile: no resourceVersion precondition.
    with_memory["metadata"]
        .as_object_mut()
        .map(|m| m.remove("resourceVersion"));
    let r = raw
        .put(
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web",
            &with_memory,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = r.json();
    assert_eq!(
        stored["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max",
        "behavior defaults filled"
    );
    assert_eq!(stored["spec"]["behavior"]["scaleUp"]["policies"][0]["value"], 4);
    let v1 = raw
        .get("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web")
        .await
        .json();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    let annotations = &v1["metadata"]["annotations"];
    assert!(
        annotations["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .is_some_and(|m| m.contains("\"targetAverageValue\":\"64Mi\"")),
        "{v1}"
    );
    let mut v1_edit = v1.clone();
    v1_edit["spec"]["maxReplicas"] = json!(5);
    v1_edit["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
    let r = raw
        .put(
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
            &v1_edit,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let back = raw
        .get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web")
        .await
        .json();
    assert_eq!(back["spec"]["maxReplicas"], 5);
    assert_eq!(back["spec"]["metrics"][0]["resource"]["name"], "memory", "{back}");
    assert_eq!(back["spec"]["metrics"][1]["resource"]["name"], "cpu", "{back}");
    assert_eq!(back["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 10);
    assert!(back["metadata"].get("annotations").is_none(), "{back}");

    // Invalid autoscalers are refused with Kubernetes' field errors, and
    // metric types this cluster cannot honour are named.
    let bad = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 3, "maxReplicas": 2,
            "metrics": [{"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}],
        },
    });
    let r = raw
        .post("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", &bad)
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let message = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"),
        "{message}"
    );
    assert!(
        message.contains(r#"spec.metrics[0].type: Unsupported value: "External": supported values: "Resource""#),
        "{message}"
    );
    let (ok, out) = kubectl(&["autoscale", "deployment", "web", "--name=zero", "--max=0"]);
    assert!(!ok, "{out}");

    // The controller: 2 replicas are within [2, 5] but no metrics API is
    // served, so it says it cannot compute a count.
    let hpas = |v: &str| format!("/apis/autoscaling/{v}/namespaces/default/horizontalpodautoscalers/web");
    let condition = |hpa: &Value, ty: &str| -> Option<(String, String, String)> {
        hpa["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                    c["message"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    let (status, message) = eventually(WAIT, "ScalingActive=False FailedGetResourceMetric", || async {
        let hpa = raw.get(&hpas("v2")).await.json();
        let (status, reason, message) = condition(&hpa, "ScalingActive")?;
        (reason == "FailedGetResourceMetric").then_some((status, message))
    })
    .await;
    assert_eq!(status, "False");
    assert!(
        // The first metric (memory, after the v1 round trip) names the error.
        message.starts_with("the HPA was unable to compute the replica count: failed to get memory usage: unable to get metrics for resource memory"),
        "{message}"
    );
    let hpa = raw.get(&hpas("v2")).await.json();
    assert_eq!(
        condition(&hpa, "AbleToScale").map(|c| (c.0, c.1)),
        Some(("True".into(), "SucceededGetScale".into()))
    );
    assert_eq!(hpa["status"]["currentReplicas"], 2);

    // Scaling the Deployment below minReplicas: the autoscaler brings it back.
    let (ok, out) = kubectl(&["scale", "deployment", "web", "--replicas=1"]);
    assert!(ok, "{out}");
    eventually(WAIT, "the Deployment back at minReplicas 2", || async {
        let d = deploys.get("web").await.ok()?;
        (d.spec.replicas == Some(2)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let message = eventually(WAIT, "a SuccessfulRescale Event", || async {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=web,reason=SuccessfulRescale"))
            .await
            .ok()?;
        list.items.into_iter().find_map(|e| e.message)
    })
    .await;
    assert_eq!(
        message,
        "New size: 2; reason: Current number of replicas below Spec.MinReplicas"
    );
    let v1 = eventually(WAIT, "status.lastScaleTime", || async {
        let v1 = raw.get(&hpas("v1")).await.json();
        v1["status"].get("lastScaleTime").is_some().then_some(v1)
    })
    .await;
    assert!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"]
            .as_str()
            .is_some_and(|c| c.contains("AbleToScale")),
        "{v1}"
    );

    let (ok, out) = kubectl(&["delete", "hpa", "web"]);
    assert!(ok, "{out}");
}
