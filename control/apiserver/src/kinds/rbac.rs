//! What the four `rbac.authorization.k8s.io/v1` kinds share (`role`,
//! `clusterrole`, `rolebinding`, `clusterrolebinding` hold one kind each):
//! Kubernetes' validation of policy rules, role references and subjects
//! (`pkg/apis/rbac/validation`), the v1 defaults of subjects and role
//! references, names as path segments, and kubectl's Table cells.
//!
//! What the rules *mean* (matching, coverage, escalation) is the
//! authorizer's business, in `registry::rbac`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::kinds::table::{self, col, name, Column, AGE, NAME};
use crate::status::FieldError;

/// The API group of the RBAC kinds.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// RBAC object names (and role references) are path segments, as
/// Kubernetes' `ValidateRBACName` (`path.IsValidPathSegmentName`).
pub fn path_segment_name(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            return Err(format!("may not contain '{bad}'"));
        }
    }
    Ok(())
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `rules[i]` of a Role (`namespaced`) or ClusterRole.
pub fn validate_rules(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in obj
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = format!("rules[{i}]");
        if strings(rule.get("verbs")).is_empty() {
            errs.push(FieldError::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = rule.get("nonResourceURLs").cloned().unwrap_or(json!([]));
        if !strings(Some(&urls)).is_empty() {
            if namespaced {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            let resourceful = ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|f| rule.get(*f).and_then(Value::as_array).is_some_and(|a| !a.is_empty()));
            if resourceful {
                errs.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    &urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if rule
            .get("apiGroups")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if strings(rule.get("resources")).is_empty() {
            errs.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

/// A ClusterRole's `aggregationRule`: at least one selector when present.
pub fn validate_aggregation_rule(obj: &Value) -> Vec<FieldError> {
    let Some(rule) = obj.get("aggregationRule").filter(|r| !r.is_null()) else {
        return Vec::new();
    };
    let selectors = rule
        .get("clusterRoleSelectors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if selectors.is_empty() {
        return vec![FieldError::required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        )];
    }
    selectors
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            crate::kinds::pod_scheduling::validate_label_selector(
                Some(s),
                &format!("aggregationRule.clusterRoleSelectors[{i}]"),
            )
        })
        .collect()
}

/// The v1 defaults: a role reference's and a User or Group subject's
/// `apiGroup` is the RBAC group when left out.
pub fn default_binding(obj: &mut Value) {
    if let Some(r) = obj.get_mut("roleRef").and_then(Value::as_object_mut) {
        if r.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty) {
            r.insert("apiGroup".into(), json!(GROUP));
        }
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
            let empty = s.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty);
            if empty && matches!(kind, "User" | "Group") {
                s.insert("apiGroup".into(), json!(GROUP));
            }
        }
    }
}

/// A RoleBinding (`namespaced`) or ClusterRoleBinding: its role reference
/// (`ref_kinds`: the kinds it may name) and subjects.
pub fn validate_binding(obj: &Value, namespaced: bool, ref_kinds: &[&str]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let role_ref = obj.get("roleRef").cloned().unwrap_or(json!({}));
    let group = role_ref.get("apiGroup").cloned().unwrap_or(json!(""));
    if group != GROUP {
        errs.push(FieldError::not_supported("roleRef.apiGroup", &group, &[GROUP]));
    }
    let kind = role_ref.get("kind").cloned().unwrap_or(json!(""));
    if !kind.as_str().is_some_and(|k| ref_kinds.contains(&k)) {
        errs.push(FieldError::not_supported("roleRef.kind", &kind, ref_kinds));
    }
    let ref_name = role_ref.get("name").and_then(Value::as_str).unwrap_or_default();
    if ref_name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else if let Err(why) = path_segment_name(ref_name) {
        errs.push(FieldError::invalid("roleRef.name", &json!(ref_name), why));
    }
    for (i, s) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        errs.extend(validate_subject(s, namespaced, &format!("subjects[{i}]")));
    }
    errs
}

