//! PersistentVolumeClaims (core/v1): a user's request for storage, bound to
//! one PersistentVolume by the PV controller (`persistentvolume-binder`).
//! `volumeMode` defaults to `Filesystem` and a new claim is `Pending`.
//!
//! Validation as Kubernetes' `ValidatePersistentVolumeClaim`: access modes
//! and `resources.requests.storage` (above zero) are required, the selector
//! and class name must be valid. After creation the spec is immutable except
//! `resources.requests` of a bound claim (never below the previous request;
//! whether the class allows expansion is admission's question, in
//! `registry::storage_admission`) and `volumeName` while it was empty. Data sources
//! (snapshots, populators) and VolumeAttributesClasses have nothing here to
//! honour them and are refused with a 422 naming the field.
//!
//! The `DefaultStorageClass` admission step and the
//! `kubernetes.io/pvc-protection` finalizer are added on create by
//! `registry::storage_admission`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::persistentvolume::{
    access_modes_string, check_access_modes, check_mode_and_class, class_of, phase_cell, storage_bytes,
};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{pod_scheduling, status, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `PersistentVolumeClaim` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    subresources: &[status("PersistentVolumeClaim", "", "v1")],
    field_labels: None,
};

/// `status.phase` values of a claim.
pub const PHASES: &[&str] = &["Bound", "Lost", "Pending"];

/// Kubernetes' words for a spec change it does not allow.
pub const SPEC_IMMUTABLE: &str =
    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

/// How `PersistentVolumeClaim` objects behave.
pub struct PersistentVolumeClaims;

