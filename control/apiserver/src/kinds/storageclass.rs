//! StorageClasses (`storage.k8s.io/v1`, cluster-scoped): how claims of a
//! class get their volumes. Defaults as Kubernetes (`reclaimPolicy:
//! Delete`, `volumeBindingMode: Immediate`); `provisioner`, `parameters`,
//! `reclaimPolicy` and `volumeBindingMode` are immutable. The class
//! annotated `storageclass.kubernetes.io/is-default-class: "true"` is the
//! default (newest first when several are), which the `DefaultStorageClass`
//! admission step in `registry::storage_admission` gives claims that name no class;
//! kubectl marks it `(default)` in the NAME column.
//!
//! `mountOptions` (nothing mounts with options here) and
//! `allowedTopologies` (no provisioner restricts topology here) are refused
//! with a 422 naming the field.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::default;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, s, Column, AGE, NAME};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{table, Resource, Strategy};
use crate::meta::names::check_label_key;
use crate::status::{ApiResult, FieldError};

/// The `StorageClass` resource.
pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    singular: "storageclass",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// The annotation that makes a class the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta annotation Kubernetes still reads.
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// `volumeBindingMode` values.
pub const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
/// `reclaimPolicy` values a class may give its volumes.
pub const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];

/// Whether `sc` is annotated as the default class (Kubernetes'
/// `IsDefaultAnnotation`).
pub fn is_default(sc: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| {
            sc.pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        })
}

/// How `StorageClass` objects behave.
pub struct StorageClasses;

impl Strategy for StorageClasses {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::storage::v1::StorageClass>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::storage::v1::StorageClass>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(o) = obj.as_object_mut() else { return };
        default(o, "reclaimPolicy", json!("Delete"));
        default(o, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate(new);
        let empty = json!({});
        let params = |v: &Value| v.get("parameters").filter(|p| !p.is_null()).unwrap_or(&empty).clone();
        if params(old) != params(new) {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if old.get("provisioner") != new.get("provisioner") {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if old.get("reclaimPolicy") != new.get("reclaimPolicy") {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        errs.extend(validation::immutable(
            old,
            new,
            "/volumeBindingMode",
            "volumeBindingMode",
        ));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn validate(sc: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    match sc.get("provisioner").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required("provisioner", "")),
        p => {
            if let Err(e) = check_label_key(p) {
                errs.push(FieldError::invalid("provisioner", &json!(p), e));
            }
        }
    }
    if let Some(params) = sc.get("parameters").and_then(Value::as_object) {
        let size: usize = params
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 256 * 1024 {
            errs.push(FieldError {
                reason: "FieldValueTooLong",
                field: "parameters".into(),
                message: format!("Too long: may not be more than {} bytes", 256 * 1024),
            });
        }
        for k in params.keys().filter(|k| k.is_empty()) {
            errs.push(FieldError::invalid("parameters", &json!(k), "field can not be empty."));
        }
    }
    if let Some(p) = sc.get("reclaimPolicy").filter(|p| !p.is_null()) {
        if !p.as_str().is_some_and(|p| RECLAIM_POLICIES.contains(&p)) {
            errs.push(FieldError::not_supported("reclaimPolicy", p, RECLAIM_POLICIES));
        } else if p == "Recycle" {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "the Recycle reclaim policy is deprecated and not supported by this cluster: use Retain or Delete",
            ));
        }
    }
    match sc.get("volumeBindingMode").filter(|m| !m.is_null()) {
        None => errs.push(FieldError::required("volumeBindingMode", "")),
        Some(m) if !m.as_str().is_some_and(|m| BINDING_MODES.contains(&m)) => {
            errs.push(FieldError::not_supported("volumeBindingMode", m, BINDING_MODES))
        }
        Some(_) => {}
    }
    for (field, why) in [
        ("mountOptions", "mount options are not supported by this cluster"),
        (
            "allowedTopologies",
            "allowed topologies are not supported by this cluster",
        ),
    ] {
        if sc.get(field).and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
            errs.push(FieldError::forbidden(field, why));
        }
    }
    errs.0
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
    col("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
    col("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

fn row(sc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut name = s(sc, &["metadata", "name"]).to_string();
    if is_default(sc) {
        name.push_str(" (default)");
    }
    let policy = match s(sc, &["reclaimPolicy"]) {
        "" => "Delete",
        p => p,
    };
    let mode = match s(sc, &["volumeBindingMode"]) {
        "" => "Immediate",
        m => m,
    };
    let expand = sc.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false);
    vec![
        json!(name),
        json!(s(sc, &["provisioner"])),
        json!(policy),
        json!(mode),
        json!(expand.to_string()),
        age(sc, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc() -> Value {
        let mut sc = json!({
            "metadata": {"name": "fast", "creationTimestamp": "2026-01-01T11:00:00Z",
                         "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "sluice.dev/local-path",
        });
        StorageClasses.default(&mut sc);
        sc
    }

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn defaults_validation_and_immutability() {
        let old = sc();
        assert_eq!(old["reclaimPolicy"], "Delete");
        assert_eq!(old["volumeBindingMode"], "Immediate");
        assert!(validate(&old).is_empty());
        assert_eq!(lines(&validate(&json!({"volumeBindingMode": "Later"}))), [
            "provisioner: Required value",
            "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
        ]);
        let mut new = old.clone();
        new["provisioner"] = json!("other.example/p");
        new["parameters"] = json!({"a": "b"});
        new["reclaimPolicy"] = json!("Retain");
        new["volumeBindingMode"] = json!("WaitForFirstConsumer");
        new["allowVolumeExpansion"] = json!(true);
        assert_eq!(
            lines(&StorageClasses.validate_update(&old, &new)),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
    }

    #[test]
    fn the_default_class_is_marked_in_its_name() {
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&sc(), now),
            json!([
                "fast (default)",
                "sluice.dev/local-path",
                "Delete",
                "Immediate",
                "false",
                "60m"
            ])
            .as_array()
            .expect("row")
            .clone()
        );
    }
}
