//! The `admission.k8s.io/v1` `AdmissionReview` wire format: building the
//! request and checking the webhook's response.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::matching::{AdmissionAttributes, Invocation};

/// Builds the `AdmissionReview` sent to a webhook. `object`/`old_object` are
/// the (possibly converted) objects the webhook sees; `uid` identifies the call.
pub fn build_review(
    uid: &str,
    attrs: &AdmissionAttributes,
    invocation: &Invocation,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> Value {
    let user = &attrs.user_info;
    let mut user_info = serde_json::Map::new();
    if let Some(u) = &user.username {
        user_info.insert("username".into(), json!(u));
    }
    if let Some(u) = &user.uid {
        user_info.insert("uid".into(), json!(u));
    }
    if let Some(g) = &user.groups {
        user_info.insert("groups".into(), json!(g));
    }
    if let Some(e) = user.extra.as_ref().filter(|e| !e.is_empty()) {
        user_info.insert("extra".into(), json!(e));
    }
    let mut request = json!({
        "uid": uid,
        "kind": invocation.kind,
        "resource": invocation.resource,
        "requestKind": attrs.kind,
        "requestResource": attrs.resource,
        "name": attrs.name,
        "namespace": attrs.namespace,
        "operation": attrs.operation.as_str(),
        "userInfo": user_info,
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old_object.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run,
        "options": attrs.options.clone().unwrap_or(Value::Null),
    });
    if let Some(map) = request.as_object_mut() {
        if !invocation.sub_resource.is_empty() {
            map.insert("subResource".into(), json!(invocation.sub_resource));
        }
        if !attrs.sub_resource.is_empty() {
            map.insert("requestSubResource".into(), json!(attrs.sub_resource));
        }
        for key in ["name", "namespace"] {
            if map.get(key).and_then(Value::as_str) == Some("") {
                map.remove(key);
            }
        }
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    })
}

/// The `status` of a denial (a subset of `metav1.Status`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ResponseStatus {
    pub code: Option<i32>,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub details: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusDetails>,
}

/// A checked webhook response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewResponse {
    pub allowed: bool,
    pub status: Option<ResponseStatus>,
    /// The decoded JSONPatch (only from mutating webhooks).
    pub patch: Option<json_patch::Patch>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct WireReview {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<WireResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    status: Option<ResponseStatus>,
    patch: Option<String>,
    patch_type: Option<String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    audit_annotations: Option<BTreeMap<String, String>>,
}

/// Why a response is unusable (reported as `received invalid webhook response: <this>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("{0}")]
    Decode(String),
    #[error("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {0}")]
    WrongKind(String),
    #[error("webhook response was absent")]
    Absent,
    #[error("expected response.uid={expected:?}, got {got:?}")]
    UidMismatch { expected: String, got: String },
    #[error("validating webhooks may not return response.patch")]
    PatchFromValidating,
    #[error("webhook returned response.patch but not response.patchType")]
    PatchWithoutType,
    #[error("webhook returned invalid response.patchType of {0:?}")]
    BadPatchType(String),
    #[error("received undecodable patch in webhook response: {0}")]
    UndecodablePatch(String),
}

