//! Validation of the pod-spec fields that place pods relative to other pods:
//! `affinity.podAffinity`, `affinity.podAntiAffinity` and
//! `topologySpreadConstraints`, as Kubernetes validates them
//! (`validatePodAffinity`, `validateTopologySpreadConstraints`), with its
//! field paths and messages. The scheduler honours them (InterPodAffinity,
//! PodTopologySpread).
//!
//! Errors carry the JSON pointer of the top field they are under
//! (`.../affinity/podAffinity`, `.../topologySpreadConstraints`), so that, as
//! with [`super::pod_support`]'s refusals, an update only fails on them when
//! that field changed.

use serde_json::Value;

use crate::meta::names::{check_dns1123_label, check_label_key, check_label_value};
use crate::status::FieldError;

/// `whenUnsatisfiable` values.
const WHEN_UNSATISFIABLE: &[&str] = &["DoNotSchedule", "ScheduleAnyway"];
/// `nodeAffinityPolicy` / `nodeTaintsPolicy` values.
const NODE_INCLUSION_POLICIES: &[&str] = &["Honor", "Ignore"];
const NOT_POSITIVE: &str = "must be greater than zero";
const EMPTY_NAME_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Kubernetes' `ValidateLabelSelector` of the selector at `path` (label
/// values must be valid), for kinds whose spec holds one
/// (PodDisruptionBudgets).
pub fn validate_label_selector(sel: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut found = Found {
        pointer: String::new(),
        errs: Vec::new(),
    };
    found.label_selector(sel, path);
    found.errs
}

/// Errors with the pointer they are attributed to.
struct Found {
    pointer: String,
    errs: Vec<FieldError>,
}

impl Found {
    /// Kubernetes' `ValidateLabelName` (a qualified name).
    fn label_name(&mut self, v: Option<&Value>, path: &str) {
        let value = v.cloned().unwrap_or(Value::String(String::new()));
        match value.as_str() {
            Some("") => {
                self.errs
                    .push(FieldError::invalid(path, &value, "name part must be non-empty"));
                self.errs.push(FieldError::invalid(path, &value, EMPTY_NAME_REGEX));
            }
            Some(key) => {
                if let Err(e) = check_label_key(key) {
                    self.errs.push(FieldError::invalid(path, &value, e));
                }
            }
            None => self.errs.push(FieldError::invalid(path, &value, "must be a string")),
        }
    }

