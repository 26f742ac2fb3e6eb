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

/// A user writes a scheduler of their own. It binds pods as Kubernetes'
/// API server checks bindings: the binding names the pod it was decided
/// for (a pod deleted and created again under the same name is not bound by
/// the old decision), a gated pod is not bound, the binding's annotations
/// land on the pod, and the older `bindings` collection (what the kube crate's
/// `Api<Binding>` and the Python client post to) binds as well.
#[tokio::test]
async fn a_custom_scheduler_binds_pods_as_kubernetes_checks_bindings() {
    use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
    use kube::api::{Api, ObjectMeta, PostParams};

    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let pods = "/api/v1/namespaces/default/pods";

    // Discovery lists the collection, create only.
    let v1 = raw.get("/api/v1").await.json();
    let bindings = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "bindings")
        .cloned()
        .expect("bindings in /api/v1");
    assert_eq!(bindings["kind"], "Binding");
    assert_eq!(bindings["namespaced"], true);
    assert_eq!(bindings["verbs"], json!(["create"]));

    // The scheduler decided for the first `web`; it was deleted and made again.
    let first = raw.post(pods, &pod("web")).await.json();
    let old_uid = first["metadata"]["uid"].as_str().expect("uid").to_string();
    assert_eq!(raw.delete(&format!("{pods}/web")).await.status, 200);
    let second = raw.post(pods, &pod("web")).await.json();
    let new_uid = second["metadata"]["uid"].as_str().expect("uid").to_string();
    assert_ne!(old_uid, new_uid);
    let stale = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "uid": old_uid},
        "target": {"kind": "Node", "name": "node-1"}});
    let r = raw.post(&format!("{pods}/web/binding"), &stale).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        format!("Operation cannot be fulfilled on pods \"web\": Precondition failed: UID in precondition: {old_uid}, UID in object meta: {new_uid}")
    );
    let p = raw.get(&format!("{pods}/web")).await.json();
    assert!(p["spec"].get("nodeName").is_none(), "{p}");

    // A binding naming another pod than the URL is refused.
    let r = raw
        .post(
            &format!("{pods}/web/binding"),
            &json!({"metadata": {"name": "other"}, "target": {"name": "node-1"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["message"], "name in URL does not match name in Binding object");

    // A misspelled field is refused under fieldValidation=Strict, as in
    // every create, and nothing is bound.
    let typo = json!({"metadata": {"name": "web"}, "target": {"name": "node-1", "nmae": "node-2"}});
    let r = raw
        .post(&format!("{pods}/web/binding?fieldValidation=Strict"), &typo)
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "strict decoding error: unknown field \"target.nmae\""
    );
    assert!(raw.get(&format!("{pods}/web")).await.json()["spec"]
        .get("nodeName")
        .is_none());

    // The decision for this `web`, with an annotation of the scheduler's.
    let current = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "uid": new_uid, "annotations": {"example.com/scheduled-by": "mine"}},
        "target": {"kind": "Node", "name": "node-1"}});
    let mut current_with_typo = current.clone();
    current_with_typo["spec"] = json!({"unused": true});
    let r = raw.post(&format!("{pods}/web/binding"), &current_with_typo).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Without fieldValidation (Warn), the unknown field is dropped and warned about.
    assert!(
        r.headers
            .get_all("warning")
            .iter()
            .any(|w| w.to_str().ok() == Some(r#"299 - "unknown field \"spec\"""#)),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let p = raw.get(&format!("{pods}/web")).await.json();
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert_eq!(p["metadata"]["annotations"]["example.com/scheduled-by"], "mine");
    let scheduled: Vec<&Value> = p["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter(|c| c["type"] == "PodScheduled")
        .collect();
    assert_eq!(scheduled.len(), 1, "{p}");
    assert_eq!(scheduled[0]["status"], "True");

    // A pod with scheduling gates waits for them to be removed.
    let mut gated = pod("gated");
    gated["spec"]["schedulingGates"] = json!([{"name": "example.com/quota"}]);
    assert_eq!(raw.post(pods, &gated).await.status, 201);
    let r = raw
        .post(
            &format!("{pods}/gated/binding"),
            &json!({"metadata": {"name": "gated"}, "target": {"name": "node-1"}}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let status = r.json();
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods/binding \"gated\": pod gated has non-empty .spec.schedulingGates"
    );
    assert_eq!(status["details"]["kind"], "pods/binding");
    assert!(raw.get(&format!("{pods}/gated")).await.json()["spec"]
        .get("nodeName")
        .is_none());

    // The kube crate's `Api<Binding>` posts to the `bindings` collection.
    let client = cp.client().await;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    assert_eq!(raw.post(pods, &pod("api")).await.status, 201);
    let bindings: Api<Binding> = Api::namespaced(client, "default");
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some("api".into()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some("node-2".into()),
            ..Default::default()
        },
    };
    // The answer is a Status, not a Binding, as from Kubernetes.
    let answer: Result<Binding, kube::Error> = bindings.create(&PostParams::default(), &binding).await;
    match answer {
        Ok(_) => {}
        Err(kube::Error::SerdeError(_)) => {}
        Err(e) => panic!("binding through the bindings collection: {e}"),
    }
    let bound = pod_api.get("api").await.expect("pod api");
    assert_eq!(bound.spec.and_then(|s| s.node_name).as_deref(), Some("node-2"));
    let again = bindings.create(&PostParams::default(), &binding).await;
    assert!(
        matches!(&again, Err(kube::Error::Api(s)) if s.code == 409),
        "a second binding: {again:?}"
    );
}
