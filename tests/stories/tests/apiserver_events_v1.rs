//! Story: the rest of the core surface clients expect (issue 10).
//! Controllers built on client-go or kube-runtime record Events through
//! `events.k8s.io/v1`; kubectl reads them through core/v1. Kubernetes stores
//! one object and serves it through both APIs, so an Event written through
//! one is the same object (uid, resourceVersion) read through the other,
//! with the fields mapped (`note` = `message`, `regarding` =
//! `involvedObject`, `deprecatedCount` = `count`, ...). Also:
//! `kubectl get componentstatuses` and PodTemplate CRUD.
//!
//! Run just this file (builds the API server first; real etcd and kubectl
//! must be installed):
//!
//! ```sh
//! cargo build -p sluice-apiserver && cargo test -p sluice-stories --test apiserver_events_v1 -- --nocapture
//! ```

use std::time::Duration;

use serde_json::{json, Value};
use sluice_tests::{eventually, run_ok, ControlPlane};

const EVENTS_V1: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const CORE_EVENTS: &str = "/api/v1/namespaces/default/events";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_is_one_object_seen_through_events_k8s_io_and_core_v1() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;

    // Discovery serves the group, with the same short name as core.
    let d = raw.get("/apis/events.k8s.io/v1").await;
    assert_eq!(d.status, 200, "{}", d.text());
    let events = d.json()["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "events").cloned())
        .expect("events in events.k8s.io/v1");
    assert_eq!(events["kind"], "Event");
    assert_eq!(events["namespaced"], true);
    assert_eq!(events["shortNames"], json!(["ev"]));

    // Written through events.k8s.io/v1 ...
    let ev = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web-1.started"},
        "eventTime": "2025-03-01T10:00:00.123456Z",
        "reportingController": "stories.sluice.dev/recorder",
        "reportingInstance": "recorder-1",
        "action": "Starting",
        "reason": "Started",
        "type": "Normal",
        "note": "container web started",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-1", "uid": "1234"},
        "related": {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    });
    let r = raw.post(EVENTS_V1, &ev).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    assert_eq!(created["eventTime"], "2025-03-01T10:00:00.123456Z");

    // ... read through core/v1: the same object, fields mapped.
    let r = raw.get(&format!("{CORE_EVENTS}/web-1.started")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let core = r.json();
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["kind"], "Event");
    assert_eq!(core["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        core["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(core["message"], "container web started");
    assert_eq!(core["reason"], "Started");
    assert_eq!(core["type"], "Normal");
    assert_eq!(core["action"], "Starting");
    assert_eq!(core["reportingComponent"], "stories.sluice.dev/recorder");
    assert_eq!(core["reportingInstance"], "recorder-1");
    assert_eq!(core["eventTime"], "2025-03-01T10:00:00.123456Z");
    assert_eq!(core["involvedObject"]["kind"], "Pod");
    assert_eq!(core["involvedObject"]["name"], "web-1");
    assert_eq!(core["involvedObject"]["uid"], "1234");
    assert_eq!(core["related"]["name"], "n1");
    assert!(core.get("note").is_none() && core.get("regarding").is_none(), "{core}");

    // kubectl shows it.
    let out = stdout(&run_ok(cp.kubectl().args(["get", "events"])));
    assert!(out.contains("container web started"), "{out}");
    assert!(out.contains("pod/web-1"), "{out}");

    // Written through core/v1 (the old recorder shape) ...
    let old = json!({
        "metadata": {"name": "web-2.pulled"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web-2"},
        "reason": "Pulled",
        "message": "Container image \"busybox:1.35\" already present on machine",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2025-03-01T10:00:00Z",
        "lastTimestamp": "2025-03-01T10:05:00Z",
        "count": 3
    });
    let r = raw.post(CORE_EVENTS, &old).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // ... read through events.k8s.io/v1.
    let r = raw.get(&format!("{EVENTS_V1}/web-2.pulled")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v1 = r.json();
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    assert_eq!(
        v1["note"],
        "Container image \"busybox:1.35\" already present on machine"
    );
    assert_eq!(v1["regarding"]["name"], "web-2");
    assert_eq!(v1["deprecatedSource"], json!({"component": "kubelet", "host": "n1"}));
    assert_eq!(v1["deprecatedFirstTimestamp"], "2025-03-01T10:00:00Z");
    assert_eq!(v1["deprecatedLastTimestamp"], "2025-03-01T10:05:00Z");
    assert_eq!(v1["deprecatedCount"], 3);
    assert!(
        v1.get("message").is_none() && v1.get("involvedObject").is_none(),
        "{v1}"
    );

    // Lists through either API hold both.
    for path in [EVENTS_V1, CORE_EVENTS] {
        let list = raw.get(path).await.json();
        let names: Vec<&str> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|e| e["metadata"]["name"].as_str())
            .collect();
        assert!(
            names.contains(&"web-1.started") && names.contains(&"web-2.pulled"),
            "{path}: {names:?}"
        );
    }
    assert_eq!(raw.get(EVENTS_V1).await.json()["kind"], "EventList");

    // Updates through one API are seen through the other.
    let r = raw
        .patch(
            &format!("{EVENTS_V1}/web-1.started"),
            "application/merge-patch+json",
            &json!({"series": {"count": 2, "lastObservedTime": "2025-03-01T10:01:00.000000Z"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let core = raw.get(&format!("{CORE_EVENTS}/web-1.started")).await.json();
    assert_eq!(core["series"]["count"], 2, "{core}");

    // events.k8s.io/v1 validates as Kubernetes does: eventTime, reportingController
    // and reportingInstance are required, type is Normal or Warning.
    let mut bad = ev.clone();
    bad["metadata"]["name"] = json!("bad");
    bad.as_object_mut().expect("object").remove("eventTime");
    bad["type"] = json!("Chatty");
    let r = raw.post(EVENTS_V1, &bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let fields: Vec<String> = r.json()["details"]["causes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["field"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    assert!(fields.contains(&"eventTime".to_string()), "{fields:?}");
    assert!(fields.contains(&"type".to_string()), "{fields:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Event.events.k8s.io \"bad\" is invalid: "),
        "{}",
        r.text()
    );

    // Watching through events.k8s.io/v1 sees a core/v1 write.
    let rv = raw.get(EVENTS_V1).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut third = old.clone();
    third["metadata"]["name"] = json!("web-3.killing");
    assert_eq!(raw.post(CORE_EVENTS, &third).await.status, 201);
    let w = raw
        .get(&format!("{EVENTS_V1}?watch=1&resourceVersion={rv}&timeoutSeconds=1"))
        .await;
    let first: Value = serde_json::from_str(w.text().lines().next().expect("an event")).expect("json");
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(first["object"]["metadata"]["name"], "web-3.killing");

    // Deleting through one API deletes the object.
    assert_eq!(raw.delete(&format!("{EVENTS_V1}/web-2.pulled")).await.status, 200);
    assert_eq!(raw.get(&format!("{CORE_EVENTS}/web-2.pulled")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_runtime_recorder_events_show_in_kubectl() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let recorder = kube::runtime::events::Recorder::new(
        client,
        kube::runtime::events::Reporter {
            controller: "stories-controller".into(),
            instance: Some("stories-controller-0".into()),
        },
    );
    let pod_ref = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some("web-1".into()),
        namespace: Some("default".into()),
        uid: Some("5678".into()),
        ..Default::default()
    };
    // The recorder writes events.k8s.io/v1 (this was a 404 before issue 10).
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "BackOff".into(),
                note: Some("Back-off restarting failed container".into()),
                action: "Restarting".into(),
                secondary: None,
            },
            &pod_ref,
        )
        .await
        .expect("kube-runtime Recorder publishes through events.k8s.io/v1");
    let out = eventually(Duration::from_secs(5), "the event in kubectl get events", || async {
        let out = stdout(&run_ok(cp.kubectl().args(["get", "events"])));
        out.contains("Back-off restarting failed container").then_some(out)
    })
    .await;
    assert!(out.contains("Warning"), "{out}");
    assert!(out.contains("BackOff"), "{out}");
    let json: Value = serde_json::from_slice(
        &run_ok(cp.kubectl().args([
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web-1",
            "-o",
            "json",
        ]))
        .stdout,
    )
    .expect("json");
    let item = &json["items"][0];
    assert_eq!(item["reportingComponent"], "stories-controller");
    assert_eq!(item["reportingInstance"], "stories-controller-0");
    // Publishing the same event again is recorded as a series on the same object.
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "BackOff".into(),
                note: Some("Back-off restarting failed container".into()),
                action: "Restarting".into(),
                secondary: None,
            },
            &pod_ref,
        )
        .await
        .expect("second publish (series update)");
    let raw = cp.raw().await;
    let list = raw.get(EVENTS_V1).await.json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["series"]["count"], 2, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn componentstatuses_and_pod_templates() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;

    // componentstatuses: listed (deprecated, with Kubernetes' warning), read-only.
    let out = run_ok(cp.kubectl().args(["get", "componentstatuses"]));
    let text = stdout(&out);
    let header: Vec<&str> = text.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"], "{text}");
    let etcd = text
        .lines()
        .find(|l| l.starts_with("etcd-0 "))
        .unwrap_or_else(|| panic!("etcd-0 row: {text}"));
    assert!(etcd.split_whitespace().nth(1) == Some("Healthy"), "{text}");
    for component in ["scheduler", "controller-manager"] {
        assert!(text.lines().any(|l| l.starts_with(&format!("{component} "))), "{text}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cs = raw.get("/api/v1/componentstatuses/etcd-0").await;
    assert_eq!(cs.status, 200, "{}", cs.text());
    let cs = cs.json();
    assert_eq!(cs["kind"], "ComponentStatus");
    assert_eq!(cs["conditions"][0]["type"], "Healthy");
    assert_eq!(cs["conditions"][0]["status"], "True");
    assert_eq!(
        raw.get("/api/v1/componentstatuses").await.json()["kind"],
        "ComponentStatusList"
    );
    let r = raw
        .post("/api/v1/componentstatuses", &json!({"metadata": {"name": "mine"}}))
        .await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["reason"], "MethodNotAllowed");
    let d = raw.get("/api/v1").await.json();
    let r = d["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "componentstatuses").cloned())
        .expect("componentstatuses in /api/v1");
    assert_eq!(r["namespaced"], false);
    assert_eq!(r["shortNames"], json!(["cs"]));
    assert_eq!(r["verbs"], json!(["get", "list"]));

    // PodTemplate: create with kubectl, print, update, delete.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pt.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: web\ntemplate:\n  metadata:\n    labels: {app: web}\n  spec:\n    containers:\n    - name: web\n      image: nginx:1.22.1\n",
    )
    .expect("write");
    let out = stdout(&run_ok(cp.kubectl().arg("apply").arg("-f").arg(&file)));
    assert!(out.contains("podtemplate/web created"), "{out}");
    let pt = raw.get("/api/v1/namespaces/default/podtemplates/web").await;
    assert_eq!(pt.status, 200, "{}", pt.text());
    let pt = pt.json();
    // Pod-spec defaults apply inside the template, as for a Deployment's.
    assert_eq!(pt["template"]["spec"]["restartPolicy"], "Always", "{pt}");
    assert_eq!(
        pt["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        pt["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    let out = stdout(&run_ok(cp.kubectl().args(["get", "podtemplates"])));
    let header: Vec<&str> = out.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "CONTAINERS", "IMAGES", "POD", "LABELS"], "{out}");
    let row: Vec<&str> = out.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(row, ["web", "web", "nginx:1.22.1", "app=web"], "{out}");
    let r = raw
        .patch(
            "/api/v1/namespaces/default/podtemplates/web",
            "application/strategic-merge-patch+json",
            &json!({"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.23"}]}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["template"]["spec"]["containers"][0]["image"], "nginx:1.23");
    assert_eq!(
        r.json()["template"]["spec"]["containers"].as_array().map(Vec::len),
        Some(1)
    );
    let r = raw
        .post(
            "/api/v1/namespaces/default/podtemplates",
            &json!({"metadata": {"name": "empty"}, "template": {"spec": {"containers": []}}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("template.spec.containers: Required value"),
        "{}",
        r.text()
    );
    let out = stdout(&run_ok(cp.kubectl().args(["delete", "podtemplate", "web"])));
    assert!(out.contains("podtemplate \"web\" deleted"), "{out}");
    assert_eq!(raw.get("/api/v1/namespaces/default/podtemplates/web").await.status, 404);
}
