//! Jobs (batch/v1): Kubernetes' defaults (parallelism and completions 1,
//! backoffLimit 6 — or unlimited with `backoffLimitPerIndex` —,
//! completionMode NonIndexed, suspend false, podReplacementPolicy), the
//! generated `batch.kubernetes.io/controller-uid` selector and the
//! job-name/controller-uid template labels unless `manualSelector`, the
//! job-spec validation shared with CronJob templates (restartPolicy Never or
//! OnFailure, podFailurePolicy, successPolicy, indexed limits) and the
//! fields that may not change.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::pod_support::{self, PodSpecAt};
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{
    age, col, get, human_duration, i, label_selector_string, name, or_none, parse_time, s, template_containers, Column,
    AGE, NAME,
};
use crate::kinds::validation::{self, check_labels, Errors};
use crate::kinds::{defaults, status, table, Resource, Strategy};
use crate::meta::selectors::{labels_of, LabelSelector};
use crate::status::{ApiResult, FieldError};

/// The `Job` resource.
pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    kind: "Job",
    plural: "jobs",
    singular: "job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[status("Job", "batch", "v1")],
    field_labels: Some(&["metadata.name", "metadata.namespace", "status.successful"]),
};

/// Label (and selector key) with the Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spellings, still set.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The pre-1.27 spelling of the job-name label.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Most parallel pods of an Indexed Job.
const MAX_PARALLELISM_FOR_INDEXED: i64 = 100_000;
/// Most completions with `backoffLimitPerIndex`.
const MAX_COMPLETIONS_PER_INDEX: i64 = 100_000;

/// How `Job` objects behave.
pub struct Jobs;

impl Strategy for Jobs {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::batch::v1::Job>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::batch::v1::Job>(generator)
    }

    fn default(&self, obj: &mut Value) {
        let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
        if let Some(spec) = obj_mut(obj, "spec") {
            default_job_spec(spec);
        }
        // A Job without labels takes its template's (SetDefaults_Job).
        if let (Some(labels), Some(meta)) = (template_labels, obj_mut(obj, "metadata")) {
            let empty = meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty);
            if empty && labels.as_object().is_some_and(|l| !l.is_empty()) {
                meta.insert("labels".into(), labels);
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
        if !manual {
            generate_selector(obj);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        errs.extend(immutable_fields(old, new));
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = check(Some(old), new);
        errs.extend(validate_status(new));
        errs
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        (label == "status.successful").then(|| i(obj, &["status", "succeeded"]).to_string())
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Defaults of a JobSpec (Jobs; CronJob templates get only pod defaults,
/// as in Kubernetes).
fn default_job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    default(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    if let Some(rules) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            if let Some(patterns) = rule.get_mut("onPodConditions").and_then(Value::as_array_mut) {
                for p in patterns.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "status", json!("True"));
                }
            }
        }
    }
    default(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    defaults::default_template(spec);
}

/// The job-name and controller-uid labels on the template, and the
/// controller-uid selector (Kubernetes' `generateSelector`). Labels the user
/// set are kept; a conflict is refused by validation.
fn generate_selector(obj: &mut Value) {
    let name = s(obj, &["metadata", "name"]).to_string();
    let uid = s(obj, &["metadata", "uid"]).to_string();
    let Some(spec) = obj_mut(obj, "spec") else { return };
    default(spec, "template", json!({}));
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        default(t, "metadata", json!({}));
        if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            if !m.get("labels").is_some_and(Value::is_object) {
                m.insert("labels".into(), json!({}));
            }
            if let Some(labels) = m.get_mut("labels").and_then(Value::as_object_mut) {
                for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
                    default(labels, key, json!(name));
                }
                for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
                    default(labels, key, json!(uid));
                }
            }
        }
    }
    if !spec.get("selector").is_some_and(Value::is_object) {
        spec.insert("selector".into(), json!({}));
    }
    if let Some(sel) = spec.get_mut("selector").and_then(Value::as_object_mut) {
        if !sel.get("matchLabels").is_some_and(Value::is_object) {
            sel.insert("matchLabels".into(), json!({}));
        }
        if let Some(ml) = sel.get_mut("matchLabels").and_then(Value::as_object_mut) {
            default(ml, CONTROLLER_UID_LABEL, json!(uid));
        }
    }
}

/// Validation of a Job: its spec (selector required), and on create the
/// template's pod-spec fields the node cannot honour.
fn check(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        validate_generated_selector(&mut errs, obj);
    }
    validate_job_spec(&mut errs, obj.get("spec"), JOB_SPEC, true);
    errs.0
        .extend(pod_support::refuse_unsupported(pod_support::TEMPLATE_SPEC_AT, old, obj));
    errs.0
}

