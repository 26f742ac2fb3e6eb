//! ResourceQuotas (core/v1): per-namespace limits on object counts and
//! compute/storage requests, with a `/status` subresource.
//!
//! `spec.hard` holds the limits; `status.hard` (the limits in effect) and
//! `status.used` are written by the `resourcequota` controller of the
//! controller-manager and charged by the ResourceQuota admission step
//! (`registry::quota`), which only enforces quotas whose `status.hard` is
//! set, as Kubernetes does. Both count with `sluice_kube::resource_quota`.
//!
//! Validation as Kubernetes' `ValidateResourceQuota`: quantities are valid
//! and not negative (whole numbers for counts), resource names are
//! qualified names, scopes are known, `Terminating`/`NotTerminating` and
//! `BestEffort`/`NotBestEffort` do not both appear, and a scope only limits
//! the resources it applies to. The scopes evaluated are `Terminating`,
//! `NotTerminating`, `BestEffort`, `NotBestEffort` and `PriorityClass`;
//! `CrossNamespacePodAffinity` and `VolumeAttributesClass` are refused with
//! a 422 naming the field. Table columns as kubectl 1.32: `NAME AGE
//! REQUEST LIMIT`, each `resource: used/hard`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};
use sluice_kube::resource_quota::{Amount, SUPPORTED_SCOPES};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, Column, AGE, NAME};
use crate::kinds::{status, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `ResourceQuota` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ResourceQuota",
    plural: "resourcequotas",
    singular: "resourcequota",
    namespaced: true,
    short_names: &["quota"],
    categories: &[],
    subresources: &[status("ResourceQuota", "", "v1")],
    field_labels: None,
};

/// Every scope Kubernetes knows.
pub const KNOWN_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Resource names counted in whole units.
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// How `ResourceQuota` objects behave.
pub struct ResourceQuotas;

impl Strategy for ResourceQuotas {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::ResourceQuota>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::ResourceQuota>(generator)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate(new)
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check_list(new.pointer("/status/hard"), "status.hard");
        errs.extend(check_list(new.pointer("/status/used"), "status.used"));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (request, limit) = usage_cells(obj);
        vec![name(obj), age(obj, now), json!(request), json!(limit)]
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "Request",
        "string",
        0,
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        0,
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
];

