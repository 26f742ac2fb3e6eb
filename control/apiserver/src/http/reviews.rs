//! The review kinds: objects created to ask a question and answered at
//! once, never stored (Kubernetes' `pkg/registry/authorization` and
//! `authentication/selfsubjectreview`).
//!
//! - `SelfSubjectAccessReview`: may *I* do this (a resource request or a
//!   non-resource URL)? — `kubectl auth can-i`.
//! - `SubjectAccessReview`: may this user and groups do it?
//! - `LocalSubjectAccessReview`: the same, kept to the namespace in the path.
//! - `SelfSubjectRulesReview`: what may I do in this namespace? —
//!   `kubectl auth can-i --list`.
//! - `SelfSubjectReview` (`authentication.k8s.io`): who am I? —
//!   `kubectl auth whoami`.
//!
//! Answers come from the same chain that authorizes requests (`authz`), so
//! `can-i` and the server never disagree.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{json, Map, Value};

use crate::http::auth::{RequestAttributes, UserInfo};
use crate::http::authz;
use crate::kinds::Resource;
use crate::registry::rbac::User;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult, FieldError};

/// Whether `r` is one of the review kinds this module answers.
pub fn is_review(r: &Resource) -> bool {
    r.group == "authorization.k8s.io" || (r.group == "authentication.k8s.io" && r.kind == "SelfSubjectReview")
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn present(v: &Value, key: &str) -> Option<Value> {
    v.get(key).filter(|a| !a.is_null()).cloned()
}

/// The attributes a review's `spec` asks about, or its validation errors.
fn attributes(spec: &Value) -> Result<RequestAttributes, Vec<FieldError>> {
    match (
        present(spec, "resourceAttributes"),
        present(spec, "nonResourceAttributes"),
    ) {
        (Some(_), Some(n)) => Err(vec![FieldError::invalid(
            "spec.nonResourceAttributes",
            &n,
            "cannot be specified in combination with resourceAttributes",
        )]),
        (None, None) => Err(vec![FieldError::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )]),
        (Some(r), None) => {
            let some = |k: &str| Some(text(&r, k).to_string()).filter(|s| !s.is_empty());
            Ok(RequestAttributes {
                verb: text(&r, "verb").into(),
                group: text(&r, "group").into(),
                resource: text(&r, "resource").into(),
                subresource: some("subresource"),
                namespace: some("namespace"),
                name: some("name"),
                path: None,
            })
        }
        (None, Some(n)) => Ok(RequestAttributes::non_resource(text(&n, "verb"), text(&n, "path"))),
    }
}

fn access_status(registry: &Registry, user: &User, attrs: &RequestAttributes) -> Value {
    match authz::decide(registry, user, attrs) {
        Ok(()) => json!({"allowed": true}),
        Err(reason) if reason.is_empty() => json!({"allowed": false}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    }
}

fn rules_status(registry: &Registry, user: &User, namespace: &str) -> Value {
    let ns = Some(namespace).filter(|n| !n.is_empty());
    let (rules, errors) = authz::rules_for(registry, user, ns);
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for PolicyRule {
        verbs,
        api_groups,
        resources,
        resource_names,
        non_resource_urls,
    } in rules
    {
        if non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": verbs, "nonResourceURLs": list(&non_resource_urls)}));
        } else {
            let mut r = json!({"verbs": verbs, "apiGroups": list(&api_groups), "resources": list(&resources)});
            if resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
                r["resourceNames"] = json!(resource_names);
            }
            resource_rules.push(r);
        }
    }
    let mut status =
        json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

/// Answers the review `obj` of kind `r` created by `user` (in namespace
/// `ns` for a LocalSubjectAccessReview): the object with its `status`.
pub fn answer(registry: &Registry, user: &UserInfo, r: &Resource, ns: Option<&str>, obj: Value) -> ApiResult<Value> {
    let Value::Object(mut o) = obj else {
        return Err(ApiError::bad_request("the request body must be an object"));
    };
    o.insert("apiVersion".into(), json!(r.api_version()));
    o.insert("kind".into(), json!(r.kind));
    if !o.get("metadata").is_some_and(Value::is_object) {
        o.insert("metadata".into(), Value::Object(Map::new()));
    }
    let spec = o.get("spec").cloned().unwrap_or(json!({}));
    let me = authz::subject(user);
    let invalid = |causes: Vec<FieldError>| ApiError::invalid(r, "", causes);
    let status = match r.kind {
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": me.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            json!({"userInfo": info})
        }
        "SelfSubjectRulesReview" => rules_status(registry, &me, text(&spec, "namespace")),
        "SelfSubjectAccessReview" => access_status(registry, &me, &attributes(&spec).map_err(invalid)?),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let mut errs = Vec::new();
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default();
            let subject = User {
                name: text(&spec, "user").to_string(),
                groups,
            };
            let attrs = match attributes(&spec) {
                Ok(a) => Some(a),
                Err(e) => {
                    errs.extend(e);
                    None
                }
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                errs.push(FieldError::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            if r.kind == "LocalSubjectAccessReview" {
                if let Some(n) = present(&spec, "nonResourceAttributes") {
                    errs.push(FieldError::invalid(
                        "spec.nonResourceAttributes",
                        &n,
                        "disallowed on this kind of request",
                    ));
                }
            }
            let Some(mut attrs) = attrs.filter(|_| errs.is_empty()) else {
                return Err(invalid(errs));
            };
            if r.kind == "LocalSubjectAccessReview" {
                let ns = ns.unwrap_or_default();
                match attrs.namespace.as_deref() {
                    None => attrs.namespace = Some(ns.to_string()),
                    Some(n) if n == ns => {}
                    Some(_) => {
                        return Err(ApiError::bad_request(format!(
                            "spec.resourceAttributes.namespace must match namespace: {ns}"
                        )))
                    }
                }
            }
            access_status(registry, &subject, &attrs)
        }
        other => return Err(ApiError::internal(format!("{other} is not a review kind"))),
    };
    o.insert("status".into(), status);
    Ok(Value::Object(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_kind_of_attributes() {
        let both =
            json!({"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/x", "verb": "get"}});
        let lines: Vec<String> = attributes(&both).unwrap_err().iter().map(FieldError::to_line).collect();
        assert_eq!(
            lines,
            ["spec.nonResourceAttributes: Invalid value: {\"path\":\"/x\",\"verb\":\"get\"}: cannot be specified in combination with resourceAttributes"]
        );
        assert!(attributes(&json!({})).is_err());
        let a = attributes(&json!({"resourceAttributes": {"verb": "get", "resource": "pods", "subresource": "log", "namespace": "dev"}})).unwrap();
        assert_eq!(a.combined_resource(), "pods/log");
        assert_eq!(a.namespace.as_deref(), Some("dev"));
        assert!(a.name.is_none());
        let n = attributes(&json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}})).unwrap();
        assert_eq!(n.path.as_deref(), Some("/healthz"));
    }
}