/// Where a JobSpec sits: in a Job, or in a CronJob's job template.
#[derive(Clone, Copy)]
pub(crate) struct JobSpecAt {
    /// Field path of the JobSpec.
    pub path: &'static str,
    /// Where its pod spec sits, for the unsupported-field check.
    pub pod_spec: PodSpecAt,
}

const JOB_SPEC: JobSpecAt = JobSpecAt {
    path: "spec",
    pod_spec: pod_support::TEMPLATE_SPEC_AT,
};

/// Kubernetes' `validateGeneratedSelector`: a generated selector must be
/// exactly the Job's own controller-uid label, and the template labelled so.
fn validate_generated_selector(errs: &mut Errors, obj: &Value) {
    let uid = s(obj, &["metadata", "uid"]);
    if uid.is_empty() {
        return;
    }
    let selector = obj.pointer("/spec/selector").unwrap_or(&Value::Null);
    let ok = selector
        .get("matchExpressions")
        .is_none_or(|e| e.as_array().is_none_or(Vec::is_empty))
        && selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| m.len() == 1 && m.get(CONTROLLER_UID_LABEL).and_then(Value::as_str) == Some(uid));
    if !ok {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector,
            "`selector` not auto-generated",
        ));
    }
    let labels = obj.pointer("/spec/template/metadata/labels");
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        if value.is_none() {
            errs.push(FieldError::required(
                format!("spec.template.metadata.labels[{key}]"),
                "",
            ));
        } else if value != Some(uid) {
            errs.push(FieldError::invalid(
                format!("spec.template.metadata.labels[{key}]"),
                &json!(value),
                format!("must be '{uid}'"),
            ));
        }
    }
}

