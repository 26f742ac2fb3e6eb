//! Errors as Kubernetes `Status` objects.
//!
//! Every failure the API server reports is an [`ApiError`]; it renders as the
//! `Status` JSON (kind, apiVersion v1, status Failure, code, reason, message,
//! details) that kubectl and client libraries decode.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::kinds::Resource;

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Machine reason, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// Field path, e.g. `spec.template.spec.containers[0].name`.
    pub field: String,
    /// Human message without the field path.
    pub message: String,
}

impl FieldError {
    /// The value is present but not acceptable.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            // Go prints a []string value with %#v.
            Value::Array(items) if items.iter().all(Value::is_string) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
                    .collect();
                format!("[]string{{{}}}", items.join(", "))
            }
            other => other.to_string(),
        };
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }
    /// A required value is missing.
    pub fn required(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        let detail = detail.as_ref();
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message: if detail.is_empty() {
                "Required value".to_string()
            } else {
                format!("Required value: {detail}")
            },
        }
    }
    /// A value that must be unique is repeated.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {value}"),
        }
    }
    /// A value outside an enumeration.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        }
    }
    /// A value that may not be set or changed here.
    pub fn forbidden(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {}", detail.as_ref()),
        }
    }
    /// `field: message`, as Kubernetes prints it.
    pub fn to_line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// An API error rendered as a Kubernetes `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` (name, group, kind, causes), when any.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Result type of request handling.
pub type ApiResult<T> = Result<T, ApiError>;

fn qualified_resource(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

impl ApiError {
    /// An error with this code, reason and message (no details).
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    /// 404 for a missing object.
    pub fn not_found(r: &Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} {name:?} not found", qualified_resource(r)))
            .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
    }
    /// 404 for a path the server does not serve, worded as Kubernetes words
    /// it (the message names no path, so kubectl shows "Error from server
    /// (NotFound): the server could not find the requested resource"); the
    /// path is only logged.
    pub fn path_not_found(path: &str) -> Self {
        tracing::debug!(path, "no such resource");
        Self::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }
    /// 409 when creating an object that exists.
    pub fn already_exists(r: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified_resource(r)),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
    }
    /// 409 when a write was based on a stale resourceVersion.
    pub fn conflict(r: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified_resource(r)
            ),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
    }
    /// A 409 on a subresource, as Kubernetes words one on `pods/binding`:
    /// `Operation cannot be fulfilled on pods/binding "p": ...`.
    pub fn subresource_conflict(r: &Resource, sub: &str, name: &str, why: &str) -> Self {
        let on = format!("{}/{sub}", qualified_resource(r));
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {on} {name:?}: {why}"),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": format!("{}/{sub}", r.plural)}))
    }
    /// The standard stale-write conflict.
    pub fn stale(r: &Resource, name: &str) -> Self {
        Self::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    /// 422 with field causes.
    pub fn invalid(r: &Resource, name: &str, causes: Vec<FieldError>) -> Self {
        Self::invalid_kind(r.group, r.kind, name, causes)
    }
    /// 422 with field causes on any group and kind (e.g. `ListOptions.meta.k8s.io`).
    pub fn invalid_kind(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let lines: Vec<String> = causes.iter().map(FieldError::to_line).collect();
        let summary = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(422, "Invalid", format!("{qualified} {name:?} is invalid: {summary}"))
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes_json}))
    }
    /// 406 when no acceptable representation can be served.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }
    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 403 (e.g. creating in a terminating namespace).
    pub fn forbidden(r: &Resource, name: &str, why: impl AsRef<str>) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!("{} {name:?} is forbidden: {}", qualified_resource(r), why.as_ref()),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))
    }
    /// 410 Expired: the requested resourceVersion was compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 401 for anonymous requests.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 from the authorizer.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    /// 403 for a request the authorizer denied, as Kubernetes' `NewForbidden`
    /// for the requested group and resource (both empty for a non-resource
    /// URL): `deployments.apps "web" is forbidden: <why>`.
    pub fn forbidden_request(group: &str, resource: &str, name: &str, why: impl AsRef<str>) -> Self {
        let why = why.as_ref();
        let qualified = match (resource, group) {
            ("", _) => String::new(),
            (r, "") => r.to_string(),
            (r, g) => format!("{r}.{g}"),
        };
        let message = match (qualified.as_str(), name) {
            ("", _) => format!("forbidden: {why}"),
            (q, "") => format!("{q} is forbidden: {why}"),
            (q, n) => format!("{q} {n:?} is forbidden: {why}"),
        };
        Self::new(403, "Forbidden", message).with_details(json!({"name": name, "group": group, "kind": resource}))
    }
    /// 413 when the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }
    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed(what: impl AsRef<str>) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource: {}",
                what.as_ref()
            ),
        )
    }
    /// 415 for a content type we cannot decode.
    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {ct})"))
    }
    /// 415 for a PATCH whose Content-Type is not a patch format the kind
    /// accepts (Kubernetes lists them, sorted).
    pub fn unsupported_patch_type(strategic: bool) -> Self {
        let mut accepted = vec![
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ];
        if strategic {
            accepted.push("application/strategic-merge-patch+json");
        }
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }
    /// 500 for unexpected failures.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }
    /// 503 when storage is unreachable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }
    /// 504 when storage timed out.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object, with Kubernetes' field order (`kind, apiVersion,
    /// metadata, status, message, reason, details, code`) and its `omitempty`s:
    /// empty strings, lists and zero numbers inside `details` are left out,
    /// while a present but empty `details` is `{}`.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
        });
        if !self.message.is_empty() {
            v["message"] = json!(self.message);
        }
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = status_details(d);
        }
        v["code"] = json!(self.code);
        v
    }
}

