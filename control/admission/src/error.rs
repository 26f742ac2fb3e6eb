//! Errors of admission, worded as Kubernetes words them for the client.
//!
//! [`AdmissionError::to_status`] gives the `metav1.Status` the API server
//! returns; [`AdmissionError::code`] its HTTP status code.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// A field error of a webhook configuration (turned into a 422 `Invalid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `webhooks[0].matchConditions`.
    pub field: String,
    /// The `StatusCause.reason`: `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueNotSupported` or `FieldValueForbidden`.
    pub reason: &'static str,
    /// Full message, e.g. `webhooks[0].matchConditions: Forbidden: matchConditions are not supported`.
    pub message: String,
}

impl FieldError {
    pub(crate) fn required(field: String, detail: &str) -> Self {
        let message = format!("{field}: Required value: {detail}");
        FieldError {
            field,
            reason: "FieldValueRequired",
            message,
        }
    }
    pub(crate) fn invalid(field: String, value: &str, detail: &str) -> Self {
        let message = format!("{field}: Invalid value: {value:?}: {detail}");
        FieldError {
            field,
            reason: "FieldValueInvalid",
            message,
        }
    }
    pub(crate) fn not_supported(field: String, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("{field}: Unsupported value: {value:?}: supported values: {list}");
        FieldError {
            field,
            reason: "FieldValueNotSupported",
            message,
        }
    }
    pub(crate) fn forbidden(field: String, detail: &str) -> Self {
        let message = format!("{field}: Forbidden: {detail}");
        FieldError {
            field,
            reason: "FieldValueForbidden",
            message,
        }
    }
}

/// Why admission refused a request (or could not decide).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdmissionError {
    /// A webhook answered `allowed: false`. `message` is already
    /// `admission webhook "<name>" denied the request: <message>`.
    #[error("{message}")]
    Denied {
        /// The webhook's name.
        webhook: String,
        /// HTTP code: the response's `status.code`, default 403.
        code: u16,
        /// `status.reason` of the response, default `Forbidden`.
        reason: String,
        /// Client-facing message.
        message: String,
        /// `status.details` of the response, if it sent any.
        details: Option<Box<StatusDetails>>,
    },
    /// Calling the webhook failed and its failurePolicy is `Fail`
    /// (connection, TLS, timeout, HTTP status, malformed response).
    /// Displays as `failed calling webhook "<name>": <reason>`.
    #[error("failed calling webhook {webhook:?}: {reason}")]
    CallFailed {
        /// The webhook's name.
        webhook: String,
        /// E.g. `failed to call webhook: Post "https://…?timeout=10s": context deadline exceeded`.
        reason: String,
    },
    /// A dry-run request matched a webhook whose sideEffects are not None/NoneOnDryRun (400).
    #[error("admission webhook {webhook:?} does not support dry run")]
    DryRunUnsupported {
        /// The webhook's name.
        webhook: String,
    },
    /// Something on the API server's side failed (patch application,
    /// unreadable selector, missing namespace, conversion) (500).
    #[error("{0}")]
    Internal(String),
}

impl AdmissionError {
    /// The HTTP status code to answer with.
    pub fn code(&self) -> u16 {
        match self {
            AdmissionError::Denied { code, .. } => *code,
            AdmissionError::CallFailed { .. } | AdmissionError::Internal(_) => 500,
            AdmissionError::DryRunUnsupported { .. } => 400,
        }
    }

