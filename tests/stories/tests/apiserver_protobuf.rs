//! Story: kubectl and client-go's typed clients speak
//! `application/vnd.kubernetes.protobuf`, and Sluice answers in kind.
//!
//! A user's kubectl sends protobuf bodies for its generator commands
//! (`create deployment`, `run`, `expose`, ...) and asks for protobuf back;
//! before, every one of them got 415. Here every built-in kind the server
//! serves goes through create/get/list/watch in protobuf with raw HTTP, the
//! answers decoded with k8s-pb's generated types and compared with the JSON
//! view of the same object; kubectl's generators run as a user types them;
//! and `Accept` is negotiated as Kubernetes does (q-values, JSON fallback
//! for custom resources, 406 naming what is served).

use std::collections::BTreeSet;

use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta_pb;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{json, Value};
use sluice_tests::ControlPlane;

const PB: &str = "application/vnd.kubernetes.protobuf";

struct Resp {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body for a failure message (a protobuf Status decoded).
    fn text(&self) -> String {
        match sluice_protobuf::decode(&self.body) {
            Ok(v) => v.to_string(),
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
    /// The protobuf body as JSON (through the same envelope Kubernetes writes).
    fn proto(&self) -> Value {
        assert_eq!(self.content_type, PB, "protobuf answer expected: {}", self.text());
        assert!(self.body.starts_with(b"k8s\0"), "the k8s\\0 magic prefix");
        sluice_protobuf::decode(&self.body).unwrap_or_else(|e| panic!("undecodable protobuf body: {e}"))
    }
    /// The envelope, decoded with k8s-pb's generated types.
    fn unknown(&self) -> Unknown {
        Unknown::decode(&self.body[4..]).expect("runtime.Unknown")
    }
}

async fn send(
    c: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    if let Some(a) = accept {
        b = b.header(http::header::ACCEPT, a);
    }
    let resp = c
        .send(b.body(kube::client::Body::from(body)).expect("request"))
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    use http_body_util::BodyExt;
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    Resp {
        status,
        content_type,
        body,
    }
}

/// The first path where two JSON values differ.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => {
                        if let Some(d) = first_difference(l, r, &p) {
                            return Some(d);
                        }
                    }
                    (l, r) => return Some(format!("{p}: {l:?} vs {r:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        (l, r) if l == r => None,
        (l, r) => Some(format!("{path}: {l} vs {r}")),
    }
}

fn same(proto: &Value, json: &Value, what: &str) {
    assert_eq!(first_difference(proto, json, ""), None, "{what}: protobuf vs JSON view");
}

/// One served resource, from discovery.
#[derive(Debug, Clone)]
struct Served {
    group_version: String,
    plural: String,
    kind: String,
    namespaced: bool,
    verbs: Vec<String>,
}

impl Served {
    fn collection(&self, ns: &str) -> String {
        let base = if self.group_version == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", self.group_version)
        };
        if self.namespaced {
            format!("{base}/namespaces/{ns}/{}", self.plural)
        } else {
            format!("{base}/{}", self.plural)
        }
    }
}

/// Every top-level resource of every group-version discovery lists.
async fn discover(c: &kube::Client) -> Vec<Served> {
    let mut gvs = vec!["v1".to_string()];
    let groups = send(c, "GET", "/apis", None, Some("application/json"), vec![])
        .await
        .json();
    for g in groups["groups"].as_array().cloned().unwrap_or_default() {
        for v in g["versions"].as_array().cloned().unwrap_or_default() {
            gvs.push(v["groupVersion"].as_str().unwrap_or_default().to_string());
        }
    }
    let mut out = Vec::new();
    for gv in gvs {
        let path = if gv == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{gv}")
        };
        let list = send(c, "GET", &path, None, Some("application/json"), vec![])
            .await
            .json();
        for r in list["resources"].as_array().cloned().unwrap_or_default() {
            let plural = r["name"].as_str().unwrap_or_default();
            if plural.contains('/') {
                continue;
            }
            out.push(Served {
                group_version: gv.clone(),
                plural: plural.to_string(),
                kind: r["kind"].as_str().unwrap_or_default().to_string(),
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                verbs: r["verbs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
            });
        }
    }
    out
}

fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": true}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        }],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
        "automountServiceAccountToken": false,
    })
}

/// An object to create for a served kind (None: the kind is not created
/// here — computed kinds, or one added after this story was written).
fn fixture(kind: &str, gv: &str, ns: &str) -> Option<Value> {
    // Views of one store (core and events.k8s.io Events, HPA v1 and v2) share names: keep them apart.
    let name = format!("pb-{}-{}", kind.to_lowercase(), gv.replace(['/', '.'], "-"));
    let meta = json!({"name": name, "labels": {"story": "protobuf"}, "annotations": {"note": "<&>"}});
    let tpl = json!({"metadata": {"labels": {"app": name}}, "spec": pod_spec()});
    let sel = json!({"matchLabels": {"app": name}});
    let body = match (gv, kind) {
        ("v1", "ConfigMap") => json!({"data": {"mode": "prod", "empty": ""}, "binaryData": {"blob": "AAECAw=="}}),
        ("v1", "Secret") => json!({"data": {"password": "czNjcjN0"}, "type": "Opaque"}),
        ("v1", "Service") => json!({"spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"}, {"name": "alt", "port": 81, "targetPort": 8081}]}}),
        ("v1", "Pod") => json!({"spec": pod_spec()}),
        ("v1", "Namespace") => json!({}),
        ("v1", "ServiceAccount") => json!({"automountServiceAccountToken": false}),
        ("v1", "Endpoints") => {
            json!({"subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"name": "http", "port": 8080}]}]})
        }
        ("v1", "Event") => {
            json!({"involvedObject": {"kind": "Pod", "namespace": ns, "name": "web"}, "reason": "Pulled",
            "message": "pulled", "type": "Normal", "count": 2, "firstTimestamp": "2026-11-30T10:20:30Z",
            "lastTimestamp": "2026-11-30T10:20:31Z", "source": {"component": "kubelet"}})
        }
        ("v1", "PodTemplate") => json!({"template": tpl}),
        ("v1", "Node") => json!({"spec": {"podCIDR": "10.244.9.0/24", "unschedulable": true}}),
        ("apps/v1", "Deployment") => json!({"spec": {"replicas": 0, "selector": sel, "template": tpl,
            "strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}}}),
        ("apps/v1", "ReplicaSet") => json!({"spec": {"replicas": 2, "selector": sel, "template": tpl}}),
        ("apps/v1", "StatefulSet") => {
            json!({"spec": {"replicas": 1, "serviceName": "db", "selector": sel, "template": tpl}})
        }
        ("apps/v1", "DaemonSet") => json!({"spec": {"selector": sel, "template": tpl}}),
        ("apps/v1", "ControllerRevision") => json!({"data": {"spec": {"template": {"x": 1}}}, "revision": 1}),
        ("batch/v1", "Job") => {
            let mut t = tpl.clone();
            t["spec"]["restartPolicy"] = json!("Never");
            json!({"spec": {"template": t, "backoffLimit": 0, "suspend": true}})
        }
        ("batch/v1", "CronJob") => {
            let mut t = tpl.clone();
            t["spec"]["restartPolicy"] = json!("OnFailure");
            json!({"spec": {"schedule": "*/5 * * * *", "suspend": true, "jobTemplate": {"spec": {"template": t}}}})
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"],
            "conditions": {"ready": true, "serving": true, "terminating": false}}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        }
        ("coordination.k8s.io/v1", "Lease") => json!({"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
            "renewTime": "2026-11-30T10:20:30.123456Z", "leaseTransitions": 0}}),
        ("events.k8s.io/v1", "Event") => {
            json!({"eventTime": "2026-11-30T10:20:30.000001Z", "reportingController": "story/c",
            "reportingInstance": "i", "action": "Pull", "reason": "Pulled", "regarding": {"kind": "Pod", "namespace": ns, "name": "web"},
            "note": "n", "type": "Normal"})
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            return Some(
                json!({"apiVersion": gv, "kind": kind, "metadata": {"name": "gadgets.pb.example.com"}, "spec": {
                "group": "pb.example.com", "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "minimum": 1, "default": 3},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}},
                        "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "too big"}]}}}}}]}}),
            )
        }
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            // Matches nothing this story creates.
            let mut hook = json!({"name": "pb.example.com", "clientConfig": {"url": "https://127.0.0.1:1/hook"},
                "rules": [{"operations": ["CREATE"], "apiGroups": ["nothing.example.com"], "apiVersions": ["v1"], "resources": ["things"]}],
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore", "timeoutSeconds": 5});
            if kind.starts_with("Mutating") {
                hook["reinvocationPolicy"] = json!("Never");
            }
            json!({"webhooks": [hook]})
        }
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => {
            json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]})
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => json!({
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": if kind == "RoleBinding" { "Role" } else { "ClusterRole" }, "name": "pb-role"}}),
        ("scheduling.k8s.io/v1", "PriorityClass") => json!({"value": 1000, "description": "story"}),
        ("v1", "ResourceQuota") => json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4"}}}),
        ("v1", "LimitRange") => json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
        ("autoscaling/v1", "HorizontalPodAutoscaler") => {
            json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3, "targetCPUUtilizationPercentage": 80}})
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}})
        }
        ("policy/v1", "PodDisruptionBudget") => json!({"spec": {"minAvailable": "50%", "selector": sel}}),
        _ => return None,
    };
    let mut obj = json!({"apiVersion": gv, "kind": kind, "metadata": meta});
    for (k, v) in body.as_object().cloned().unwrap_or_default() {
        obj[k] = v;
    }
    Some(obj)
}

