//! ReplicationControllers (core/v1): the ReplicaSet's predecessor, with an
//! equality-only `spec.selector` map. Defaults as Kubernetes' v1 defaulting:
//! 1 replica, and the template's labels as the selector and as the object's
//! labels when those are empty. Validated as Kubernetes does (non-empty
//! selector matching the template, `restartPolicy: Always`, no
//! `activeDeadlineSeconds`); the selector may change. Served with `/status`
//! and `/scale`; deleted without a propagation policy, dependents are
//! orphaned (core/v1's default garbage collection policy for this kind).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::{openapi_ref, scale_object};
use crate::kinds::table::{age, col, desired_replicas, i, map_selector_string, name, or_none, template_containers};
use crate::kinds::table::{Column, AGE, NAME};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{defaults, pod_support, status, table, Resource, Strategy, SCALE};
use crate::status::{ApiResult, FieldError};

/// The `ReplicationController` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ReplicationController",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[status("ReplicationController", "", "v1"), SCALE],
    field_labels: Some(&["metadata.name", "metadata.namespace", "status.replicas"]),
};

/// How `ReplicationController` objects behave.
pub struct ReplicationControllers;

impl Strategy for ReplicationControllers {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::ReplicationController>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::ReplicationController>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let template_labels = obj
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
            .cloned();
        if let Some(labels) = template_labels {
            let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(Map::is_empty);
            if let Some(spec) = obj_mut(obj, "spec") {
                if empty(spec.get("selector")) {
                    spec.insert("selector".into(), Value::Object(labels.clone()));
                }
            }
            if let Some(meta) = obj_mut(obj, "metadata") {
                if empty(meta.get("labels")) {
                    meta.insert("labels".into(), Value::Object(labels));
                }
            }
        }
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
        check_spec(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        check_spec(Some(old), new)
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        check_status(new)
    }

    fn scale(&self, obj: &Value) -> Option<ApiResult<Value>> {
        let selector = map_selector_string(obj.pointer("/spec/selector").and_then(Value::as_object));
        Some(Ok(scale_object(
            obj,
            obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0)),
            obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            &selector,
        )))
    }

    fn default_propagation_policy(&self) -> Option<&'static str> {
        Some("Orphan")
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

/// Kubernetes' `ValidateReplicationControllerSpec`, plus the template's
/// pod-spec fields the node cannot honour (on update, only changed ones).
fn check_spec(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let Some(spec) = obj.get("spec") else {
        errs.push(FieldError::required("spec", ""));
        return errs.0;
    };
    validation::check_non_negative(&mut errs, spec.get("minReadySeconds"), "spec.minReadySeconds");
    let selector = spec.get("selector").and_then(Value::as_object);
    match selector {
        Some(sel) if !sel.is_empty() => validation::check_labels(&mut errs, spec.get("selector"), "spec.selector"),
        _ => errs.push(FieldError::required("spec.selector", "")),
    }
    validation::check_non_negative(&mut errs, spec.get("replicas"), "spec.replicas");
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return errs.0;
    };
    let labels = template.pointer("/metadata/labels");
    if let Some(sel) = selector.filter(|s| !s.is_empty()) {
        let matches = sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.unwrap_or(&Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validation::check_labels(&mut errs, labels, "spec.template.metadata.labels");
    validation::validate_pod_spec(&mut errs, template.get("spec"), "spec.template.spec");
    if let Some(rp) = template.pointer("/spec/restartPolicy") {
        if rp.as_str() != Some("Always") {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                rp,
                &["Always"],
            ));
        }
    }
    const DEADLINE: &str = "spec.template.spec.activeDeadlineSeconds";
    let deadline = template.pointer("/spec/activeDeadlineSeconds").filter(|v| !v.is_null());
    if let Some(v) = deadline {
        errs.push(FieldError::invalid(DEADLINE, v, "must not be specified"));
    }
    errs.0.extend(
        pod_support::refuse_unsupported(pod_support::TEMPLATE_SPEC_AT, old, obj)
            .into_iter()
            // Kubernetes' own refusal above says it.
            .filter(|e| deadline.is_none() || e.field != DEADLINE),
    );
    errs.0
}

