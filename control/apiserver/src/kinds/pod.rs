//! Pods (core/v1): created `Pending` with their QoS class; the spec is
//! immutable but for images, `activeDeadlineSeconds`, tolerations and the
//! grace period; `metadata.generation` does not follow the spec; deletion of
//! a bound pod is graceful and finished by its node (delete with grace 0).
//! Fields the node cannot honour are refused ([`crate::kinds::pod_support`]).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::{defaults, pod_support, table, validation, status, BINDING, LOG, Resource, Strategy};
use crate::kinds::defaults::obj_mut;
use crate::kinds::validation::Errors;
use crate::kinds::strategy::openapi_ref;
use crate::status::{ApiResult, FieldError};

/// The `Pod` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[status("Pod", "", "v1"), BINDING, LOG],
    field_labels: Some(&[
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ]),
};

/// How `Pod` objects behave.
pub struct Pods;

impl Strategy for Pods {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: &Value) -> ApiResult<Option<Value>> {
        crate::meta::typed::round_trip::<k8s_openapi::api::core::v1::Pod>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Pod>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            defaults::default_pod_spec(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending", "qosClass": defaults::pod_qos_class(&obj["spec"])});
    }

    fn generation_tracks_spec(&self) -> bool {
        false
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validation::validate_pod_spec(&mut errs, obj.get("spec"), "spec");
        errs.0.extend(pod_support::refuse_unsupported(&RESOURCE, None, obj));
        errs.0
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_status_update(old, new);
        if mutable_spec(old) != mutable_spec(new) {
            errs.push(FieldError::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validation::validate_pod_spec(&mut errs, new.get("spec"), "spec");
        errs.0.extend(pod_support::refuse_unsupported(&RESOURCE, Some(old), new));
        errs.0
    }

    fn ready_to_remove(&self, obj: &Value) -> bool {
        // A pod in graceful deletion is removed by its node (delete with grace 0).
        obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0
    }

    fn begin_delete(&self, obj: &mut Value, grace: Option<i64>, pending: bool) -> bool {
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let terminal = matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let default_grace = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        let grace = if !bound || terminal { 0 } else { grace.unwrap_or(default_grace).max(0) };
        let current = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
        let effective = match current {
            Some(c) if deleting => c.min(grace),
            _ => grace,
        };
        if !deleting || current != Some(effective) {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("deletionGracePeriodSeconds".into(), json!(effective));
                m.insert("deletionTimestamp".into(), json!(rfc3339_in(effective)));
            }
        }
        pending || effective > 0
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(table::POD_COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::pod_cells(obj, now)
    }
}

/// The pod spec without the fields an update may change.
fn mutable_spec(pod: &Value) -> Value {
    let mut s = pod.get("spec").cloned().unwrap_or(Value::Null);
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("image");
            }
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("activeDeadlineSeconds");
        o.remove("tolerations");
        o.remove("terminationGracePeriodSeconds");
    }
    s
}

fn rfc3339_in(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