fn validate_subject(s: &Value, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let text = |f: &str| s.get(f).and_then(Value::as_str).unwrap_or_default();
    if text("name").is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let api_group = json!(text("apiGroup"));
    match text("kind") {
        "ServiceAccount" => {
            if !text("name").is_empty() {
                if let Err(why) = crate::meta::names::check_dns1123_subdomain(text("name")) {
                    errs.push(FieldError::invalid(format!("{path}.name"), &json!(text("name")), why));
                }
            }
            if !text("apiGroup").is_empty() {
                errs.push(FieldError::not_supported(format!("{path}.apiGroup"), &api_group, &[""]));
            }
            if !namespaced && text("namespace").is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if text("apiGroup") != GROUP {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    &api_group,
                    &[GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.kind"),
            &json!(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

/// A binding's role reference may not change (`cannot change roleRef`,
/// with the old and new reference shown as Go prints the struct).
pub fn validate_role_ref_unchanged(old: &Value, new: &Value) -> Vec<FieldError> {
    if old.get("roleRef") == new.get("roleRef") {
        return Vec::new();
    }
    let r = new.get("roleRef").cloned().unwrap_or(json!({}));
    let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let shown = format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        f("apiGroup"),
        f("kind"),
        f("name")
    );
    vec![FieldError {
        reason: "FieldValueInvalid",
        field: "roleRef".into(),
        message: format!("Invalid value: {shown}: cannot change roleRef"),
    }]
}

// ---- Table ----

/// Columns of Roles and ClusterRoles.
pub const ROLE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Created At",
        "date",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    ),
];

/// A Role's or ClusterRole's row: its name and creation time (RFC 3339, UTC).
pub fn role_row(obj: &Value) -> Vec<Value> {
    let created = table::s(obj, &["metadata", "creationTimestamp"]);
    let created = table::parse_time(created)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![name(obj), json!(created)]
}

/// Columns of RoleBindings and ClusterRoleBindings.
pub fn binding_columns(what: &'static str) -> Vec<Column> {
    let (users, groups, sas) = match what {
        "roleBinding" => (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ),
        _ => (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ),
    };
    vec![
        NAME,
        col(
            "Role",
            "string",
            0,
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
        ),
        AGE,
        col("Users", "string", 1, users),
        col("Groups", "string", 1, groups),
        col("ServiceAccounts", "string", 1, sas),
    ]
}

/// A binding's row: name, `Kind/name` of its role, age, and its users,
/// groups and service accounts (`namespace/name`).
pub fn binding_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        table::s(obj, &["roleRef", "kind"]),
        table::s(obj, &["roleRef", "name"])
    );
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in table::arr(obj, &["subjects"]) {
        let n = table::s(s, &["name"]).to_string();
        match table::s(s, &["kind"]) {
            "User" => users.push(n),
            "Group" => groups.push(n),
            "ServiceAccount" => sas.push(format!("{}/{n}", table::s(s, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(obj),
        json!(role),
        table::age(obj, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_line).collect()
    }

    #[test]
    fn rules_need_verbs_groups_and_resources_or_urls() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"verbs": ["get"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]},
        ]});
        assert_eq!(
            lines(&validate_rules(&role, true)),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let cluster = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(validate_rules(&cluster, false).is_empty());
    }

    #[test]
    fn bindings_refs_and_subjects() {
        let mut b = json!({"roleRef": {"kind": "Widget", "name": "a/b"}, "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "default", "apiGroup": "x"},
            {"kind": "Robot", "name": "r"},
        ]});
        default_binding(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert_eq!(
            lines(&validate_binding(&b, false, &["ClusterRole"])),
            [
                "roleRef.kind: Unsupported value: \"Widget\": supported values: \"ClusterRole\"",
                "roleRef.name: Invalid value: \"a/b\": may not contain '/'",
                "subjects[1].apiGroup: Unsupported value: \"x\": supported values: \"\"",
                "subjects[1].namespace: Required value",
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
        let old = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "a"}});
        let new = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "b"}});
        assert_eq!(
            lines(&validate_role_ref_unchanged(&old, &new)),
            ["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"b\"}: cannot change roleRef"]
        );
    }

    #[test]
    fn binding_rows_list_subjects_by_kind() {
        let b = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "robot"},
        ]});
        let row = binding_row(&b, Utc::now());
        assert_eq!(row[1], "ClusterRole/view");
        assert_eq!(row[3], "alice, bob");
        assert_eq!(row[4], "devs");
        assert_eq!(row[5], "ci/robot");
    }
}