    /// Kubernetes' `ValidateLabelSelector` (label values must be valid).
    fn label_selector(&mut self, sel: Option<&Value>, path: &str) {
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return;
        };
        let Some(obj) = sel.as_object() else {
            self.errs.push(FieldError::invalid(path, sel, "must be an object"));
            return;
        };
        if let Some(labels) = obj.get("matchLabels").and_then(Value::as_object) {
            let lp = format!("{path}.matchLabels");
            for (k, v) in labels {
                self.label_name(Some(&Value::String(k.clone())), &lp);
                match v.as_str() {
                    Some(s) => {
                        if let Err(e) = check_label_value(s) {
                            self.errs.push(FieldError::invalid(&lp, v, e));
                        }
                    }
                    None => self.errs.push(FieldError::invalid(&lp, v, "must be a string")),
                }
            }
        }
        for (i, expr) in items(sel, "matchExpressions") {
            let ep = format!("{path}.matchExpressions[{i}]");
            let values: Vec<&Value> = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .collect();
            let op = expr.get("operator").cloned().unwrap_or(Value::String(String::new()));
            match op.as_str() {
                Some("In" | "NotIn") if values.is_empty() => self.errs.push(FieldError::required(
                    format!("{ep}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                Some("Exists" | "DoesNotExist") if !values.is_empty() => self.errs.push(FieldError::forbidden(
                    format!("{ep}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
                _ => self.errs.push(FieldError::invalid(
                    format!("{ep}.operator"),
                    &op,
                    "not a valid selector operator",
                )),
            }
            self.label_name(expr.get("key"), &format!("{ep}.key"));
            for (j, v) in values.into_iter().enumerate() {
                let vp = format!("{ep}.values[{j}]");
                match v.as_str() {
                    Some(s) => {
                        if let Err(e) = check_label_value(s) {
                            self.errs.push(FieldError::invalid(vp, v, e));
                        }
                    }
                    None => self.errs.push(FieldError::invalid(vp, v, "must be a string")),
                }
            }
        }
    }

    /// Kubernetes' `validatePodAffinityTerm`.
    fn affinity_term(&mut self, term: &Value, path: &str) {
        self.label_selector(term.get("labelSelector"), &format!("{path}.labelSelector"));
        self.label_selector(term.get("namespaceSelector"), &format!("{path}.namespaceSelector"));
        for (_, ns) in items(term, "namespaces") {
            let bad = match ns.as_str() {
                Some(name) => check_dns1123_label(name).err(),
                None => Some("must be a string".to_string()),
            };
            if let Some(msg) = bad {
                self.errs
                    .push(FieldError::invalid(format!("{path}.namespace"), ns, msg));
            }
        }
        let selector_set = term.get("labelSelector").is_some_and(|s| !s.is_null());
        let keys =
            |field: &str| -> Vec<Value> { term.get(field).and_then(Value::as_array).cloned().unwrap_or_default() };
        let (matching, mismatching) = (keys("matchLabelKeys"), keys("mismatchLabelKeys"));
        for (field, list) in [("matchLabelKeys", &matching), ("mismatchLabelKeys", &mismatching)] {
            if list.is_empty() {
                continue;
            }
            if !selector_set {
                self.errs.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "must not be specified when labelSelector is not set",
                ));
                continue;
            }
            for (i, k) in list.iter().enumerate() {
                self.label_name(Some(k), &format!("{path}.{field}[{i}]"));
            }
        }
        for (i, k) in matching.iter().enumerate() {
            if mismatching.contains(k) {
                self.errs.push(FieldError::invalid(
                    format!("{path}.matchLabelKeys[{i}]"),
                    k,
                    "exists in both matchLabelKeys and mismatchLabelKeys",
                ));
            }
        }
        let tk = format!("{path}.topologyKey");
        if term
            .get("topologyKey")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            self.errs.push(FieldError::required(&tk, "can not be empty"));
        }
        self.label_name(term.get("topologyKey"), &tk);
    }

    /// `podAffinity` or `podAntiAffinity`.
    fn pod_affinity(&mut self, pa: &Value, path: &str) {
        let required = "requiredDuringSchedulingIgnoredDuringExecution";
        for (i, term) in items(pa, required) {
            self.affinity_term(term, &format!("{path}.{required}[{i}]"));
        }
        let preferred = "preferredDuringSchedulingIgnoredDuringExecution";
        for (i, w) in items(pa, preferred) {
            let wp = format!("{path}.{preferred}[{i}]");
            let weight = w.get("weight").cloned().unwrap_or(Value::from(0));
            if !weight.as_i64().is_some_and(|n| (1..=100).contains(&n)) {
                self.errs.push(FieldError::invalid(
                    format!("{wp}.weight"),
                    &weight,
                    "must be in the range 1-100",
                ));
            }
            let term = w.get("podAffinityTerm").cloned().unwrap_or(Value::Null);
            self.affinity_term(&term, &format!("{wp}.podAffinityTerm"));
        }
    }

