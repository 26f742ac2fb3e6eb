//! CSIDrivers (`storage.k8s.io/v1`, cluster-scoped): what a CSI driver
//! installed in the cluster needs from Kubernetes. Served and validated as
//! Kubernetes does (defaults from `SetDefaults_CSIDriver`, the driver name
//! rules, enumerations); no CSI driver runs in this cluster, so nothing acts
//! on them beyond storage.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, name, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `CSIDriver` resource.
pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "CSIDriver",
    plural: "csidrivers",
    singular: "csidriver",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// `volumeLifecycleModes` values.
pub const LIFECYCLE_MODES: &[&str] = &["Ephemeral", "Persistent"];
/// `fsGroupPolicy` values.
pub const FS_GROUP_POLICIES: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];

const DRIVER_NAME_FORMAT: &str = "a valid CSI driver name must be 63 characters or less, must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Kubernetes' `ValidateCSIDriverName`: a CSI driver name as CSIDriver
/// objects, CSINode drivers and VolumeAttachment attachers carry it.
pub fn check_driver_name(errs: &mut Errors, name: Option<&str>, path: &str) {
    let name = name.unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    if name.len() > 63 {
        errs.push(FieldError {
            reason: "FieldValueTooLong",
            field: path.into(),
            message: "Too long: may not be more than 63 bytes".into(),
        });
    }
    let b = name.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(FieldError::invalid(path, &json!(name), DRIVER_NAME_FORMAT));
    }
}

/// How `CSIDriver` objects behave.
pub struct CsiDrivers;

impl Strategy for CsiDrivers {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::storage::v1::CSIDriver>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::storage::v1::CSIDriver>(generator)
    }

    fn name_rule(&self) -> crate::kinds::strategy::NameRule {
        |n| {
            let mut errs = Errors::default();
            check_driver_name(&mut errs, Some(n), "metadata.name");
            match errs.0.first() {
                Some(e) => Err(e
                    .message
                    .trim_start_matches(&format!("Invalid value: {n:?}: "))
                    .to_string()),
                None => Ok(()),
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "attachRequired", json!(true));
        default(spec, "podInfoOnMount", json!(false));
        default(spec, "storageCapacity", json!(false));
        default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
        default(spec, "volumeLifecycleModes", json!(["Persistent"]));
        default(spec, "requiresRepublish", json!(false));
        default(spec, "seLinuxMount", json!(false));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    for field in [
        "attachRequired",
        "podInfoOnMount",
        "storageCapacity",
        "requiresRepublish",
    ] {
        if spec.get(field).is_none_or(Value::is_null) {
            errs.push(FieldError::required(format!("spec.{field}"), ""));
        }
    }
    for (i, mode) in arr(spec, &["volumeLifecycleModes"]).iter().enumerate() {
        if !mode.as_str().is_some_and(|m| LIFECYCLE_MODES.contains(&m)) {
            errs.push(FieldError::not_supported(
                format!("spec.volumeLifecycleModes[{i}]"),
                mode,
                LIFECYCLE_MODES,
            ));
        }
    }
    if let Some(p) = spec.get("fsGroupPolicy").filter(|p| !p.is_null()) {
        if !p.as_str().is_some_and(|p| FS_GROUP_POLICIES.contains(&p)) {
            errs.push(FieldError::not_supported("spec.fsGroupPolicy", p, FS_GROUP_POLICIES));
        }
    }
    let mut audiences: Vec<&str> = Vec::new();
    for (i, t) in arr(spec, &["tokenRequests"]).iter().enumerate() {
        let audience = t.get("audience").and_then(Value::as_str).unwrap_or("");
        if audiences.contains(&audience) {
            errs.push(FieldError::duplicate(
                format!("spec.tokenRequests[{i}].audience"),
                &json!(audience),
            ));
        }
        audiences.push(audience);
        if let Some(secs) = t.get("expirationSeconds").and_then(Value::as_i64) {
            if secs < 600 {
                errs.push(FieldError::invalid(
                    format!("spec.tokenRequests[{i}].expirationSeconds"),
                    &json!(secs),
                    "may not specify a duration less than 10 minutes",
                ));
            } else if secs > 1 << 32 {
                errs.push(FieldError::invalid(
                    format!("spec.tokenRequests[{i}].expirationSeconds"),
                    &json!(secs),
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
        }
    }
    errs.0
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("AttachRequired", "boolean", 0, "attachRequired indicates this CSI volume driver requires an attach operation."),
    col("PodInfoOnMount", "boolean", 0, "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
    col("StorageCapacity", "boolean", 0, "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report."),
    col("TokenRequests", "string", 0, "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
    col("RequiresRepublish", "boolean", 0, "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume."),
    col("Modes", "string", 0, "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
    AGE,
];

fn row(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let flag = |k: &str, dflt: bool| {
        d.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_bool)
            .unwrap_or(dflt)
    };
    let modes: Vec<&str> = arr(d, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let tokens = match d.pointer("/spec/tokenRequests").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|t| t.get("audience").and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(","),
        None => "<unset>".to_string(),
    };
    vec![
        name(d),
        json!(flag("attachRequired", true)),
        json!(flag("podInfoOnMount", false)),
        json!(flag("storageCapacity", false)),
        json!(tokens),
        json!(flag("requiresRepublish", false)),
        json!(if modes.is_empty() {
            "<none>".to_string()
        } else {
            modes.join(",")
        }),
        age(d, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_row() {
        let mut d = json!({"metadata": {"name": "hostpath.csi.k8s.io", "creationTimestamp": "2026-01-01T11:00:00Z"}, "spec": {}});
        CsiDrivers.default(&mut d);
        assert!(CsiDrivers.validate(&d).is_empty());
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&d, now),
            json!([
                "hostpath.csi.k8s.io",
                true,
                false,
                false,
                "<unset>",
                false,
                "Persistent",
                "60m"
            ])
            .as_array()
            .expect("row")
            .clone()
        );
        d["spec"]["volumeLifecycleModes"] = json!(["Sometimes"]);
        let errs: Vec<String> = CsiDrivers.validate(&d).iter().map(FieldError::to_line).collect();
        assert_eq!(
            errs,
            ["spec.volumeLifecycleModes[0]: Unsupported value: \"Sometimes\": supported values: \"Ephemeral\", \"Persistent\""]
        );
        let mut errs = Errors::default();
        check_driver_name(&mut errs, Some("-bad"), "spec.attacher");
        assert_eq!(errs.0.len(), 1);
    }
}
