//! Endpoints (core/v1): written by the endpoints controller.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::{table, Resource, Strategy};
use crate::kinds::strategy::openapi_ref;
use crate::status::ApiResult;

/// The `Endpoints` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// How `Endpoints` objects behave.
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: &Value) -> ApiResult<Option<Value>> {
        crate::meta::typed::round_trip::<k8s_openapi::api::core::v1::Endpoints>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Endpoints>(generator)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(table::ENDPOINTS_COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::endpoints_cells(obj, now)
    }
}
