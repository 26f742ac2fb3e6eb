//! Story: clients written against a real Kubernetes API server see the same
//! bytes from Sluice — query parameters decoded as Kubernetes decodes them,
//! `Status` errors marshalled field for field, objects in Kubernetes' field
//! order with the empty statuses Kubernetes returns, PartialObjectMetadata
//! on request, and field selectors with each kind's field labels.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use sluice_tests::ControlPlane;

/// A raw response: status and body bytes.
struct Resp {
    status: u16,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// One JSON document per line (watch streams).
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect()
    }
}

/// Send a request with optional Accept header and JSON body.
async fn send(client: &kube::Client, method: &str, path: &str, accept: Option<&str>, body: Option<&Value>) -> Resp {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(a) = accept {
        b = b.header(http::header::ACCEPT, a);
    }
    if body.is_some() {
        b = b.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = body.map(|v| serde_json::to_vec(v).unwrap()).unwrap_or_default();
    let req = b.body(kube::client::Body::from(bytes)).unwrap();
    let resp = client.send(req).await.expect("request sent");
    let status = resp.status().as_u16();
    use http_body_util::BodyExt;
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    Resp { status, body }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn make_cm(client: &kube::Client, name: &str) -> Value {
    let r = send(
        client,
        "POST",
        CMS,
        None,
        Some(&json!({"metadata": {"name": name}, "data": {"k": "v"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn query_parameters_are_decoded_as_kubernetes_decodes_them() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    make_cm(&c, "q1").await;

    // `watch=True` (and any value but 0/false) is a watch, not a list.
    for v in ["True", "TRUE", "1", "t", "yes"] {
        let r = send(&c, "GET", &format!("{CMS}?watch={v}&timeoutSeconds=1"), None, None).await;
        assert_eq!(r.status, 200, "{v}: {}", r.text());
        let events = r.lines();
        assert_eq!(
            events.first().map(|e| e["type"].clone()),
            Some(json!("ADDED")),
            "watch={v}: {}",
            r.text()
        );
        assert_eq!(events[0]["object"]["metadata"]["name"], "q1");
    }
    for v in ["false", "False", "FALSE", "0"] {
        let r = send(&c, "GET", &format!("{CMS}?watch={v}"), None, None).await;
        assert_eq!(r.json()["kind"], "ConfigMapList", "watch={v}");
    }

    // Integers go through strconv.ParseInt; a bad one is a 400 with Go's text.
    let r = send(&c, "GET", &format!("{CMS}?limit=ten"), None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"strconv.ParseInt: parsing \\\"ten\\\": invalid syntax\",\"reason\":\"BadRequest\",\"code\":400}\n"
    );
    let r = send(&c, "GET", &format!("{CMS}?watch=1&timeoutSeconds=soon"), None, None).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = send(&c, "DELETE", &format!("{CMS}/q1?gracePeriodSeconds=abc"), None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "strconv.ParseInt: parsing \"abc\": invalid syntax");

    // resourceVersionMatch is validated as ValidateListOptions does.
    let r = send(
        &c,
        "GET",
        &format!("{CMS}?resourceVersionMatch=NotOlderThan"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let s = r.json();
    assert_eq!(
        s["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    assert_eq!(s["details"]["group"], "meta.k8s.io");
    assert_eq!(s["details"]["kind"], "ListOptions");
    let r = send(
        &c,
        "GET",
        &format!("{CMS}?resourceVersion=1&resourceVersionMatch=Latest"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["message"].as_str().unwrap().ends_with(
        "resourceVersionMatch: Unsupported value: \"Latest\": supported values: \"Exact\", \"NotOlderThan\", \"\""
    ));
    let rv = send(&c, "GET", CMS, None, None).await.json()["metadata"]["resourceVersion"].clone();
    let rv = rv.as_str().unwrap();
    for m in ["Exact", "NotOlderThan"] {
        let r = send(
            &c,
            "GET",
            &format!("{CMS}?resourceVersion={rv}&resourceVersionMatch={m}"),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{m}: {}", r.text());
    }
    let r = send(&c, "GET", &format!("{CMS}?sendInitialEvents=true"), None, None).await;
    assert_eq!(r.status, 422);
    let r = send(
        &c,
        "GET",
        &format!("{CMS}?watch=1&sendInitialEvents=true&timeoutSeconds=1"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 422, "watch-list needs resourceVersionMatch=NotOlderThan");
    let r = send(
        &c,
        "GET",
        &format!("{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=True&timeoutSeconds=1"),
        None,
        None,
    )
    .await;
    let types: Vec<Value> = r.lines().iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types.first(), Some(&json!("ADDED")), "{}", r.text());
    assert!(types.contains(&json!("BOOKMARK")), "{}", r.text());

    // pretty: Go's ParseBool; indented JSON, no trailing newline.
    let r = send(&c, "GET", &format!("{CMS}/q1?pretty=True"), None, None).await;
    assert!(
        r.text()
            .starts_with("{\n  \"kind\": \"ConfigMap\",\n  \"apiVersion\": \"v1\",\n"),
        "{}",
        r.text()
    );
    let r = send(&c, "GET", &format!("{CMS}/q1?pretty=yes"), None, None).await;
    assert!(r.text().starts_with("{\"kind\":\"ConfigMap\""), "{}", r.text());
}

#[tokio::test]
async fn errors_are_status_objects_byte_for_byte() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let r = send(&c, "GET", "/api/v1/namespaces/default/pods/x", None, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.text(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
    );
    let r = send(&c, "GET", "/apis/apps/v1/namespaces/default/deployments/d", None, None).await;
    assert_eq!(
        r.text(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"deployments.apps \\\"d\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"d\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":404}\n"
    );
}

#[tokio::test]
async fn created_objects_come_back_with_kubernetes_empty_statuses() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let tpl =
        json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let cases = [
        (
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
            json!({"loadBalancer": {}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": tpl}}),
            json!({}),
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": tpl}}),
            json!({"replicas": 0}),
        ),
        (
            "/api/v1/namespaces",
            json!({"metadata": {"name": "wire-ns"}}),
            json!({"phase": "Active"}),
        ),
    ];
    for (path, body, want) in cases {
        let r = send(&c, "POST", path, None, Some(&body)).await;
        assert_eq!(r.status, 201, "{path}: {}", r.text());
        assert_eq!(r.json()["status"], want, "{path}");
        let name = body["metadata"]["name"].as_str().unwrap();
        let got = send(&c, "GET", &format!("{path}/{name}"), None, None).await.json();
        assert_eq!(got["status"], want, "{path} (get)");
    }
    let pod = send(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        None,
        Some(&json!({"metadata": {"name": "p"}, "spec": tpl["spec"]})),
    )
    .await
    .json();
    assert_eq!(pod["status"]["phase"], "Pending");
    let node = send(
        &c,
        "POST",
        "/api/v1/nodes",
        None,
        Some(&json!({"metadata": {"name": "n1"}})),
    )
    .await;
    assert_eq!(node.status, 201, "{}", node.text());
    let node = node.json();
    assert_eq!(
        node["status"]["daemonEndpoints"],
        json!({"kubeletEndpoint": {"Port": 0}})
    );
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "");
}

#[tokio::test]
async fn objects_are_marshalled_in_kubernetes_field_order() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let prefix = "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"o1\",\"namespace\":\"default\",\"uid\":";
    // The client writes its fields in another order.
    let body = json!({"data": {"k": "v"}, "metadata": {"labels": {"a": "b"}, "name": "o1"}, "apiVersion": "v1", "kind": "ConfigMap"});
    let r = send(&c, "POST", CMS, None, Some(&body)).await;
    assert_eq!(r.status, 201);
    assert!(r.text().starts_with(prefix), "create: {}", r.text());
    // managedFields come last in metadata, as in ObjectMeta.
    assert!(
        r.text().contains("\"labels\":{\"a\":\"b\"},\"managedFields\":[{"),
        "{}",
        r.text()
    );
    assert!(
        r.text().trim_end().ends_with("}]},\"data\":{\"k\":\"v\"}}"),
        "{}",
        r.text()
    );
    let r = send(&c, "GET", &format!("{CMS}/o1"), None, None).await;
    assert!(r.text().starts_with(prefix), "get: {}", r.text());
    let r = send(&c, "GET", CMS, None, None).await;
    assert!(r
        .text()
        .starts_with("{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":"));
    assert!(r.text().contains(&format!("\"items\":[{prefix}")), "list: {}", r.text());
    let put = json!({"data": {"k": "w"}, "apiVersion": "v1", "metadata": {"name": "o1"}, "kind": "ConfigMap"});
    let r = send(&c, "PUT", &format!("{CMS}/o1"), None, Some(&put)).await;
    assert!(r.text().starts_with(prefix), "update: {}", r.text());
    let r = send(&c, "GET", &format!("{CMS}?watch=1&timeoutSeconds=1"), None, None).await;
    assert!(
        r.text()
            .starts_with(&format!("{{\"type\":\"ADDED\",\"object\":{prefix}")),
        "watch: {}",
        r.text()
    );
    let r = send(
        &c,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/none",
        None,
        None,
    )
    .await;
    assert!(r
        .text()
        .starts_with("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\""));
}

#[tokio::test]
async fn generate_name_with_a_multibyte_character_is_refused_not_crashed() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    for prefix in [format!("{}é-", "a".repeat(57)), format!("{}€€", "a".repeat(56))] {
        let body = json!({"metadata": {"generateName": prefix}, "data": {}});
        let r = send(&c, "POST", CMS, None, Some(&body)).await;
        assert_eq!(r.status, 422, "{}", r.text());
        let s = r.json();
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.generateName", "{s}");
    }
    // The server is still up.
    assert_eq!(send(&c, "GET", CMS, None, None).await.status, 200);
}

#[tokio::test]
async fn partial_object_metadata_on_request() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    make_cm(&c, "m1").await;
    let pom = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let poml = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

    let r = send(&c, "GET", &format!("{CMS}/m1"), Some(pom), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with(
            "{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{\"name\":\"m1\""
        ),
        "{}",
        r.text()
    );
    assert!(r.json().get("data").is_none());

    let r = send(&c, "GET", CMS, Some(poml), None).await;
    let l = r.json();
    assert_eq!(l["kind"], "PartialObjectMetadataList", "{}", r.text());
    assert_eq!(l["apiVersion"], "meta.k8s.io/v1");
    assert!(l["metadata"]["resourceVersion"].is_string());
    assert_eq!(l["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(l["items"][0]["metadata"]["name"], "m1");

    let r = send(&c, "GET", &format!("{CMS}?watch=1&timeoutSeconds=1"), Some(pom), None).await;
    let ev = r.lines();
    assert_eq!(ev[0]["type"], "ADDED", "{}", r.text());
    assert_eq!(ev[0]["object"]["kind"], "PartialObjectMetadata");
    assert!(ev[0]["object"].get("data").is_none());

    // Conversions that do not fit, or are not served: 406 as Kubernetes words them
    let r = send(&c, "GET", CMS, Some(pom), None).await;
    assert_eq!(r.status, 406, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)"
    );
    assert_eq!(r.json()["reason"], "NotAcceptable");
    let r = send(&c, "GET", &format!("{CMS}/m1"), Some(poml), None).await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.json()["message"],
        "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)"
    );
    let r = send(&c, "GET", CMS, Some("application/json;as=Foo;g=meta.k8s.io;v=v1"), None).await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.text(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf\",\"reason\":\"NotAcceptable\",\"code\":406}\n"
    );

    // kube-rs metadata APIs work against it.
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    let meta = api.get_metadata("m1").await.expect("get_metadata");
    assert_eq!(meta.metadata.name.as_deref(), Some("m1"));
    let list = api.list_metadata(&ListParams::default()).await.expect("list_metadata");
    assert!(list.items.iter().any(|m| m.metadata.name.as_deref() == Some("m1")));
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "m2"}})).unwrap(),
    )
    .await
    .expect("create");
}

#[tokio::test]
async fn field_selectors_use_each_kinds_field_labels() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    for (name, unsched) in [("plain", None), ("cordoned", Some(true))] {
        let mut n = json!({"metadata": {"name": name}, "spec": {}});
        if let Some(u) = unsched {
            n["spec"]["unschedulable"] = json!(u);
        }
        assert_eq!(send(&c, "POST", "/api/v1/nodes", None, Some(&n)).await.status, 201);
    }
    let names = |r: &Resp| -> Vec<String> {
        let mut v: Vec<String> = r.json()["items"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    };
    for (sel, want) in [
        ("spec.unschedulable%3Dfalse", vec!["plain"]),
        ("spec.unschedulable%3D%3Dtrue", vec!["cordoned"]),
        ("spec.unschedulable!%3Dtrue", vec!["plain"]),
        ("metadata.name%3Dcordoned", vec!["cordoned"]),
    ] {
        let r = send(&c, "GET", &format!("/api/v1/nodes?fieldSelector={sel}"), None, None).await;
        assert_eq!(r.status, 200, "{sel}: {}", r.text());
        assert_eq!(names(&r), want, "{sel}");
    }
    let r = send(
        &c,
        "GET",
        "/api/v1/nodes?fieldSelector=metadata.namespace%3Dx",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "field label not supported: metadata.namespace");

    let pod = |name: &str, sched: &str, sa: &str| json!({"metadata": {"name": name}, "spec": {"schedulerName": sched, "serviceAccountName": sa, "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    for p in [pod("p1", "default-scheduler", "default"), pod("p2", "other", "builder")] {
        let r = send(&c, "POST", "/api/v1/namespaces/default/pods", None, Some(&p)).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for (sel, want) in [
        ("spec.schedulerName%3Dother", vec!["p2"]),
        ("spec.serviceAccountName%3Ddefault", vec!["p1"]),
        ("spec.restartPolicy%3DNever,status.phase%3DPending", vec!["p1", "p2"]),
        ("status.podIP%3D,status.nominatedNodeName%3D", vec!["p1", "p2"]),
        ("spec.host%3D", vec!["p1", "p2"]),
    ] {
        let r = send(
            &c,
            "GET",
            &format!("/api/v1/namespaces/default/pods?fieldSelector={sel}"),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{sel}: {}", r.text());
        assert_eq!(names(&r), want, "{sel}");
    }
    let secret =
        json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    let r = send(&c, "POST", "/api/v1/namespaces/default/secrets", None, Some(&secret)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = send(
        &c,
        "GET",
        "/api/v1/namespaces/default/secrets?fieldSelector=type%3Dkubernetes.io/tls",
        None,
        None,
    )
    .await;
    assert_eq!(names(&r), ["tls"]);
    let r = send(
        &c,
        "GET",
        "/api/v1/namespaces?fieldSelector=status.phase%3DActive,metadata.name%3Ddefault",
        None,
        None,
    )
    .await;
    assert_eq!(names(&r), ["default"]);
    let r = send(&c, "GET", &format!("{CMS}?fieldSelector=data.k%3Dv"), None, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
}
