//! EndpointSlices (discovery.k8s.io/v1): written by the endpoint-slice
//! controller.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::{table, Resource, Strategy};
use crate::kinds::strategy::openapi_ref;
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

    fn decode(&self, obj: &Value) -> ApiResult<Option<Value>> {
        crate::meta::typed::round_trip::<k8s_openapi::api::discovery::v1::EndpointSlice>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::discovery::v1::EndpointSlice>(generator)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(table::ENDPOINTSLICE_COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::endpointslice_cells(obj, now)
    }
}
