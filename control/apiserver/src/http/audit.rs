//! The audit log: kube-apiserver's `--audit-policy-file` and `--audit-log-path`.
//!
//! The policy is an `audit.k8s.io/v1` `Policy`: rules tried in order, the
//! first whose `users`, `userGroups`, `verbs`, `resources` (group,
//! resources incl. `resource/subresource` and `*` forms, resourceNames),
//! `namespaces` and `nonResourceURLs` (`/prefix*`) all match decides the
//! `level` (`None`, `Metadata`, `Request`, `RequestResponse`); no match
//! means `None`. `omitStages` (policy-wide plus the rule's) drops stages.
//!
//! The middleware runs after authentication (so the user is known) and
//! writes one `audit.k8s.io/v1` `Event` per stage as a JSON line:
//! `RequestReceived` before the handler, `ResponseStarted` when a watch's
//! headers are sent, `ResponseComplete` when the response (or the watch
//! stream) ends, `Panic` when the handler panics. Every response carries
//! the event's `auditID` as the `Audit-Id` header (a client's own
//! `Audit-ID` request header is kept). Request bodies are read (up to
//! [`MAX_BODY`]) for writes at level `Metadata` and above to complete the
//! `objectRef` (a create's name) and, at `Request`+, to log
//! `requestObject`; `RequestResponse` also buffers non-watch responses for
//! `responseObject`.
//!
//! The `authorization.k8s.io/decision` annotation is derived from the
//! outcome (`forbid` for a 403 Forbidden, else `allow`); the authorizer's
//! reason is only known for forbidden requests (the Status message).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::auth::UserInfo;

/// Largest request or response body the audit log reads.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The header carrying the audit ID.
pub const AUDIT_ID_HEADER: &str = "Audit-Id";

/// The peer address of a connection, inserted into request extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Audit levels, in increasing order of detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Not logged.
    None,
    /// Metadata only.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

const STAGES: &[&str] = &["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_ur_ls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

/// What a request is, as the policy sees it (Kubernetes' RequestInfo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Lower-case verb (`get`, `list`, `watch`, `create`, ... or the HTTP method for non-resource URLs).
    pub verb: String,
    /// Whether this is a resource request.
    pub resource_request: bool,
    /// API group (`""` = core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The path.
    pub path: String,
}

/// Parse a request's path and method as Kubernetes' request info does.
pub fn request_info(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
    let mut info = RequestInfo {
        path: path.to_string(),
        verb: method.to_ascii_lowercase(),
        ..Default::default()
    };
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return info,
    };
    let watch_param = crate::http::params::Query::parse(query).flag("watch");
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (watch_param, rest),
    };
    let (namespace, resource, name, sub) = match rest {
        ["namespaces", ns, resource, tail @ ..] => (*ns, *resource, tail.first(), tail.get(1)),
        ["namespaces", ns] => ("", "namespaces", Some(ns), None),
        [resource, tail @ ..] => ("", *resource, tail.first(), tail.get(1)),
        [] => return info,
    };
    info.resource_request = true;
    info.group = group.to_string();
    info.version = version.to_string();
    info.namespace = namespace.to_string();
    info.resource = resource.to_string();
    info.name = name.map(|s| s.to_string()).unwrap_or_default();
    info.subresource = sub.map(|s| s.to_string()).unwrap_or_default();
    info.verb = resource_verb(method, name.is_some(), watch).to_string();
    info
}

/// A resource request's verb from its HTTP method, whether it names an
/// object, and whether it watches (Kubernetes' RequestInfo).
pub fn resource_verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// A loaded audit policy.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<String>,
}

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The level.
    pub level: Level,
    /// Stages not logged.
    pub omit_stages: Vec<String>,
}

