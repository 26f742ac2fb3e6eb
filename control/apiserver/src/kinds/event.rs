//! Events (core/v1): stored under an etcd lease so they expire after
//! `--event-ttl`; `involvedObject` is required.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::{openapi_ref, StorageHooks};
use crate::kinds::table::{age_of, col, i, name, s, Column};
use crate::kinds::{table, Resource, Strategy};
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

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Event>(obj).map(Some)
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

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        let str_at = |p: &str| obj.pointer(p).and_then(Value::as_str).map(String::from);
        (label == "source").then(|| {
            str_at("/source/component")
                .filter(|c| !c.is_empty())
                .or_else(|| str_at("/reportingComponent"))
                .unwrap_or_default()
        })
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
    col("Last Seen", "string", 0, "Time since the event was last seen."),
    col("Type", "string", 0, "Type of the event (Normal, Warning)."),
    col(
        "Reason",
        "string",
        0,
        "Short, machine understandable reason for the event.",
    ),
    col("Object", "string", 0, "The object this event is about."),
    col("Subobject", "string", 1, "The part of the object this event is about."),
    col("Source", "string", 1, "The component reporting this event."),
    col("Message", "string", 0, "A human-readable description of the event."),
    col("First Seen", "string", 1, "Time since the event was first seen."),
    col("Count", "string", 1, "How many times this event happened."),
    col("Name", "string", 1, "Name of the event object."),
];

fn row(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = [
        s(ev, &["firstTimestamp"]),
        s(ev, &["eventTime"]),
        s(ev, &["metadata", "creationTimestamp"]),
    ]
    .into_iter()
    .find(|t| !t.is_empty())
    .unwrap_or("");
    let last = [s(ev, &["series", "lastObservedTime"]), s(ev, &["lastTimestamp"]), first]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or("");
    let object = format!(
        "{}/{}",
        s(ev, &["involvedObject", "kind"]).to_lowercase(),
        s(ev, &["involvedObject", "name"])
    );
    let mut source = s(ev, &["source", "component"]).to_string();
    if source.is_empty() {
        source = s(ev, &["reportingComponent"]).to_string();
    }
    if !s(ev, &["source", "host"]).is_empty() {
        source = format!("{source}, {}", s(ev, &["source", "host"]));
    }
    let count = match i(ev, &["series", "count"]) {
        0 => i(ev, &["count"]).max(1),
        n => n,
    };
    vec![
        json!(age_of(last, now)),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(object),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(age_of(first, now)),
        json!(count.to_string()),
        name(ev),
    ]
}
