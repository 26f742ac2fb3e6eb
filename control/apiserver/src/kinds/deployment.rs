//! Deployments (apps/v1): defaults as Kubernetes (1 replica, RollingUpdate
//! 25%/25%, history 10, progress deadline 600 s); the selector is required,
//! must match the template and is immutable.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{
    age, col, desired_replicas, i, label_selector_string, name, or_none, template_containers, Column, AGE, NAME,
};
use crate::kinds::validation::Errors;
use crate::kinds::{defaults, status, table, validation, Resource, Strategy, SCALE};
use crate::status::{ApiResult, FieldError};

/// The `Deployment` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[status("Deployment", "apps", "v1"), SCALE],
    field_labels: None,
};

/// How `Deployment` objects behave.
pub struct Deployments;

impl Strategy for Deployments {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::apps::v1::Deployment>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::apps::v1::Deployment>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "replicas", json!(1));
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "progressDeadlineSeconds", json!(600));
        default(spec, "strategy", json!({}));
        if let Some(st) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
            default(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default(st, "rollingUpdate", json!({}));
                if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                    default(ru, "maxUnavailable", json!("25%"));
                    default(ru, "maxSurge", json!("25%"));
                }
            }
        }
        defaults::default_template(spec);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_status_update(old, new);
        errs.extend(validation::immutable(old, new, "/spec/selector", "spec.selector"));
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        check(Some(old), new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn validate_deployment_strategy(errs: &mut Errors, spec: Option<&Value>) {
    let Some(strategy) = spec.and_then(|s| s.get("strategy")) else {
        return;
    };
    match strategy.get("type").and_then(Value::as_str) {
        Some("RollingUpdate") | None => {}
        Some("Recreate") => {
            if strategy.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some(_) => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            strategy.get("type").unwrap_or(&Value::Null),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        0,
        "Number of the pod with ready state out of the desired replicas.",
    ),
    col(
        "Up-to-date",
        "integer",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "integer",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
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

fn row(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(d);
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            i(d, &["status", "readyReplicas"]),
            desired_replicas(d)
        )),
        json!(i(d, &["status", "updatedReplicas"])),
        json!(i(d, &["status", "availableReplicas"])),
        age(d, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            d.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

/// The workload checks plus the rollout strategy's.
fn check(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = validation::validate_workload(old, obj);
    validate_deployment_strategy(&mut errs, obj.get("spec"));
    errs.0
}