/// `metav1.StatusDetails` in Go's field order with its `omitempty`s.
fn status_details(d: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in ["name", "group", "kind", "uid"] {
        if let Some(s) = d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            out.insert(k.into(), json!(s));
        }
    }
    if let Some(causes) = d.get("causes").and_then(Value::as_array).filter(|c| !c.is_empty()) {
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| {
                let mut m = serde_json::Map::new();
                for k in ["reason", "message", "field"] {
                    if let Some(s) = c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                        m.insert(k.into(), json!(s));
                    }
                }
                Value::Object(m)
            })
            .collect();
        out.insert("causes".into(), Value::Array(causes));
    }
    if let Some(n) = d.get("retryAfterSeconds").and_then(Value::as_i64).filter(|n| *n != 0) {
        out.insert("retryAfterSeconds".into(), json!(n));
    }
    Value::Object(out)
}

/// The bare success `Status` a create answers with when it makes no object
/// (a binding, an eviction), as Kubernetes marshals `Status{Status: Success}`
/// with the create's 201.
pub fn created_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        crate::http::wire::response(code, &self.to_status(), false, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;

    #[test]
    fn invalid_message_names_kind_group_and_field() {
        let r = by_kind("apps", "Deployment").unwrap();
        let e = ApiError::invalid(r, "x", vec![FieldError::required("spec.selector", "")]);
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Deployment.apps \"x\" is invalid: spec.selector: Required value"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["field"], "spec.selector");
        assert_eq!(s["details"]["kind"], "Deployment");
    }

    #[test]
    fn an_unserved_path_is_a_plain_not_found() {
        let s = ApiError::path_not_found("/apis/autoscaling/v2/namespaces/x/horizontalpodautoscalers").to_status();
        assert_eq!(s["message"], "the server could not find the requested resource");
        assert_eq!(
            (s["reason"].as_str(), s["code"].as_u64()),
            (Some("NotFound"), Some(404))
        );
        assert_eq!(s["details"], json!({}));
    }

    #[test]
    fn status_bytes_are_kubernetes_bytes() {
        let pods = by_kind("", "Pod").unwrap();
        let bytes = crate::http::wire::to_vec(&ApiError::not_found(pods, "x").to_status(), false);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
        let d = by_kind("apps", "Deployment").unwrap();
        let s = crate::http::wire::to_vec(&ApiError::already_exists(d, "d").to_status(), false);
        assert!(String::from_utf8(s)
            .unwrap()
            .contains("\"details\":{\"name\":\"d\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":409}"));
        // No details at all: no key; empty details: `{}`.
        let s = ApiError::bad_request("nope").to_status();
        assert_eq!(
            String::from_utf8(crate::http::wire::to_vec(&s, false)).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"nope\",\"reason\":\"BadRequest\",\"code\":400}\n"
        );
        assert_eq!(ApiError::path_not_found("/x").to_status()["details"], json!({}));
        let inv = ApiError::invalid(pods, "p", vec![FieldError::required("spec.containers", "")]).to_status();
        let text = String::from_utf8(crate::http::wire::to_vec(&inv, false)).unwrap();
        assert!(text.contains("\"details\":{\"name\":\"p\",\"kind\":\"Pod\",\"causes\":[{\"reason\":\"FieldValueRequired\",\"message\":\"Required value\",\"field\":\"spec.containers\"}]},\"code\":422}"), "{text}");
    }
}