fn check_stages(stages: &[String], at: &str) -> Result<(), String> {
    for (i, s) in stages.iter().enumerate() {
        if !STAGES.contains(&s.as_str()) {
            return Err(format!(
                "{at}[{i}]: Unsupported value: {s:?}: supported values: {}",
                STAGES.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// Parse and validate a policy file's text (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: PolicyFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let _ = &file.metadata;
        match (file.api_version.as_deref(), file.kind.as_deref()) {
            (Some("audit.k8s.io/v1"), Some("Policy")) => {}
            (v, k) => {
                return Err(format!(
                    "apiVersion/kind: Invalid value: \"{}/{}\": expected audit.k8s.io/v1 Policy",
                    v.unwrap_or(""),
                    k.unwrap_or("")
                ))
            }
        }
        if file.omit_managed_fields || file.rules.iter().any(|r| r.omit_managed_fields.is_some()) {
            return Err("omitManagedFields: Unsupported value: not supported by Sluice's audit log".into());
        }
        check_stages(&file.omit_stages, "omitStages")?;
        for (i, r) in file.rules.iter().enumerate() {
            check_stages(&r.omit_stages, &format!("rules[{i}].omitStages"))?;
            if !r.non_resource_ur_ls.is_empty() && (!r.resources.is_empty() || !r.namespaces.is_empty()) {
                return Err(format!(
                    "rules[{i}].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and \
                     non-resource URLs"
                ));
            }
            for (j, u) in r.non_resource_ur_ls.iter().enumerate() {
                if !u.starts_with('/') && u != "*" {
                    return Err(format!(
                        "rules[{i}].nonResourceURLs[{j}]: Invalid value: {u:?}: non-resource URL rules must begin \
                         with a '/' character"
                    ));
                }
            }
        }
        if file.rules.is_empty() {
            return Err("rules: Required value: at least one rule is required".into());
        }
        Ok(Self {
            rules: file.rules,
            omit_stages: file.omit_stages,
        })
    }

    /// Read a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading audit policy file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("loading audit policy file {}: {e}", path.display()))
    }

    /// The level and omitted stages for a request.
    pub fn decide(&self, user: Option<&UserInfo>, info: &RequestInfo) -> Decision {
        for r in &self.rules {
            if rule_matches(r, user, info) {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.iter().cloned());
                return Decision {
                    level: r.level,
                    omit_stages: omit,
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: Vec::new(),
        }
    }
}

fn rule_matches(r: &Rule, user: Option<&UserInfo>, info: &RequestInfo) -> bool {
    let name = user.map(|u| u.name.as_str()).unwrap_or("system:anonymous");
    if !r.users.is_empty() && !r.users.iter().any(|u| u == name) {
        return false;
    }
    if !r.user_groups.is_empty() {
        let groups: &[String] = user.map(|u| u.groups.as_slice()).unwrap_or(&[]);
        if !r.user_groups.iter().any(|g| groups.contains(g)) {
            return false;
        }
    }
    if !r.verbs.is_empty() && !r.verbs.iter().any(|v| v == &info.verb) {
        return false;
    }
    if !r.namespaces.is_empty() || !r.resources.is_empty() {
        return info.resource_request && resource_matches(r, info);
    }
    if !r.non_resource_ur_ls.is_empty() {
        return !info.resource_request
            && r.non_resource_ur_ls.iter().any(|u| match u.strip_suffix('*') {
                Some(prefix) => info.path.starts_with(prefix),
                None => u == &info.path,
            });
    }
    true
}

fn resource_matches(r: &Rule, info: &RequestInfo) -> bool {
    if !r.namespaces.is_empty() && !r.namespaces.iter().any(|n| n == &info.namespace) {
        return false;
    }
    if r.resources.is_empty() {
        return true;
    }
    let combined = if info.subresource.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{}", info.resource, info.subresource)
    };
    r.resources.iter().any(|gr| {
        if gr.group != info.group {
            return false;
        }
        if gr.resources.is_empty() {
            return true;
        }
        gr.resources.iter().any(|res| {
            let matched = res == &combined
                || res == "*"
                || res == "*/*"
                || (res.strip_prefix("*/") == Some(info.subresource.as_str()) && !info.subresource.is_empty())
                || res.strip_suffix("/*") == Some(info.resource.as_str());
            matched && (gr.resource_names.is_empty() || gr.resource_names.iter().any(|n| n == &info.name))
        })
    })
}

/// Where events go.
struct Sink {
    policy: Policy,
    file: Mutex<std::fs::File>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Enable the audit log for this process (once, at start).
pub fn install(policy: Policy, log_path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| anyhow::anyhow!("opening audit log {}: {e}", log_path.display()))?;
    let _ = SINK.set(Sink {
        policy,
        file: Mutex::new(file),
    });
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One request's audit record, written once per stage.
#[derive(Clone)]
struct Record {
    event: Map<String, Value>,
    omit: Vec<String>,
}

impl Record {
    fn emit(&self, stage: &str, extra: impl FnOnce(&mut Map<String, Value>)) {
        if self.omit.iter().any(|s| s == stage) {
            return;
        }
        let Some(sink) = SINK.get() else { return };
        let mut ev = self.event.clone();
        ev.insert("stage".into(), json!(stage));
        ev.insert("stageTimestamp".into(), json!(now()));
        extra(&mut ev);
        let mut line = serde_json::to_vec(&Value::Object(ev)).unwrap_or_default();
        line.push(b'\n');
        if let Ok(mut f) = sink.file.lock() {
            if let Err(e) = f.write_all(&line) {
                tracing::warn!(error = %e, "writing the audit log failed");
            }
        }
    }
}

fn response_status(code: u16, body: Option<&Value>) -> Value {
    let mut s = json!({"metadata": {}, "code": code});
    if code >= 300 {
        if let Some(b) = body.filter(|b| b.get("kind").and_then(Value::as_str) == Some("Status")) {
            for k in ["status", "message", "reason", "details"] {
                if let Some(v) = b.get(k) {
                    s[k] = v.clone();
                }
            }
        }
    }
    s
}

/// The user as Kubernetes' audit log shows it: its authenticators add
/// `system:authenticated` to every authenticated user's groups, so the
/// event (and a policy's `userGroups`) sees it too.
fn authenticated(mut user: UserInfo) -> UserInfo {
    if user.name != "system:anonymous" && !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    user
}

/// The middleware (runs inside authentication). A no-op unless [`install`]ed.
pub async fn layer(req: Request, next: Next) -> Response {
    let Some(sink) = SINK.get() else {
        return next.run(req).await;
    };
    let received = now();
    let audit_id = req
        .headers()
        .get("Audit-ID")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let user = req.extensions().get::<UserInfo>().cloned().map(authenticated);
    let info = request_info(req.method().as_str(), req.uri().path(), req.uri().query());
    let decision = sink.policy.decide(user.as_ref(), &info);
    if decision.level == Level::None {
        let mut resp = next.run(req).await;
        if let Ok(v) = http::HeaderValue::from_str(&audit_id) {
            resp.headers_mut().insert(AUDIT_ID_HEADER, v);
        }
        return resp;
    }
    let level = decision.level;
    let mut source_ips: Vec<String> = req
        .headers()
        .get("X-Forwarded-For")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = req.extensions().get::<PeerAddr>() {
        let ip = p.0.ip().to_string();
        if !source_ips.contains(&ip) {
            source_ips.push(ip);
        }
    }
    let mut event = Map::new();
    event.insert("kind".into(), json!("Event"));
    event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    event.insert("level".into(), json!(level.as_str()));
    event.insert("auditID".into(), json!(audit_id));
    event.insert(
        "requestURI".into(),
        json!(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")),
    );
    event.insert("verb".into(), json!(info.verb));
    let (name, groups, uid) = match &user {
        Some(u) => (u.name.clone(), u.groups.clone(), u.uid.clone()),
        None => (
            "system:anonymous".to_string(),
            vec!["system:unauthenticated".to_string()],
            String::new(),
        ),
    };
    let mut user_json = json!({"username": name, "groups": groups});
    if !uid.is_empty() {
        user_json["uid"] = json!(uid);
    }
    event.insert("user".into(), user_json);
    if let Some(imp) = req.headers().get("Impersonate-User").and_then(|v| v.to_str().ok()) {
        let groups: Vec<&str> = req
            .headers()
            .get_all("Impersonate-Group")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        event.insert("impersonatedUser".into(), json!({"username": imp, "groups": groups}));
    }
    event.insert("sourceIPs".into(), json!(source_ips));
    if let Some(ua) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        event.insert("userAgent".into(), json!(ua));
    }
    let mut object_ref = Map::new();
    if info.resource_request {
        object_ref.insert("resource".into(), json!(info.resource));
        if !info.namespace.is_empty() {
            object_ref.insert("namespace".into(), json!(info.namespace));
        }
        if !info.name.is_empty() {
            object_ref.insert("name".into(), json!(info.name));
        }
        if !info.group.is_empty() {
            object_ref.insert("apiGroup".into(), json!(info.group));
        }
        object_ref.insert("apiVersion".into(), json!(info.version));
        if !info.subresource.is_empty() {
            object_ref.insert("subresource".into(), json!(info.subresource));
        }
    }
    event.insert("requestReceivedTimestamp".into(), json!(received));

    // Writes: read the body to complete objectRef and log requestObject.
    let mut req = req;
    let is_write = matches!(
        info.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    if info.resource_request && is_write {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                use axum::response::IntoResponse;
                return crate::status::ApiError::too_large(MAX_BODY).into_response();
            }
        };
        // JSON, or protobuf (`k8s\0`-framed, as client-go's typed clients send it).
        let body = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .or_else(|| sluice_protobuf::decode(&bytes).ok());
        if let Some(obj) = body {
            if let Some(meta) = obj.get("metadata") {
                if !object_ref.contains_key("name") {
                    if let Some(n) = meta.get("name").and_then(Value::as_str) {
                        object_ref.insert("name".into(), json!(n));
                    }
                }
            }
            if level >= Level::Request {
                event.insert("requestObject".into(), obj);
            }
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    if !object_ref.is_empty() {
        event.insert("objectRef".into(), Value::Object(object_ref));
    }
    let record = Record {
        event,
        omit: decision.omit_stages,
    };
    record.emit("RequestReceived", |_| {});

    let outcome = std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await;
    let mut resp = match outcome {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            record.emit("Panic", |ev| {
                ev.insert(
                    "responseStatus".into(),
                    json!({"metadata": {}, "status": "Failure", "message": format!("APIServer panic'd: {message}"), "reason": "InternalError", "code": 500}),
                );
            });
            std::panic::resume_unwind(panic);
        }
    };
    if let Ok(v) = http::HeaderValue::from_str(&audit_id) {
        resp.headers_mut().insert(AUDIT_ID_HEADER, v);
    }
    let code = resp.status().as_u16();
    let decision_annotations = |ev: &mut Map<String, Value>, body: Option<&Value>| {
        let forbidden = code == 403 && body.and_then(|b| b.get("reason")).and_then(Value::as_str) == Some("Forbidden");
        let mut ann = json!({"authorization.k8s.io/decision": if forbidden { "forbid" } else { "allow" }});
        if forbidden {
            if let Some(m) = body.and_then(|b| b.get("message")) {
                ann["authorization.k8s.io/reason"] = m.clone();
            }
        }
        ev.insert("annotations".into(), ann);
    };

    if info.verb == "watch" && code < 300 {
        record.emit("ResponseStarted", |ev| {
            ev.insert("responseStatus".into(), response_status(code, None));
            decision_annotations(ev, None);
        });
        // ResponseComplete when the stream ends or the client goes away.
        struct Complete(Record, u16);
        impl Drop for Complete {
            fn drop(&mut self) {
                let code = self.1;
                self.0.emit("ResponseComplete", |ev| {
                    ev.insert("responseStatus".into(), response_status(code, None));
                    ev.insert("annotations".into(), json!({"authorization.k8s.io/decision": "allow"}));
                });
            }
        }
        let guard = Complete(record, code);
        let (parts, body) = resp.into_parts();
        let stream = body.into_data_stream().map(move |chunk| {
            let _ = &guard;
            chunk
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }

    // Read error bodies (for the Status) and, at RequestResponse, every body.
    let is_upgrade = code == 101;
    let read_body = !is_upgrade && (code >= 400 || level >= Level::RequestResponse);
    if !read_body {
        record.emit("ResponseComplete", |ev| {
            ev.insert("responseStatus".into(), response_status(code, None));
            decision_annotations(ev, None);
        });
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let parsed = serde_json::from_slice::<Value>(&bytes).ok();
    record.emit("ResponseComplete", |ev| {
        ev.insert("responseStatus".into(), response_status(code, parsed.as_ref()));
        if level >= Level::RequestResponse {
            if let Some(p) = &parsed {
                ev.insert("responseObject".into(), p.clone());
            }
        }
        decision_annotations(ev, parsed.as_ref());
    });
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-scheduler"]
    verbs: [get, watch]
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods/log", "configmaps"]
        resourceNames: [special]
  - level: Request
    userGroups: [devs]
    namespaces: [dev]
    omitStages: [ResponseStarted]
  - level: Metadata
"#;

    #[test]
    fn request_info_reads_paths_like_kubernetes() {
        let i = request_info("POST", "/api/v1/namespaces/default/secrets", None);
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.namespace.as_str()),
            ("create", "secrets", "default")
        );
        let i = request_info("GET", "/apis/apps/v1/deployments", Some("watch=true&x=1"));
        assert_eq!((i.verb.as_str(), i.group.as_str()), ("watch", "apps"));
        let i = request_info("GET", "/api/v1/namespaces/a/pods/p/log", None);
        assert_eq!(
            (i.verb.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("get", "p", "log")
        );
        let i = request_info("GET", "/healthz", None);
        assert!(!i.resource_request);
        assert_eq!(i.verb, "get");
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let p = Policy::parse(POLICY).unwrap();
        let admin = user("admin", &["system:masters"]);
        let get = |path: &str| request_info("GET", path, None);
        let d = p.decide(Some(&user("system:kube-scheduler", &[])), &get("/api/v1/pods/x"));
        assert_eq!(d.level, Level::None);
        assert_eq!(p.decide(Some(&admin), &get("/healthz/etcd")).level, Level::None);
        assert_eq!(p.decide(Some(&admin), &get("/version")).level, Level::None);
        assert_eq!(p.decide(Some(&admin), &get("/versionx")).level, Level::Metadata);
        let log = get("/api/v1/namespaces/a/pods/special/log");
        assert_eq!(p.decide(Some(&admin), &log).level, Level::RequestResponse);
        let other = get("/api/v1/namespaces/a/pods/other/log");
        assert_eq!(p.decide(Some(&admin), &other).level, Level::Metadata);
        let dev = user("jane", &["devs"]);
        let d = p.decide(Some(&dev), &get("/api/v1/namespaces/dev/pods"));
        assert_eq!(d.level, Level::Request);
        assert_eq!(
            d.omit_stages,
            vec!["RequestReceived".to_string(), "ResponseStarted".to_string()]
        );
        assert_eq!(
            p.decide(Some(&dev), &get("/api/v1/namespaces/prod/pods")).level,
            Level::Metadata
        );
    }

    #[test]
    fn the_xtask_up_policy_is_valid() {
        let xtask = include_str!("../../../../xtask/src/cluster.rs");
        let marker = "const AUDIT_POLICY: &str = r#\"";
        let start = xtask.find(marker).unwrap() + marker.len();
        let text = &xtask[start..start + xtask[start..].find("\"#;").unwrap()];
        let p = Policy::parse(text).unwrap();
        let admin = user("admin", &["system:masters"]);
        let create = request_info("POST", "/api/v1/namespaces/default/secrets", None);
        assert_eq!(p.decide(Some(&admin), &create).level, Level::Metadata);
        let sched = user("system:kube-scheduler", &["system:authenticated"]);
        let watch = request_info("GET", "/api/v1/pods", Some("watch=true"));
        assert_eq!(p.decide(Some(&sched), &watch).level, Level::None);
    }

    #[test]
    fn invalid_policies_are_refused() {
        for (text, want) in [
            ("apiVersion: v1\nkind: Policy\nrules: [{level: None}]", "apiVersion/kind"),
            ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []", "rules: Required"),
            ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]", "unknown variant"),
            ("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Begin]\nrules: [{level: None}]", "omitStages[0]"),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [/x], namespaces: [a]}]",
                "rules[0].nonResourceURLs",
            ),
            ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, user: [a]}]", "unknown field `user`"),
        ] {
            let err = Policy::parse(text).unwrap_err();
            assert!(err.contains(want), "{text} => {err}");
        }
    }

    #[test]
    fn authenticated_users_carry_the_authenticated_group() {
        let u = authenticated(user("alice", &["devs"]));
        assert_eq!(u.groups, ["devs", "system:authenticated"]);
        assert_eq!(authenticated(u).groups.len(), 2);
        let policy = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, userGroups: [system:authenticated]}, {level: Metadata}]",
        )
        .unwrap();
        let list = request_info("GET", "/api/v1/namespaces/a/pods", None);
        let alice = authenticated(user("alice", &[]));
        assert_eq!(policy.decide(Some(&alice), &list).level, Level::None);
    }
}
