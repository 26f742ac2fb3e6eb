//! PriorityClasses (`scheduling.k8s.io/v1`): named pod priorities.
//!
//! The kind as Kubernetes describes it: `preemptionPolicy` defaults to
//! `PreemptLowerPriority`; names starting with `system-` are reserved for
//! the two classes every cluster has ([`SYSTEM_CLASSES`], created by the API
//! server at start), other classes may not exceed
//! [`HIGHEST_USER_DEFINABLE_PRIORITY`]; `value` and `preemptionPolicy` are
//! immutable. What makes a class take effect is the Priority admission step
//! in `registry::priority`: it resolves a pod's `priorityClassName` (or the
//! global default) into `spec.priority` and `spec.preemptionPolicy`, and
//! allows one `globalDefault` class only.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, col, name, s, Column, AGE, NAME};
use crate::kinds::{table, validation, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `PriorityClass` resource.
pub static RESOURCE: Resource = Resource {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    singular: "priorityclass",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    subresources: &[],
    field_labels: None,
};

/// The largest value a class that is not a system class may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The prefix reserved for the system classes.
pub const SYSTEM_PREFIX: &str = "system-";

/// The classes every cluster has: name, value, description.
pub const SYSTEM_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2 * HIGHEST_USER_DEFINABLE_PRIORITY + 1000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2 * HIGHEST_USER_DEFINABLE_PRIORITY,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The preemption policies a class or a pod may name.
pub const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

/// How `PriorityClass` objects behave.
pub struct PriorityClasses;

impl Strategy for PriorityClasses {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::scheduling::v1::PriorityClass>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::scheduling::v1::PriorityClass>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            if o.get("preemptionPolicy").is_none_or(Value::is_null) {
                o.insert("preemptionPolicy".into(), json!("PreemptLowerPriority"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate(obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = validate(new);
        if old.get("value") != new.get("value") {
            errs.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        errs.extend(validation::immutable(old, new, "/preemptionPolicy", "preemptionPolicy"));
        errs
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Why `name` may not be used with `value`/`global_default`, if it is a
/// system name (Kubernetes' `IsKnownSystemPriorityClass`).
fn system_class_error(name: &str, value: i64, global_default: bool) -> Option<String> {
    let Some((_, want, _)) = SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if value != *want {
        return Some(format!("value of {name} PriorityClass must be {want}"));
    }
    if global_default {
        return Some(format!("globalDefault of {name} PriorityClass must be false"));
    }
    None
}

fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global_default = obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false);
    if name.starts_with(SYSTEM_PREFIX) {
        if let Some(why) = system_class_error(name, value, global_default) {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!(
                    "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    if let Some(p) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
        if !p.as_str().is_some_and(|p| PREEMPTION_POLICIES.contains(&p)) {
            errs.push(FieldError::not_supported("preemptionPolicy", p, PREEMPTION_POLICIES));
        }
    }
    errs
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Value", "integer", 0, "Value of the priority class."),
    col(
        "Global-Default",
        "boolean",
        0,
        "Whether this is the default priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        0,
        "Preemption policy of the priority class.",
    ),
];

fn row(pc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        name(pc),
        json!(pc.get("value").and_then(Value::as_i64).unwrap_or(0)),
        json!(pc.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)),
        age(pc, now),
        json!(s(pc, &["preemptionPolicy"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn user_classes_are_capped_and_system_names_reserved() {
        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(validate(&pc("high", HIGHEST_USER_DEFINABLE_PRIORITY)).is_empty());
        assert_eq!(
            lines(&validate(&pc("higher", HIGHEST_USER_DEFINABLE_PRIORITY + 1))),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert!(validate(&pc("system-node-critical", 2_000_001_000)).is_empty());
        assert_eq!(
            lines(&validate(&pc("system-node-critical", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        assert_eq!(
            lines(&validate(&pc("system-mine", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        let bad = json!({"metadata": {"name": "x"}, "value": 1, "preemptionPolicy": "Always"});
        assert_eq!(
            lines(&validate(&bad)),
            ["preemptionPolicy: Unsupported value: \"Always\": supported values: \"Never\", \"PreemptLowerPriority\""]
        );
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let old = json!({"metadata": {"name": "x"}, "value": 1, "preemptionPolicy": "Never"});
        let new = json!({"metadata": {"name": "x"}, "value": 2, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            lines(&PriorityClasses.validate_update(&old, &new)),
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"PreemptLowerPriority\": field is immutable"
            ]
        );
    }

    #[test]
    fn preemption_policy_defaults_to_preempting_lower_priorities() {
        let mut pc = json!({"metadata": {"name": "x"}, "value": 1});
        PriorityClasses.default(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    }
}
