//! HorizontalPodAutoscalers (autoscaling/v2, the storage version): a target
//! with a `/scale` subresource, replica bounds, metrics and scaling
//! behavior; the horizontal-pod-autoscaler controller writes `status`.
//!
//! Defaults as Kubernetes' v2 `SetDefaults_HorizontalPodAutoscaler`:
//! `minReplicas` 1, no metrics means CPU utilization 80 %, and a `behavior`
//! that is set gets every unset rule filled (scale-up: no stabilization,
//! `Max` of 4 pods or 100 % per 15 s; scale-down: `Max` of 100 % per 15 s,
//! its stabilization window left unset so the controller's
//! `--horizontal-pod-autoscaler-downscale-stabilization` applies).
//! Validation as `ValidateHorizontalPodAutoscaler` (same paths and texts).
//!
//! Only `Resource` metrics (CPU, memory, from `metrics.k8s.io`) are
//! honoured: `Pods`, `Object`, `External` and `ContainerResource` metrics
//! need a custom or external metrics API this cluster does not serve, and
//! are refused with a 422 naming `spec.metrics[i].type`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, i, name, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{status, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The autoscaling/v2 `HorizontalPodAutoscaler` resource.
pub static RESOURCE: Resource = Resource {
    group: "autoscaling",
    version: "v2",
    kind: "HorizontalPodAutoscaler",
    plural: "horizontalpodautoscalers",
    singular: "horizontalpodautoscaler",
    namespaced: true,
    short_names: &["hpa"],
    categories: &["all"],
    subresources: &[status("HorizontalPodAutoscaler", "autoscaling", "v2")],
    field_labels: None,
};

/// Kubernetes' `MaxPeriodSeconds` of a scaling policy.
pub const MAX_PERIOD_SECONDS: i64 = 1800;
/// Kubernetes' `MaxStabilizationWindowSeconds`.
pub const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
/// The CPU utilization target of an autoscaler that names no metric.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Metric source types Kubernetes knows, sorted as its error lists them.
const METRIC_SOURCE_TYPES: &[&str] = &["ContainerResource", "External", "Object", "Pods", "Resource"];
/// The metric source types this cluster honours.
const HONOURED_METRIC_SOURCE_TYPES: &[&str] = &["Resource"];
const SELECT_POLICIES: &[&str] = &["Disabled", "Max", "Min"];
const POLICY_TYPES: &[&str] = &["Percent", "Pods"];

/// How autoscaling/v2 `HorizontalPodAutoscaler` objects behave.
pub struct HorizontalPodAutoscalers;

impl Strategy for HorizontalPodAutoscalers {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(generator)
    }

    fn default(&self, obj: &mut Value) {
        set_defaults(obj);
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            // Go writes desiredReplicas without omitempty.
            default(status, "desiredReplicas", json!(0));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null), 1)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        // An autoscaler already at minReplicas 0 may keep it (Kubernetes).
        let lower = if old.pointer("/spec/minReplicas").and_then(Value::as_i64) == Some(0) {
            0
        } else {
            1
        };
        validate_spec(new.get("spec").unwrap_or(&Value::Null), lower)
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate_status(new.get("status").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

// ---- Defaults ----

fn scale_up_rules() -> Value {
    json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    })
}

fn scale_down_rules() -> Value {
    json!({
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    })
}

/// Kubernetes' `copyHPAScalingRules`: the set fields of `given` over `defaults`.
fn fill_rules(given: Option<&Value>, mut defaults: Value) -> Value {
    if let (Some(given), Some(d)) = (given.and_then(Value::as_object), defaults.as_object_mut()) {
        for key in ["selectPolicy", "stabilizationWindowSeconds", "policies", "tolerance"] {
            if let Some(v) = given.get(key).filter(|v| !v.is_null()) {
                d.insert(key.into(), v.clone());
            }
        }
    }
    defaults
}

/// autoscaling/v2 defaults (also applied to objects written through v1).
pub fn set_defaults(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else { return };
    default(spec, "minReplicas", json!(1));
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec.insert(
            "metrics".into(),
            json!([{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}},
            }]),
        );
    }
    if let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let up = fill_rules(behavior.get("scaleUp"), scale_up_rules());
        let down = fill_rules(behavior.get("scaleDown"), scale_down_rules());
        behavior.insert("scaleUp".into(), up);
        behavior.insert("scaleDown".into(), down);
    }
}

// ---- Validation ----

fn set<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

/// A quantity's sign (`None`: not a quantity).
fn sign(v: &Value) -> Option<i64> {
    let milli = match v {
        Value::String(q) => sluice_kube::quantity::parse_milli(q).ok()?,
        Value::Number(n) => sluice_kube::quantity::parse_milli(&n.to_string()).ok()?,
        _ => return None,
    };
    Some(milli.signum())
}

