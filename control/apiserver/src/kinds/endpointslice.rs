//! EndpointSlices (discovery.k8s.io/v1): written by the endpoint-slice
//! controller.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, i, name, s, Column, AGE, NAME};
use crate::kinds::{table, Resource, Strategy};
use crate::status::ApiResult;

/// The `EndpointSlice` resource.
pub static RESOURCE: Resource = Resource {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `EndpointSlice` objects behave.
pub struct EndpointSlices;

impl Strategy for EndpointSlices {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::discovery::v1::EndpointSlice>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::discovery::v1::EndpointSlice>(generator)
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
    col("AddressType", "string", 0, "Type of the addresses in this slice."),
    col("Ports", "string", 0, "Ports of the slice."),
    col("Endpoints", "string", 0, "First addresses of the slice."),
    AGE,
];

fn row(es: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ports: Vec<String> = arr(es, &["ports"])
        .iter()
        .map(|p| i(p, &["port"]).to_string())
        .collect();
    let addrs: Vec<&str> = arr(es, &["endpoints"])
        .iter()
        .flat_map(|e| arr(e, &["addresses"]).iter().filter_map(Value::as_str))
        .collect();
    let mut shown = addrs.iter().take(3).copied().collect::<Vec<_>>().join(",");
    if addrs.len() > 3 {
        shown = format!("{shown} + {} more...", addrs.len() - 3);
    }
    vec![
        name(es),
        json!(s(es, &["addressType"])),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(if shown.is_empty() { "<unset>".to_string() } else { shown }),
        age(es, now),
    ]
}
