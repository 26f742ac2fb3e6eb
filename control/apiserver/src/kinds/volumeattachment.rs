//! VolumeAttachments (`storage.k8s.io/v1`, cluster-scoped): a request that
//! an attacher attach a volume to a node, with its status subresource.
//! Served and validated as Kubernetes does (`ValidateVolumeAttachment`:
//! attacher name, exactly one source, node name; the spec is immutable);
//! no attacher runs in this cluster (hostPath and local volumes need none).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::csidriver::check_driver_name;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{status, table, Resource, Strategy};
use crate::meta::names::check_dns1123_subdomain;
use crate::status::{ApiResult, FieldError};

/// The `VolumeAttachment` resource.
pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "VolumeAttachment",
    plural: "volumeattachments",
    singular: "volumeattachment",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[status("VolumeAttachment", "storage.k8s.io", "v1")],
    field_labels: None,
};

/// How `VolumeAttachment` objects behave.
pub struct VolumeAttachments;

impl Strategy for VolumeAttachments {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::storage::v1::VolumeAttachment>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::storage::v1::VolumeAttachment>(generator)
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(st) = crate::kinds::defaults::obj_mut(obj, "status") {
            // Go's VolumeAttachmentStatus writes `attached` without omitempty.
            crate::kinds::defaults::default(st, "attached", json!(false));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate_spec(new.get("spec").unwrap_or(&Value::Null));
        errs.extend(crate::kinds::validation::immutable(old, new, "/spec", "spec"));
        errs
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate_spec(new.get("spec").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name(obj),
            json!(s(obj, &["spec", "attacher"])),
            json!(s(obj, &["spec", "source", "persistentVolumeName"])),
            json!(s(obj, &["spec", "nodeName"])),
            json!(obj
                .pointer("/status/attached")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age(obj, now),
        ]
    }
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    check_driver_name(&mut errs, spec.get("attacher").and_then(Value::as_str), "spec.attacher");
    let pv = spec
        .pointer("/source/persistentVolumeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let inline = spec.pointer("/source/inlineVolumeSpec").filter(|v| !v.is_null());
    match (pv, inline) {
        (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        )),
        (Some(n), None) => {
            if let Err(e) = check_dns1123_subdomain(n) {
                errs.push(FieldError::invalid("spec.source.persistentVolumeName", &json!(n), e));
            }
        }
        (None, Some(_)) => {}
    }
    match spec.get("nodeName").and_then(Value::as_str).unwrap_or("") {
        "" => errs.push(FieldError::required("spec.nodeName", "")),
        n => {
            if let Err(e) = check_dns1123_subdomain(n) {
                errs.push(FieldError::invalid("spec.nodeName", &json!(n), e));
            }
        }
    }
    errs.0
}

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Attacher",
        "string",
        0,
        "attacher indicates the name of the volume driver that MUST handle this request.",
    ),
    col(
        "PV",
        "string",
        0,
        "persistentVolumeName represents the name of the persistent volume to attach.",
    ),
    col(
        "Node",
        "string",
        0,
        "nodeName represents the node that the volume should be attached to.",
    ),
    col(
        "Attached",
        "boolean",
        0,
        "attached indicates the volume is successfully attached.",
    ),
    AGE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_and_a_node_are_required_and_the_spec_is_immutable() {
        let errs: Vec<String> = VolumeAttachments
            .validate(&json!({"spec": {"attacher": "a.csi", "source": {}}}))
            .iter()
            .map(FieldError::to_line)
            .collect();
        assert_eq!(
            errs,
            [
                "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName",
                "spec.nodeName: Required value",
            ]
        );
        let old = json!({"spec": {"attacher": "a.csi", "source": {"persistentVolumeName": "pv1"}, "nodeName": "n1"}});
        let mut new = old.clone();
        assert!(VolumeAttachments.validate_update(&old, &new).is_empty());
        new["spec"]["nodeName"] = json!("n2");
        assert_eq!(VolumeAttachments.validate_update(&old, &new).len(), 1);
    }
}
