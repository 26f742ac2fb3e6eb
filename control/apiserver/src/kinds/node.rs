//! Nodes (core/v1): cluster-scoped; created by the node daemon with their
//! status, which always carries `daemonEndpoints` and `nodeInfo` (Go structs
//! without `omitempty`).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::{table, status, Resource, Strategy};
use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::status::ApiResult;

/// The `Node` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[status("Node", "", "v1")],
    field_labels: Some(&["metadata.name", "spec.unschedulable"]),
};

/// How `Node` objects behave.
pub struct Nodes;

impl Strategy for Nodes {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: &Value) -> ApiResult<Option<Value>> {
        crate::meta::typed::round_trip::<k8s_openapi::api::core::v1::Node>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Node>(generator)
    }

    fn keeps_status_on_create(&self) -> bool {
        true
    }

    fn empty_status(&self, obj: &mut Value) {
        const NODE_INFO: &[&str] = &[
            "machineID",
            "systemUUID",
            "bootID",
            "kernelVersion",
            "osImage",
            "containerRuntimeVersion",
            "kubeletVersion",
            "kubeProxyVersion",
            "operatingSystem",
            "architecture",
        ];
        let Some(status) = obj_mut(obj, "status") else { return };
        default(status, "daemonEndpoints", json!({}));
        if let Some(d) = status.get_mut("daemonEndpoints").and_then(Value::as_object_mut) {
            default(d, "kubeletEndpoint", json!({}));
            if let Some(k) = d.get_mut("kubeletEndpoint").and_then(Value::as_object_mut) {
                default(k, "Port", json!(0));
            }
        }
        default(status, "nodeInfo", json!({}));
        if let Some(info) = status.get_mut("nodeInfo").and_then(Value::as_object_mut) {
            for k in NODE_INFO {
                default(info, k, json!(""));
            }
        }
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(table::NODE_COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::node_cells(obj, now)
    }
}