/// `path.IsValidPathSegmentName`.
fn path_segment_errors(errs: &mut Errors, value: &str, path: &str) {
    let why = if value == "." || value == ".." {
        Some(format!("may not be '{value}'"))
    } else {
        ["/", "%"]
            .into_iter()
            .find(|bad| value.contains(bad))
            .map(|bad| format!("may not contain '{bad}'"))
    };
    if let Some(why) = why {
        errs.push(FieldError::invalid(path, &json!(value), why));
    }
}

fn validate_reference(errs: &mut Errors, r: &Value, path: &str) {
    for key in ["kind", "name"] {
        match r.get(key).and_then(Value::as_str).unwrap_or_default() {
            "" => errs.push(FieldError::required(format!("{path}.{key}"), "")),
            v => path_segment_errors(errs, v, &format!("{path}.{key}")),
        }
    }
}

/// Kubernetes' `validateHorizontalPodAutoscalerSpec` (`min_lower` is 1, or 0
/// for an autoscaler that already scales to zero), plus the refusal of the
/// metric types this cluster cannot honour.
pub fn validate_spec(spec: &Value, min_lower: i64) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let min = set(spec, "minReplicas").and_then(Value::as_i64);
    let max = set(spec, "maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if let Some(min) = min.filter(|m| *m < min_lower) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            &json!(min),
            format!("must be greater than or equal to {min_lower}"),
        ));
    }
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|min| max < min) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    validate_reference(
        &mut errs,
        spec.get("scaleTargetRef").unwrap_or(&Value::Null),
        "spec.scaleTargetRef",
    );
    let metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut scales_to_zero_by = false;
    for (idx, m) in metrics.iter().enumerate() {
        validate_metric(&mut errs, m, &format!("spec.metrics[{idx}]"));
        scales_to_zero_by |= matches!(m.get("type").and_then(Value::as_str), Some("Object" | "External"));
    }
    if min == Some(0) && !scales_to_zero_by {
        errs.push(FieldError::forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    if let Some(behavior) = set(spec, "behavior") {
        for (key, field) in [("scaleUp", "scaleUp"), ("scaleDown", "scaleDown")] {
            if let Some(rules) = set(behavior, key) {
                validate_rules(&mut errs, rules, &format!("spec.behavior.{field}"));
            }
        }
    }
    errs.0
}

fn validate_rules(errs: &mut Errors, rules: &Value, path: &str) {
    if let Some(w) = set(rules, "stabilizationWindowSeconds") {
        let n = w.as_i64().unwrap_or(0);
        if n < 0 {
            errs.push(FieldError::invalid(
                format!("{path}.stabilizationWindowSeconds"),
                w,
                "must be greater than or equal to zero",
            ));
        }
        if n > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldError::invalid(
                format!("{path}.stabilizationWindowSeconds"),
                w,
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(p) = set(rules, "selectPolicy") {
        if !p.as_str().is_some_and(|p| SELECT_POLICIES.contains(&p)) {
            errs.push(FieldError::not_supported(
                format!("{path}.selectPolicy"),
                p,
                SELECT_POLICIES,
            ));
        }
    }
    if let Some(t) = set(rules, "tolerance") {
        if sign(t).is_none_or(|s| s < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.tolerance"),
                t,
                "must be greater than or equal to zero",
            ));
        }
    }
    let policies = rules
        .get("policies")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if policies.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (idx, p) in policies.iter().enumerate() {
        let pp = format!("{path}.policies[{idx}]");
        let ty = p.get("type").cloned().unwrap_or(json!(""));
        if !ty.as_str().is_some_and(|t| POLICY_TYPES.contains(&t)) {
            errs.push(FieldError::not_supported(format!("{pp}.type"), &ty, POLICY_TYPES));
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            errs.push(FieldError::invalid(
                format!("{pp}.value"),
                &json!(value),
                "must be greater than zero",
            ));
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if period <= 0 {
            errs.push(FieldError::invalid(
                format!("{pp}.periodSeconds"),
                &json!(period),
                "must be greater than zero",
            ));
        }
        if period > MAX_PERIOD_SECONDS {
            errs.push(FieldError::invalid(
                format!("{pp}.periodSeconds"),
                &json!(period),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

/// Kubernetes' `validateMetricSpec`, then the refusal of a known type this
/// cluster does not honour.
fn validate_metric(errs: &mut Errors, m: &Value, path: &str) {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
    if ty.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric source type",
        ));
    }
    let present: Vec<&str> = ["object", "external", "pods", "resource", "containerResource"]
        .into_iter()
        .filter(|k| set(m, k).is_some())
        .collect();
    if let Some(first) = present.first() {
        if *first == "resource" {
            validate_resource_source(errs, &m["resource"], &format!("{path}.resource"));
        }
    }
    let expected = match ty {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "External" => "external",
        "ContainerResource" => "containerResource",
        _ => {
            errs.push(FieldError::not_supported(
                format!("{path}.type"),
                &json!(ty),
                METRIC_SOURCE_TYPES,
            ));
            ""
        }
    };
    if !expected.is_empty() && !present.contains(&expected) {
        errs.push(FieldError::required(
            format!("{path}.{expected}"),
            "must populate information for the given metric source",
        ));
    }
    if present.len() != 1 {
        for other in present.iter().filter(|p| **p != expected) {
            errs.push(FieldError::forbidden(
                format!("{path}.{other}"),
                "must populate the given metric source only",
            ));
        }
    }
    if !expected.is_empty() && !HONOURED_METRIC_SOURCE_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            &json!(ty),
            HONOURED_METRIC_SOURCE_TYPES,
        ));
    }
}

fn validate_resource_source(errs: &mut Errors, src: &Value, path: &str) {
    if src.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "must specify a resource name",
        ));
    }
    let target = src.get("target").unwrap_or(&Value::Null);
    validate_target(errs, target, &format!("{path}.target"));
    let utilization = set(target, "averageUtilization");
    let average = set(target, "averageValue");
    if utilization.is_none() && average.is_none() {
        errs.push(FieldError::required(
            format!("{path}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
    if utilization.is_some() && average.is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        ));
    }
}

