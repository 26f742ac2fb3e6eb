//! StatefulSets (apps/v1): defaults as Kubernetes (1 replica, OrderedReady,
//! RollingUpdate with partition 0, history 10, PVC retention Retain/Retain);
//! the selector is required and must match the template; only the fields
//! Kubernetes lets change may change; `/scale` as Deployments.
//!
//! `volumeClaimTemplates` are validated as claims (a name per template, each
//! spec as a PersistentVolumeClaim's); the StatefulSet controller creates
//! the claims `<template>-<set>-<ordinal>` and honours
//! `persistentVolumeClaimRetentionPolicy`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, desired_replicas, i, name, template_containers, Column, AGE, NAME};
use crate::kinds::validation::{self, Errors};
use crate::kinds::{defaults, persistentvolumeclaim, status, table, Resource, Strategy, SCALE};
use crate::status::{ApiResult, FieldError};

/// The `StatefulSet` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[status("StatefulSet", "apps", "v1"), SCALE],
    field_labels: None,
};

/// Spec fields an update may change (Kubernetes' `ValidateStatefulSetUpdate`).
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// How `StatefulSet` objects behave.
pub struct StatefulSets;

impl Strategy for StatefulSets {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::apps::v1::StatefulSet>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::apps::v1::StatefulSet>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "replicas", json!(1));
        default(spec, "podManagementPolicy", json!("OrderedReady"));
        default(spec, "revisionHistoryLimit", json!(10));
        default(spec, "updateStrategy", json!({}));
        if let Some(st) = spec.get_mut("updateStrategy").and_then(Value::as_object_mut) {
            default(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                default(st, "rollingUpdate", json!({}));
                if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                    default(ru, "partition", json!(0));
                }
            }
        }
        default(spec, "persistentVolumeClaimRetentionPolicy", json!({}));
        if let Some(p) = spec
            .get_mut("persistentVolumeClaimRetentionPolicy")
            .and_then(Value::as_object_mut)
        {
            default(p, "whenDeleted", json!("Retain"));
            default(p, "whenScaled", json!("Retain"));
        }
        defaults::default_template(spec);
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            default(status, "replicas", json!(0));
            default(status, "availableReplicas", json!(0));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        let changed = |field: &str| old.pointer(&format!("/spec/{field}")) != new.pointer(&format!("/spec/{field}"));
        let keys = |v: &Value| -> Vec<String> {
            v.get("spec")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut fields = keys(old);
        fields.extend(keys(new));
        if fields.iter().any(|f| !MUTABLE.contains(&f.as_str()) && changed(f)) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        let mut st = Errors::default();
        for field in [
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
            "observedGeneration",
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

fn check(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = validation::validate_workload_for("statefulset", old, obj);
    let spec = obj.get("spec");
    let at = |p: &str| spec.and_then(|s| s.pointer(p));
    validation::check_non_negative(&mut errs, at("/minReadySeconds"), "spec.minReadySeconds");
    validation::check_non_negative(&mut errs, at("/revisionHistoryLimit"), "spec.revisionHistoryLimit");
    validation::check_non_negative(&mut errs, at("/ordinals/start"), "spec.ordinals.start");
    match at("/podManagementPolicy").and_then(Value::as_str) {
        Some("OrderedReady" | "Parallel") => {}
        None | Some("") => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        Some(_) => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            at("/podManagementPolicy").unwrap_or(&Value::Null),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    check_update_strategy(&mut errs, at("/updateStrategy"));
    for policy in ["whenDeleted", "whenScaled"] {
        if let Some(v) = at(&format!("/persistentVolumeClaimRetentionPolicy/{policy}")) {
            if !matches!(v.as_str(), Some("Retain" | "Delete")) {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{policy}"),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    for (i, t) in at("/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let path = format!("spec.volumeClaimTemplates[{i}]");
        match t.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(
                format!("{path}.metadata.name"),
                "name or generateName is required",
            )),
            n => {
                if let Err(e) = crate::meta::names::check_dns1123_subdomain(n) {
                    errs.push(FieldError::invalid(format!("{path}.metadata.name"), &json!(n), e));
                }
            }
        }
        errs.0.extend(persistentvolumeclaim::validate_spec_at(
            t.get("spec").unwrap_or(&Value::Null),
            &format!("{path}.spec"),
        ));
    }
    errs.0
}

fn check_update_strategy(errs: &mut Errors, strategy: Option<&Value>) {
    let Some(strategy) = strategy else { return };
    let rolling = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match strategy.get("type").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.updateStrategy", "")),
        Some("OnDelete") => {
            if let Some(ru) = rolling {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            if let Some(ru) = rolling {
                let base = "spec.updateStrategy.rollingUpdate";
                validation::check_non_negative(errs, ru.get("partition"), &format!("{base}.partition"));
                let path = format!("{base}.maxUnavailable");
                if let Some(0) = validation::check_int_or_percent(errs, ru.get("maxUnavailable"), &path) {
                    errs.push(FieldError::invalid(
                        path,
                        ru.get("maxUnavailable").unwrap_or(&Value::Null),
                        "must be greater than 0",
                    ));
                }
            }
        }
        Some(_) => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        0,
        "Number of the pod with ready state out of the desired replicas.",
    ),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
];

fn row(sts: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(sts);
    vec![
        name(sts),
        json!(format!(
            "{}/{}",
            i(sts, &["status", "readyReplicas"]),
            desired_replicas(sts)
        )),
        age(sts, now),
        json!(containers),
        json!(images),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        let mut s = json!({
            "metadata": {"name": "db", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {
                "serviceName": "db",
                "replicas": 3,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        });
        StatefulSets.default(&mut s);
        s
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let s = sts();
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(s["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert!(StatefulSets.validate(&s).is_empty(), "{:?}", StatefulSets.validate(&s));
    }

    #[test]
    fn volume_claim_templates_are_validated_as_claims() {
        let mut s = sts();
        s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
        assert!(StatefulSets.validate(&s).is_empty(), "{:?}", StatefulSets.validate(&s));
        s["spec"]["volumeClaimTemplates"] =
            json!([{"metadata": {}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]);
        let errs: Vec<String> = StatefulSets.validate(&s).iter().map(FieldError::to_line).collect();
        assert_eq!(
            errs,
            [
                "spec.volumeClaimTemplates[0].metadata.name: Required value: name or generateName is required",
                "spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required",
            ]
        );
    }

    #[test]
    fn template_pod_specs_go_through_the_support_check() {
        let mut s = sts();
        s["spec"]["template"]["spec"]["volumes"] = json!([{"name": "data", "gcePersistentDisk": {"pdName": "x"}}]);
        let errs = StatefulSets.validate(&s);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.spec.volumes[0].gcePersistentDisk");
        // On update only changed fields are refused.
        assert!(StatefulSets.validate_update(&s, &s).is_empty());
    }

    #[test]
    fn only_kubernetes_mutable_fields_may_change() {
        let old = sts();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        new["spec"]["ordinals"] = json!({"start": 3});
        assert!(StatefulSets.validate_update(&old, &new).is_empty());
        new["spec"]["serviceName"] = json!("other");
        let errs = StatefulSets.validate_update(&old, &new);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec");
        new["spec"]["serviceName"] = json!("db");
        new["spec"]["podManagementPolicy"] = json!("Parallel");
        assert_eq!(StatefulSets.validate_update(&old, &new)[0].field, "spec");
    }

    #[test]
    fn strategies_and_policies_are_checked() {
        let mut s = sts();
        s["spec"]["podManagementPolicy"] = json!("Random");
        s["spec"]["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        let errs: Vec<String> = StatefulSets.validate(&s).iter().map(|e| e.field.clone()).collect();
        assert_eq!(errs, ["spec.podManagementPolicy", "spec.updateStrategy.rollingUpdate"]);
        let mut s = sts();
        s["spec"]["updateStrategy"]["rollingUpdate"] = json!({"partition": -1, "maxUnavailable": 0});
        let errs: Vec<String> = StatefulSets.validate(&s).iter().map(|e| e.field.clone()).collect();
        assert_eq!(
            errs,
            [
                "spec.updateStrategy.rollingUpdate.partition",
                "spec.updateStrategy.rollingUpdate.maxUnavailable"
            ]
        );
    }

    #[test]
    fn table_row_is_kubectls() {
        let mut s = sts();
        s["status"] = json!({"readyReplicas": 2});
        let now = crate::kinds::table::parse_time("2026-01-01T12:00:00Z").expect("time");
        assert_eq!(
            row(&s, now),
            json!(["db", "2/3", "60m", "c", "busybox"])
                .as_array()
                .expect("row")
                .clone()
        );
    }
}