impl Strategy for PersistentVolumeClaims {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            default(spec, "volumeMode", json!("Filesystem"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), json!({"phase": "Pending"}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(obj.get("spec").unwrap_or(&Value::Null));
        errs.extend(validate_status(obj));
        errs
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(new.get("spec").unwrap_or(&Value::Null));
        errs.extend(validate_spec_update(old, new));
        errs
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate_status(new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(phase) = obj.pointer("/status/phase").filter(|p| !p.is_null()) {
        if !phase.as_str().is_some_and(|p| PHASES.contains(&p)) {
            errs.push(FieldError::not_supported("status.phase", phase, PHASES));
        }
    }
    errs
}

/// Kubernetes' `ValidatePersistentVolumeClaimSpec`.
pub fn validate_spec(spec: &Value) -> Vec<FieldError> {
    validate_spec_at(spec, "spec")
}

/// [`validate_spec`] of a claim spec at `path` (a StatefulSet's
/// `volumeClaimTemplates[i].spec`).
pub fn validate_spec_at(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Errors::default();
    check_access_modes(
        &mut errs,
        spec.get("accessModes"),
        &format!("{path}.accessModes"),
        "at least 1 access mode is required",
    );
    errs.0.extend(pod_scheduling::validate_label_selector(
        spec.get("selector").filter(|s| !s.is_null()),
        &format!("{path}.selector"),
    ));
    let storage = spec.pointer("/resources/requests/storage");
    match storage_bytes(storage) {
        None => errs.push(FieldError::required(format!("{path}.resources[storage]"), "")),
        Some(Ok(n)) if n <= 0 => errs.push(FieldError::invalid(
            format!("{path}.resources[storage]"),
            storage.unwrap_or(&Value::Null),
            "must be greater than zero",
        )),
        Some(Err(e)) => errs.push(FieldError::invalid(
            format!("{path}.resources[storage]"),
            storage.unwrap_or(&Value::Null),
            e,
        )),
        Some(Ok(_)) => {}
    }
    check_mode_and_class(&mut errs, spec, path);
    for (field, what) in [
        (
            "dataSource",
            "volume data sources (snapshots, clones) are not supported by this cluster",
        ),
        ("dataSourceRef", "volume populators are not supported by this cluster"),
        (
            "volumeAttributesClassName",
            "VolumeAttributesClasses are not supported by this cluster",
        ),
    ] {
        if spec.get(field).is_some_and(|v| !v.is_null() && v != "") {
            errs.push(FieldError::forbidden(format!("{path}.{field}"), what));
        }
    }
    errs.0
}

/// Kubernetes' `ValidatePersistentVolumeClaimUpdate` of the spec: only the
/// storage request of a bound claim (never below the previous one) and an
/// empty `volumeName` may change.
pub fn validate_spec_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut old_spec = old.get("spec").cloned().unwrap_or(json!({}));
    let mut new_spec = new.get("spec").cloned().unwrap_or(json!({}));
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    // A claim without a class may get one (retroactive default StorageClass).
    let classless = old_spec.get("storageClassName").is_none_or(Value::is_null)
        && old
            .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
            .is_none();
    if classless {
        if let (Some(o), Some(n)) = (old_spec.as_object_mut(), new_spec.get("storageClassName")) {
            o.insert("storageClassName".into(), n.clone());
        }
    }
    if old_spec
        .get("volumeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        if let (Some(o), Some(n)) = (old_spec.as_object_mut(), new_spec.get("volumeName")) {
            o.insert("volumeName".into(), n.clone());
        }
    }
    let old_size = old.pointer("/spec/resources/requests/storage");
    let new_size = new.pointer("/spec/resources/requests/storage");
    if bound && old_size != new_size {
        if let (Some(Ok(o)), Some(Ok(n))) = (storage_bytes(old_size), storage_bytes(new_size)) {
            // RecoverVolumeExpansionFailure (on by default since 1.32): a
            // request may come back down, but only while it stays above
            // what the volume already has.
            let status = storage_bytes(old.pointer("/status/capacity/storage"));
            if n < o && !matches!(status, Some(Ok(s)) if n > s) {
                errs.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
        if let Some(r) = new_spec.pointer_mut("/resources/requests") {
            if let Some(r) = r.as_object_mut() {
                match old_size {
                    Some(v) => r.insert("storage".into(), v.clone()),
                    None => r.remove("storage"),
                };
            }
        }
    }
    if old_spec != new_spec {
        errs.push(FieldError::forbidden("spec", SPEC_IMMUTABLE));
    }
    errs
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        0,
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        0,
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        0,
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        0,
        "accessModes contains the desired access modes the volume should have.",
    ),
    col("StorageClass", "string", 0, "StorageClass of the pvc"),
    col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
    AGE,
    col(
        "VolumeMode",
        "string",
        1,
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

fn row(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let volume = s(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            s(pvc, &["status", "capacity", "storage"]).to_string(),
            access_modes_string(table::arr(pvc, &["status", "accessModes"])),
        )
    };
    let vac = s(pvc, &["status", "currentVolumeAttributesClassName"]);
    vec![
        name(pvc),
        json!(phase_cell(pvc)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class_of(pvc)),
        json!(if vac.is_empty() { "<unset>" } else { vac }),
        age(pvc, now),
        json!(match s(pvc, &["spec", "volumeMode"]) {
            "" => "<unset>",
            m => m,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc() -> Value {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "default", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        });
        PersistentVolumeClaims.default(&mut c);
        PersistentVolumeClaims.prepare_for_create(&mut c);
        c
    }

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn defaults_and_requirements() {
        let c = pvc();
        assert_eq!(c["spec"]["volumeMode"], "Filesystem");
        assert_eq!(c["status"]["phase"], "Pending");
        assert!(PersistentVolumeClaims.validate(&c).is_empty());
        assert_eq!(
            lines(&validate_spec(&json!({"resources": {"requests": {"storage": "0"}}}))),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
        assert_eq!(
            lines(&validate_spec(&json!({"accessModes": ["ReadWriteOnce"]}))),
            ["spec.resources[storage]: Required value"]
        );
    }

    #[test]
    fn spec_is_immutable_but_bound_claims_grow_and_volume_name_fills() {
        let old = pvc();
        let mut new = old.clone();
        new["spec"]["volumeName"] = json!("pv1");
        assert!(PersistentVolumeClaims.validate_update(&old, &new).is_empty());
        let mut grown = new.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            lines(&PersistentVolumeClaims.validate_update(&new, &grown)),
            [format!("spec: Forbidden: {SPEC_IMMUTABLE}")]
        );
        grown["status"]["phase"] = json!("Bound");
        assert!(PersistentVolumeClaims.validate_update(&new, &grown).is_empty());
        let mut shrunk = grown.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("1Mi");
        assert_eq!(
            lines(&PersistentVolumeClaims.validate_update(&grown, &shrunk)),
            ["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
        // A failed expansion may be retried smaller, above what the volume has.
        let mut resizing = grown.clone();
        resizing["status"]["capacity"] = json!({"storage": "1Gi"});
        let mut retried = resizing.clone();
        retried["spec"]["resources"]["requests"]["storage"] = json!("1536Mi");
        assert!(PersistentVolumeClaims.validate_update(&resizing, &retried).is_empty());
        retried["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        assert_eq!(PersistentVolumeClaims.validate_update(&resizing, &retried).len(), 1);
        let mut classed = old.clone();
        classed["spec"]["storageClassName"] = json!("local-path");
        assert!(PersistentVolumeClaims.validate_update(&old, &classed).is_empty());
        let mut reclassed = classed.clone();
        reclassed["spec"]["storageClassName"] = json!("other");
        assert_eq!(PersistentVolumeClaims.validate_update(&classed, &reclassed).len(), 1);
        let mut renamed = new.clone();
        renamed["spec"]["volumeName"] = json!("pv2");
        assert_eq!(PersistentVolumeClaims.validate_update(&new, &renamed).len(), 1);
    }

    #[test]
    fn table_is_kubectls() {
        let mut c = pvc();
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&c, now),
            json!(["data", "Pending", "", "", "", "", "<unset>", "60m", "Filesystem"])
                .as_array()
                .expect("row")
                .clone()
        );
        c["spec"]["volumeName"] = json!("pv1");
        c["spec"]["storageClassName"] = json!("manual");
        c["status"] = json!({"phase": "Bound", "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"]});
        c["metadata"]["deletionTimestamp"] = json!("2026-01-01T11:59:00Z");
        assert_eq!(
            row(&c, now),
            json!([
                "data",
                "Terminating",
                "pv1",
                "5Gi",
                "RWO,RWX",
                "manual",
                "<unset>",
                "60m",
                "Filesystem"
            ])
            .as_array()
            .expect("row")
            .clone()
        );
    }
}