    /// The `metav1.Status` Kubernetes returns for this error on a request for
    /// `resource` object `name` (empty: not known yet, e.g. a generated name).
    ///
    /// A denial is worded as Kubernetes' `ToStatusErr`: the message gets the
    /// `<resource> "<name>" is forbidden: ` prefix (`Internal error occurred: `
    /// for code 500), and without details from the webhook the details name
    /// the object (`kind` is the resource, as `NewForbidden` sets it) or, for
    /// code 500, carry the message as the one cause. Other errors are
    /// [`AdmissionError::to_status`].
    pub fn to_status_for(&self, resource: &crate::GroupVersionResource, name: &str) -> Status {
        let AdmissionError::Denied {
            code,
            reason,
            message,
            details,
            ..
        } = self
        else {
            return self.to_status();
        };
        let name = if name.is_empty() { "Unknown" } else { name };
        let details = details.as_deref().cloned().unwrap_or_else(|| {
            if *code == 500 {
                StatusDetails {
                    causes: Some(vec![StatusCause {
                        message: Some(message.clone()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }
            } else {
                StatusDetails {
                    group: Some(resource.group.clone()),
                    kind: Some(resource.resource.clone()),
                    name: Some(name.to_owned()),
                    ..Default::default()
                }
            }
        });
        let prefix = if *code == 500 {
            "Internal error occurred".to_owned()
        } else if resource.group.is_empty() {
            format!("{} {name:?} is forbidden", resource.resource)
        } else {
            format!("{}.{} {name:?} is forbidden", resource.resource, resource.group)
        };
        Status {
            code: Some(i32::from(*code)),
            details: Some(details),
            message: Some(format!("{prefix}: {message}")),
            metadata: Default::default(),
            reason: Some(reason.clone()),
            status: Some("Failure".to_owned()),
        }
    }

    /// The `metav1.Status` Kubernetes returns for this error.
    pub fn to_status(&self) -> Status {
        let failure = |code: u16, reason: &str, message: String, details: Option<StatusDetails>| Status {
            code: Some(i32::from(code)),
            details,
            message: Some(message),
            metadata: Default::default(),
            reason: Some(reason.to_owned()),
            status: Some("Failure".to_owned()),
        };
        match self {
            AdmissionError::Denied {
                code,
                reason,
                message,
                details,
                ..
            } => failure(*code, reason, message.clone(), details.as_deref().cloned()),
            AdmissionError::CallFailed { .. } | AdmissionError::Internal(_) => {
                let inner = self.to_string();
                let details = StatusDetails {
                    causes: Some(vec![StatusCause {
                        message: Some(inner.clone()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                };
                failure(
                    500,
                    "InternalError",
                    format!("Internal error occurred: {inner}"),
                    Some(details),
                )
            }
            AdmissionError::DryRunUnsupported { .. } => failure(400, "BadRequest", self.to_string(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_failure_status() {
        let e = AdmissionError::CallFailed {
            webhook: "x.example.com".into(),
            reason: "failed to call webhook: Post \"https://x/?timeout=10s\": context deadline exceeded".into(),
        };
        let s = e.to_status();
        assert_eq!(s.code, Some(500));
        assert_eq!(s.reason.as_deref(), Some("InternalError"));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "Internal error occurred: failed calling webhook \"x.example.com\": failed to call webhook: \
                 Post \"https://x/?timeout=10s\": context deadline exceeded"
            )
        );
        assert_eq!(s.status.as_deref(), Some("Failure"));
    }

    #[test]
    fn denial_status_for_a_request() {
        let e = crate::denied(
            "deny.example.com",
            Some(&crate::review::ResponseStatus {
                message: Some("no".into()),
                ..Default::default()
            }),
        );
        let s = e.to_status_for(&crate::GroupVersionResource::new("", "v1", "configmaps"), "cm");
        assert_eq!(
            s.message.as_deref(),
            Some("configmaps \"cm\" is forbidden: admission webhook \"deny.example.com\" denied the request: no")
        );
        assert_eq!(s.code, Some(403));
        let d = s.details.expect("details");
        assert_eq!((d.kind.as_deref(), d.name.as_deref()), (Some("configmaps"), Some("cm")));
        let s = e.to_status_for(&crate::GroupVersionResource::new("apps", "v1", "deployments"), "");
        assert!(s
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("deployments.apps \"Unknown\" is forbidden: ")));
    }

    #[test]
    fn dry_run_status() {
        let s = AdmissionError::DryRunUnsupported { webhook: "w".into() }.to_status();
        assert_eq!(s.code, Some(400));
        assert_eq!(s.reason.as_deref(), Some("BadRequest"));
        assert_eq!(
            s.message.as_deref(),
            Some("admission webhook \"w\" does not support dry run")
        );
    }

    #[test]
    fn field_error_wording() {
        let e = FieldError::not_supported("webhooks[0].sideEffects".into(), "Maybe", &["None", "NoneOnDryRun"]);
        assert_eq!(
            e.message,
            "webhooks[0].sideEffects: Unsupported value: \"Maybe\": supported values: \"None\", \"NoneOnDryRun\""
        );
    }
}
