//! Story: objects go through their lifecycle as in Kubernetes — namespaces
//! must exist and stop accepting content while terminating, finalizers hold
//! deleted objects with a deletionTimestamp until removed, propagation
//! policies are recorded for the garbage collector, pods terminate
//! gracefully on their node, and the status/scale/binding subresources only
//! touch what they own.

use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn deployment(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })
}

#[tokio::test]
async fn namespaces_must_exist_and_refuse_content_while_terminating() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let r = raw
        .post(
            "/api/v1/namespaces/missing/configmaps",
            &json!({"metadata": {"name": "a"}}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["message"], "namespaces \"missing\" not found");

    let r = raw
        .post("/api/v1/namespaces", &json!({"metadata": {"name": "doomed"}}))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"]["phase"], "Active");
    assert_eq!(r.json()["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(
        raw.post(
            "/api/v1/namespaces/doomed/configmaps",
            &json!({"metadata": {"name": "a"}})
        )
        .await
        .status,
        201
    );

    // Deleting marks it Terminating; the namespace controller empties it and finalizes.
    let r = raw.delete("/api/v1/namespaces/doomed").await;
    assert!(r.status == 200 || r.status == 202, "{}", r.text());
    let ns = raw.get("/api/v1/namespaces/doomed").await.json();
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let r = raw
        .post(
            "/api/v1/namespaces/doomed/configmaps",
            &json!({"metadata": {"name": "b"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["reason"], "Forbidden");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("unable to create new content in namespace doomed because it is being terminated"));

    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!([]);
    let r = raw.put("/api/v1/namespaces/doomed/finalize", &fin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(raw.get("/api/v1/namespaces/doomed").await.status, 404);
}

#[tokio::test]
async fn finalizers_hold_deletion_and_propagation_policy_is_recorded() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    raw.post(
        cms,
        &json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    // Pending deletion answers 200 with the object, as Kubernetes (202 only
    // when the client asked `orphanDependents: false`).
    let r = raw.delete(&format!("{cms}/held")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let held = raw.get(&format!("{cms}/held")).await.json();
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    // Finalizers cannot be added back after deletion started? They can be removed:
    let r = raw
        .patch(
            &format!("{cms}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(raw.get(&format!("{cms}/held")).await.status, 404);

    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    for (name, policy, finalizer) in [("fg", "Foreground", "foregroundDeletion"), ("orph", "Orphan", "orphan")] {
        assert_eq!(raw.post(deploys, &deployment(name)).await.status, 201);
        let body =
            serde_json::to_vec(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}))
                .unwrap();
        let r = raw
            .request("DELETE", &format!("{deploys}/{name}"), Some("application/json"), body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let d = raw.get(&format!("{deploys}/{name}")).await.json();
        assert_eq!(d["metadata"]["finalizers"], json!([finalizer]));
        assert!(d["metadata"]["deletionTimestamp"].is_string());
    }
    // Background (the default) removes at once.
    raw.post(deploys, &deployment("bg")).await;
    assert_eq!(
        raw.delete(&format!("{deploys}/bg?propagationPolicy=Background"))
            .await
            .status,
        200
    );
    assert_eq!(raw.get(&format!("{deploys}/bg")).await.status, 404);
}

#[tokio::test]
async fn subresources_status_scale_binding_and_graceful_pod_deletion() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let d = raw.post(deploys, &deployment("web")).await.json();

    // status writes only status...
    let mut st = d.clone();
    st["status"] = json!({"replicas": 2, "readyReplicas": 1});
    st["spec"]["replicas"] = json!(9);
    let r = raw.put(&format!("{deploys}/web/status"), &st).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(after["status"]["readyReplicas"], 1);
    assert_eq!(after["spec"]["replicas"], 2);
    // ...and the main resource ignores status.
    let mut main = after.clone();
    main["status"] = json!({"replicas": 100});
    let after = raw.put(&format!("{deploys}/web"), &main).await.json();
    assert_eq!(after["status"]["replicas"], 2);

    // scale
    let scale = raw.get(&format!("{deploys}/web/scale")).await.json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");
    let r = raw
        .patch(
            &format!("{deploys}/web/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut put = r.json();
    put["spec"]["replicas"] = json!(4);
    assert_eq!(raw.put(&format!("{deploys}/web/scale"), &put).await.status, 200);
    let d = raw.get(&format!("{deploys}/web")).await.json();
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 3);

    // binding
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(raw.post(pods, &pod("p")).await.status, 201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let r = raw.post(&format!("{pods}/p/binding"), &binding).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let p = raw.get(&format!("{pods}/p")).await.json();
    assert_eq!(p["spec"]["nodeName"], "node-1");
    let r = raw.post(&format!("{pods}/p/binding"), &binding).await;
    assert_eq!(r.status, 409, "{}", r.text());

    // A bound pod terminates gracefully; its node then deletes it with grace 0.
    let r = raw.delete(&format!("{pods}/p")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = raw.get(&format!("{pods}/p")).await.json();
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(raw.delete(&format!("{pods}/p?gracePeriodSeconds=0")).await.status, 200);
    assert_eq!(raw.get(&format!("{pods}/p")).await.status, 404);
    // An unbound pod goes at once.
    raw.post(pods, &pod("q")).await;
    assert_eq!(raw.delete(&format!("{pods}/q")).await.status, 200);
}