fn nonnegative(errs: &mut Errors, spec: &Value, key: &str, path: &str) {
    if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
        if v.as_i64().is_none_or(|n| n < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.{key}"),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Validation of a JobSpec at `at` (a Job's `spec`, a CronJob's
/// `spec.jobTemplate.spec`). `selector_required`: Jobs must have one (after
/// generation); job templates may leave it out.
pub(crate) fn validate_job_spec(errs: &mut Errors, spec: Option<&Value>, at: JobSpecAt, selector_required: bool) {
    let path = at.path;
    let Some(spec) = spec else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    for key in ["parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"] {
        nonnegative(errs, spec, key, path);
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        if v.as_i64().is_none_or(|n| n <= 0) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                v,
                "must be greater than or equal to 1",
            ));
        }
    }
    let mode = spec
        .get("completionMode")
        .and_then(Value::as_str)
        .unwrap_or("NonIndexed");
    let indexed = mode == "Indexed";
    if !matches!(mode, "NonIndexed" | "Indexed") {
        errs.push(FieldError::not_supported(
            format!("{path}.completionMode"),
            &json!(mode),
            &["NonIndexed", "Indexed"],
        ));
    }
    let completions = spec.get("completions").and_then(Value::as_i64);
    if indexed {
        if completions.is_none() {
            errs.push(FieldError::required(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = spec.get("parallelism").and_then(Value::as_i64) {
            if p > MAX_PARALLELISM_FOR_INDEXED {
                errs.push(FieldError::invalid(
                    format!("{path}.parallelism"),
                    &json!(p),
                    format!(
                        "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED} when completion mode is Indexed"
                    ),
                ));
            }
        }
    }
    let per_index = spec.get("backoffLimitPerIndex").filter(|v| !v.is_null());
    if let Some(v) = per_index {
        nonnegative(errs, spec, "backoffLimitPerIndex", path);
        if !indexed {
            errs.push(FieldError::forbidden(
                format!("{path}.backoffLimitPerIndex"),
                "requires indexed completion mode",
            ));
        } else if completions.is_some_and(|c| c > MAX_COMPLETIONS_PER_INDEX) {
            errs.push(FieldError::invalid(
                format!("{path}.completions"),
                &json!(completions),
                format!(
                    "must be less than or equal to {MAX_COMPLETIONS_PER_INDEX} when backoffLimitPerIndex is specified"
                ),
            ));
        }
        let _ = v;
    }
    if let Some(m) = spec.get("maxFailedIndexes").filter(|v| !v.is_null()) {
        nonnegative(errs, spec, "maxFailedIndexes", path);
        if per_index.is_none() {
            errs.push(FieldError::required(
                format!("{path}.backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        } else if let (Some(m), Some(c)) = (m.as_i64(), completions) {
            if m > c {
                errs.push(FieldError::invalid(
                    format!("{path}.maxFailedIndexes"),
                    &json!(m),
                    "must be less than or equal to completions",
                ));
            }
        }
    }
    if let Some(m) = spec.get("managedBy").filter(|v| !v.is_null()) {
        // A domain-prefixed path (`example.com/controller`), at most 63 characters.
        let ok = m.as_str().is_some_and(|m| {
            m.len() <= 63
                && m.split_once('/').is_some_and(|(domain, path)| {
                    crate::meta::names::check_dns1123_subdomain(domain).is_ok()
                        && !path.is_empty()
                        && path
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:/".contains(&b))
                })
        });
        if !ok {
            errs.push(FieldError::invalid(
                format!("{path}.managedBy"),
                m,
                "must be a domain-prefixed path (such as \"acme.io/foo\") of at most 63 characters",
            ));
        }
    }
    if let Some(p) = spec.get("podReplacementPolicy").filter(|v| !v.is_null()) {
        if !matches!(p.as_str(), Some("TerminatingOrFailed" | "Failed")) {
            errs.push(FieldError::not_supported(
                format!("{path}.podReplacementPolicy"),
                p,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    if let Some(policy) = spec.get("podFailurePolicy").filter(|v| !v.is_null()) {
        validate_pod_failure_policy(errs, policy, &format!("{path}.podFailurePolicy"), per_index.is_some());
        if spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str) != Some("Never") {
            errs.push(FieldError::invalid(
                format!("{path}.template.spec.restartPolicy"),
                spec.pointer("/template/spec/restartPolicy").unwrap_or(&Value::Null),
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
        if spec.get("podReplacementPolicy").and_then(Value::as_str) == Some("TerminatingOrFailed") {
            errs.push(FieldError::not_supported(
                format!("{path}.podReplacementPolicy"),
                &json!("TerminatingOrFailed"),
                &["Failed"],
            ));
        }
    }
    if let Some(sp) = spec.get("successPolicy").filter(|v| !v.is_null()) {
        validate_success_policy(errs, sp, &format!("{path}.successPolicy"), indexed, completions);
    }
    // Selector and template.
    let selector = spec.get("selector").filter(|v| !v.is_null());
    let parsed = match selector {
        None => {
            if selector_required {
                errs.push(FieldError::required(format!("{path}.selector"), ""));
            }
            None
        }
        Some(sel) => {
            check_labels(errs, sel.get("matchLabels"), &format!("{path}.selector.matchLabels"));
            match LabelSelector::from_object(sel) {
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(FieldError::invalid(format!("{path}.selector.matchExpressions"), sel, e));
                    None
                }
            }
        }
    };
    let template = spec.get("template");
    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
    check_labels(errs, labels, &format!("{path}.template.metadata.labels"));
    if let Some(sel) = parsed {
        if sel.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.selector"),
                selector.unwrap_or(&Value::Null),
                "empty selector is invalid for job",
            ));
        } else if !sel.matches_labels(&labels_of(template.unwrap_or(&Value::Null))) {
            errs.push(FieldError::invalid(
                format!("{path}.template.metadata.labels"),
                labels.unwrap_or(&Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validation::validate_pod_spec(errs, template.and_then(|t| t.get("spec")), at.pod_spec.path);
    let rp = template
        .and_then(|t| t.pointer("/spec/restartPolicy"))
        .unwrap_or(&Value::Null);
    if !matches!(rp.as_str(), Some("OnFailure" | "Never")) {
        // Replace the pod spec's own check (which allows Always) with the Job's.
        errs.0
            .retain(|e| e.field != format!("{}.restartPolicy", at.pod_spec.path));
        errs.push(FieldError::not_supported(
            format!("{}.restartPolicy", at.pod_spec.path),
            rp,
            &["OnFailure", "Never"],
        ));
    }
}

fn validate_pod_failure_policy(errs: &mut Errors, policy: &Value, path: &str, per_index: bool) {
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if rules.len() > 20 {
        errs.push(FieldError::invalid(
            format!("{path}.rules"),
            &json!(rules.len()),
            "must have at most 20 items",
        ));
    }
    let mut actions = vec!["Count", "FailJob", "Ignore"];
    if per_index {
        actions.push("FailIndex");
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let action = rule.get("action").unwrap_or(&Value::Null);
        if action.is_null() {
            errs.push(FieldError::required(format!("{rp}.action"), ""));
        } else if !action.as_str().is_some_and(|a| actions.contains(&a)) {
            errs.push(FieldError::not_supported(format!("{rp}.action"), action, &actions));
        }
        let codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = rule.get("onPodConditions").filter(|v| !v.is_null());
        match (codes, conditions) {
            (Some(_), Some(c)) if c.as_array().is_some_and(|a| !a.is_empty()) => errs.push(FieldError::invalid(
                rp.clone(),
                &Value::Null,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (None, None) => errs.push(FieldError::invalid(
                rp.clone(),
                &Value::Null,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
        if let Some(codes) = codes {
            let cp = format!("{rp}.onExitCodes");
            let op = codes.get("operator").unwrap_or(&Value::Null);
            if !matches!(op.as_str(), Some("In" | "NotIn")) {
                errs.push(FieldError::not_supported(
                    format!("{cp}.operator"),
                    op,
                    &["In", "NotIn"],
                ));
            }
            let values = codes
                .get("values")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if values.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{cp}.values"),
                    &json!(values),
                    "at least one value is required",
                ));
            }
            if values.len() > 255 {
                errs.push(FieldError::invalid(
                    format!("{cp}.values"),
                    &json!(values.len()),
                    "must have at most 255 items",
                ));
            }
            let mut prev: Option<i64> = None;
            for (j, v) in values.iter().enumerate() {
                let n = v.as_i64().unwrap_or(0);
                if op.as_str() == Some("In") && n == 0 {
                    errs.push(FieldError::invalid(
                        format!("{cp}.values[{j}]"),
                        v,
                        "must not be 0 for the In operator",
                    ));
                }
                if prev.is_some_and(|p| p == n) {
                    errs.push(FieldError::duplicate(format!("{cp}.values[{j}]"), v));
                } else if prev.is_some_and(|p| p > n) {
                    errs.push(FieldError::invalid(format!("{cp}.values[{j}]"), v, "must be ordered"));
                }
                prev = Some(n);
            }
        }
        if let Some(conds) = conditions.and_then(Value::as_array) {
            for (j, c) in conds.iter().enumerate() {
                let pp = format!("{rp}.onPodConditions[{j}]");
                if c.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(format!("{pp}.type"), ""));
                }
                let st = c.get("status").unwrap_or(&Value::Null);
                if !matches!(st.as_str(), Some("True" | "False" | "Unknown")) {
                    errs.push(FieldError::not_supported(
                        format!("{pp}.status"),
                        st,
                        &["True", "False", "Unknown"],
                    ));
                }
            }
        }
    }
}

fn validate_success_policy(errs: &mut Errors, sp: &Value, path: &str, indexed: bool, completions: Option<i64>) {
    if !indexed {
        errs.push(FieldError::invalid(path, sp, "requires indexed completion mode"));
        return;
    }
    let rules = sp
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if rules.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.rules"),
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = rule.get("succeededCount").and_then(Value::as_i64);
        if indexes.is_none() && count.is_none() {
            errs.push(FieldError::required(
                rp.clone(),
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        if let Some(ix) = indexes {
            match parse_indexes(ix) {
                Ok(parsed) => {
                    if let (Some(max), Some(c)) = (parsed.last().map(|r| r.1), completions) {
                        if max >= c {
                            errs.push(FieldError::invalid(
                                format!("{rp}.succeededIndexes"),
                                &json!(ix),
                                format!("too large: must be less than completions {c}"),
                            ));
                        }
                    }
                    if let Some(n) = count {
                        let total: i64 = parsed.iter().map(|(a, b)| b - a + 1).sum();
                        if n > total {
                            errs.push(FieldError::invalid(
                                format!("{rp}.succeededCount"),
                                &json!(n),
                                format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                            ));
                        }
                    }
                }
                Err(e) => errs.push(FieldError::invalid(
                    format!("{rp}.succeededIndexes"),
                    &json!(ix),
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(n) = count {
            if n < 0 {
                errs.push(FieldError::invalid(
                    format!("{rp}.succeededCount"),
                    &json!(n),
                    "must be greater than or equal to 0",
                ));
            } else if completions.is_some_and(|c| n > c) {
                errs.push(FieldError::invalid(
                    format!("{rp}.succeededCount"),
                    &json!(n),
                    format!(
                        "must be less than or equal to {} (the number of specified completions)",
                        completions.unwrap_or(0)
                    ),
                ));
            }
        }
    }
}

/// Parses an interval list `1,3-5,7` into sorted, non-overlapping ranges.
pub fn parse_indexes(s: &str) -> Result<Vec<(i64, i64)>, String> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: i64 = a
            .parse()
            .map_err(|_| format!("cannot convert string to integer for index: {a:?}"))?;
        let b: i64 = b
            .parse()
            .map_err(|_| format!("cannot convert string to integer for index: {b:?}"))?;
        if a < 0 || b < a {
            return Err(format!("non-increasing order, previous: {a}, current: {b}"));
        }
        if out.last().is_some_and(|l| l.1 >= a) {
            return Err(format!("overlapping indexes at {part}"));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// Kubernetes' Job update rules: the selector, the template (except while
/// suspended and not started), completionMode, completions (except to
/// scale an Indexed Job together with parallelism), podFailurePolicy,
/// backoffLimitPerIndex and successPolicy may not change.
fn immutable_fields(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(validation::immutable(old, new, "/spec/selector", "spec.selector"));
    let suspended_not_started = new.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
        && old.pointer("/status/startTime").is_none_or(Value::is_null);
    if !suspended_not_started {
        errs.extend(validation::immutable(old, new, "/spec/template", "spec.template"));
    }
    errs.extend(validation::immutable(
        old,
        new,
        "/spec/completionMode",
        "spec.completionMode",
    ));
    let elastic = new.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed")
        && new.pointer("/spec/completions") == new.pointer("/spec/parallelism")
        && old.pointer("/spec/completions") == old.pointer("/spec/parallelism")
        && new.pointer("/spec/backoffLimitPerIndex").is_none_or(Value::is_null);
    if !elastic {
        errs.extend(validation::immutable(old, new, "/spec/completions", "spec.completions"));
    }
    errs.extend(validation::immutable(
        old,
        new,
        "/spec/podFailurePolicy",
        "spec.podFailurePolicy",
    ));
    errs.extend(validation::immutable(
        old,
        new,
        "/spec/backoffLimitPerIndex",
        "spec.backoffLimitPerIndex",
    ));
    errs.extend(validation::immutable(
        old,
        new,
        "/spec/successPolicy",
        "spec.successPolicy",
    ));
    errs.extend(validation::immutable(old, new, "/spec/managedBy", "spec.managedBy"));
    errs
}

fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["active", "succeeded", "failed", "ready", "terminating"] {
        if let Some(v) = obj.pointer(&format!("/status/{key}")).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n < 0) {
                errs.push(FieldError::invalid(
                    format!("status.{key}"),
                    v,
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    errs
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", 0, "Status of the job."),
    col(
        "Completions",
        "string",
        0,
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", 0, "Time required to complete the job."),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col(
        "Images",
        "string",
        1,
        "Images referenced by each container in the template.",
    ),
    col(
        "Selector",
        "string",
        1,
        "A label query over pods that should match the pod count.",
    ),
];

fn has_condition(job: &Value, type_: &str) -> bool {
    table::arr(job, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == type_ && s(c, &["status"]) == "True")
}

/// What `kubectl get job` shows under STATUS.
fn status_word(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if get(job, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn row(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (containers, images) = template_containers(job);
    let succeeded = i(job, &["status", "succeeded"]);
    let completions = match (
        get(job, &["spec", "completions"]).and_then(Value::as_i64),
        get(job, &["spec", "parallelism"]).and_then(Value::as_i64),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let start = parse_time(s(job, &["status", "startTime"]));
    let end = parse_time(s(job, &["status", "completionTime"]));
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(st), None) => human_duration(now.signed_duration_since(st)),
        (Some(st), Some(e)) => human_duration(e.signed_duration_since(st)),
    };
    vec![
        name(job),
        json!(status_word(job)),
        json!(completions),
        json!(duration),
        age(job, now),
        json!(containers),
        json!(images),
        json!(or_none(label_selector_string(
            job.pointer("/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec})
    }

    fn created(spec: Value) -> Value {
        let mut j = job(spec);
        Jobs.default(&mut j);
        Jobs.prepare_for_create(&mut j);
        j
    }

    fn template(rp: &str) -> Value {
        json!({"spec": {"restartPolicy": rp, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    #[test]
    fn defaults_and_generated_selector() {
        let j = created(json!({"template": template("Never")}));
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["selector"], json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}}));
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_CONTROLLER_UID_LABEL], "u-1");
        assert!(Jobs.validate(&j).is_empty(), "{:?}", Jobs.validate(&j));
        // Parallelism alone leaves completions unset; per-index limits lift backoffLimit.
        let j = created(json!({"parallelism": 3, "completionMode": "Indexed", "completions": 4,
            "backoffLimitPerIndex": 1, "template": template("Never")}));
        assert_eq!(j["spec"]["backoffLimit"], i32::MAX);
        let j = created(json!({"parallelism": 3, "template": template("Never")}));
        assert!(j["spec"].get("completions").is_none());
    }

    #[test]
    fn restart_policy_must_be_never_or_on_failure() {
        let j = created(json!({"template": template("Always")}));
        let errs = Jobs.validate(&j);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_line(),
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn a_user_selector_without_manual_selector_is_refused() {
        let mut j = job(json!({"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": template("Never")["spec"]}}));
        Jobs.default(&mut j);
        Jobs.prepare_for_create(&mut j);
        let errs = Jobs.validate(&j);
        assert!(errs.iter().any(|e| e.field == "spec.selector"), "{errs:?}");
        // With manualSelector it is the user's.
        let mut j = job(json!({"manualSelector": true, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": template("Never")["spec"]}}));
        Jobs.default(&mut j);
        Jobs.prepare_for_create(&mut j);
        assert!(Jobs.validate(&j).is_empty(), "{:?}", Jobs.validate(&j));
    }

    #[test]
    fn indexed_and_failure_policy_rules() {
        let j = created(json!({"completionMode": "Indexed", "parallelism": 2, "template": template("Never")}));
        // Both unset → completions defaulted to 1, so this one is valid; drop it to see the rule.
        let mut j2 = j.clone();
        j2["spec"].as_object_mut().unwrap().remove("completions");
        assert!(Jobs.validate(&j2).iter().any(|e| e.field == "spec.completions"));
        let j = created(
            json!({"template": template("OnFailure"), "podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}}),
        );
        let fields: Vec<String> = Jobs.validate(&j).into_iter().map(|e| e.field).collect();
        assert!(
            fields.contains(&"spec.podFailurePolicy.rules[0].action".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.template.spec.restartPolicy".to_string()),
            "{fields:?}"
        );
        let j = created(json!({"template": template("Never"), "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}));
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
        assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
        assert!(Jobs.validate(&j).is_empty(), "{:?}", Jobs.validate(&j));
    }

    #[test]
    fn template_and_completions_are_immutable() {
        let old = created(json!({"completions": 2, "template": template("Never")}));
        let mut new = old.clone();
        new["spec"]["completions"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        let fields: Vec<String> = Jobs.validate_update(&old, &new).into_iter().map(|e| e.field).collect();
        assert!(fields.contains(&"spec.completions".to_string()));
        assert!(fields.contains(&"spec.template".to_string()));
        // Parallelism may change.
        let mut new = old.clone();
        new["spec"]["parallelism"] = json!(5);
        assert!(Jobs.validate_update(&old, &new).is_empty());
    }

    #[test]
    fn table_row_as_kubectl_prints_it() {
        let mut j = created(json!({"completions": 5, "parallelism": 2, "template": template("Never")}));
        j["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        j["status"] = json!({"succeeded": 5, "startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:13Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let now = parse_time("2026-01-01T00:01:00Z").unwrap();
        let cells = Jobs.cells(&j, now);
        assert_eq!(cells[1], "Complete");
        assert_eq!(cells[2], "5/5");
        assert_eq!(cells[3], "12s");
        assert_eq!(cells[4], "60s");
        assert_eq!(Jobs.columns().len(), cells.len());
    }

    #[test]
    fn managed_by_is_a_domain_prefixed_path_and_immutable() {
        let mut j = created(json!({"template": template("Never"), "managedBy": "kueue.x-k8s.io/multikueue"}));
        assert!(Jobs.validate(&j).is_empty(), "{:?}", Jobs.validate(&j));
        let old = j.clone();
        j["spec"]["managedBy"] = json!("kubernetes.io/job-controller");
        assert!(Jobs
            .validate_update(&old, &j)
            .iter()
            .any(|e| e.field == "spec.managedBy"));
        j["spec"]["managedBy"] = json!("no-slash");
        assert!(Jobs.validate(&j).iter().any(|e| e.field == "spec.managedBy"));
    }

    #[test]
    fn interval_lists() {
        assert_eq!(parse_indexes("0,2-4,7").unwrap(), vec![(0, 0), (2, 4), (7, 7)]);
        assert!(parse_indexes("3-1").is_err());
        assert!(parse_indexes("1,1").is_err());
    }
}
