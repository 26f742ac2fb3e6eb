//! HorizontalPodAutoscalers (autoscaling/v1): a second view of the stored
//! autoscaling/v2 objects, converted as Kubernetes' v1 conversion does
//! (what `kubectl autoscale` of kubectl 1.32 writes).
//!
//! v1 has one metric, `targetCPUUtilizationPercentage` (the first v2
//! `Resource` cpu metric with an `averageUtilization` target), and reports
//! `currentCPUUtilizationPercentage`. What v1 cannot hold travels in
//! Kubernetes' annotations, so a v1 read-modify-write keeps it: the other
//! metrics in `autoscaling.alpha.kubernetes.io/metrics` (v1 `MetricSpec`s,
//! e.g. `{"type":"Resource","resource":{"name":"memory","targetAverageValue":"100Mi"}}`),
//! `behavior`, `current-metrics` and `conditions`. Only `Resource` metrics
//! are converted in those annotations (the only type v2 accepts here);
//! others in a v1 annotation are dropped.
//!
//! Validation and defaults are v2's, run on the converted object, so errors
//! name the v2 field paths as Kubernetes' (internal-version) errors do.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::defaults::obj_mut;
use crate::kinds::horizontalpodautoscaler::{self as v2, HorizontalPodAutoscalers};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::{status, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The autoscaling/v1 `HorizontalPodAutoscaler` resource.
pub static RESOURCE: Resource = Resource {
    group: "autoscaling",
    version: "v1",
    kind: "HorizontalPodAutoscaler",
    plural: "horizontalpodautoscalers",
    singular: "horizontalpodautoscaler",
    namespaced: true,
    short_names: &["hpa"],
    categories: &["all"],
    subresources: &[status("HorizontalPodAutoscaler", "autoscaling", "v1")],
    field_labels: None,
};

/// Annotation with the v2 metrics v1 cannot express.
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Annotation with the v2 `status.currentMetrics`.
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Annotation with the v2 `status.conditions`.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// Annotation with the v2 `spec.behavior`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// How autoscaling/v1 `HorizontalPodAutoscaler` objects behave.
pub struct HorizontalPodAutoscalersV1;

impl Strategy for HorizontalPodAutoscalersV1 {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn storage_resource(&self) -> &'static Resource {
        &v2::RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(generator)
    }

    fn converts_on_read(&self) -> bool {
        true
    }

    fn on_read(&self, obj: &mut Value) {
        if obj.get("apiVersion").and_then(Value::as_str) != Some("autoscaling/v1") {
            *obj = to_v1(obj);
        }
    }

    fn to_storage(&self, obj: &mut Value) {
        *obj = to_v2(obj);
        v2::set_defaults(obj);
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            crate::kinds::defaults::default(spec, "minReplicas", json!(1));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        HorizontalPodAutoscalers.validate(&to_v2(obj))
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        HorizontalPodAutoscalers.validate_update(&to_v2(old), &to_v2(new))
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        v2::validate_status(new.get("status").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        HorizontalPodAutoscalers.columns()
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        v2::row(&to_v2(obj), now)
    }
}

fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer("/resource/target/averageUtilization")
            .is_some_and(|u| !u.is_null())
}

/// A v2 Resource `MetricSpec` as v1 writes it in its annotation.
fn metric_to_v1(m: &Value) -> Option<Value> {
    let r = m.get("resource")?;
    let mut out = json!({"name": r.get("name")});
    if let Some(u) = r.pointer("/target/averageUtilization") {
        out["targetAverageUtilization"] = u.clone();
    }
    if let Some(v) = r.pointer("/target/averageValue") {
        out["targetAverageValue"] = v.clone();
    }
    Some(json!({"type": "Resource", "resource": out}))
}

/// A v1 annotation `MetricSpec` as v2.
fn metric_to_v2(m: &Value) -> Option<Value> {
    if m.get("type").and_then(Value::as_str) != Some("Resource") {
        return None;
    }
    let r = m.get("resource")?;
    let target = if let Some(u) = r.get("targetAverageUtilization").filter(|v| !v.is_null()) {
        json!({"type": "Utilization", "averageUtilization": u})
    } else {
        json!({"type": "AverageValue", "averageValue": r.get("targetAverageValue")})
    };
    Some(json!({"type": "Resource", "resource": {"name": r.get("name"), "target": target}}))
}

fn status_to_v1(m: &Value) -> Option<Value> {
    let r = m.get("resource")?;
    let mut out = json!({"name": r.get("name")});
    if let Some(u) = r.pointer("/current/averageUtilization") {
        out["currentAverageUtilization"] = u.clone();
    }
    out["currentAverageValue"] = r.pointer("/current/averageValue").cloned().unwrap_or(json!("0"));
    Some(json!({"type": "Resource", "resource": out}))
}

fn status_to_v2(m: &Value) -> Option<Value> {
    if m.get("type").and_then(Value::as_str) != Some("Resource") {
        return None;
    }
    let r = m.get("resource")?;
    let mut current = Map::new();
    if let Some(u) = r.get("currentAverageUtilization").filter(|v| !v.is_null()) {
        current.insert("averageUtilization".into(), u.clone());
    }
    if let Some(v) = r.get("currentAverageValue").filter(|v| !v.is_null()) {
        current.insert("averageValue".into(), v.clone());
    }
    Some(json!({"type": "Resource", "resource": {"name": r.get("name"), "current": current}}))
}

fn annotate(obj: &mut Value, key: &str, value: &Value) {
    if let Some(a) = v2::annotations_mut(obj) {
        a.insert(key.into(), json!(value.to_string()));
    }
}