/// Kubernetes' `validateMetricTarget`.
fn validate_target(errs: &mut Errors, t: &Value, path: &str) {
    let ty = t.get("type").and_then(Value::as_str).unwrap_or_default();
    if ty.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric target type",
        ));
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        errs.push(FieldError::invalid(
            format!("{path}.type"),
            &json!(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for key in ["value", "averageValue"] {
        if let Some(q) = set(t, key) {
            if sign(q) != Some(1) {
                errs.push(FieldError::invalid(format!("{path}.{key}"), q, "must be positive"));
            }
        }
    }
    if let Some(u) = set(t, "averageUtilization") {
        if u.as_i64().unwrap_or(0) < 1 {
            errs.push(FieldError::invalid(
                format!("{path}.averageUtilization"),
                u,
                "must be greater than 0",
            ));
        }
    }
}

/// Kubernetes' `ValidateHorizontalPodAutoscalerStatusUpdate`.
pub fn validate_status(status: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["currentReplicas", "desiredReplicas"] {
        if let Some(n) = status.get(key).filter(|n| n.as_i64().is_some_and(|n| n < 0)) {
            errs.push(FieldError::invalid(
                format!("status.{key}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", 0, "Reference to the target."),
    col("Targets", "string", 0, "The current and target metrics."),
    col("MinPods", "string", 0, "The minimum number of replicas."),
    col("MaxPods", "integer", 0, "The maximum number of replicas."),
    col("Replicas", "integer", 0, "The current number of replicas."),
    AGE,
];

/// kubectl's `formatHPAMetrics`: at most two `name: current/target`
/// entries, then `+ N more...`.
pub fn format_metrics(spec: &Value, status: &Value) -> String {
    let specs = spec
        .get("metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = status
        .get("currentMetrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut list = Vec::new();
    for (idx, m) in specs.iter().enumerate() {
        let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
        let key = match ty {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "Pods" => "pods",
            "Object" => "object",
            "External" => "external",
            _ => continue,
        };
        let src = m.get(key).unwrap_or(&Value::Null);
        let target = src.get("target").unwrap_or(&Value::Null);
        let current = statuses
            .get(idx)
            .and_then(|s| s.get(key))
            .and_then(|s| s.get("current"));
        let q = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let unknown = || "<unknown>".to_string();
        let entry = if let Some(avg) = q(target.get("averageValue")) {
            let cur = q(current.and_then(|c| c.get("averageValue"))).unwrap_or_else(unknown);
            format!("{cur}/{avg}")
        } else if let Some(value) = q(target.get("value")) {
            let cur = q(current.and_then(|c| c.get("value"))).unwrap_or_else(unknown);
            format!("{cur}/{value}")
        } else {
            let cur = current
                .and_then(|c| c.get("averageUtilization"))
                .and_then(Value::as_i64)
                .map(|u| format!("{u}%"))
                .unwrap_or_else(unknown);
            let tgt = target
                .get("averageUtilization")
                .and_then(Value::as_i64)
                .map(|u| format!("{u}%"))
                .unwrap_or_else(|| "<auto>".into());
            format!("{cur}/{tgt}")
        };
        let name = match ty {
            "Resource" | "ContainerResource" => src.get("name").and_then(Value::as_str).unwrap_or_default(),
            _ => src.pointer("/metric/name").and_then(Value::as_str).unwrap_or_default(),
        };
        list.push(if name.is_empty() {
            entry
        } else {
            format!("{name}: {entry}")
        });
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}

/// One Table row of an autoscaling/v2 object.
pub fn row(hpa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = hpa.get("spec").unwrap_or(&Value::Null);
    let reference = format!(
        "{}/{}",
        spec.pointer("/scaleTargetRef/kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        spec.pointer("/scaleTargetRef/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    let min = spec
        .get("minReplicas")
        .and_then(Value::as_i64)
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".into());
    vec![
        name(hpa),
        json!(reference),
        json!(format_metrics(spec, hpa.get("status").unwrap_or(&Value::Null))),
        json!(min),
        json!(i(hpa, &["spec", "maxReplicas"])),
        json!(i(hpa, &["status", "currentReplicas"])),
        age(hpa, now),
    ]
}

/// `obj`'s `metadata.annotations`, created if missing.
pub fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = obj_mut(obj, "metadata")?;
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta.insert("annotations".into(), json!({}));
    }
    meta.get_mut("annotations").and_then(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spec: Value) -> Vec<String> {
        validate_spec(&spec, 1).iter().map(FieldError::to_line).collect()
    }

    fn valid() -> Value {
        json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        })
    }

    #[test]
    fn defaults_fill_min_metrics_and_a_given_behavior() {
        let mut hpa = json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}});
        set_defaults(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 5);
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["value"], 100);
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"], 0);
        let mut plain = json!({"spec": {"maxReplicas": 3}});
        set_defaults(&mut plain);
        assert!(plain["spec"].get("behavior").is_none());
    }

    #[test]
    fn bounds_reference_and_targets_are_checked_as_kubernetes() {
        assert!(lines(valid()).is_empty());
        let mut s = valid();
        s["maxReplicas"] = json!(0);
        s["minReplicas"] = json!(0);
        s["scaleTargetRef"]["name"] = json!("a/b");
        s["metrics"][0]["resource"]["target"]["averageUtilization"] = json!(0);
        assert_eq!(
            lines(s),
            [
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'",
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
            ]
        );
        let mut s = valid();
        s["minReplicas"] = json!(5);
        assert_eq!(
            lines(s),
            ["spec.maxReplicas: Invalid value: 4: must be greater than or equal to `minReplicas`"]
        );
    }

    #[test]
    fn unhonoured_metric_types_are_refused_by_field() {
        let mut s = valid();
        s["metrics"] = json!([{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}]);
        assert_eq!(
            lines(s),
            [r#"spec.metrics[0].type: Unsupported value: "External": supported values: "Resource""#]
        );
        let mut s = valid();
        s["metrics"] = json!([{"type": "Bogus"}]);
        assert_eq!(
            lines(s),
            [
                r#"spec.metrics[0].type: Unsupported value: "Bogus": supported values: "ContainerResource", "External", "Object", "Pods", "Resource""#
            ]
        );
    }

    #[test]
    fn behavior_rules_are_checked() {
        let mut s = valid();
        s["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Most",
            "policies": [{"type": "Pod", "value": 0, "periodSeconds": 2000}]}});
        assert_eq!(
            lines(s),
            [
                "spec.behavior.scaleDown.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
                r#"spec.behavior.scaleDown.selectPolicy: Unsupported value: "Most": supported values: "Disabled", "Max", "Min""#,
                r#"spec.behavior.scaleDown.policies[0].type: Unsupported value: "Pod": supported values: "Percent", "Pods""#,
                "spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero",
                "spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 2000: must be less than or equal to 1800",
            ]
        );
    }

    #[test]
    fn targets_column_reads_like_kubectl() {
        let hpa = json!({"metadata": {"name": "web"}, "spec": valid(), "status": {"currentReplicas": 2,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 73, "averageValue": "73m"}}}]}});
        let cells = row(&hpa, Utc::now());
        assert_eq!(
            cells[..6],
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 73%/50%"),
                json!("1"),
                json!(4),
                json!(2)
            ]
        );
        let mut three = valid();
        three["metrics"] = json!([three["metrics"][0], {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}, three["metrics"][0]]);
        assert_eq!(
            format_metrics(&three, &Value::Null),
            "cpu: <unknown>/50%, memory: <unknown>/100Mi + 1 more..."
        );
        let names: Vec<String> = HorizontalPodAutoscalers
            .columns()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
            .collect();
        assert_eq!(
            names,
            ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        );
    }
}