/// Kubernetes' `ValidateReplicationControllerStatus`.
fn check_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let field = |f: &str| obj.pointer(&format!("/status/{f}"));
    let num = |f: &str| field(f).and_then(Value::as_i64).unwrap_or(0);
    for f in [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ] {
        validation::check_non_negative(&mut errs, field(f), &format!("status.{f}"));
    }
    for f in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        if num(f) > num("replicas") {
            errs.push(FieldError::invalid(
                format!("status.{f}"),
                &json!(num(f)),
                "cannot be greater than status.replicas",
            ));
        }
    }
    if num("availableReplicas") > num("readyReplicas") {
        errs.push(FieldError::invalid(
            "status.availableReplicas",
            &json!(num("availableReplicas")),
            "cannot be greater than readyReplicas",
        ));
    }
    errs.0
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

fn row(rc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(rc);
    vec![
        name(rc),
        json!(desired_replicas(rc)),
        json!(i(rc, &["status", "replicas"])),
        json!(i(rc, &["status", "readyReplicas"])),
        age(rc, now),
        json!(containers),
        json!(images),
        json!(or_none(map_selector_string(
            rc.pointer("/spec/selector").and_then(Value::as_object)
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(spec: Value) -> Value {
        json!({"kind": "ReplicationController", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    }

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn selector_labels_and_replicas_default_from_the_template() {
        let mut obj = rc(json!({"template": template()}));
        ReplicationControllers.default(&mut obj);
        assert_eq!(obj["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(
            ReplicationControllers.validate(&obj).is_empty(),
            "{:?}",
            lines(&ReplicationControllers.validate(&obj))
        );

        let mut own = rc(json!({"replicas": 0, "selector": {"app": "web"}, "template": template()}));
        own["metadata"]["labels"] = json!({"team": "a"});
        ReplicationControllers.default(&mut own);
        assert_eq!(
            own["metadata"]["labels"],
            json!({"team": "a"}),
            "stated labels are kept"
        );
        assert_eq!(own["spec"]["replicas"], 0);
    }

    #[test]
    fn validation_follows_kubernetes() {
        let mut t = template();
        t["spec"]["activeDeadlineSeconds"] = json!(5);
        let obj = rc(json!({"replicas": -1, "selector": {"app": "db"}, "template": t}));
        assert_eq!(
            lines(&ReplicationControllers.validate(&obj)),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
                "spec.template.spec.activeDeadlineSeconds: Invalid value: 5: must not be specified",
            ]
        );
        let no_selector = rc(json!({"template": {"spec": template()["spec"].clone()}}));
        assert_eq!(
            lines(&ReplicationControllers.validate(&no_selector)),
            ["spec.selector: Required value"]
        );
        let never = {
            let mut t = template();
            t["spec"]["restartPolicy"] = json!("Never");
            rc(json!({"selector": {"app": "web"}, "template": t}))
        };
        assert_eq!(
            lines(&ReplicationControllers.validate(&never)),
            ["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
        );
    }

    #[test]
    fn status_counts_are_bounded_by_replicas() {
        let obj = json!({"status": {"replicas": 1, "readyReplicas": 2, "availableReplicas": 2}});
        assert_eq!(
            lines(&ReplicationControllers.validate_status_update(&obj, &obj)),
            [
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
                "status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas",
            ]
        );
    }

    #[test]
    fn scale_and_row_use_the_map_selector() {
        let mut obj = rc(json!({"replicas": 3, "selector": {"app": "web", "tier": "front"}, "template": template()}));
        obj["status"] = json!({"replicas": 2, "readyReplicas": 1});
        let scale = ReplicationControllers.scale(&obj).unwrap().unwrap();
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(
            scale["status"],
            json!({"replicas": 2, "selector": "app=web,tier=front"})
        );
        let cells = row(&obj, Utc::now());
        assert_eq!(&cells[1..4], &[json!(3), json!(2), json!(1)]);
        assert_eq!(cells[7], "app=web,tier=front");
    }
}