/// A stored (v2) object as autoscaling/v1 shows it.
pub fn to_v1(obj: &Value) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!("autoscaling/v1");
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = obj.get("status").cloned();
    let metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut v1_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef"),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    });
    if let Some(min) = spec.get("minReplicas") {
        v1_spec["minReplicas"] = min.clone();
    }
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        v1_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"].clone();
    }
    out["spec"] = v1_spec;
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .filter_map(metric_to_v1)
        .collect();
    if !others.is_empty() {
        annotate(&mut out, METRICS_ANNOTATION, &json!(others));
    }
    if let Some(behavior) = spec.get("behavior").filter(|b| !b.is_null()) {
        annotate(&mut out, BEHAVIOR_ANNOTATION, behavior);
    }
    if let Some(st) = status {
        let current = st
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut v1_status = json!({
            "currentReplicas": st.get("currentReplicas").cloned().unwrap_or(json!(0)),
            "desiredReplicas": st.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        for key in ["observedGeneration", "lastScaleTime"] {
            if let Some(v) = st.get(key).filter(|v| !v.is_null()) {
                v1_status[key] = v.clone();
            }
        }
        if let Some(u) = current
            .iter()
            .filter(|m| m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
            .find_map(|m| m.pointer("/resource/current/averageUtilization"))
        {
            v1_status["currentCPUUtilizationPercentage"] = u.clone();
        }
        let current: Vec<Value> = current.iter().filter_map(status_to_v1).collect();
        if !current.is_empty() {
            annotate(&mut out, CURRENT_METRICS_ANNOTATION, &json!(current));
        }
        if let Some(conditions) = st.get("conditions").and_then(Value::as_array).filter(|c| !c.is_empty()) {
            annotate(&mut out, CONDITIONS_ANNOTATION, &json!(conditions));
        }
        out["status"] = v1_status;
    }
    out
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    let annotations = meta.get_mut("annotations")?.as_object_mut()?;
    let raw = annotations.remove(key)?;
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    serde_json::from_str(raw.as_str()?).ok()
}

/// An autoscaling/v1 object as it is stored (autoscaling/v2).
pub fn to_v2(obj: &Value) -> Value {
    let mut out = obj.clone();
    out["apiVersion"] = json!("autoscaling/v2");
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let mut metrics: Vec<Value> = take_annotation(&mut out, METRICS_ANNOTATION)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(metric_to_v2)
        .collect();
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage").filter(|v| !v.is_null()) {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    let mut v2_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef"),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    });
    if let Some(min) = spec.get("minReplicas") {
        v2_spec["minReplicas"] = min.clone();
    }
    if !metrics.is_empty() {
        v2_spec["metrics"] = json!(metrics);
    }
    if let Some(behavior) = take_annotation(&mut out, BEHAVIOR_ANNOTATION) {
        v2_spec["behavior"] = behavior;
    }
    out["spec"] = v2_spec;
    let current = take_annotation(&mut out, CURRENT_METRICS_ANNOTATION);
    let conditions = take_annotation(&mut out, CONDITIONS_ANNOTATION);
    if let Some(st) = obj.get("status").filter(|s| s.is_object()) {
        let mut v2_status = json!({
            "desiredReplicas": st.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        // v2's currentReplicas is omitempty.
        if let Some(n) = st.get("currentReplicas").filter(|n| n.as_i64().is_some_and(|n| n != 0)) {
            v2_status["currentReplicas"] = n.clone();
        }
        for key in ["observedGeneration", "lastScaleTime"] {
            if let Some(v) = st.get(key).filter(|v| !v.is_null()) {
                v2_status[key] = v.clone();
            }
        }
        let mut current: Vec<Value> = current
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(status_to_v2)
            .collect();
        if current.is_empty() {
            if let Some(u) = st.get("currentCPUUtilizationPercentage").filter(|v| !v.is_null()) {
                current.push(
                    json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}),
                );
            }
        }
        if !current.is_empty() {
            v2_status["currentMetrics"] = json!(current);
        }
        if let Some(c) = conditions {
            v2_status["conditions"] = c;
        }
        out["status"] = v2_status;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 4,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "20Mi"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 73, "averageValue": "73m"}}},
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "SucceededRescale", "message": "m"}],
            },
        })
    }

    #[test]
    fn v1_shows_the_cpu_target_and_keeps_the_rest_in_annotations() {
        let v1 = to_v1(&stored());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 73);
        assert!(v1["spec"].get("metrics").is_none());
        let a = &v1["metadata"]["annotations"];
        assert_eq!(
            a[METRICS_ANNOTATION],
            r#"[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"100Mi"}}]"#
        );
        assert!(a[CONDITIONS_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .contains("SucceededRescale"));
    }

    #[test]
    fn v1_round_trip_keeps_the_v2_object() {
        let mut back = to_v2(&to_v1(&stored()));
        // v1 puts the other metrics first, the CPU one last, as Kubernetes.
        assert_eq!(back, stored());
        // A plain v1 object (kubectl autoscale) becomes a v2 CPU metric.
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
        back = to_v2(&v1);
        assert_eq!(
            back["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 50})
        );
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn v1_validation_names_v2_paths() {
        let v1 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 0, "targetCPUUtilizationPercentage": 0}});
        let errs: Vec<String> = HorizontalPodAutoscalersV1
            .validate(&v1)
            .iter()
            .map(FieldError::to_line)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
            ]
        );
    }
}
