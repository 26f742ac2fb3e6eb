//! DaemonSets (apps/v1): defaults as Kubernetes (RollingUpdate with
//! maxUnavailable 1 and maxSurge 0, history 10); the selector is required,
//! must match the template and is immutable; exactly one of maxUnavailable
//! and maxSurge is non-zero; the four counters of `status` are always present.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{
    age, col, i, label_selector_string, map_selector_string, name, or_none, template_containers, Column, AGE, NAME,
};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{defaults, status, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `DaemonSet` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[status("DaemonSet", "apps", "v1")],
    field_labels: None,
};

/// How `DaemonSet` objects behave.
pub struct DaemonSets;

impl Strategy for DaemonSets {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::apps::v1::DaemonSet>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::apps::v1::DaemonSet>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "updateStrategy", json!({}));
        if let Some(st) = spec.get_mut("updateStrategy").and_then(Value::as_object_mut) {
            default(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default(st, "rollingUpdate", json!({}));
                if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                    default(ru, "maxUnavailable", json!(1));
                    default(ru, "maxSurge", json!(0));
                }
            }
        }
        defaults::default_template(spec);
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            for field in [
                "currentNumberScheduled",
                "numberMisscheduled",
                "desiredNumberScheduled",
                "numberReady",
            ] {
                default(status, field, json!(0));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        errs.extend(validation::immutable(old, new, "/spec/selector", "spec.selector"));
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        let mut st = Errors::default();
        for field in [
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "collisionCount",
        ] {
            validation::check_non_negative(
                &mut st,
                new.pointer(&format!("/status/{field}")),
                &format!("status.{field}"),
            );
        }
        errs.extend(st.0);
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// The workload checks plus the DaemonSet's own (update strategy, history).
fn check(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = validation::validate_workload_for("daemonset", old, obj);
    let spec = obj.get("spec");
    let at = |p: &str| spec.and_then(|s| s.pointer(p));
    validation::check_non_negative(&mut errs, at("/minReadySeconds"), "spec.minReadySeconds");
    validation::check_non_negative(&mut errs, at("/revisionHistoryLimit"), "spec.revisionHistoryLimit");
    if let Some(strategy) = at("/updateStrategy") {
        match strategy.get("type").and_then(Value::as_str) {
            Some("OnDelete") => {}
            Some("RollingUpdate") => check_rolling_update(&mut errs, strategy.get("rollingUpdate")),
            _ => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                strategy.get("type").unwrap_or(&Value::Null),
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    errs.0
}

fn check_rolling_update(errs: &mut Errors, ru: Option<&Value>) {
    let Some(ru) = ru.filter(|v| !v.is_null()) else {
        errs.push(FieldError::required("spec.updateStrategy.rollingUpdate", ""));
        return;
    };
    let base = "spec.updateStrategy.rollingUpdate";
    let unavailable =
        validation::check_int_or_percent(errs, ru.get("maxUnavailable"), &format!("{base}.maxUnavailable"));
    let surge = validation::check_int_or_percent(errs, ru.get("maxSurge"), &format!("{base}.maxSurge"));
    let has_unavailable = unavailable.unwrap_or(0) != 0;
    let has_surge = surge.unwrap_or(0) != 0;
    if has_unavailable && has_surge {
        errs.push(FieldError::invalid(
            format!("{base}.maxSurge"),
            ru.get("maxSurge").unwrap_or(&Value::Null),
            "may not be set when maxUnavailable is non-zero",
        ));
    } else if !has_unavailable && !has_surge {
        errs.push(FieldError::required(
            format!("{base}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        ));
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        0,
        "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        0,
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        0,
        "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    col(
        "Up-to-date",
        "integer",
        0,
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        0,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        0,
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.",
    ),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    col("Selector", "string", 1, "A label query over pods that are managed by the daemon set."),
];

fn row(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(ds);
    let node_selector = ds
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object);
    vec![
        name(ds),
        json!(i(ds, &["status", "desiredNumberScheduled"])),
        json!(i(ds, &["status", "currentNumberScheduled"])),
        json!(i(ds, &["status", "numberReady"])),
        json!(i(ds, &["status", "updatedNumberScheduled"])),
        json!(i(ds, &["status", "numberAvailable"])),
        json!(or_none(map_selector_string(node_selector))),
        age(ds, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            ds.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(strategy: Value) -> Value {
        json!({
            "metadata": {"name": "agent", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "image": "busybox"}]}},
            },
        })
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:1"}]}}}});
        DaemonSets.default(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut on_delete = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        DaemonSets.default(&mut on_delete);
        assert!(on_delete["spec"]["updateStrategy"].get("rollingUpdate").is_none());
        let mut st = json!({});
        DaemonSets.empty_status(&mut st);
        assert_eq!(st["status"]["numberReady"], 0);
        assert_eq!(st["status"]["desiredNumberScheduled"], 0);
    }

    #[test]
    fn rolling_update_needs_exactly_one_of_surge_and_unavailable() {
        let ok = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "20%"}}));
        assert!(DaemonSets.validate(&ok).is_empty(), "{:?}", DaemonSets.validate(&ok));
        let both = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}));
        assert_eq!(
            fields(&DaemonSets.validate(&both)),
            ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
        );
        let none = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}));
        assert_eq!(
            fields(&DaemonSets.validate(&none)),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        let bad = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%", "maxSurge": 0}}));
        assert_eq!(
            DaemonSets.validate(&bad)[0].field,
            "spec.updateStrategy.rollingUpdate.maxUnavailable"
        );
        let typ = ds(json!({"type": "Sometimes"}));
        assert_eq!(DaemonSets.validate(&typ)[0].field, "spec.updateStrategy.type");
    }

    #[test]
    fn selector_is_required_matching_and_immutable() {
        let mut d = ds(json!({"type": "OnDelete"}));
        d["spec"]["selector"] = json!({});
        assert!(fields(&DaemonSets.validate(&d))
            .iter()
            .any(|e| e.contains("empty selector is invalid for daemonset")));
        let old = ds(json!({"type": "OnDelete"}));
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        assert_eq!(
            fields(&DaemonSets.validate_update(&old, &new))
                .iter()
                .filter(|e| e.contains("immutable"))
                .count(),
            1
        );
    }

    #[test]
    fn template_pod_specs_go_through_the_support_check() {
        let mut d = ds(json!({"type": "OnDelete"}));
        d["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "data", "nfs": {"server": "nfs.example", "path": "/x"}}]);
        let errs = DaemonSets.validate(&d);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.spec.volumes[0].nfs");
        assert!(errs[0].message.starts_with("Forbidden:"));
    }

    #[test]
    fn table_row_is_kubectls() {
        let mut d = ds(json!({"type": "OnDelete"}));
        d["status"] = json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                             "updatedNumberScheduled": 1, "numberAvailable": 2});
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&d, now),
            json!(["agent", 3, 3, 2, 1, 2, "disk=ssd", "120m", "a", "busybox", "app=agent"])
                .as_array()
                .expect("row")
                .clone()
        );
    }
}
