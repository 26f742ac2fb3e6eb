//! Errors as Kubernetes `Status` objects.
//!
//! Every failure the API server reports is an [`ApiError`]; it renders as the
//! `Status` JSON (kind, apiVersion v1, status Failure, code, reason, message,
//! details) that kubectl and client libraries decode.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::resources::Resource;

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

fn qualified_kind(r: &Resource) -> String {
    if r.group.is_empty() {
        r.kind.to_string()
    } else {
        format!("{}.{}", r.kind, r.group)
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
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
    /// 404 for a path the server does not serve.
    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
        .with_details(json!({}))
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
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {summary}", qualified_kind(r)),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.kind, "causes": causes_json}))
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

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// A success `Status` (deletecollection, some deletes).
pub fn success_status(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind;

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
}
