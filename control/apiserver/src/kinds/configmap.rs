//! ConfigMaps (core/v1): keys of `data` and `binaryData` are config keys.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, Column, AGE, NAME};
use crate::kinds::{table, validation, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `ConfigMap` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `ConfigMap` objects behave.
pub struct ConfigMaps;

impl Strategy for ConfigMaps {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::ConfigMap>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::ConfigMap>(generator)
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

const COLUMNS: &[Column] = &[NAME, col("Data", "integer", 0, "Number of data entries."), AGE];

fn row(cm: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let count = ["data", "binaryData"]
        .iter()
        .filter_map(|k| cm.get(k).and_then(Value::as_object))
        .map(Map::len)
        .sum::<usize>();
    vec![name(cm), json!(count), age(cm, now)]
}
