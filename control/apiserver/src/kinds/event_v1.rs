//! Events (events.k8s.io/v1): a second view of the core/v1 Events, as
//! Kubernetes serves them. One object is stored (as a core Event, under
//! the core Events' keys and TTL lease) and is read, watched, written and
//! deleted through either API, with the fields renamed: `note` is
//! `message`, `regarding` is `involvedObject`, `reportingController` is
//! `reportingComponent`, and the `deprecated*` fields are the core
//! `source`, `firstTimestamp`, `lastTimestamp` and `count`. This is the API
//! client-go's and kube-runtime's event recorders write.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::strategy::{openapi_ref, StorageHooks};
use crate::kinds::{event, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `events.k8s.io/v1` `Event` resource.
pub static RESOURCE: Resource = Resource {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// Field renames between core/v1 (left) and events.k8s.io/v1 (right).
const RENAMES: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &mut Value, api_version: &str, from_core: bool) {
    let Some(o) = obj.as_object_mut() else { return };
    let mut moved = Map::new();
    for (core, v1) in RENAMES {
        let (from, to) = if from_core { (core, v1) } else { (v1, core) };
        if let Some(v) = o.remove(*from) {
            moved.insert((*to).to_string(), v);
        }
    }
    o.extend(moved);
    o.insert("apiVersion".into(), json!(api_version));
}

/// A core/v1 Event as events.k8s.io/v1 shows it.
pub fn from_core(obj: &mut Value) {
    rename(obj, "events.k8s.io/v1", true);
}

/// An events.k8s.io/v1 Event as it is stored (a core/v1 Event).
pub fn to_core(obj: &mut Value) {
    rename(obj, "v1", false);
}

/// How events.k8s.io/v1 Events behave.
pub struct EventsV1;

impl Strategy for EventsV1 {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn storage_resource(&self) -> &'static Resource {
        &event::RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::events::v1::Event>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::events::v1::Event>(generator)
    }

    fn converts_on_read(&self) -> bool {
        true
    }

    fn on_read(&self, obj: &mut Value) {
        if obj.get("apiVersion").and_then(Value::as_str) != Some("events.k8s.io/v1") {
            from_core(obj);
        }
    }

    fn to_storage(&self, obj: &mut Value) {
        to_core(obj);
    }

    /// Kubernetes' `ValidateEventCreate` for events.k8s.io/v1.
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        if obj.get("eventTime").is_none_or(Value::is_null) {
            errs.push(FieldError::required("eventTime", ""));
        }
        match s("type") {
            "Normal" | "Warning" => {}
            other => errs.push(FieldError::not_supported(
                "type",
                &json!(other),
                &["Normal", "Warning"],
            )),
        }
        for field in ["reportingController", "reportingInstance", "action", "reason"] {
            if s(field).is_empty() {
                errs.push(FieldError::required(field, ""));
            }
        }
        if s("note").len() > 1024 {
            errs.push(FieldError::invalid("note", &json!(s("note")), "can have at most 1024 characters"));
        }
        errs
    }

    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    fn storage(&self) -> StorageHooks {
        StorageHooks {
            expires: true,
            ..Default::default()
        }
    }

    fn columns(&self) -> Vec<Value> {
        event::Events.columns()
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut core = obj.clone();
        to_core(&mut core);
        event::Events.cells(&core, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_v1_fields_map_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "message": "m", "involvedObject": {"name": "p"},
                          "source": {"component": "kubelet"}, "count": 3, "reason": "Pulled"});
        let mut v1 = core.clone();
        from_core(&mut v1);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["note"], "m");
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["reason"], "Pulled");
        assert!(v1.get("message").is_none());
        let mut back = v1;
        to_core(&mut back);
        assert_eq!(back, core);
    }

    #[test]
    fn validation_requires_what_recorders_send() {
        let fields: Vec<String> = EventsV1
            .validate(&json!({"type": "Chatty"}))
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["eventTime", "type", "reportingController", "reportingInstance", "action", "reason"]
        );
    }
}
