//! Server-side printing: objects as a `meta.k8s.io/v1` `Table`.
//!
//! kubectl asks for `as=Table;v=v1;g=meta.k8s.io` on get/list/watch and prints
//! the cells as they come, so the columns users know from Kubernetes (READY,
//! STATUS, RESTARTS, PORT(S), ...) are computed here, per resource, from the
//! stored JSON. Columns with priority 1 are the ones `-o wide` adds.

use crate::kinds::Kind;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// What each row carries in its `object` field (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default, enough for kubectl's name column).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parse the `includeObject` query parameter (`None`, `Metadata`, `Object`).
    pub fn parse(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Objects of `kind` as a Table whose rows carry `PartialObjectMetadata`.
pub fn to_table(kind: &Kind, objects: &[Value], list_metadata: Value) -> Value {
    to_table_with(kind, objects, list_metadata, IncludeObject::Metadata, Utc::now())
}

/// Objects of `kind` as a Table, rows carrying what `include` says, ages
/// computed against `now`.
pub fn to_table_with(
    kind: &Kind,
    objects: &[Value],
    list_metadata: Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let columns = kind.columns();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": kind.cells(obj, now) });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let metadata = if list_metadata.is_object() {
        list_metadata
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One column of a printer.
pub struct Column {
    /// Header, e.g. `Ready`.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string` or `integer`.
    pub kind: &'static str,
    /// 0 = always shown, 1 = shown by `-o wide`.
    pub priority: u8,
    /// Column description.
    pub description: &'static str,
}

pub const fn col(name: &'static str, kind: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind,
        priority,
        description,
    }
}

pub const NAME: Column = col("Name", "string", 0, "Name of the object.");
pub const AGE: Column = col("Age", "string", 0, "Time since the object was created.");

/// `TableColumnDefinition`s for `columns`.
pub fn column_definitions(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// The columns of a kind that declares none: Name and Age.
pub fn default_columns() -> Vec<Value> {
    column_definitions(DEFAULT_COLUMNS)
}

// ---- small accessors over untyped JSON ----

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

fn name(obj: &Value) -> Value {
    json!(s(obj, &["metadata", "name"]))
}

fn or_none(value: String) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value
    }
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// Age of a timestamp field as kubectl prints it, `<unknown>` when absent.
fn age_of(t: &str, now: DateTime<Utc>) -> String {
    match parse_time(t) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(age_of(s(obj, &["metadata", "creationTimestamp"]), now))
}

/// A duration the way Kubernetes prints ages: `45s`, `3m12s`, `5h`, `2d3h`, `400d`, `3y20d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    let minutes = secs / 60;
    let hours = secs / 3600;
    let days = secs / 86400;
    let years = days / 365;
    if secs < 60 * 2 {
        format!("{secs}s")
    } else if minutes < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        let dd = days % 365;
        if dd == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dd}d")
        }
    } else {
        format!("{years}y")
    }
}

fn label_selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in arr(selector, &["matchExpressions"]) {
        let key = s(e, &["key"]);
        let values: Vec<&str> = arr(e, &["values"]).iter().filter_map(Value::as_str).collect();
        match s(e, &["operator"]) {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            op => parts.push(format!("{key} {op} ({})", values.join(","))),
        }
    }
    parts.join(",")
}

