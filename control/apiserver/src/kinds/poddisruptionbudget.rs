//! PodDisruptionBudgets (policy/v1): how many pods of a set may be down at
//! once by voluntary disruption. The spec holds `minAvailable` or
//! `maxUnavailable` (an int or a percent, never both), a label selector (a
//! null selector selects nothing, `{}` every pod of the namespace) and
//! `unhealthyPodEvictionPolicy`; the disruption controller writes `status`
//! (`disruptionsAllowed`, the healthy counts, `disruptedPods`, the
//! `DisruptionAllowed` condition) and the `pods/eviction` subresource spends
//! it. Validation as Kubernetes' `ValidatePodDisruptionBudget` and
//! `ValidatePodDisruptionBudgetStatusUpdate`.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, i, name, Column, AGE, NAME};
use crate::kinds::validation::{check_int_or_percent, Errors};
use crate::kinds::{pod_scheduling, status, table, Resource, Strategy};
use crate::meta::names::check_label_key;
use crate::status::{ApiResult, FieldError};

/// The `PodDisruptionBudget` resource.
pub static RESOURCE: Resource = Resource {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    subresources: &[status("PodDisruptionBudget", "policy", "v1")],
    field_labels: None,
};

/// `spec.unhealthyPodEvictionPolicy` values, sorted as Kubernetes lists them.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// How `PodDisruptionBudget` objects behave.
pub struct PodDisruptionBudgets;

impl Strategy for PodDisruptionBudgets {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(generator)
    }

    fn empty_status(&self, obj: &mut Value) {
        if let Some(status) = obj_mut(obj, "status") {
            // Go's PodDisruptionBudgetStatus writes these without omitempty.
            for key in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
                default(status, key, json!(0));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj.get("spec").unwrap_or(&Value::Null))
    }

    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        validate_status(new.get("status").unwrap_or(&Value::Null))
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Go's `%#v` of a `PodDisruptionBudgetSpec`, which Kubernetes puts in the
/// "cannot be both set" error: pointers print as their type and address
/// (ours are fixed, Go's vary from call to call).
fn go_spec(spec: &Value) -> String {
    let ptr = |key: &str, ty: &str, addr: &str| {
        if spec.get(key).is_some_and(|v| !v.is_null()) {
            format!("(*{ty})({addr})")
        } else {
            format!("(*{ty})(nil)")
        }
    };
    format!(
        "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
        ptr("minAvailable", "intstr.IntOrString", "0xc000b1e000"),
        ptr("selector", "v1.LabelSelector", "0xc000b1e020"),
        ptr("maxUnavailable", "intstr.IntOrString", "0xc000b1e040"),
        ptr(
            "unhealthyPodEvictionPolicy",
            "policy.UnhealthyPodEvictionPolicyType",
            "0xc000b1e060"
        ),
    )
}

