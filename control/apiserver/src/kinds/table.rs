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

pub(crate) fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn i(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

pub(crate) fn name(obj: &Value) -> Value {
    json!(s(obj, &["metadata", "name"]))
}

pub(crate) fn or_none(value: String) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value
    }
}

pub(crate) fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// Age of a timestamp field as kubectl prints it, `<unknown>` when absent.
pub(crate) fn age_of(t: &str, now: DateTime<Utc>) -> String {
    match parse_time(t) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
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

pub(crate) fn label_selector_string(selector: &Value) -> String {
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

pub(crate) fn map_selector_string(selector: Option<&Map<String, Value>>) -> String {
    selector
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub(crate) fn template_containers(obj: &Value) -> (String, String) {
    let containers = arr(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

pub(crate) fn desired_replicas(obj: &Value) -> i64 {
    get(obj, &["spec", "replicas"]).and_then(Value::as_i64).unwrap_or(1)
}

// ---- a kind that declares no columns ----

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

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
    }

    #[test]
    fn node_namespace_and_event_rows() {
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
