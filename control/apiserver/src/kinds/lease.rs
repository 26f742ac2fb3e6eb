//! Leases (coordination.k8s.io/v1): leader election and node heartbeats.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::{table, Resource, Strategy};
use crate::status::ApiResult;

/// The `Lease` resource.
pub static RESOURCE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `Lease` objects behave.
pub struct Leases;

impl Strategy for Leases {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::coordination::v1::Lease>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::coordination::v1::Lease>(generator)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[NAME, col("Holder", "string", 0, "Holder of the lease."), AGE];

fn row(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(lease),
        json!(s(lease, &["spec", "holderIdentity"])),
        age(lease, now),
    ]
}
