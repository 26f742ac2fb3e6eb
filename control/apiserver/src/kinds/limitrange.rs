//! LimitRanges (core/v1): per-namespace bounds and defaults for the compute
//! resources of containers and pods and the storage of claims, enforced by
//! the LimitRanger admission step (`registry::limit_ranger`).
//!
//! Defaults as Kubernetes' `SetDefaults_LimitRangeItem`: for `Container`
//! items, a missing `default` (limit) is the `max`, a missing
//! `defaultRequest` is the `default`, else the `min`. Validation as
//! `ValidateLimitRange`: types are `Pod`, `Container` or
//! `PersistentVolumeClaim` and appear once each, `Pod` items have no
//! defaults, `PersistentVolumeClaim` items bound `storage`, and per
//! resource `min <= defaultRequest <= default <= max` and
//! `1 <= maxLimitRequestRatio <= max/min`. Table columns as kubectl:
//! `NAME CREATED AT`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};
use sluice_kube::resource_quota::Amount;

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{col, name, s, Column, NAME};
use crate::kinds::{table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `LimitRange` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "LimitRange",
    plural: "limitranges",
    singular: "limitrange",
    namespaced: true,
    short_names: &["limits"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// The item types a LimitRange may hold.
pub const TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

/// How `LimitRange` objects behave.
pub struct LimitRanges;

impl Strategy for LimitRanges {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::LimitRange>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::LimitRange>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(items) = obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else {
            return;
        };
        for item in items {
            default_item(item);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate(new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        vec![name(obj), json!(s(obj, &["metadata", "creationTimestamp"]))]
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    col("Created At", "date", 0, "Creation timestamp of the limit range."),
];

fn map_of(item: &Value, key: &str) -> Map<String, Value> {
    item.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Kubernetes' `SetDefaults_LimitRangeItem`.
fn default_item(item: &mut Value) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let mut default = map_of(item, "default");
    let mut request = map_of(item, "defaultRequest");
    for (k, v) in map_of(item, "max") {
        default.entry(k).or_insert(v);
    }
    for (k, v) in &default {
        request.entry(k.clone()).or_insert(v.clone());
    }
    for (k, v) in map_of(item, "min") {
        request.entry(k).or_insert(v);
    }
    if let Some(o) = item.as_object_mut() {
        if !default.is_empty() {
            o.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            o.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

fn amounts(item: &Value, key: &str, path: &str, errs: &mut Vec<FieldError>) -> Vec<(String, Amount, String)> {
    let mut out = Vec::new();
    for (k, v) in map_of(item, key) {
        match v.as_str().and_then(|q| Amount::parse(q).map(|a| (a, q.to_string()))) {
            Some((a, q)) => out.push((k, a, q)),
            None => errs.push(FieldError::invalid(
                format!("{path}.{key}[{k}]"),
                &v,
                "must be a valid quantity",
            )),
        }
    }
    out
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let items = obj
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let t = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if t.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), ""));
        } else if !TYPES.contains(&t) {
            errs.push(FieldError::not_supported(format!("{path}.type"), &json!(t), TYPES));
        } else if seen.iter().any(|s| s == t) {
            errs.push(FieldError::duplicate(format!("{path}.type"), &json!(t)));
        }
        seen.push(t.to_string());
        let min = amounts(item, "min", &path, &mut errs);
        let max = amounts(item, "max", &path, &mut errs);
        let default = amounts(item, "default", &path, &mut errs);
        let request = amounts(item, "defaultRequest", &path, &mut errs);
        let ratio = amounts(item, "maxLimitRequestRatio", &path, &mut errs);
        if t == "Pod" {
            if !default.is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{path}.default"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            if !request.is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{path}.defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        }
        if t == "PersistentVolumeClaim"
            && !min.iter().any(|(k, _, _)| k == "storage")
            && !max.iter().any(|(k, _, _)| k == "storage")
        {
            errs.push(FieldError::required(
                format!("{path}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let find = |list: &[(String, Amount, String)], k: &str| list.iter().find(|(n, _, _)| n == k).cloned();
        for (k, q, qs) in &min {
            if let Some((_, m, ms)) = find(&max, k) {
                if q.milli > m.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.min[{k}]"),
                        &json!(qs),
                        format!("min value {qs} is greater than max value {ms}"),
                    ));
                }
            }
        }
        for (k, q, qs) in &request {
            if let Some((_, m, ms)) = find(&min, k) {
                if m.milli > q.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.defaultRequest[{k}]"),
                        &json!(qs),
                        format!("min value {ms} is greater than default request value {qs}"),
                    ));
                }
            }
            if let Some((_, m, ms)) = find(&max, k) {
                if q.milli > m.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.defaultRequest[{k}]"),
                        &json!(qs),
                        format!("default request value {qs} is greater than max value {ms}"),
                    ));
                }
            }
            if let Some((_, d, ds)) = find(&default, k) {
                if q.milli > d.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.defaultRequest[{k}]"),
                        &json!(qs),
                        format!("default request value {qs} is greater than default limit value {ds}"),
                    ));
                }
            }
        }
        for (k, q, qs) in &default {
            if let Some((_, m, ms)) = find(&min, k) {
                if m.milli > q.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.default[{k}]"),
                        &json!(qs),
                        format!("min value {ms} is greater than default value {qs}"),
                    ));
                }
            }
            if let Some((_, m, ms)) = find(&max, k) {
                if q.milli > m.milli {
                    errs.push(FieldError::invalid(
                        format!("{path}.default[{k}]"),
                        &json!(qs),
                        format!("default value {qs} is greater than max value {ms}"),
                    ));
                }
            }
        }
        for (k, q, qs) in &ratio {
            if q.milli < 1000 {
                errs.push(FieldError::invalid(
                    format!("{path}.maxLimitRequestRatio[{k}]"),
                    &json!(qs),
                    format!("ratio {qs} is less than 1"),
                ));
            }
            if let (Some((_, mn, _)), Some((_, mx, _))) = (find(&min, k), find(&max, k)) {
                if mn.milli > 0 {
                    let bound = mx.milli as f64 / mn.milli as f64;
                    if q.milli as f64 / 1000.0 > bound {
                        errs.push(FieldError::invalid(
                            format!("{path}.maxLimitRequestRatio[{k}]"),
                            &json!(qs),
                            format!("ratio {qs} is greater than max/min = {bound:.6}"),
                        ));
                    }
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_defaults_follow_max_and_default() {
        let mut lr =
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}}]}});
        LimitRanges.default(&mut lr);
        assert_eq!(lr.pointer("/spec/limits/0/default"), Some(&json!({"cpu": "2"})));
        assert_eq!(
            lr.pointer("/spec/limits/0/defaultRequest"),
            Some(&json!({"cpu": "2", "memory": "10Mi"}))
        );
    }

    #[test]
    fn validates_ordering_and_types() {
        let bad = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Container"}
        ]}});
        let lines: Vec<String> = validate(&bad).iter().map(FieldError::to_line).collect();
        assert!(lines.contains(
            &"spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1".to_string()
        ));
        assert!(
            lines.contains(&"spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'".to_string())
        );
        assert!(lines.contains(&"spec.limits[2].type: Duplicate value: \"Container\"".to_string()));
    }
}
