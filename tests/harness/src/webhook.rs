//! Admission webhooks for stories: real HTTPS servers ([`crate::https`])
//! that read `admission.k8s.io/v1` AdmissionReviews and answer them, plus
//! builders for the `admissionregistration.k8s.io/v1` configurations that
//! register them with `clientConfig.url` and a `caBundle`.
//!
//! ```ignore
//! let ca = TestCa::new("webhooks");
//! let hook = WebhookServer::start(&ca, |req| allow_with_patch(&[json!({"op": "add", ...})])).await;
//! raw.post("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
//!          &webhook_configuration("Mutating", "add-label", vec![
//!              webhook("label.example.com", &hook.url("/mutate"), &ca, configmap_rules())])).await;
//! // ... hook.reviews() holds every AdmissionReview request it answered.
//! ```

use base64::Engine as _;
use serde_json::{json, Value};

use crate::https::{HttpsServer, Reply, Seen, TestCa};

/// An admission webhook on 127.0.0.1 answering AdmissionReviews.
pub struct WebhookServer {
    server: HttpsServer,
}

impl WebhookServer {
    /// Serve on 127.0.0.1: `respond` gets each review's `request` and returns
    /// its `response` (without `uid`, which is copied from the request).
    pub async fn start<F>(ca: &TestCa, respond: F) -> WebhookServer
    where
        F: Fn(&Value) -> Value + Send + Sync + 'static,
    {
        Self::start_delayed(ca, std::time::Duration::ZERO, respond).await
    }

    /// Like [`start`](Self::start), answering each review only after `delay`.
    pub async fn start_delayed<F>(ca: &TestCa, delay: std::time::Duration, respond: F) -> WebhookServer
    where
        F: Fn(&Value) -> Value + Send + Sync + 'static,
    {
        let server = HttpsServer::start(ca, "127.0.0.1:0", move |seen: &Seen| {
            let review = seen.json();
            let request = &review["request"];
            let mut response = respond(request);
            response["uid"] = request["uid"].clone();
            Reply::json(
                200,
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
            )
            .after(delay)
        })
        .await;
        WebhookServer { server }
    }

    /// `https://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The raw HTTP requests (to check the path, `?timeout=`, headers).
    pub fn calls(&self) -> Vec<Seen> {
        self.server.requests()
    }

    /// The `request` of every AdmissionReview received, in order.
    pub fn reviews(&self) -> Vec<Value> {
        self.server
            .requests()
            .iter()
            .map(|s| s.json()["request"].clone())
            .collect()
    }

    /// Stop: connections to its port are refused from now on.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// `{"allowed": true}`
pub fn allow() -> Value {
    json!({"allowed": true})
}

/// Allowed, with a JSONPatch (`ops` is the list of operations).
pub fn allow_with_patch(ops: &[Value]) -> Value {
    let patch = base64::engine::general_purpose::STANDARD.encode(Value::Array(ops.to_vec()).to_string());
    json!({"allowed": true, "patchType": "JSONPatch", "patch": patch})
}

/// Denied with `status.code` and `status.message`.
pub fn deny(code: u16, message: &str) -> Value {
    json!({"allowed": false, "status": {"code": code, "message": message}})
}

/// A JSONPatch that sets label `key` to `value` on the object under
/// review, whether or not it has labels yet (`~` and `/` escaped).
pub fn add_label_ops(request: &Value, key: &str, value: &str) -> Vec<Value> {
    let escaped = key.replace('~', "~0").replace('/', "~1");
    if request["object"]["metadata"]["labels"].is_object() {
        vec![json!({"op": "add", "path": format!("/metadata/labels/{escaped}"), "value": value})]
    } else {
        vec![json!({"op": "add", "path": "/metadata/labels", "value": {key: value}})]
    }
}

/// One rule: `operations` on `resources` in core/v1 (group `""`).
pub fn core_rule(operations: &[&str], resources: &[&str]) -> Value {
    json!({
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": operations,
        "resources": resources,
        "scope": "*",
    })
}

/// One webhook entry calling `url`, trusting `ca`, with `rules`;
/// `sideEffects: None`, `admissionReviewVersions: [v1]`. Add
/// `failurePolicy`, selectors, `timeoutSeconds` to the returned value.
pub fn webhook(name: &str, url: &str, ca: &TestCa, rules: Vec<Value>) -> Value {
    let ca_bundle = ca.ca_bundle();
    json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    })
}

/// A `MutatingWebhookConfiguration` (`kind_prefix` = `"Mutating"`) or
/// `ValidatingWebhookConfiguration` (`"Validating"`) named `name`.
pub fn webhook_configuration(kind_prefix: &str, name: &str, webhooks: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": format!("{kind_prefix}WebhookConfiguration"),
        "metadata": {"name": name},
        "webhooks": webhooks,
    })
}
