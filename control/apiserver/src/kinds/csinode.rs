//! CSINodes (`storage.k8s.io/v1`, cluster-scoped): the CSI drivers
//! registered on a node. Served and validated as Kubernetes does
//! (`ValidateCSINode`: driver names, node IDs, unique drivers, allocatable
//! counts); no CSI driver registers in this cluster.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::csidriver::check_driver_name;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, name, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{table, Resource, Strategy};
use crate::meta::names::check_label_key;
use crate::status::{ApiResult, FieldError};

/// The `CSINode` resource.
pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "CSINode",
    plural: "csinodes",
    singular: "csinode",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `CSINode` objects behave.
pub struct CsiNodes;

impl Strategy for CsiNodes {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::storage::v1::CSINode>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::storage::v1::CSINode>(generator)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![name(obj), json!(arr(obj, &["spec", "drivers"]).len()), age(obj, now)]
    }
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in arr(spec, &["drivers"]).iter().enumerate() {
        let p = format!("spec.drivers[{i}]");
        let name = d.get("name").and_then(Value::as_str);
        check_driver_name(&mut errs, name, &format!("{p}.name"));
        if let Some(n) = name {
            if seen.contains(&n) {
                errs.push(FieldError::duplicate(format!("{p}.name"), &json!(n)));
            }
            seen.push(n);
        }
        match d.get("nodeID").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.nodeID"), "")),
            id if id.len() > 192 => errs.push(FieldError {
                reason: "FieldValueTooLong",
                field: format!("{p}.nodeID"),
                message: "Too long: may not be more than 192 bytes".into(),
            }),
            _ => {}
        }
        for (k, key) in arr(d, &["topologyKeys"]).iter().enumerate() {
            let key = key.as_str().unwrap_or("");
            if key.is_empty() {
                errs.push(FieldError::required(format!("{p}.topologyKeys[{k}]"), ""));
            } else if let Err(e) = check_label_key(key) {
                errs.push(FieldError::invalid(format!("{p}.topologyKeys[{k}]"), &json!(key), e));
            }
        }
        if let Some(c) = d
            .pointer("/allocatable/count")
            .and_then(Value::as_i64)
            .filter(|c| *c < 0)
        {
            errs.push(FieldError::invalid(
                format!("{p}.allocatable.count"),
                &json!(c),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs.0
}

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        0,
        "Drivers indicates the number of CSI drivers registered on the node",
    ),
    AGE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_need_names_and_node_ids() {
        let n = json!({"spec": {"drivers": [{"name": "a.csi", "nodeID": "n1"}, {"name": "a.csi"}]}});
        let errs: Vec<String> = CsiNodes.validate(&n).iter().map(FieldError::to_line).collect();
        assert_eq!(
            errs,
            [
                "spec.drivers[1].name: Duplicate value: \"a.csi\"",
                "spec.drivers[1].nodeID: Required value"
            ]
        );
    }
}
