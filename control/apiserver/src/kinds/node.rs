//! Nodes (core/v1): cluster-scoped; created by the node daemon with their
//! status, which always carries `daemonEndpoints` and `nodeInfo` (Go structs
//! without `omitempty`).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, get, name, or_none, s, Column, AGE, NAME};
use crate::kinds::{status, table, Resource, Strategy, Subresource};
use crate::meta::selectors::bool_field;
use crate::status::ApiResult;

/// `nodes/proxy`: any request under `nodes/<name>/proxy/` goes to that node
/// daemon's port (`http::node_proxy::node_proxy`), as Kubernetes'
/// `NodeProxyOptions` connect subresource.
const PROXY: Subresource = Subresource {
    name: "proxy",
    kind: "NodeProxyOptions",
    kind_group: "",
    kind_version: "v1",
    verbs: &["create", "delete", "get", "patch", "update"],
    model: None,
};

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
    subresources: &[status("Node", "", "v1"), PROXY],
    field_labels: Some(&["metadata.name", "spec.unschedulable"]),
};

/// How `Node` objects behave.
pub struct Nodes;

impl Strategy for Nodes {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Node>(obj).map(Some)
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

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        (label == "spec.unschedulable").then(|| bool_field(obj, label))
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
    col("Status", "string", 0, "The status of the node."),
    col("Roles", "string", 0, "The roles of the node."),
    AGE,
    col("Version", "string", 0, "Kubelet version reported by the node."),
    col("Internal-IP", "string", 1, "The node's internal IP."),
    col("External-IP", "string", 1, "The node's external IP."),
    col("OS-Image", "string", 1, "OS image reported by the node."),
    col("Kernel-Version", "string", 1, "Kernel version reported by the node."),
    col(
        "Container-Runtime",
        "string",
        1,
        "Container runtime reported by the node.",
    ),
];

fn row(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = arr(node, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == "Ready")
        .map(|c| match s(c, &["status"]) {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_string();
    if node.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for k in labels.keys() {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = labels[k].as_str() {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    let address = |ty: &str| {
        arr(node, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map(|a| s(a, &["address"]).to_string())
            .unwrap_or_default()
    };
    let info = |field: &str| or_none(s(node, &["status", "nodeInfo", field]).to_string());
    vec![
        name(node),
        json!(status),
        json!(or_none(roles.join(","))),
        age(node, now),
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(or_none(address("InternalIP"))),
        json!(or_none(address("ExternalIP"))),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}