/// Kubernetes' `ValidatePodDisruptionBudgetSpec`.
pub fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let set = |key: &str| spec.get(key).filter(|v| !v.is_null());
    if set("minAvailable").is_some() && set("maxUnavailable").is_some() {
        errs.push(FieldError {
            reason: "FieldValueInvalid",
            field: "spec".into(),
            message: format!(
                "Invalid value: {}: minAvailable and maxUnavailable cannot be both set",
                go_spec(spec)
            ),
        });
    }
    check_int_or_percent(&mut errs, set("minAvailable"), "spec.minAvailable");
    check_int_or_percent(&mut errs, set("maxUnavailable"), "spec.maxUnavailable");
    errs.0.extend(pod_scheduling::validate_label_selector(
        set("selector"),
        "spec.selector",
    ));
    if let Some(policy) = set("unhealthyPodEvictionPolicy") {
        if !policy
            .as_str()
            .is_some_and(|p| UNHEALTHY_POD_EVICTION_POLICIES.contains(&p))
        {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
    errs.0
}

/// Kubernetes' `ValidatePodDisruptionBudgetStatusUpdate` (policy/v1): valid
/// conditions and non-negative counts.
pub fn validate_status(status: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    validate_conditions(&mut errs, status.get("conditions"), "status.conditions");
    for key in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
        if let Some(n) = status.get(key).filter(|n| n.as_i64().is_some_and(|n| n < 0)) {
            errs.push(FieldError::invalid(
                format!("status.{key}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    errs.0
}

const REASON_FORMAT: &str = "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')";

fn valid_reason(r: &str) -> bool {
    let b = r.as_bytes();
    let Some((first, rest)) = b.split_first() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
        && rest.last().is_none_or(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// apimachinery's `ValidateConditions` for `metav1.Condition` lists.
fn validate_conditions(errs: &mut Errors, conditions: Option<&Value>, path: &str) {
    let Some(list) = conditions.and_then(Value::as_array) else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (idx, c) in list.iter().enumerate() {
        let p = format!("{path}[{idx}]");
        let ty = c.get("type").and_then(Value::as_str).unwrap_or_default();
        if let Err(e) = check_label_key(ty) {
            errs.push(FieldError::invalid(format!("{p}.type"), &json!(ty), e));
        }
        if seen.contains(&ty) {
            errs.push(FieldError::duplicate(format!("{p}.type"), &json!(ty)));
        }
        seen.push(ty);
        let st = c.get("status").cloned().unwrap_or(json!(""));
        if !matches!(st.as_str(), Some("True" | "False" | "Unknown")) {
            errs.push(FieldError::not_supported(
                format!("{p}.status"),
                &st,
                &["False", "True", "Unknown"],
            ));
        }
        if let Some(g) = c
            .get("observedGeneration")
            .filter(|g| g.as_i64().is_some_and(|g| g < 0))
        {
            errs.push(FieldError::invalid(
                format!("{p}.observedGeneration"),
                g,
                "must be greater than or equal to zero",
            ));
        }
        if c.get("lastTransitionTime")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(format!("{p}.lastTransitionTime"), "must be set"));
        }
        match c.get("reason").and_then(Value::as_str).unwrap_or_default() {
            "" => errs.push(FieldError::required(format!("{p}.reason"), "must be set")),
            r if !valid_reason(r) => errs.push(FieldError::invalid(format!("{p}.reason"), &json!(r), REASON_FORMAT)),
            _ => {}
        }
    }
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        0,
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        0,
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        0,
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

/// An IntOrString as Go's `IntOrString.String()` prints it; `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

fn row(pdb: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(pdb),
        json!(int_or_string(pdb.pointer("/spec/minAvailable"))),
        json!(int_or_string(pdb.pointer("/spec/maxUnavailable"))),
        json!(i(pdb, &["status", "disruptionsAllowed"])),
        age(pdb, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(spec: Value) -> Vec<String> {
        validate_spec(&spec).iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn min_and_max_are_mutually_exclusive() {
        let errs =
            lines(json!({"minAvailable": 1, "maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0x"
            ),
            "{errs:?}"
        );
        assert!(
            errs[0].contains("UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}"),
            "{errs:?}"
        );
        assert!(
            errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"),
            "{errs:?}"
        );
    }

    #[test]
    fn int_or_percent_selector_and_policy_are_checked() {
        assert!(lines(json!({"minAvailable": "100%", "selector": {}})).is_empty());
        assert_eq!(
            lines(json!({"minAvailable": -1})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            lines(json!({"maxUnavailable": "120%"})),
            [r#"spec.maxUnavailable: Invalid value: "120%": must not be greater than 100%"#]
        );
        assert_eq!(
            lines(json!({"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "Sometimes"})),
            [
                r#"spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes": supported values: "AlwaysAllow", "IfHealthyBudget""#
            ]
        );
        assert_eq!(
            lines(json!({"minAvailable": 1, "selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}})),
            ["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]
        );
        assert!(lines(json!({"maxUnavailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow"})).is_empty());
    }

    #[test]
    fn status_counts_are_not_negative_and_conditions_are_valid() {
        let errs: Vec<String> = validate_status(&json!({
            "disruptionsAllowed": -1,
            "conditions": [{"type": "DisruptionAllowed", "status": "Maybe", "reason": "", "message": ""}],
        }))
        .iter()
        .map(FieldError::to_line)
        .collect();
        assert_eq!(
            errs,
            [
                r#"status.conditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#,
                "status.conditions[0].lastTransitionTime: Required value: must be set",
                "status.conditions[0].reason: Required value: must be set",
                "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn table_prints_na_for_the_unset_bound() {
        let pdb =
            json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        let cells = row(&pdb, Utc::now());
        assert_eq!(cells[..4], [json!("web"), json!("2"), json!("N/A"), json!(1)]);
        let names: Vec<String> = PodDisruptionBudgets
            .columns()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_uppercase())
            .collect();
        assert_eq!(
            names,
            ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]
        );
    }
}
