//! Story: a user edits objects with every patch flavour kubectl and client
//! libraries use, and gets Kubernetes-style 422 errors with field paths for
//! invalid objects; Events expire after the configured TTL.

use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn deployment(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [
                                  {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}], "ports": [{"containerPort": 80}]},
                                  {"name": "sidecar", "image": "side:1"}]}}}
    })
}

fn causes(v: &Value) -> Vec<String> {
    v["details"]["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn invalid_objects_are_422_with_field_paths_and_nothing_is_written() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";

    let mut bad = deployment("web");
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let r = raw.post(deploys, &bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["kind"], "Deployment");
    assert_eq!(body["details"]["group"], "apps");
    assert_eq!(causes(&body), ["spec.template.metadata.labels"]);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value"),
        "{body}"
    );
    assert_eq!(raw.get(&format!("{deploys}/web")).await.status, 404);

    let r = raw.post("/api/v1/namespaces/default/pods", &json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 0}]}]}})).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        causes(&r.json()),
        [
            "metadata.name",
            "spec.containers[0].image",
            "spec.containers[0].ports[0].containerPort"
        ]
    );

    let r = raw
        .post(
            "/api/v1/namespaces/default/services",
            &json!({"metadata": {"name": "svc", "labels": {"bad key": "x"}}, "spec": {"ports": [{"port": 70000}]}}),
        )
        .await;
    assert_eq!(r.status, 422);
    // targetPort defaults to port, so it is reported too (as Kubernetes does).
    assert_eq!(
        causes(&r.json()),
        ["metadata.labels", "spec.ports[0].port", "spec.ports[0].targetPort"]
    );

    // The selector of a Deployment is immutable.
    assert_eq!(raw.post(deploys, &deployment("web")).await.status, 201);
    let r = raw.patch(&format!("{deploys}/web"), "application/merge-patch+json", &json!({"spec": {"selector": {"matchLabels": {"app": "web", "x": "y"}}, "template": {"metadata": {"labels": {"app": "web", "x": "y"}}}}})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(causes(&r.json()), ["spec.selector"]);
}

#[tokio::test]
async fn strategic_merge_json_patch_merge_patch_and_apply() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    assert_eq!(raw.post(deploys, &deployment("web")).await.status, 201);

    // Strategic merge as kubectl apply sends it: containers by name, env by name, ports by containerPort.
    let smp = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{"name": "app", "image": "app:2",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                        "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}],
                        "ports": [{"containerPort": 8080}]}]}}}});
    let r = raw
        .patch(
            &format!("{deploys}/web"),
            "application/strategic-merge-patch+json",
            &smp,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.json();
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["image"], "app:2");
    assert_eq!(c[1]["name"], "sidecar");
    assert_eq!(
        c[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(c[0]["ports"].as_array().unwrap().len(), 2);
    assert_eq!(d["metadata"]["generation"], 2);

    // JSON patch.
    let jp = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}, {"op": "add", "path": "/metadata/labels", "value": {"team": "x"}}]);
    let d = raw
        .patch(&format!("{deploys}/web"), "application/json-patch+json", &jp)
        .await
        .json();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["labels"]["team"], "x");
    let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 99}]);
    let r = raw
        .patch(&format!("{deploys}/web"), "application/json-patch+json", &failing)
        .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Merge patch with a stale resourceVersion precondition: 409.
    let r = raw
        .patch(
            &format!("{deploys}/web"),
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());

    // Server-side apply: create, then update.
    let cms = "/api/v1/namespaces/default/configmaps";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n";
    let r = raw
        .request(
            "PATCH",
            &format!("{cms}/applied?fieldManager=me"),
            Some("application/apply-patch+yaml"),
            yaml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  b: \"2\"\n";
    let r = raw
        .request(
            "PATCH",
            &format!("{cms}/applied?fieldManager=me&force=true"),
            Some("application/apply-patch+yaml"),
            yaml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["b"], "2");
    // Patching something missing is 404.
    let r = raw
        .patch(
            &format!("{cms}/nope"),
            "application/merge-patch+json",
            &json!({"data": {}}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn events_expire_after_the_ttl() {
    let cp = ControlPlane::start_with(&["--event-ttl", "3s"]).await;
    let raw = cp.raw().await;
    let event = json!({
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "reason": "Testing", "message": "hello", "type": "Normal"
    });
    let r = raw.post("/api/v1/namespaces/default/events", &event).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(raw.get("/api/v1/namespaces/default/events/e1").await.status, 200);
    // describe-style field selector finds it.
    let r = raw
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp,involvedObject.kind%3DPod")
        .await
        .json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let start = std::time::Instant::now();
    loop {
        if raw.get("/api/v1/namespaces/default/events/e1").await.status == 404 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "event still there after 15s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(1), "expired too early");
}
