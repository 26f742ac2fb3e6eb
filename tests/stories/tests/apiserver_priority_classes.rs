//! Story: a platform engineer gives workloads priorities with
//! PriorityClasses (`scheduling.k8s.io/v1`), as on Kubernetes.
//!
//! Real etcd and API server; kubectl, the kube crate and raw HTTP. The two
//! system classes exist from the start; `kubectl create priorityclass` and
//! `kubectl get pc` work; a pod naming a class gets its value and policy,
//! a pod naming none gets the global default (named in the pod), a class
//! that does not exist or a priority the pod states itself is a 403 with
//! Kubernetes' words; a second global default, a user class above one
//! billion, a `system-` name and a changed value are refused.

use std::process::Output;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn pod(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn pods_get_their_priority_from_priority_classes() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let kubectl = |args: &[&str]| -> Output { cp.kubectl().args(args).output().expect("kubectl runs") };

    // Every cluster has the two system classes.
    let classes: Api<PriorityClass> = Api::all(cp.client().await);
    let node_critical = classes.get("system-node-critical").await.expect("system-node-critical");
    assert_eq!(node_critical.value, Some(2_000_001_000));
    assert_eq!(node_critical.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
    assert_eq!(
        classes
            .get("system-cluster-critical")
            .await
            .expect("system-cluster-critical")
            .value,
        Some(2_000_000_000)
    );

    // kubectl's generator and table.
    let out = kubectl(&[
        "create",
        "priorityclass",
        "batch-low",
        "--value=10",
        "--preemption-policy=Never",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "priorityclass.scheduling.k8s.io/batch-low created"
    );
    let out = kubectl(&["create", "priorityclass", "normal", "--value=100", "--global-default"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = kubectl(&["get", "pc", "batch-low"]);
    let table = text(&out.stdout);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        "{table}"
    );
    assert_eq!(
        [lines[1][0], lines[1][1], lines[1][2], lines[1][4]],
        ["batch-low", "10", "false", "Never"],
        "{table}"
    );

    // A pod naming a class gets its value and policy.
    let pods: Api<Pod> = Api::namespaced(cp.client().await, "default");
    let low: Pod = serde_json::from_value(pod("low", json!({"priorityClassName": "batch-low"}))).unwrap();
    let low = pods
        .create(&PostParams::default(), &low)
        .await
        .expect("pod with a class");
    let spec = low.spec.expect("spec");
    assert_eq!(spec.priority, Some(10));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));

    // A pod naming none gets the global default, named in the pod.
    let plain = raw
        .post("/api/v1/namespaces/default/pods", &pod("plain", json!({})))
        .await;
    assert_eq!(plain.status, 201, "{}", plain.text());
    let plain = plain.json();
    assert_eq!(plain["spec"]["priorityClassName"], "normal");
    assert_eq!(plain["spec"]["priority"], 100);
    assert_eq!(plain["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    // Updating the pod without the priority keeps it.
    let mut relabelled = plain.clone();
    relabelled["metadata"]["labels"] = json!({"tier": "web"});
    relabelled["spec"].as_object_mut().unwrap().remove("priority");
    let r = raw.put("/api/v1/namespaces/default/pods/plain", &relabelled).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["priority"], 100);

    // A class that does not exist: 403, as Kubernetes' Priority admission says it.
    let r = raw
        .post(
            "/api/v1/namespaces/default/pods",
            &pod("lost", json!({"priorityClassName": "gold"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let status = r.json();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "pods \"lost\" is forbidden: no PriorityClass with name gold was found"
    );
    let out = kubectl(&[
        "run",
        "lost",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"priorityClassName":"gold"}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pods \"lost\" is forbidden: no PriorityClass with name gold was found"),
        "{}",
        text(&out.stderr)
    );
    // A priority the pod states itself must be the one its class gives.
    let r = raw
        .post(
            "/api/v1/namespaces/default/pods",
            &pod("sneaky", json!({"priority": 1000000})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "pods \"sneaky\" is forbidden: the integer value of priority (1000000) must not be provided in pod spec; priority admission controller computed 100 from the given PriorityClass name"
    );
    assert_eq!(
        raw.get("/api/v1/namespaces/default/pods/sneaky").await.status,
        404,
        "nothing was stored"
    );

    // Only one global default.
    let out = kubectl(&["create", "priorityclass", "other", "--value=5", "--global-default"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(
            "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist"
        ),
        "{}",
        text(&out.stderr)
    );
    // Values above one billion are the system classes'; `system-` names are reserved.
    let r = raw
        .post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            &json!({"metadata": {"name": "huge"}, "value": 1_000_000_001}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "PriorityClass.scheduling.k8s.io \"huge\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
    );
    let r = raw
        .post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            &json!({"metadata": {"name": "system-mine"}, "value": 1}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text()
            .contains("priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"),
        "{}",
        r.text()
    );
    // The value is fixed once created.
    let out = kubectl(&["patch", "pc", "batch-low", "-p", r#"{"value": 11}"#]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("value: Forbidden: may not be changed in an update."),
        "{}",
        text(&out.stderr)
    );
}
