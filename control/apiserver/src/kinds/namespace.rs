//! Namespaces (core/v1): cluster-scoped, named by DNS-1123 labels; deletion
//! waits for `spec.finalizers` (emptied through `/finalize` by the namespace
//! controller), and the phase shows `Terminating` meanwhile.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::{status, table, Resource, Strategy, Subresource};
use crate::meta::names::check_dns1123_label;
use crate::status::ApiResult;

/// The `Namespace` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[FINALIZE, status("Namespace", "", "v1")],
    field_labels: Some(&["metadata.name", "status.phase"]),
};

/// `namespaces/finalize`: the namespace controller empties
/// `spec.finalizers` through it (the main resource keeps them); Kubernetes'
/// discovery lists it with the one verb `update`.
const FINALIZE: Subresource = Subresource {
    name: "finalize",
    kind: "Namespace",
    kind_group: "",
    kind_version: "v1",
    verbs: &["update"],
    model: None,
};

/// How `Namespace` objects behave.
pub struct Namespaces;

impl Strategy for Namespaces {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Namespace>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Namespace>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            default(spec, "finalizers", json!(["kubernetes"]));
        }
        if let Some(status) = obj_mut(obj, "status") {
            default(status, "phase", json!("Active"));
        }
    }

    fn keeps_status_on_create(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        // spec.finalizers only change through /finalize.
        new["spec"]["finalizers"] = old.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    }

    fn name_rule(&self) -> NameRule {
        check_dns1123_label
    }

    fn ready_to_remove(&self, obj: &Value) -> bool {
        spec_finalizers(obj) == 0
    }

    fn begin_delete(&self, obj: &mut Value, _grace: Option<i64>, pending: bool) -> bool {
        let pending = pending || spec_finalizers(obj) > 0;
        if pending {
            obj["status"]["phase"] = json!("Terminating");
        }
        pending
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn spec_finalizers(obj: &Value) -> usize {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

// ---- Table ----

const COLUMNS: &[Column] = &[NAME, col("Status", "string", 0, "The phase of the namespace."), AGE];

fn row(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = match s(ns, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(ns), json!(phase), age(ns, now)]
}
