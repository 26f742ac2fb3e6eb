//! Story: a platform team enforces policy with admission webhooks (issue 10).
//! A mutating webhook labels every ConfigMap created in opted-in namespaces
//! and a validating webhook refuses ConfigMaps carrying a forbidden key.
//! Both are real HTTPS servers in the test (harness `webhook`: a test CA,
//! registered with `clientConfig.url` and its `caBundle`). kubectl shows the
//! denial worded as Kubernetes words it; namespace and object selectors pick
//! what is sent; `failurePolicy` decides what happens when a webhook is down;
//! `timeoutSeconds` bounds a slow one.
//!
//! Run just this file (builds the API server first; real etcd and kubectl
//! must be installed):
//!
//! ```sh
//! cargo build -p sluice-apiserver && cargo test -p sluice-stories --test apiserver_webhooks -- --nocapture
//! ```

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_tests::https::TestCa;
use sluice_tests::webhook::{
    add_label_ops, allow, allow_with_patch, core_rule, deny, webhook, webhook_configuration, WebhookServer,
};
use sluice_tests::{ControlPlane, RawClient};

const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const LABEL_HOOK: &str = "label.stories.sluice.dev";
const DENY_HOOK: &str = "deny.stories.sluice.dev";
const DENIAL: &str = "configmaps may not carry the key \"forbidden\"";

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

