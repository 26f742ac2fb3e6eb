//! Events (core/v1): stored under an etcd lease so they expire after
//! `--event-ttl`; `involvedObject` is required.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::Value;

use crate::kinds::{table, Resource, Strategy};
use crate::kinds::strategy::{openapi_ref, StorageHooks};
use crate::status::{ApiResult, FieldError};

/// The `Event` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    field_labels: Some(&[
        "metadata.name",
        "metadata.namespace",
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ]),
};

/// How `Event` objects behave.
pub struct Events;

impl Strategy for Events {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: &Value) -> ApiResult<Option<Value>> {
        crate::meta::typed::round_trip::<k8s_openapi::api::core::v1::Event>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Event>(generator)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if obj.get("involvedObject").is_none() {
            return vec![FieldError::required("involvedObject", "")];
        }
        Vec::new()
    }

    fn storage(&self) -> StorageHooks {
        StorageHooks {
            expires: true,
            ..Default::default()
        }
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(table::EVENT_COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::event_cells(obj, now)
    }
}