/// `resource: used/hard` for every name in `spec.hard`, `limits.*` in the
/// second cell (Kubernetes' `printResourceQuota`).
pub fn usage_cells(obj: &Value) -> (String, String) {
    let mut names: Vec<&String> = obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    let shown = |section: &str, n: &str| {
        obj.pointer(&format!("/status/{section}"))
            .and_then(|m| m.get(n))
            .and_then(Value::as_str)
            .and_then(Amount::parse)
            .map_or_else(|| "0".to_string(), |a| a.format())
    };
    for n in names {
        let cell = format!("{n}: {}/{}", shown("used", n), shown("hard", n));
        if n.split('.').next() == Some("limits") && n.contains('.') {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

fn is_qualified_resource_name(n: &str) -> bool {
    let (prefix, name) = match n.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, n),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        // `count/<resource>.<group>` keeps its prefix `count`; other prefixes are DNS subdomains.
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    name_ok && prefix_ok
}

/// `hard`/`used` maps: qualified names, valid quantities, not negative,
/// whole numbers for counts.
fn check_list(list: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = list.and_then(Value::as_object) else {
        return errs;
    };
    for (k, v) in map {
        let field = format!("{path}[{k}]");
        if !is_qualified_resource_name(k) {
            errs.push(FieldError::invalid(
                field.clone(),
                &json!(k),
                "must be a standard resource type or fully qualified",
            ));
        }
        let Some(a) = v.as_str().and_then(Amount::parse) else {
            errs.push(FieldError::invalid(field, v, "must be a valid quantity"));
            continue;
        };
        if a.milli < 0 {
            errs.push(FieldError::invalid(
                field.clone(),
                v,
                "must be greater than or equal to 0",
            ));
        }
        let integer = INTEGER_RESOURCES.contains(&k.as_str()) || k.starts_with("count/");
        if integer && a.milli % 1000 != 0 {
            errs.push(FieldError::invalid(field, v, "must be an integer"));
        }
    }
    errs
}

/// Whether a scope may limit the resource `name` (Kubernetes'
/// `validateScopedResourceName`).
fn scope_allows(scope: &str, name: &str) -> bool {
    let pod_compute = matches!(name, "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-");
    match scope {
        "BestEffort" => matches!(name, "pods" | "count/pods"),
        _ => pod_compute,
    }
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = check_list(obj.pointer("/spec/hard"), "spec.hard");
    errs.extend(check_list(obj.pointer("/status/hard"), "status.hard"));
    errs.extend(check_list(obj.pointer("/status/used"), "status.used"));
    let hard: Vec<String> = obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut scopes: Vec<(String, String)> = Vec::new();
    if let Some(list) = obj.pointer("/spec/scopes").and_then(Value::as_array) {
        for (i, s) in list.iter().enumerate() {
            scopes.push((format!("spec.scopes[{i}]"), s.as_str().unwrap_or_default().to_string()));
        }
    }
    if let Some(list) = obj
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
    {
        for (i, e) in list.iter().enumerate() {
            let path = format!("spec.scopeSelector.matchExpressions[{i}]");
            let scope = e.get("scopeName").and_then(Value::as_str).unwrap_or_default();
            let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
            let values = e.get("values").and_then(Value::as_array).map_or(0, Vec::len);
            const OPS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
            if !OPS.contains(&op) {
                errs.push(FieldError::not_supported(format!("{path}.operator"), &json!(op), OPS));
            }
            let by_values = scope == "PriorityClass" && matches!(op, "In" | "NotIn");
            if by_values && values == 0 {
                errs.push(FieldError::required(
                    format!("{path}.values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                ));
            }
            if !by_values && values != 0 && OPS.contains(&op) {
                if scope == "PriorityClass" {
                    errs.push(FieldError::invalid(
                        format!("{path}.values"),
                        e.get("values").unwrap_or(&Value::Null),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                } else {
                    errs.push(FieldError::invalid(
                        format!("{path}.operator"),
                        &json!(op),
                        "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity or ResourceQuotaScopeVolumeAttributesClass",
                    ));
                }
            }
            scopes.push((format!("{path}.scopeName"), scope.to_string()));
        }
    }
    for (path, scope) in &scopes {
        if !KNOWN_SCOPES.contains(&scope.as_str()) {
            errs.push(FieldError::not_supported(path.clone(), &json!(scope), KNOWN_SCOPES));
        } else if !SUPPORTED_SCOPES.contains(&scope.as_str()) {
            errs.push(FieldError::forbidden(
                path.clone(),
                format!("scope {scope} is not supported by this cluster yet"),
            ));
        } else {
            for n in &hard {
                if !scope_allows(scope, n) {
                    errs.push(FieldError::invalid(
                        format!("spec.hard[{n}]"),
                        &json!(n),
                        "unsupported scope applied to resource",
                    ));
                }
            }
        }
    }
    let has = |s: &str| scopes.iter().any(|(_, x)| x == s);
    if (has("Terminating") && has("NotTerminating")) || (has("BestEffort") && has("NotBestEffort")) {
        let all: Vec<Value> = scopes.iter().map(|(_, s)| json!(s)).collect();
        errs.push(FieldError::invalid(
            "spec.scopes",
            &Value::Array(all),
            "conflicting scopes",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_quantities_and_scopes() {
        let ok = json!({"spec": {"hard": {"pods": "2", "requests.cpu": "500m", "count/deployments.apps": "3"}}});
        assert!(validate(&ok).is_empty());
        let bad = json!({"spec": {"hard": {"pods": "1.5", "memory": "-1"}}});
        let lines: Vec<String> = validate(&bad).iter().map(FieldError::to_line).collect();
        assert!(lines.contains(&"spec.hard[pods]: Invalid value: \"1.5\": must be an integer".to_string()));
        assert!(
            lines.contains(&"spec.hard[memory]: Invalid value: \"-1\": must be greater than or equal to 0".to_string())
        );
        let cross = json!({"spec": {"hard": {"pods": "1"}, "scopes": ["CrossNamespacePodAffinity"]}});
        assert_eq!(validate(&cross)[0].field, "spec.scopes[0]");
        let best = json!({"spec": {"hard": {"requests.cpu": "1"}, "scopes": ["BestEffort"]}});
        assert_eq!(validate(&best)[0].field, "spec.hard[requests.cpu]");
        let both = json!({"spec": {"hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]}});
        assert_eq!(validate(&both)[0].field, "spec.scopes");
    }

    #[test]
    fn cells_show_used_over_hard() {
        let q = json!({"spec": {"hard": {"pods": "2", "limits.cpu": "1", "requests.memory": "1Gi"}},
                       "status": {"hard": {"pods": "2", "limits.cpu": "1", "requests.memory": "1Gi"},
                                  "used": {"pods": "1", "limits.cpu": "500m", "requests.memory": "0"}}});
        assert_eq!(
            usage_cells(&q),
            (
                "pods: 1/2, requests.memory: 0/1Gi".to_string(),
                "limits.cpu: 500m/1".to_string()
            )
        );
    }
}
