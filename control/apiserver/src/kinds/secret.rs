//! Secrets (core/v1): `type` defaults to `Opaque`; write-only `stringData` is
//! merged into `data`; keys are config keys.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::defaults::default;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::{table, validation, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `Secret` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: Some(&["metadata.name", "metadata.namespace", "type"]),
};

/// How `Secret` objects behave.
pub struct Secrets;

impl Strategy for Secrets {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Secret>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Secret>(generator)
    }

    fn default(&self, obj: &mut Value) {
        use base64::Engine;
        let Some(o) = obj.as_object_mut() else { return };
        default(o, "type", json!("Opaque"));
        // stringData is write-only: merge it into data.
        if let Some(Value::Object(sd)) = o.remove("stringData") {
            let data = o.entry("data").or_insert_with(|| json!({}));
            if data.is_null() {
                *data = json!({});
            }
            if let Some(d) = data.as_object_mut() {
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    d.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validation::validate_config_keys(obj)
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
    col("Type", "string", 0, "Type of the secret."),
    col("Data", "integer", 0, "Number of data entries."),
    AGE,
];

fn row(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match s(secret, &["type"]) {
        "" => "Opaque",
        t => t,
    };
    let count = secret.get("data").and_then(Value::as_object).map_or(0, Map::len);
    vec![name(secret), json!(ty), json!(count), age(secret, now)]
}
