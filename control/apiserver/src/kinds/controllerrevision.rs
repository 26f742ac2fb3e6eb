//! ControllerRevisions (apps/v1): immutable snapshots of a DaemonSet's or
//! StatefulSet's pod template (`data`) with a `revision` number, written by
//! their controllers and read by `kubectl rollout history|undo`. `data` is
//! required and may not change; `revision` is not negative.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, i, name, s, Column, AGE, NAME};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `ControllerRevision` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "ControllerRevision",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `ControllerRevision` objects behave.
pub struct ControllerRevisions;

impl Strategy for ControllerRevisions {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::apps::v1::ControllerRevision>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::apps::v1::ControllerRevision>(generator)
    }

    fn generation_tracks_spec(&self) -> bool {
        false
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        if obj.get("data").is_none_or(Value::is_null) {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        validation::check_non_negative(&mut errs, obj.get("revision"), "revision");
        errs.0
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(validation::immutable(old, new, "/data", "data"));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name(obj),
            json!(controller(obj)),
            json!(i(obj, &["revision"])),
            age(obj, now),
        ]
    }
}

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        0,
        "Controller of the object with link to its type.",
    ),
    col(
        "Revision",
        "integer",
        0,
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// `daemonset.apps/web`, as kubectl names a revision's controller, or `<none>`.
fn controller(obj: &Value) -> String {
    let Some(owner) = arr(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".into();
    };
    let group = s(owner, &["apiVersion"]).rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = s(owner, &["kind"]).to_lowercase();
    let kind = if group.is_empty() {
        kind
    } else {
        format!("{kind}.{group}")
    };
    format!("{kind}/{}", s(owner, &["name"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_required_and_immutable_and_rows_name_the_controller() {
        let cr = json!({
            "metadata": {"name": "web-6d4f", "creationTimestamp": "2026-01-01T11:59:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "uid": "u", "controller": true}]},
            "data": {"spec": {"template": {"$patch": "replace"}}},
            "revision": 2,
        });
        assert!(ControllerRevisions.validate(&cr).is_empty());
        assert_eq!(
            ControllerRevisions
                .validate(&json!({"revision": -1}))
                .iter()
                .map(|e| e.field.as_str())
                .collect::<Vec<_>>(),
            ["data", "revision"]
        );
        let mut changed = cr.clone();
        changed["data"] = json!({"spec": {}});
        assert_eq!(ControllerRevisions.validate_update(&cr, &changed)[0].field, "data");
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            ControllerRevisions.cells(&cr, now),
            vec![json!("web-6d4f"), json!("daemonset.apps/web"), json!(2), json!("60s")]
        );
        assert_eq!(controller(&json!({})), "<none>");
    }
}
