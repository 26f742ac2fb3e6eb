//! ReplicaSets (apps/v1): 1 replica by default; the selector is required,
//! must match the template and is immutable; `status.replicas` is always
//! present.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{
    age, col, desired_replicas, i, label_selector_string, name, or_none, template_containers, Column, AGE, NAME,
};
use crate::kinds::{defaults, status, table, validation, Resource, Strategy, SCALE};
use crate::status::{ApiResult, FieldError};

/// The `ReplicaSet` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[status("ReplicaSet", "apps", "v1"), SCALE],
    field_labels: Some(&["metadata.name", "metadata.namespace", "status.replicas"]),
};

/// How `ReplicaSet` objects behave.
pub struct ReplicaSets;

impl Strategy for ReplicaSets {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::apps::v1::ReplicaSet>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::apps::v1::ReplicaSet>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            default(spec, "replicas", json!(1));
            defaults::default_template(spec);
        }
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            default(status, "replicas", json!(0));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::validate_workload(None, obj).0
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_status_update(old, new);
        errs.extend(validation::immutable(old, new, "/spec/selector", "spec.selector"));
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        validation::validate_workload(Some(old), new).0
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        (label == "status.replicas").then(|| {
            obj.pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string()
        })
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", 0, "Number of desired pods."),
    col("Current", "integer", 0, "Number of actually running pods."),
    col("Ready", "integer", 0, "Number of ready pods."),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    col("Selector", "string", 1, "Label selector for pods."),
];

fn row(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(rs);
    vec![
        name(rs),
        json!(desired_replicas(rs)),
        json!(i(rs, &["status", "replicas"])),
        json!(i(rs, &["status", "readyReplicas"])),
        age(rs, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            rs.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}