/// The JSON view of an object once two reads 300 ms apart agree (the
/// server's own status writes after a create are done).
async fn settled(c: &kube::Client, item: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..30 {
        let r = send(c, "GET", item, None, Some("application/json"), vec![]).await;
        assert_eq!(r.status, 200, "{item}: {}", r.text());
        let v = r.json();
        if v["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"] {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    panic!("{item} kept changing")
}

/// Protobuf has no TypeMeta inside lists: list items come back without
/// `kind`/`apiVersion`, as from Kubernetes.
fn without_type_meta(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    v
}

#[tokio::test]
async fn every_served_built_in_kind_round_trips_through_protobuf() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let ns = "pb";
    let r = send(
        &c,
        "POST",
        "/api/v1/namespaces",
        Some("application/json"),
        None,
        serde_json::to_vec(&json!({"metadata": {"name": ns}})).unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());

    let served = discover(&c).await;
    let built_in: Vec<Served> = served
        .into_iter()
        .filter(|s| sluice_protobuf::has_message(&s.group_version, &s.kind))
        .collect();
    let mut created = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for s in &built_in {
        let what = format!("{} {}", s.group_version, s.kind);
        let collection = s.collection(ns);
        // Every served built-in kind lists in protobuf, as `<Kind>List`.
        if s.verbs.iter().any(|v| v == "list") {
            let r = send(&c, "GET", &collection, None, Some(PB), vec![]).await;
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            let tm = r.unknown().type_meta.expect("typeMeta");
            assert_eq!(tm.kind.as_deref(), Some(format!("{}List", s.kind).as_str()), "{what}");
            assert_eq!(tm.api_version.as_deref(), Some(s.group_version.as_str()), "{what}");
            r.proto();
            listed.insert(what.clone());
        }
        let Some(obj) = fixture(&s.kind, &s.group_version, ns) else {
            continue;
        };
        if !s.verbs.iter().any(|v| v == "create") {
            continue;
        }
        // Create with a protobuf body, asking for protobuf back.
        let body = sluice_protobuf::encode(&obj).unwrap_or_else(|e| panic!("{what}: {e}"));
        let r = send(&c, "POST", &collection, Some(PB), Some(PB), body).await;
        assert_eq!(r.status, 201, "{what}: create: {}", r.text());
        let from_create = r.proto();
        let name = from_create["metadata"]["name"].as_str().expect("name").to_string();
        assert_eq!(name, obj["metadata"]["name"], "{what}");
        assert_eq!(from_create["metadata"]["labels"], obj["metadata"]["labels"], "{what}");

        // The JSON view of the same object is what the protobuf one says
        // (once the server's own status writes, e.g. a CRD's Established, are done).
        let item = format!("{collection}/{name}");
        let as_json = settled(&c, &item).await;
        let got = send(&c, "GET", &item, None, Some(PB), vec![]).await;
        assert_eq!(got.status, 200, "{what}");
        same(&got.proto(), &as_json, &format!("{what} get"));
        if from_create["metadata"]["resourceVersion"] == as_json["metadata"]["resourceVersion"] {
            same(&from_create, &as_json, &format!("{what} create"));
        } else {
            assert_eq!(from_create["metadata"]["uid"], as_json["metadata"]["uid"], "{what}");
        }
        // k8s-pb's generated types read it: typeMeta in the envelope, ObjectMeta as field 1.
        let unknown = got.unknown();
        let tm = unknown.type_meta.clone().expect("typeMeta");
        assert_eq!(
            (tm.api_version.as_deref(), tm.kind.as_deref()),
            (Some(s.group_version.as_str()), Some(s.kind.as_str()))
        );
        assert_eq!(unknown.content_type.as_deref(), Some(""), "{what}");
        let partial = meta_pb::PartialObjectMetadata::decode(unknown.raw.clone().unwrap_or_default().as_slice())
            .expect("ObjectMeta");
        let m = partial.metadata.expect("metadata");
        assert_eq!(m.name.as_deref(), Some(name.as_str()), "{what}");
        assert_eq!(m.uid.as_deref(), as_json["metadata"]["uid"].as_str(), "{what}");
        assert_eq!(
            m.resource_version.as_deref(),
            as_json["metadata"]["resourceVersion"].as_str(),
            "{what}"
        );

        // Lists carry it without TypeMeta.
        let list = send(&c, "GET", &collection, None, Some(PB), vec![]).await.proto();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let listed_item = items
            .iter()
            .find(|i| i["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{what}: {name} in the protobuf list"));
        same(
            listed_item,
            &without_type_meta(as_json.clone()),
            &format!("{what} list"),
        );

        // A watch is length-prefixed WatchEvent frames, objects in runtime.Unknown.
        let watch = format!("{collection}?watch=1&fieldSelector=metadata.name%3D{name}&timeoutSeconds=1");
        let w = send(&c, "GET", &watch, None, Some(PB), vec![]).await;
        assert_eq!(w.status, 200, "{what}: {}", w.text());
        assert_eq!(
            w.content_type, "application/vnd.kubernetes.protobuf;stream=watch",
            "{what}"
        );
        let mut stream = w.body.clone();
        let frame = sluice_protobuf::next_frame(&mut stream).unwrap_or_else(|| panic!("{what}: a watch frame"));
        let ev = meta_pb::WatchEvent::decode(frame.as_slice()).expect("WatchEvent");
        assert_eq!(ev.r#type.as_deref(), Some("ADDED"), "{what}");
        let (_, watched) = sluice_protobuf::decode_watch_event(&frame).expect("watch event");
        same(&watched, &as_json, &format!("{what} watch"));
        created.insert(what);
    }
    // What the server serves today is covered, at least the kinds every cluster has.
    for must in [
        "v1 ConfigMap",
        "v1 Secret",
        "v1 Service",
        "v1 Pod",
        "v1 Namespace",
        "v1 Node",
        "v1 Event",
        "apps/v1 Deployment",
        "apps/v1 ReplicaSet",
        "discovery.k8s.io/v1 EndpointSlice",
        "coordination.k8s.io/v1 Lease",
        "apiextensions.k8s.io/v1 CustomResourceDefinition",
    ] {
        assert!(created.contains(must), "{must} round-tripped (created: {created:?})");
    }
    assert!(
        listed.contains("v1 ComponentStatus"),
        "computed kinds list in protobuf too"
    );
    println!(
        "round-tripped {} kinds: {created:?}; listed {} kinds",
        created.len(),
        listed.len()
    );
}

#[tokio::test]
async fn accept_is_negotiated_as_kubernetes_does() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"metadata": {"name": "neg"}, "data": {"k": "v"}});
    let r = send(
        &c,
        "POST",
        cms,
        Some("application/json"),
        None,
        serde_json::to_vec(&cm).unwrap(),
    )
    .await;
    assert_eq!(r.status, 201);
    let one = format!("{cms}/neg");

    // q-values choose; the more specific wins among equals.
    let r = send(
        &c,
        "GET",
        &one,
        None,
        Some("application/json;q=0.5, application/vnd.kubernetes.protobuf"),
        vec![],
    )
    .await;
    assert_eq!(r.proto()["data"], json!({"k": "v"}));
    let r = send(
        &c,
        "GET",
        &one,
        None,
        Some("application/vnd.kubernetes.protobuf;q=0.5, application/json"),
        vec![],
    )
    .await;
    assert_eq!(
        (r.content_type.as_str(), r.json()["data"].clone()),
        ("application/json", json!({"k": "v"}))
    );
    let r = send(&c, "GET", &one, None, Some("*/*"), vec![]).await;
    assert_eq!(r.content_type, "application/json");
    // Tables have no protobuf form: the JSON Table clause is used.
    let r = send(
        &c,
        "GET",
        cms,
        None,
        Some("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io"),
        vec![],
    )
    .await;
    assert_eq!((r.status, r.json()["kind"].clone()), (200, json!("Table")));
    // Metadata-only protobuf, as metadata informers ask for it.
    let r = send(
        &c,
        "GET",
        cms,
        None,
        Some("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"),
        vec![],
    )
    .await;
    let l = r.proto();
    assert_eq!(
        (l["kind"].as_str(), l["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    assert!(l["items"]
        .as_array()
        .is_some_and(|a| a.iter().any(|i| i["metadata"]["name"] == "neg")));

    // Nothing acceptable: 406 with Kubernetes' wording, as JSON.
    let r = send(&c, "GET", &one, None, Some("text/html"), vec![]).await;
    assert_eq!(r.status, 406);
    assert_eq!(r.content_type, "application/json");
    let s = r.json();
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_i64()),
        (Some("NotAcceptable"), Some(406))
    );
    assert_eq!(
        s["message"],
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    // YAML is served for objects (keys sorted, as Kubernetes converts JSON
    // to YAML), never for a watch stream.
    let r = send(&c, "GET", &one, None, Some("application/yaml"), vec![]).await;
    assert_eq!((r.status, r.content_type.as_str()), (200, "application/yaml"));
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.starts_with("apiVersion: v1\n"), "{text}");
    let y: serde_json::Value = serde_yaml::from_str(&text).expect("YAML body");
    assert_eq!(y["kind"], "ConfigMap");
    let r = send(
        &c,
        "GET",
        &format!("{cms}?watch=1"),
        None,
        Some("application/yaml, application/json"),
        vec![],
    )
    .await;
    assert_eq!(r.status, 406);
    // The refusal itself is written in the negotiated (YAML) encoding.
    assert_eq!(r.content_type, "application/yaml");
    let status: serde_json::Value = serde_yaml::from_slice(&r.body).expect("YAML Status");
    assert_eq!(
        status,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "reason": "NotAcceptable", "code": 406,
               "message": "only the following media types are accepted: application/json;stream=watch, application/vnd.kubernetes.protobuf;stream=watch"})
    );

    // Errors come in the negotiated encoding: a protobuf Status.
    let r = send(&c, "GET", &format!("{cms}/nope"), None, Some(PB), vec![]).await;
    assert_eq!(r.status, 404);
    let s = r.proto();
    assert_eq!(
        (s["kind"].as_str(), s["apiVersion"].as_str()),
        (Some("Status"), Some("v1"))
    );
    assert_eq!(s["message"], "configmaps \"nope\" not found");
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_i64()),
        (Some("NotFound"), Some(404))
    );
    let typed = meta_pb::Status::decode(r.unknown().raw.unwrap_or_default().as_slice()).expect("meta.v1.Status");
    assert_eq!((typed.code, typed.reason.as_deref()), (Some(404), Some("NotFound")));

    // A protobuf body that is not one: 400. Patches are JSON only: 415.
    let r = send(
        &c,
        "POST",
        cms,
        Some(PB),
        Some("application/json"),
        b"k8s\0\xff\xff\xff".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("error decoding request body"));
    let body = sluice_protobuf::encode(&json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "neg"}}))
        .unwrap();
    let r = send(&c, "PATCH", &one, Some(PB), Some("application/json"), body).await;
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.json()["reason"], "UnsupportedMediaType");

    // Update with a protobuf body.
    let cur = send(&c, "GET", &one, None, Some(PB), vec![]).await.proto();
    let mut upd = cur.clone();
    upd["data"] = json!({"k": "w"});
    let r = send(
        &c,
        "PUT",
        &one,
        Some(PB),
        Some(PB),
        sluice_protobuf::encode(&upd).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.proto()["data"], json!({"k": "w"}));

    // Custom resources have no protobuf: a list asked as "protobuf, json" is JSON;
    // protobuf alone is 406; a protobuf body is 415.
    let crd = fixture("CustomResourceDefinition", "apiextensions.k8s.io/v1", "default").unwrap();
    let r = send(
        &c,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some("application/json"),
        None,
        serde_json::to_vec(&crd).unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let gadgets = "/apis/pb.example.com/v1/namespaces/default/gadgets";
    let listed = sluice_tests::eventually(std::time::Duration::from_secs(20), "gadgets served", || async {
        let r = send(
            &c,
            "GET",
            gadgets,
            None,
            Some("application/vnd.kubernetes.protobuf, application/json"),
            vec![],
        )
        .await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(listed.content_type, "application/json");
    assert_eq!(listed.json()["kind"], "GadgetList");
    let r = send(&c, "GET", gadgets, None, Some(PB), vec![]).await;
    assert_eq!(r.status, 406);
    assert_eq!(
        r.json()["message"],
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    let g = json!({"apiVersion": "pb.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}});
    let r = send(
        &c,
        "POST",
        gadgets,
        Some(PB),
        Some("application/json"),
        serde_json::to_vec(&g).unwrap(),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text());
}

/// Whether discovery serves `plural` in `group_version`.
async fn is_served(c: &kube::Client, group_version: &str, plural: &str) -> bool {
    let path = if group_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group_version}")
    };
    let r = send(c, "GET", &path, None, Some("application/json"), vec![]).await;
    r.status == 200
        && r.json()["resources"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == plural))
}

#[tokio::test]
async fn kubectl_generators_work() {
    let cp = ControlPlane::start().await;
    let c = cp.client().await;
    let kubectl = |args: &[&str]| -> std::process::Output { cp.kubectl().args(args).output().expect("kubectl runs") };
    let ok = |args: &[&str]| -> String {
        let out = kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let get = |args: &[&str]| -> Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        serde_json::from_str(&ok(&a)).expect("kubectl get -o json")
    };
    // A kind the cluster does not serve: kubectl fails with the server's 404.
    let refused = |args: &[&str]| {
        let out = kubectl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        assert!(
            err.contains("the server could not find the requested resource"),
            "kubectl {args:?}: {err}"
        );
    };

    // kubectl really sends protobuf: the request headers at -v=8.
    let out = kubectl(&["create", "namespace", "gen", "-v=8"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "namespace/gen created");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl sent protobuf: {log}"
    );
    assert_eq!(get(&["namespace", "gen"])["status"]["phase"], "Active");

    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "create",
            "configmap",
            "app",
            "--from-literal=mode=prod",
            "--from-literal=size=3"
        ])
        .trim(),
        "configmap/app created"
    );
    assert_eq!(
        get(&["-n", "gen", "configmap", "app"])["data"],
        json!({"mode": "prod", "size": "3"})
    );

    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cr3t"
        ])
        .trim(),
        "secret/creds created"
    );
    let s = get(&["-n", "gen", "secret", "creds"]);
    assert_eq!(
        (s["data"]["password"].as_str(), s["type"].as_str()),
        (Some("czNjcjN0"), Some("Opaque"))
    );

    assert_eq!(
        ok(&["-n", "gen", "create", "service", "clusterip", "svc", "--tcp=80:8080"]).trim(),
        "service/svc created"
    );
    let svc = get(&["-n", "gen", "service", "svc"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["selector"], json!({"app": "svc"}));
    assert!(
        svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.contains('.')),
        "a ClusterIP was allocated"
    );

    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=8080"
        ])
        .trim(),
        "deployment.apps/web created"
    );
    let d = get(&["-n", "gen", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    let ctr = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (ctr["name"].as_str(), ctr["image"].as_str()),
        (Some("nginx"), Some("nginx:1.27"))
    );
    assert_eq!(ctr["ports"][0]["containerPort"], 8080);

    assert_eq!(
        ok(&["-n", "gen", "create", "serviceaccount", "robot"]).trim(),
        "serviceaccount/robot created"
    );

    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "run",
            "one",
            "--image=busybox:1.36",
            "--restart=Never",
            "--",
            "sleep",
            "1d"
        ])
        .trim(),
        "pod/one created"
    );
    let p = get(&["-n", "gen", "pod", "one"]);
    assert_eq!(p["spec"]["restartPolicy"], "Never");
    assert_eq!(p["spec"]["containers"][0]["args"], json!(["sleep", "1d"]));
    assert_eq!(p["metadata"]["labels"], json!({"run": "one"}));

    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--name=web-exp"
        ])
        .trim(),
        "service/web-exp exposed"
    );
    let e = get(&["-n", "gen", "service", "web-exp"]);
    assert_eq!(e["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        (
            e["spec"]["ports"][0]["port"].as_i64(),
            e["spec"]["ports"][0]["targetPort"].as_i64()
        ),
        (Some(80), Some(8080))
    );

    assert_eq!(
        ok(&["-n", "gen", "set", "image", "deployment/web", "nginx=nginx:1.28"]).trim(),
        "deployment.apps/web image updated"
    );
    assert_eq!(
        ok(&["-n", "gen", "set", "env", "deployment/web", "MODE=blue"]).trim(),
        "deployment.apps/web env updated"
    );
    assert_eq!(
        ok(&[
            "-n",
            "gen",
            "set",
            "resources",
            "deployment/web",
            "--limits=cpu=200m,memory=64Mi",
            "--requests=cpu=100m"
        ])
        .trim(),
        "deployment.apps/web resource requirements updated"
    );
    let ctr = get(&["-n", "gen", "deployment", "web"])["spec"]["template"]["spec"]["containers"][0].clone();
    assert_eq!(ctr["image"], "nginx:1.28");
    assert_eq!(ctr["env"], json!([{"name": "MODE", "value": "blue"}]));
    assert_eq!(ctr["resources"]["limits"], json!({"cpu": "200m", "memory": "64Mi"}));
    assert_eq!(ctr["resources"]["requests"]["cpu"], "100m");

    // Kinds that may or may not be served yet: what discovery says decides
    // what the user must see — the object, or the server's clear 404.
    if is_served(&c, "batch/v1", "jobs").await {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "job",
                "once",
                "--image=busybox:1.36",
                "--",
                "echo",
                "hi"
            ])
            .trim(),
            "job.batch/once created"
        );
        let j = get(&["-n", "gen", "job", "once"]);
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["echo", "hi"])
        );
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ]);
    }
    if is_served(&c, "batch/v1", "cronjobs").await {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "cronjob",
                "tick",
                "--image=busybox:1.36",
                "--schedule=*/5 * * * *",
                "--",
                "date"
            ])
            .trim(),
            "cronjob.batch/tick created"
        );
        let cj = get(&["-n", "gen", "cronjob", "tick"]);
        assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["date"])
        );
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "cronjob",
            "tick",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--",
            "date",
        ]);
    }
    if is_served(&c, "rbac.authorization.k8s.io/v1", "roles").await {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "role",
                "reader",
                "--verb=get,list",
                "--resource=pods"
            ])
            .trim(),
            "role.rbac.authorization.k8s.io/reader created"
        );
        let r = get(&["-n", "gen", "role", "reader"]);
        assert_eq!(r["rules"][0]["verbs"], json!(["get", "list"]));
        assert_eq!(r["rules"][0]["resources"], json!(["pods"]));
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ]);
    }
    if is_served(&c, "rbac.authorization.k8s.io/v1", "rolebindings").await {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "create",
                "rolebinding",
                "reader",
                "--role=reader",
                "--user=alice"
            ])
            .trim(),
            "rolebinding.rbac.authorization.k8s.io/reader created"
        );
        let rb = get(&["-n", "gen", "rolebinding", "reader"]);
        assert_eq!(rb["roleRef"]["name"], "reader");
        assert_eq!(rb["subjects"][0]["name"], "alice");
    } else {
        refused(&[
            "-n",
            "gen",
            "create",
            "rolebinding",
            "reader",
            "--role=reader",
            "--user=alice",
        ]);
    }
    if is_served(&c, "v1", "serviceaccounts/token").await {
        let token = ok(&["-n", "gen", "create", "token", "robot"]);
        assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    } else {
        refused(&["-n", "gen", "create", "token", "robot"]);
    }
    if is_served(&c, "v1", "resourcequotas").await {
        assert_eq!(
            ok(&["-n", "gen", "create", "quota", "q", "--hard=pods=10,cpu=4"]).trim(),
            "resourcequota/q created"
        );
        assert_eq!(
            get(&["-n", "gen", "resourcequota", "q"])["spec"]["hard"],
            json!({"cpu": "4", "pods": "10"})
        );
    } else {
        refused(&["-n", "gen", "create", "quota", "q", "--hard=pods=10,cpu=4"]);
    }
    if is_served(&c, "scheduling.k8s.io/v1", "priorityclasses").await {
        assert_eq!(
            ok(&[
                "create",
                "priorityclass",
                "high",
                "--value=1000",
                "--description=important"
            ])
            .trim(),
            "priorityclass.scheduling.k8s.io/high created"
        );
        assert_eq!(get(&["priorityclass", "high"])["value"], 1000);
    } else {
        refused(&[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ]);
    }
    let hpa_served = is_served(&c, "autoscaling/v2", "horizontalpodautoscalers").await
        || is_served(&c, "autoscaling/v1", "horizontalpodautoscalers").await;
    if hpa_served {
        assert_eq!(
            ok(&[
                "-n",
                "gen",
                "autoscale",
                "deployment",
                "web",
                "--min=1",
                "--max=3",
                "--cpu-percent=80"
            ])
            .trim(),
            "horizontalpodautoscaler.autoscaling/web autoscaled"
        );
        let h = get(&["-n", "gen", "hpa", "web"]);
        assert_eq!(
            (h["spec"]["minReplicas"].as_i64(), h["spec"]["maxReplicas"].as_i64()),
            (Some(1), Some(3))
        );
    } else {
        refused(&[
            "-n",
            "gen",
            "autoscale",
            "deployment",
            "web",
            "--min=1",
            "--max=3",
            "--cpu-percent=80",
        ]);
    }
}