async fn namespace(raw: &RawClient, name: &str, labels: Value) {
    let r = raw
        .post(
            "/api/v1/namespaces",
            &json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The label webhook: adds `stories.sluice.dev/mutated=yes`.
async fn label_server(ca: &TestCa) -> WebhookServer {
    WebhookServer::start(ca, |req| {
        allow_with_patch(&add_label_ops(req, "stories.sluice.dev/mutated", "yes"))
    })
    .await
}

/// The policy webhook: refuses ConfigMaps with a `forbidden` key (403 + message).
async fn deny_server(ca: &TestCa) -> WebhookServer {
    WebhookServer::start(ca, |req| {
        if req["object"]["data"]["forbidden"].is_null() {
            allow()
        } else {
            deny(403, DENIAL)
        }
    })
    .await
}

/// `kubectl apply -f` of a ConfigMap manifest (kubectl sends JSON for apply;
/// `kubectl create configmap` would send protobuf, which Sluice does not read).
fn kubectl_apply_configmap(
    cp: &ControlPlane,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
    output_json: bool,
) -> std::process::Output {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cm.yaml");
    let mut text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n");
    for (k, v) in data {
        text.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    std::fs::write(&file, text).expect("write manifest");
    let mut cmd = cp.kubectl();
    cmd.arg("apply").arg("-f").arg(&file);
    if output_json {
        cmd.args(["-o", "json"]);
    }
    cmd.output().expect("kubectl runs")
}

/// Registration can take a moment to reach the admission chain (Kubernetes
/// watches the configurations): poll with throwaway objects until `ready`.
async fn until_active(raw: &RawClient, ns: &str, probe: Value, ready: impl Fn(&sluice_tests::RawResponse) -> bool) {
    let start = Instant::now();
    let mut i = 0;
    loop {
        let mut obj = probe.clone();
        obj["metadata"]["name"] = json!(format!("probe-{i}"));
        let r = raw.post(&format!("/api/v1/namespaces/{ns}/configmaps"), &obj).await;
        if ready(&r) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "webhook configuration not in effect after 10s: {} {}",
            r.status,
            r.text()
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutating_webhook_labels_and_validating_webhook_denies_as_kubernetes_words_it() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let ca = TestCa::new("stories webhook CA");
    let labeler = label_server(&ca).await;
    let policy = deny_server(&ca).await;
    namespace(&raw, "hooked", json!({"webhooks": "on"})).await;
    namespace(&raw, "plain", json!({})).await;

    // The mutating webhook only for namespaces labelled webhooks=on.
    let mut m = webhook(
        LABEL_HOOK,
        &labeler.url("/mutate"),
        &ca,
        vec![core_rule(&["CREATE"], &["configmaps"])],
    );
    m["namespaceSelector"] = json!({"matchLabels": {"webhooks": "on"}});
    m["failurePolicy"] = json!("Fail");
    let r = raw
        .post(MUTATING, &webhook_configuration("Mutating", "labels", vec![m]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let stored = r.json();
    // Defaults Kubernetes fills in for v1 webhooks.
    let hook = &stored["webhooks"][0];
    assert_eq!(hook["timeoutSeconds"], 10, "{stored}");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["reinvocationPolicy"], "Never");
    assert_eq!(hook["objectSelector"], json!({}));
    assert_eq!(hook["rules"][0]["scope"], "*");

    // The validating webhook everywhere, except objects labelled skip-policy.
    let mut v = webhook(
        DENY_HOOK,
        &policy.url("/validate"),
        &ca,
        vec![core_rule(&["CREATE", "UPDATE"], &["configmaps"])],
    );
    v["objectSelector"] = json!({"matchExpressions": [{"key": "skip-policy", "operator": "DoesNotExist"}]});
    v["failurePolicy"] = json!("Fail");
    let r = raw
        .post(VALIDATING, &webhook_configuration("Validating", "policy", vec![v]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["webhooks"][0]["failurePolicy"], "Fail");

    until_active(&raw, "hooked", configmap("probe", json!({"a": "1"})), |r| {
        r.status == 201 && r.json()["metadata"]["labels"]["stories.sluice.dev/mutated"] == "yes"
    })
    .await;

    // kubectl apply: the object comes back labelled by the webhook.
    let out = kubectl_apply_configmap(&cp, "hooked", "app", &[("mode", "blue")], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cm: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cm["metadata"]["labels"]["stories.sluice.dev/mutated"], "yes", "{cm}");
    let stored = raw.get("/api/v1/namespaces/hooked/configmaps/app").await.json();
    assert_eq!(stored["metadata"]["labels"]["stories.sluice.dev/mutated"], "yes");

    // What the webhook received: an AdmissionReview v1 for the request.
    let review = labeler
        .reviews()
        .into_iter()
        .find(|r| r["name"] == "app")
        .expect("the label webhook saw the create of app");
    assert_eq!(review["operation"], "CREATE");
    assert_eq!(
        review["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        review["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(
        review["requestKind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(review["namespace"], "hooked");
    assert_eq!(review["dryRun"], false);
    assert_eq!(review["userInfo"]["username"], "admin");
    assert!(review["userInfo"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:masters")));
    assert_eq!(review["object"]["data"]["mode"], "blue");
    assert!(review["oldObject"].is_null());
    assert!(review["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let call = labeler
        .calls()
        .into_iter()
        .find(|c| c.json()["request"]["name"] == "app")
        .expect("call");
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/mutate");
    // Kubernetes passes the webhook's timeout in the query string.
    assert_eq!(call.query, "timeout=10s");
    assert!(call
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    assert_eq!(call.json()["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(call.json()["kind"], "AdmissionReview");

    // Mutation happens before validation: the policy webhook saw the label.
    let validated = policy
        .reviews()
        .into_iter()
        .find(|r| r["name"] == "app")
        .expect("the policy webhook saw app");
    assert_eq!(
        validated["object"]["metadata"]["labels"]["stories.sluice.dev/mutated"],
        "yes"
    );

    // namespaceSelector: nothing is sent for the plain namespace.
    let before = labeler.reviews().len();
    let out = kubectl_apply_configmap(&cp, "plain", "app", &[("mode", "blue")], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cm: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(cm["metadata"]["labels"]["stories.sluice.dev/mutated"].is_null(), "{cm}");
    assert_eq!(labeler.reviews().len(), before, "namespaceSelector excludes plain");

    // The denial reaches kubectl as Kubernetes words it.
    let out = kubectl_apply_configmap(&cp, "plain", "secret-stuff", &[("forbidden", "1")], false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "admission webhook \"{DENY_HOOK}\" denied the request: {DENIAL}"
        )),
        "{err}"
    );
    assert!(err.contains("error when creating"), "{err}");
    // ... and to API clients as a Status with the webhook's code.
    let r = raw
        .post(
            "/api/v1/namespaces/plain/configmaps",
            &configmap("denied", json!({"forbidden": "1"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["code"], 403);
    assert!(
        s["message"].as_str().unwrap_or_default().ends_with(&format!(
            "admission webhook \"{DENY_HOOK}\" denied the request: {DENIAL}"
        )),
        "{s}"
    );
    assert_eq!(raw.get("/api/v1/namespaces/plain/configmaps/denied").await.status, 404);
    // kubectl apply shows it too.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: hooked\ndata:\n  forbidden: \"1\"\n",
    )
    .expect("write");
    let out = cp
        .kubectl()
        .arg("apply")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error when creating"), "{err}");
    assert!(
        err.contains(&format!(
            "admission webhook \"{DENY_HOOK}\" denied the request: {DENIAL}"
        )),
        "{err}"
    );

    // Updates are sent too, with the old object.
    let r = raw
        .patch(
            "/api/v1/namespaces/hooked/configmaps/app",
            "application/merge-patch+json",
            &json!({"data": {"forbidden": "now"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let update = policy
        .reviews()
        .into_iter()
        .find(|r| r["operation"] == "UPDATE")
        .expect("an UPDATE review");
    assert_eq!(update["oldObject"]["data"]["mode"], "blue");
    assert_eq!(update["object"]["data"]["forbidden"], "now");

    // objectSelector: an object labelled skip-policy is not sent, so it passes.
    let mut skipped = configmap("skipped", json!({"forbidden": "1"}));
    skipped["metadata"]["labels"] = json!({"skip-policy": "true"});
    let calls_before = policy.reviews().len();
    let r = raw.post("/api/v1/namespaces/plain/configmaps", &skipped).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(policy.reviews().len(), calls_before);

    // A dry run is admitted through webhooks (sideEffects None) and stores nothing.
    let r = raw
        .post(
            "/api/v1/namespaces/hooked/configmaps?dryRun=All",
            &configmap("dry", json!({"a": "1"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["stories.sluice.dev/mutated"], "yes");
    assert_eq!(
        labeler
            .reviews()
            .into_iter()
            .find(|r| r["name"] == "dry")
            .expect("dry run review")["dryRun"],
        true
    );
    assert_eq!(raw.get("/api/v1/namespaces/hooked/configmaps/dry").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_policy_decides_when_a_webhook_is_down_and_timeouts_bound_slow_ones() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let ca = TestCa::new("stories webhook CA");
    let mut policy = deny_server(&ca).await;
    namespace(&raw, "apps", json!({})).await;

    let mut v = webhook(
        DENY_HOOK,
        &policy.url("/validate"),
        &ca,
        vec![core_rule(&["CREATE"], &["configmaps"])],
    );
    v["failurePolicy"] = json!("Fail");
    let r = raw
        .post(VALIDATING, &webhook_configuration("Validating", "policy", vec![v]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    until_active(&raw, "apps", configmap("probe", json!({"forbidden": "1"})), |r| {
        r.status == 403
    })
    .await;
    let url = policy.url("/validate");

    // The webhook goes away: with failurePolicy Fail, creates are refused (500)...
    policy.stop();
    let r = raw
        .post(
            "/api/v1/namespaces/apps/configmaps",
            &configmap("while-down", json!({"a": "1"})),
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let s = r.json();
    assert_eq!(s["reason"], "InternalError");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(&format!("Internal error occurred: failed calling webhook \"{DENY_HOOK}\": failed to call webhook: Post \"{url}?timeout=10s\": ")),
        "{msg}"
    );
    assert!(msg.contains("connection refused"), "{msg}");
    assert_eq!(
        raw.get("/api/v1/namespaces/apps/configmaps/while-down").await.status,
        404
    );
    let out = kubectl_apply_configmap(&cp, "apps", "k", &[("a", "1")], false);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("failed calling webhook \"{DENY_HOOK}\"")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ... with Ignore, they are admitted.
    let r = raw
        .patch(
            &format!("{VALIDATING}/policy"),
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let start = Instant::now();
    loop {
        let r = raw
            .post(
                "/api/v1/namespaces/apps/configmaps",
                &configmap("ignored", json!({"forbidden": "1"})),
            )
            .await;
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Ignore not in effect: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A slow webhook is cut off after timeoutSeconds; with Ignore the request
    // goes through after about that long, with Fail it is refused.
    let slow = WebhookServer::start_delayed(&ca, Duration::from_secs(5), |_| deny(403, "too late to matter")).await;
    let mut m = webhook(
        "slow.stories.sluice.dev",
        &slow.url("/slow"),
        &ca,
        vec![core_rule(&["CREATE"], &["secrets"])],
    );
    m["timeoutSeconds"] = json!(1);
    m["failurePolicy"] = json!("Ignore");
    let r = raw
        .post(MUTATING, &webhook_configuration("Mutating", "slow", vec![m]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        // Wait until the slow webhook is actually being called.
        attempt += 1;
        let name = format!("s{attempt}");
        let t = Instant::now();
        let r = raw
            .post(
                "/api/v1/namespaces/apps/secrets",
                &json!({"metadata": {"name": name}, "stringData": {"k": "v"}}),
            )
            .await;
        assert_eq!(r.status, 201, "Ignore admits: {}", r.text());
        if !slow.calls().is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "cut off at ~1s, took {:?}",
                t.elapsed()
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "slow webhook never called");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(slow.calls()[0].query, "timeout=1s");
    let r = raw
        .patch(
            &format!("{MUTATING}/slow"),
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Fail"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let r = raw
            .post(
                "/api/v1/namespaces/apps/secrets",
                &json!({"metadata": {"name": "refused"}, "stringData": {"k": "v"}}),
            )
            .await;
        if r.status == 500 {
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "cut off at ~1s, took {:?}",
                t.elapsed()
            );
            let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
            assert!(
                msg.contains("failed calling webhook \"slow.stories.sluice.dev\""),
                "{msg}"
            );
            assert!(msg.contains("context deadline exceeded"), "{msg}");
            break;
        }
        assert_eq!(r.status, 201, "{}", r.text());
        raw.delete("/api/v1/namespaces/apps/secrets/refused").await;
        assert!(start.elapsed() < Duration::from_secs(10), "Fail not in effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_configurations_are_validated_and_a_wrong_ca_bundle_fails_the_call() {
    let cp = ControlPlane::start().await;
    let raw = cp.raw().await;
    let ca = TestCa::new("stories webhook CA");
    let other_ca = TestCa::new("some other CA");
    let hook = WebhookServer::start(&ca, |_| allow()).await;

    // Kubernetes refuses configurations without sideEffects/admissionReviewVersions
    // and with a non-https URL.
    let mut bad = webhook(
        "bad.stories.sluice.dev",
        "http://127.0.0.1:1/x",
        &ca,
        vec![core_rule(&["CREATE"], &["configmaps"])],
    );
    bad.as_object_mut().expect("object").remove("sideEffects");
    let r = raw
        .post(VALIDATING, &webhook_configuration("Validating", "bad", vec![bad]))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let fields: Vec<String> = r.json()["details"]["causes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["field"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    assert!(fields.contains(&"webhooks[0].sideEffects".to_string()), "{fields:?}");
    assert!(
        fields.contains(&"webhooks[0].clientConfig.url".to_string()),
        "{fields:?}"
    );
    let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("'https' is the only allowed URL scheme"), "{msg}");
    // A webhook name must be a fully qualified domain name.
    let unqualified = webhook(
        "nodots",
        &hook.url("/x"),
        &ca,
        vec![core_rule(&["CREATE"], &["configmaps"])],
    );
    let r = raw
        .post(
            VALIDATING,
            &webhook_configuration("Validating", "unq", vec![unqualified]),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("webhooks[0].name"), "{}", r.text());

    // A caBundle that did not sign the server's certificate: the call fails (Fail policy).
    let mut wrong = webhook(
        "wrongca.stories.sluice.dev",
        &hook.url("/x"),
        &other_ca,
        vec![core_rule(&["CREATE"], &["configmaps"])],
    );
    wrong["failurePolicy"] = json!("Fail");
    let r = raw
        .post(VALIDATING, &webhook_configuration("Validating", "wrongca", vec![wrong]))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    until_active(&raw, "default", configmap("probe", json!({})), |r| r.status == 500).await;
    let r = raw
        .post("/api/v1/namespaces/default/configmaps", &configmap("x", json!({})))
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("failed calling webhook \"wrongca.stories.sluice.dev\""),
        "{msg}"
    );
    assert!(msg.contains("x509: certificate signed by unknown authority"), "{msg}");
    assert!(hook.calls().is_empty(), "the handshake fails before any request");

    // Deleting the configuration takes the webhook out of the chain.
    assert_eq!(raw.delete(&format!("{VALIDATING}/wrongca")).await.status, 200);
    until_active(&raw, "default", configmap("probe", json!({})), |r| r.status == 201).await;
}