    /// Kubernetes' `validateTopologySpreadConstraints`.
    fn spread_constraints(&mut self, list: &Value, path: &str) {
        let constraints: Vec<&Value> = list.as_array().into_iter().flatten().collect();
        for (i, c) in constraints.iter().enumerate() {
            let cp = format!("{path}[{i}]");
            let max_skew = c.get("maxSkew").cloned().unwrap_or(Value::from(0));
            if max_skew.as_i64().is_none_or(|n| n <= 0) {
                self.errs
                    .push(FieldError::invalid(format!("{cp}.maxSkew"), &max_skew, NOT_POSITIVE));
            }
            let key = c.get("topologyKey").and_then(Value::as_str).unwrap_or_default();
            if key.is_empty() {
                self.errs
                    .push(FieldError::required(format!("{cp}.topologyKey"), "can not be empty"));
            }
            let when = c
                .get("whenUnsatisfiable")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            if !when.as_str().is_some_and(|w| WHEN_UNSATISFIABLE.contains(&w)) {
                self.errs.push(FieldError::not_supported(
                    format!("{cp}.whenUnsatisfiable"),
                    &when,
                    WHEN_UNSATISFIABLE,
                ));
            }
            let repeated = constraints[i + 1..].iter().any(|o| {
                o.get("topologyKey") == c.get("topologyKey") && o.get("whenUnsatisfiable") == c.get("whenUnsatisfiable")
            });
            if repeated {
                self.errs.push(FieldError::duplicate(
                    format!("{cp}.{{topologyKey, whenUnsatisfiable}}"),
                    &Value::String(format!("{{{key}, {}}}", when.as_str().unwrap_or_default())),
                ));
            }
            if let Some(min) = c.get("minDomains").filter(|v| !v.is_null()) {
                let mp = format!("{cp}.minDomains");
                if min.as_i64().is_none_or(|n| n <= 0) {
                    self.errs.push(FieldError::invalid(&mp, min, NOT_POSITIVE));
                }
                if when.as_str() != Some("DoNotSchedule") {
                    self.errs.push(FieldError::invalid(
                        &mp,
                        min,
                        format!(
                            "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                            when.as_str().unwrap_or_default()
                        ),
                    ));
                }
            }
            for policy in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
                if let Some(p) = c.get(policy).filter(|v| !v.is_null()) {
                    if !p.as_str().is_some_and(|s| NODE_INCLUSION_POLICIES.contains(&s)) {
                        self.errs.push(FieldError::not_supported(
                            format!("{cp}.{policy}"),
                            p,
                            NODE_INCLUSION_POLICIES,
                        ));
                    }
                }
            }
            let selector = c.get("labelSelector").filter(|s| !s.is_null());
            let match_keys: Vec<&Value> = items(c, "matchLabelKeys").map(|(_, k)| k).collect();
            if !match_keys.is_empty() {
                let mp = format!("{cp}.matchLabelKeys");
                if selector.is_none() {
                    self.errs.push(FieldError::forbidden(
                        &mp,
                        "must not be specified when labelSelector is not set",
                    ));
                }
                for (j, k) in match_keys.into_iter().enumerate() {
                    self.label_name(Some(k), &format!("{mp}[{j}]"));
                    let in_selector = selector.is_some_and(|s| {
                        k.as_str().is_some_and(|k| {
                            s.pointer(&format!("/matchLabels/{}", k.replace('~', "~0").replace('/', "~1")))
                                .is_some()
                                || items(s, "matchExpressions")
                                    .any(|(_, e)| e.get("key").and_then(Value::as_str) == Some(k))
                        })
                    });
                    if in_selector {
                        self.errs.push(FieldError::invalid(
                            format!("{mp}[{j}]"),
                            k,
                            "exists in both matchLabelKeys and labelSelector",
                        ));
                    }
                }
            }
            self.label_selector(selector, &format!("{cp}.labelSelector"));
        }
    }
}

fn items<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    obj.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