/// Parses and checks a webhook's response body against the request `uid`.
pub fn parse_response(uid: &str, mutating: bool, body: &[u8]) -> Result<ReviewResponse, ResponseError> {
    let review: WireReview = serde_json::from_slice(body).map_err(|e| ResponseError::Decode(e.to_string()))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(ResponseError::WrongKind(format!(
            "{}, Kind={}",
            review.api_version, review.kind
        )));
    }
    let r = review.response.ok_or(ResponseError::Absent)?;
    if r.uid != uid {
        return Err(ResponseError::UidMismatch {
            expected: uid.to_owned(),
            got: r.uid,
        });
    }
    let raw_patch = r.patch.filter(|p| !p.is_empty());
    let patch = match (raw_patch, r.patch_type.as_deref()) {
        (None, _) => None,
        (Some(_), _) if !mutating => return Err(ResponseError::PatchFromValidating),
        (Some(_), None) => return Err(ResponseError::PatchWithoutType),
        (Some(p), Some("JSONPatch")) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p.as_bytes())
                .map_err(|e| ResponseError::UndecodablePatch(e.to_string()))?;
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).map_err(|e| ResponseError::UndecodablePatch(e.to_string()))?;
            Some(patch)
        }
        (Some(_), Some(other)) => return Err(ResponseError::BadPatchType(other.to_owned())),
    };
    Ok(ReviewResponse {
        allowed: r.allowed,
        status: r.status,
        patch,
        warnings: r.warnings.unwrap_or_default(),
        audit_annotations: r.audit_annotations.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::{GroupVersionKind, GroupVersionResource, Operation};
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn attrs() -> AdmissionAttributes {
        AdmissionAttributes {
            operation: Operation::Update,
            kind: GroupVersionKind::new("", "v1", "Pod"),
            resource: GroupVersionResource::new("", "v1", "pods"),
            sub_resource: "status".into(),
            name: "p".into(),
            namespace: "ns".into(),
            user_info: UserInfo {
                username: Some("alice".into()),
                uid: Some("u-1".into()),
                groups: Some(vec!["system:authenticated".into()]),
                extra: Some([("scopes".to_string(), vec!["a".to_string()])].into()),
            },
            object: Some(json!({"kind": "Pod"})),
            old_object: Some(json!({"kind": "Pod", "old": true})),
            options: Some(json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"})),
            dry_run: true,
        }
    }

    #[test]
    fn request_fields() {
        let a = attrs();
        let inv = Invocation {
            resource: a.resource.clone(),
            sub_resource: a.sub_resource.clone(),
            kind: a.kind.clone(),
        };
        let r = build_review("abc", &a, &inv, a.object.as_ref(), a.old_object.as_ref());
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["kind"], "AdmissionReview");
        let q = &r["request"];
        assert_eq!(q["uid"], "abc");
        assert_eq!(q["kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
        assert_eq!(q["resource"], json!({"group": "", "version": "v1", "resource": "pods"}));
        assert_eq!(q["requestResource"], q["resource"]);
        assert_eq!(q["subResource"], "status");
        assert_eq!(q["requestSubResource"], "status");
        assert_eq!(q["name"], "p");
        assert_eq!(q["namespace"], "ns");
        assert_eq!(q["operation"], "UPDATE");
        assert_eq!(
            q["userInfo"],
            json!({"username": "alice", "uid": "u-1", "groups": ["system:authenticated"], "extra": {"scopes": ["a"]}})
        );
        assert_eq!(q["object"], json!({"kind": "Pod"}));
        assert_eq!(q["oldObject"]["old"], true);
        assert_eq!(q["dryRun"], true);
        assert_eq!(q["options"]["kind"], "UpdateOptions");
    }

    #[test]
    fn request_omits_empty_namespace() {
        let mut a = attrs();
        a.namespace.clear();
        a.sub_resource.clear();
        let inv = Invocation {
            resource: a.resource.clone(),
            sub_resource: String::new(),
            kind: a.kind.clone(),
        };
        let r = build_review("u", &a, &inv, None, None);
        assert!(r["request"].get("namespace").is_none());
        assert!(r["request"].get("subResource").is_none());
        assert_eq!(r["request"]["object"], Value::Null);
    }

    fn resp(v: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": v}))
            .unwrap()
    }

    #[test]
    fn response_allowed_with_patch() {
        let patch = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#);
        let body = resp(json!({
            "uid": "u", "allowed": true, "patchType": "JSONPatch", "patch": patch,
            "warnings": ["careful"], "auditAnnotations": {"k": "v"}
        }));
        let r = parse_response("u", true, &body).unwrap();
        assert!(r.allowed);
        assert_eq!(r.patch.as_ref().map(|p| p.0.len()), Some(1));
        assert_eq!(r.warnings, ["careful"]);
        assert_eq!(r.audit_annotations.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn response_errors() {
        assert_eq!(
            parse_response("u", true, &resp(json!({"uid": "other", "allowed": true}))),
            Err(ResponseError::UidMismatch {
                expected: "u".into(),
                got: "other".into()
            })
        );
        assert_eq!(
            parse_response(
                "u",
                false,
                &resp(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"}))
            ),
            Err(ResponseError::PatchFromValidating)
        );
        assert_eq!(
            parse_response("u", true, &resp(json!({"uid": "u", "allowed": true, "patch": "W10="}))),
            Err(ResponseError::PatchWithoutType)
        );
        assert_eq!(
            parse_response(
                "u",
                true,
                &resp(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "Merge"}))
            ),
            Err(ResponseError::BadPatchType("Merge".into()))
        );
        assert!(matches!(
            parse_response(
                "u",
                true,
                &resp(json!({"uid": "u", "allowed": true, "patch": "!!", "patchType": "JSONPatch"}))
            ),
            Err(ResponseError::UndecodablePatch(_))
        ));
        assert_eq!(
            parse_response(
                "u",
                true,
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#
            ),
            Err(ResponseError::Absent)
        );
        assert_eq!(
            parse_response("u", true, br#"{"apiVersion": "v1", "kind": "Status"}"#),
            Err(ResponseError::WrongKind("v1, Kind=Status".into()))
        );
        assert!(matches!(
            parse_response("u", true, b"\xff not json"),
            Err(ResponseError::Decode(_))
        ));
    }

    #[test]
    fn response_denied_status() {
        let r = parse_response(
            "u",
            false,
            &resp(json!({"uid": "u", "allowed": false, "status": {"code": 422, "message": "no", "reason": "Invalid"}})),
        )
        .unwrap();
        assert!(!r.allowed);
        let s = r.status.unwrap();
        assert_eq!(
            (s.code, s.message.as_deref(), s.reason.as_deref()),
            (Some(422), Some("no"), Some("Invalid"))
        );
    }
}