fn map_selector_string(selector: Option<&Map<String, Value>>) -> String {
    selector
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn template_containers(obj: &Value) -> (String, String) {
    let containers = arr(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

// ---- Pod ----

pub(crate) const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", 0, "The aggregate status of the containers in this pod."),
    col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    col("IP", "string", 1, "IP address allocated to the pod."),
    col("Node", "string", 1, "Name of the node the pod is assigned to."),
    col("Nominated Node", "string", 1, "Node the scheduler nominated for this pod, if any."),
    col("Readiness Gates", "string", 1, "Readiness gates that are true, out of those declared."),
];

/// The STATUS column: the most telling reason among phase, init containers and containers.
fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, &["status", "phase"]).to_string();
    if !s(pod, &["status", "reason"]).is_empty() {
        reason = s(pod, &["status", "reason"]).to_string();
    }
    let init_statuses = arr(pod, &["status", "initContainerStatuses"]);
    let init_total = arr(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (idx, c) in init_statuses.iter().enumerate() {
        let terminated = get(c, &["state", "terminated"]);
        let waiting = get(c, &["state", "waiting"]);
        if let Some(t) = terminated {
            if i(t, &["exitCode"]) == 0 {
                continue;
            }
            let r = s(t, &["reason"]);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if i(t, &["signal"]) != 0 {
                format!("Init:Signal:{}", i(t, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", i(t, &["exitCode"]))
            };
        } else if let Some(w) =
            waiting.filter(|w| !s(w, &["reason"]).is_empty() && s(w, &["reason"]) != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, &["reason"]));
        } else {
            reason = format!("Init:{idx}/{init_total}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in arr(pod, &["status", "containerStatuses"]).iter().rev() {
            if let Some(w) = get(c, &["state", "waiting"]) {
                if !s(w, &["reason"]).is_empty() {
                    reason = s(w, &["reason"]).to_string();
                }
            } else if let Some(t) = get(c, &["state", "terminated"]) {
                let r = s(t, &["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if i(t, &["signal"]) != 0 {
                    format!("Signal:{}", i(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", i(t, &["exitCode"]))
                };
            } else if get(c, &["state", "running"]).is_some() && c.get("ready") == Some(&json!(true)) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".to_string();
        }
    }
    if get(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        reason = if s(pod, &["status", "reason"]) == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    if reason.is_empty() {
        "Pending".to_string()
    } else {
        reason
    }
}

pub(crate) fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let statuses = arr(pod, &["status", "containerStatuses"]);
    let total = arr(pod, &["spec", "containers"]).len();
    let ready = statuses.iter().filter(|c| c.get("ready") == Some(&json!(true))).count();
    let mut restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    for c in arr(pod, &["status", "initContainerStatuses"]).iter().chain(statuses) {
        restarts += i(c, &["restartCount"]);
        if let Some(t) = parse_time(s(c, &["lastState", "terminated", "finishedAt"])) {
            if last_restart.is_none_or(|l| t > l) {
                last_restart = Some(t);
            }
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now.signed_duration_since(t))),
        _ => restarts.to_string(),
    };
    let gates = arr(pod, &["spec", "readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(pod, &["status", "conditions"]);
        let true_gates = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .any(|c| s(c, &["type"]) == s(g, &["conditionType"]) && s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        age(pod, now),
        json!(or_none(s(pod, &["status", "podIP"]).to_string())),
        json!(or_none(s(pod, &["spec", "nodeName"]).to_string())),
        json!(or_none(s(pod, &["status", "nominatedNodeName"]).to_string())),
        json!(gates),
    ]
}

// ---- Deployment / ReplicaSet ----

pub(crate) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        0,
        "Number of the pod with ready state out of the desired replicas.",
    ),
    col(
        "Up-to-date",
        "integer",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "integer",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    col("Selector", "string", 1, "Label selector for pods."),
];

fn desired_replicas(obj: &Value) -> i64 {
    get(obj, &["spec", "replicas"]).and_then(Value::as_i64).unwrap_or(1)
}

pub(crate) fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(d);
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            i(d, &["status", "readyReplicas"]),
            desired_replicas(d)
        )),
        json!(i(d, &["status", "updatedReplicas"])),
        json!(i(d, &["status", "availableReplicas"])),
        age(d, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            d.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

pub(crate) const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", 0, "Number of desired pods."),
    col("Current", "integer", 0, "Number of actually running pods."),
    col("Ready", "integer", 0, "Number of ready pods."),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    col("Selector", "string", 1, "Label selector for pods."),
];

pub(crate) fn replicaset_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(rs);
    vec![
        name(rs),
        json!(desired_replicas(rs)),
        json!(i(rs, &["status", "replicas"])),
        json!(i(rs, &["status", "readyReplicas"])),
        age(rs, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            rs.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

// ---- Service ----

pub(crate) const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0, "The type of the service."),
    col("Cluster-IP", "string", 0, "The cluster IP of the service."),
    col("External-IP", "string", 0, "The external IP of the service."),
    col(
        "Port(s)",
        "string",
        0,
        "The ports of the service: port[:nodePort]/protocol.",
    ),
    AGE,
    col("Selector", "string", 1, "The label selector of the service."),
];

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = arr(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match s(svc, &["spec", "type"]) {
        "ExternalName" => s(svc, &["spec", "externalName"]).to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .map(|i| {
                    let ip = s(i, &["ip"]);
                    if ip.is_empty() {
                        s(i, &["hostname"]).to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .filter(|x| !x.is_empty())
                .collect();
            ips.extend(external.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        _ => or_none(external.join(",")),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = match s(p, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            let node_port = i(p, &["nodePort"]);
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", i(p, &["port"]))
            } else {
                format!("{}/{protocol}", i(p, &["port"]))
            }
        })
        .collect();
    or_none(ports.join(","))
}

pub(crate) fn service_cells(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match s(svc, &["spec", "type"]) {
        "" => "ClusterIP",
        other => other,
    };
    vec![
        name(svc),
        json!(ty),
        json!(or_none(s(svc, &["spec", "clusterIP"]).to_string())),
        json!(service_external_ip(svc)),
        json!(service_ports(svc)),
        age(svc, now),
        json!(or_none(map_selector_string(
            get(svc, &["spec", "selector"]).and_then(Value::as_object)
        ))),
    ]
}

// ---- Node ----

pub(crate) const NODE_COLUMNS: &[Column] = &[
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

pub(crate) fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

// ---- Namespace ----

pub(crate) const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", "string", 0, "The phase of the namespace."), AGE];

pub(crate) fn namespace_cells(ns: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = match s(ns, &["status", "phase"]) {
        "" => "Active",
        p => p,
    };
    vec![name(ns), json!(phase), age(ns, now)]
}

// ---- Event ----

pub(crate) const EVENT_COLUMNS: &[Column] = &[
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

pub(crate) fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

// ---- Endpoints / EndpointSlice ----

pub(crate) const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col("Endpoints", "string", 0, "Endpoints of the service: ip:port."),
    AGE,
];

/// The ENDPOINTS column: the first three `ip:port` pairs, then `+ N more...`.
fn endpoints_string(ep: &Value) -> String {
    let mut all: Vec<String> = Vec::new();
    for subset in arr(ep, &["subsets"]) {
        let ports = arr(subset, &["ports"]);
        for addr in arr(subset, &["addresses"]) {
            let ip = s(addr, &["ip"]);
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in ports {
                all.push(format!("{ip}:{}", i(p, &["port"])));
            }
        }
    }
    if all.is_empty() {
        return "<none>".to_string();
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

pub(crate) fn endpoints_cells(ep: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(ep), json!(endpoints_string(ep)), age(ep, now)]
}

pub(crate) const ENDPOINTSLICE_COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", 0, "Type of the addresses in this slice."),
    col("Ports", "string", 0, "Ports of the slice."),
    col("Endpoints", "string", 0, "First addresses of the slice."),
    AGE,
];

pub(crate) fn endpointslice_cells(es: &Value, now: DateTime<Utc>) -> Vec<Value> {
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

// ---- ConfigMap / Secret / ServiceAccount / Lease / anything else ----

pub(crate) const CONFIGMAP_COLUMNS: &[Column] = &[NAME, col("Data", "integer", 0, "Number of data entries."), AGE];

pub(crate) fn configmap_cells(cm: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let count = ["data", "binaryData"]
        .iter()
        .filter_map(|k| cm.get(k).and_then(Value::as_object))
        .map(Map::len)
        .sum::<usize>();
    vec![name(cm), json!(count), age(cm, now)]
}

pub(crate) const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0, "Type of the secret."),
    col("Data", "integer", 0, "Number of data entries."),
    AGE,
];

pub(crate) fn secret_cells(secret: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = match s(secret, &["type"]) {
        "" => "Opaque",
        t => t,
    };
    let count = secret.get("data").and_then(Value::as_object).map_or(0, Map::len);
    vec![name(secret), json!(ty), json!(count), age(secret, now)]
}

pub(crate) const SERVICEACCOUNT_COLUMNS: &[Column] = &[NAME, col("Secrets", "integer", 0, "Number of secrets."), AGE];

pub(crate) fn serviceaccount_cells(sa: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(sa), json!(arr(sa, &["secrets"]).len()), age(sa, now)]
}

pub(crate) const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "string", 0, "Holder of the lease."), AGE];

pub(crate) fn lease_cells(lease: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(lease),
        json!(s(lease, &["spec", "holderIdentity"])),
        age(lease, now),
    ]
}

pub(crate) const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

pub(crate) fn default_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![name(obj), age(obj, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{builtin as by_kind, Kind};

    fn now() -> DateTime<Utc> {
        parse_time("2026-01-01T12:00:00Z").expect("time")
    }

    fn table(kind: &str, group: &str, objects: &[Value]) -> Value {
        let k = Kind::Builtin(by_kind(group, kind).expect("served kind"));
        to_table_with(
            &k,
            objects,
            json!({"resourceVersion": "7"}),
            IncludeObject::Metadata,
            now(),
        )
    }

    fn column_names(t: &Value) -> Vec<(String, i64)> {
        t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["priority"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    #[test]
    fn ages_print_like_kubernetes() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(192)), "3m12s");
        assert_eq!(human_duration(d(300)), "5m");
        assert_eq!(human_duration(d(45 * 60)), "45m");
        assert_eq!(human_duration(d(5 * 3600 + 60 * 7)), "5h7m");
        assert_eq!(human_duration(d(20 * 3600)), "20h");
        assert_eq!(human_duration(d(3 * 86400 + 3600 * 2)), "3d2h");
        assert_eq!(human_duration(d(400 * 86400)), "400d");
        assert_eq!(human_duration(d(3 * 365 * 86400 + 86400 * 20)), "3y20d");
        assert_eq!(human_duration(d(-5)), "<invalid>");
    }

    #[test]
    fn pod_rows_show_ready_status_restarts_and_wide_columns() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2026-01-01T11:55:00Z", "uid": "u1"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.5",
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": "2026-01-01T11:58:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ]
            }
        });
        let t = table("Pod", "", &[pod]);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let cols = column_names(&t);
        assert_eq!(
            cols[..5].iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["Name", "Ready", "Status", "Restarts", "Age"]
        );
        assert!(cols[5..].iter().all(|c| c.1 == 1));
        let row = &t["rows"][0];
        assert_eq!(
            row["cells"],
            json!([
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (2m ago)",
                "5m",
                "10.244.0.5",
                "node-a",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["uid"], "u1");
    }

    #[test]
    fn pod_status_covers_pending_init_and_terminating() {
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pod_status(&pending), "Pending");
        let init = json!({
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"state": {"running": {}}}]}
        });
        assert_eq!(pod_status(&init), "Init:0/1");
        let terminating = json!({
            "metadata": {"deletionTimestamp": "2026-01-01T11:59:00Z"},
            "status": {"phase": "Running"}
        });
        assert_eq!(pod_status(&terminating), "Terminating");
        let completed = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_status(&completed), "Completed");
    }

    #[test]
    fn deployment_and_replicaset_rows() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let t = table("Deployment", "apps", std::slice::from_ref(&d));
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web", "2/3", 3, 2, "120m", "nginx,side", "nginx:1,busybox", "app=web"])
        );
        let t = table("ReplicaSet", "apps", &[d]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web", 3, 0, 2, "120m", "nginx,side", "nginx:1,busybox", "app=web"])
        );
    }

    #[test]
    fn service_rows_show_node_ports_and_selector() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T11:59:30Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        });
        let t = table("Service", "", &[svc]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "30s",
                "app=web"
            ])
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11"}});
        assert_eq!(service_external_ip(&lb), "<pending>");
        assert_eq!(service_ports(&lb), "<none>");
    }

    #[test]
    fn node_namespace_event_and_endpoints_rows() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T11:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0-sluice"}}
        });
        let t = table("Node", "", &[node]);
        assert_eq!(
            t["rows"][0]["cells"].as_array().expect("cells")[..5],
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "60m",
                "v1.32.0-sluice"
            ])
            .as_array()
            .expect("arr")[..]
        );
        assert_eq!(t["rows"][0]["cells"][5], "192.0.2.1");

        let ns = json!({"metadata": {"name": "default", "creationTimestamp": "2026-01-01T11:00:00Z"}, "status": {"phase": "Active"}});
        assert_eq!(
            table("Namespace", "", &[ns])["rows"][0]["cells"],
            json!(["default", "Active", "60m"])
        );

        let ev = json!({
            "metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled", "message": "assigned",
            "involvedObject": {"kind": "Pod", "name": "web-1"}, "count": 1,
            "firstTimestamp": "2026-01-01T11:50:00Z", "lastTimestamp": "2026-01-01T11:59:00Z"
        });
        let t = table("Event", "", &[ev]);
        let cols = column_names(&t);
        let shown: Vec<&str> = cols.iter().filter(|c| c.1 == 0).map(|c| c.0.as_str()).collect();
        assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        assert_eq!(
            t["rows"][0]["cells"].as_array().expect("cells")[..4],
            json!(["60s", "Normal", "Scheduled", "pod/web-1"])
                .as_array()
                .expect("arr")[..]
        );

        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints_string(&ep), "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...");
        assert_eq!(endpoints_string(&json!({})), "<none>");
    }

    #[test]
    fn include_object_and_default_printer() {
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2026-01-01T11:59:00Z"}, "data": {"a": "1", "b": "2"}});
        let r = &Kind::Builtin(by_kind("", "ConfigMap").expect("cm"));
        let t = to_table_with(r, std::slice::from_ref(&cm), Value::Null, IncludeObject::Object, now());
        assert_eq!(t["rows"][0]["cells"], json!(["c", 2, "60s"]));
        assert_eq!(t["rows"][0]["object"], cm);
        assert_eq!(t["metadata"], json!({}));
        let t = to_table_with(r, &[cm], Value::Null, IncludeObject::None, now());
        assert!(t["rows"][0].get("object").is_none());
        assert_eq!(IncludeObject::parse(Some("Object")), IncludeObject::Object);
        assert_eq!(IncludeObject::parse(None), IncludeObject::Metadata);
        let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}});
        let r = &Kind::Builtin(by_kind("coordination.k8s.io", "Lease").expect("lease"));
        assert_eq!(
            to_table_with(r, &[lease], Value::Null, IncludeObject::None, now())["rows"][0]["cells"],
            json!(["l", "me", "<unknown>"])
        );
    }
}