/// Validate the pod-placement fields of the pod spec `spec` (at field path
/// `path`, JSON pointer `pointer`). Each error comes with the pointer of the
/// field it belongs to (`{pointer}/affinity/podAffinity`,
/// `{pointer}/affinity/podAntiAffinity`, `{pointer}/topologySpreadConstraints`).
pub fn validate(spec: &Value, path: &str, pointer: &str) -> Vec<(String, FieldError)> {
    let mut out = Vec::new();
    let mut collect = |field_pointer: String, run: &dyn Fn(&mut Found)| {
        let mut found = Found {
            pointer: field_pointer,
            errs: Vec::new(),
        };
        run(&mut found);
        let Found { pointer, errs } = found;
        out.extend(errs.into_iter().map(|e| (pointer.clone(), e)));
    };
    for field in ["podAffinity", "podAntiAffinity"] {
        if let Some(pa) = spec.pointer(&format!("/affinity/{field}")).filter(|v| !v.is_null()) {
            let p = format!("{path}.affinity.{field}");
            collect(format!("{pointer}/affinity/{field}"), &|f| f.pod_affinity(pa, &p));
        }
    }
    if let Some(list) = spec.get("topologySpreadConstraints").filter(|v| !v.is_null()) {
        let p = format!("{path}.topologySpreadConstraints");
        collect(format!("{pointer}/topologySpreadConstraints"), &|f| {
            f.spread_constraints(list, &p)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(spec: Value) -> Vec<String> {
        validate(&spec, "spec", "/spec")
            .into_iter()
            .map(|(_, e)| e.to_line())
            .collect()
    }

    #[test]
    fn valid_affinity_and_spread_pass() {
        let spec = json!({
            "affinity": {
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "cache"}},
                    "namespaces": ["infra"],
                    "topologyKey": "topology.kubernetes.io/zone"
                }]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                        "matchLabelKeys": ["pod-template-hash"],
                        "namespaceSelector": {},
                        "topologyKey": "kubernetes.io/hostname"
                    }
                }]}
            },
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                "nodeAffinityPolicy": "Ignore", "nodeTaintsPolicy": "Honor",
                "labelSelector": {"matchLabels": {"app": "web"}},
                "matchLabelKeys": ["pod-template-hash"]
            }]
        });
        assert_eq!(lines(spec), Vec::<String>::new());
    }

    #[test]
    fn affinity_terms_are_validated_as_kubernetes_does() {
        let spec = json!({"affinity": {
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In"},
                    {"key": "tier", "operator": "Exists", "values": ["x"]},
                    {"key": "k", "operator": "Gt", "values": ["1"]}
                ]},
                "namespaces": ["Bad_NS"],
                "matchLabelKeys": ["a"],
                "mismatchLabelKeys": ["a"]
            }]},
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 0,
                "podAffinityTerm": {"matchLabelKeys": ["b"], "topologyKey": "zone"}
            }]}
        }});
        let expected: &[&str] = &[
            r#"spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100"#,
            r#"spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.matchLabelKeys: Forbidden: must not be specified when labelSelector is not set"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[2].operator: Invalid value: "Gt": not a valid selector operator"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespace: Invalid value: "Bad_NS": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys[0]: Invalid value: "a": exists in both matchLabelKeys and mismatchLabelKeys"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": name part must be non-empty"#,
            r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
        ];
        assert_eq!(lines(spec), expected);
    }

    #[test]
    fn spread_constraints_are_validated_as_kubernetes_does() {
        let spec = json!({"topologySpreadConstraints": [
            {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes",
             "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["app"]},
            {"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 0,
             "nodeTaintsPolicy": "Maybe"},
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes"}
        ]});
        let expected: &[&str] = &[
            r#"spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero"#,
            r#"spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: "Sometimes": supported values: "DoNotSchedule", "ScheduleAnyway""#,
            r#"spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: "{zone, Sometimes}""#,
            r#"spec.topologySpreadConstraints[0].matchLabelKeys[0]: Invalid value: "app": exists in both matchLabelKeys and labelSelector"#,
            r#"spec.topologySpreadConstraints[1].topologyKey: Required value: can not be empty"#,
            r#"spec.topologySpreadConstraints[1].minDomains: Invalid value: 0: must be greater than zero"#,
            r#"spec.topologySpreadConstraints[1].minDomains: Invalid value: 0: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"#,
            r#"spec.topologySpreadConstraints[1].nodeTaintsPolicy: Unsupported value: "Maybe": supported values: "Honor", "Ignore""#,
            r#"spec.topologySpreadConstraints[2].whenUnsatisfiable: Unsupported value: "Sometimes": supported values: "DoNotSchedule", "ScheduleAnyway""#,
        ];
        assert_eq!(lines(spec), expected);
    }

    #[test]
    fn errors_carry_the_pointer_of_their_field() {
        let spec = json!({"topologySpreadConstraints": [{"maxSkew": 0}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {}}]}}});
        let pointers: Vec<String> = validate(&spec, "spec.template.spec", "/spec/template/spec")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert!(pointers
            .iter()
            .all(|p| p == "/spec/template/spec/topologySpreadConstraints"));
        assert_eq!(pointers.len(), 3);
    }
}
