//! Story: a platform engineer manages objects through the API server with a
//! Kubernetes client and sees Kubernetes semantics: defaults filled in,
//! server-set metadata, 409 on stale writes, Status errors for bad requests,
//! and no access without credentials.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};
use sluice_tests::ControlPlane;

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
        }
    })
}

#[tokio::test]
async fn crud_with_defaults_and_server_set_fields() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;

    // The bootstrap namespaces exist.
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", "kube-public"] {
        assert!(names.contains(&want.to_string()), "{names:?}");
    }

    // Create: uid, creationTimestamp, generation, resourceVersion and defaults.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(deployment("web")).unwrap();
    let created = deploys.create(&PostParams::default(), &d).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let spec = &created.spec;
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        pod.containers[0].ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );

    // Get returns the same object.
    let got = deploys.get("web").await.unwrap();
    assert_eq!(got.metadata.resource_version, created.metadata.resource_version);

    // Update of the spec bumps generation; a metadata-only change does not.
    let mut upd = got.clone();
    upd.spec.replicas = Some(3);
    let upd = deploys.replace("web", &PostParams::default(), &upd).await.unwrap();
    assert_eq!(upd.metadata.generation, Some(2));
    let mut lbl = upd.clone();
    lbl.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "front".into());
    let lbl = deploys.replace("web", &PostParams::default(), &lbl).await.unwrap();
    assert_eq!(lbl.metadata.generation, Some(2));

    // A write based on a stale resourceVersion is a 409 Conflict and changes nothing.
    let mut stale = got.clone();
    stale.spec.replicas = Some(7);
    let err = deploys
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(3));

    // Creating it again is AlreadyExists.
    let err = deploys.create(&PostParams::default(), &d).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    // Delete, then it is gone.
    deploys.delete("web", &DeleteParams::default()).await.unwrap();
    let err = deploys.get("web").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
}

#[tokio::test]
async fn generate_name_dry_run_and_field_validation() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let path = "/api/v1/namespaces/default/configmaps";

    let created = raw
        .post(path, &json!({"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let name = created.json()["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    // dryRun=All validates and answers, but stores nothing.
    let dry = raw
        .post(&format!("{path}?dryRun=All"), &json!({"metadata": {"name": "dry"}}))
        .await;
    assert_eq!(dry.status, 201, "{}", dry.text());
    assert_eq!(raw.get(&format!("{path}/dry")).await.status, 404);

    // Unknown fields: Strict rejects, Warn drops with a Warning header.
    let body = json!({"metadata": {"name": "strict"}, "data": {"a": "1"}, "bogus": 1});
    let strict = raw.post(&format!("{path}?fieldValidation=Strict"), &body).await;
    assert_eq!(strict.status, 400, "{}", strict.text());
    assert!(
        strict.json()["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"bogus\""),
        "{}",
        strict.text()
    );
    assert_eq!(raw.get(&format!("{path}/strict")).await.status, 404);
    let warn = raw.post(&format!("{path}?fieldValidation=Warn"), &body).await;
    assert_eq!(warn.status, 201);
    assert!(warn
        .headers
        .get("warning")
        .is_some_and(|w| w.to_str().unwrap().contains("bogus")));
    assert!(warn.json().get("bogus").is_none());

    // kube client sees the same objects.
    let cms: Api<ConfigMap> = Api::namespaced(cp.client().await, "default");
    let listed = cms.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = listed.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
    assert!(
        names.contains(&name) && names.contains(&"strict".to_string()) && !names.contains(&"dry".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn bad_requests_get_kubernetes_status_errors() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;

    // Unknown path: 404 Status.
    let r = raw.get("/api/v1/widgets").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(r.json()["reason"], "NotFound");

    // Malformed JSON: 400 BadRequest.
    let r = raw
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some("application/json"),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["reason"], "BadRequest");

    // A body over 3 MiB: 413.
    let big = json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(4 * 1024 * 1024)}});
    let r = raw.post("/api/v1/namespaces/default/configmaps", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    assert_eq!(raw.get("/api/v1/namespaces/default/configmaps/big").await.status, 404);

    // Namespace in the body differing from the path: 400.
    let r = raw
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": "x", "namespace": "other"}}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn anonymous_requests_are_unauthorized_except_health() {
    let cp = ControlPlane::start().await;
    let anon = cp.anonymous().await;
    for path in ["/api/v1/namespaces", "/api", "/apis/apps/v1/deployments"] {
        let r = anon.get(path).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.json()["reason"], "Unauthorized");
    }
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(anon.get(path).await.status, 200, "{path}");
    }
    // A wrong token is rejected; the admin token and the client certificate work.
    let wrong = cp.apiserver.with_token("not-a-token").await;
    assert_eq!(wrong.get("/api/v1/namespaces").await.status, 401);
    assert_eq!(cp.raw().await.get("/api/v1/namespaces").await.status, 200);
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cp.client().await);
    assert!(ns.get("default").await.is_ok());
}
