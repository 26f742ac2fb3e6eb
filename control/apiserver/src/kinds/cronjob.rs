//! CronJobs (batch/v1): Kubernetes' defaults (concurrencyPolicy Allow,
//! suspend false, 3 successful and 1 failed Jobs kept), the schedule and
//! time zone validated by `sluice-cron` (the parser the CronJob controller
//! uses), names of at most 52 characters (Job names append 11), and the
//! job template validated as a Job's spec.

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::{default, obj_mut};
use crate::kinds::job::{validate_job_spec, JobSpecAt};
use crate::kinds::pod_support::{self, PodSpecAt};
use crate::kinds::strategy::{openapi_ref, NameRule};
use crate::kinds::table::{age, age_of, arr, col, get, label_selector_string, name, or_none, s, Column, AGE, NAME};
use crate::kinds::validation::{check_labels, Errors};
use crate::kinds::{defaults, status, table, Resource, Strategy};
use crate::status::{ApiResult, FieldError};

/// The `CronJob` resource.
pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    kind: "CronJob",
    plural: "cronjobs",
    singular: "cronjob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[status("CronJob", "batch", "v1")],
    field_labels: None,
};

/// Longest CronJob name: its Jobs append `-<minutes since epoch>` (11 characters).
const MAX_NAME_LEN: usize = 52;

const TEMPLATE_POD_SPEC: PodSpecAt = PodSpecAt {
    path: "spec.jobTemplate.spec.template.spec",
    pointer: "/spec/jobTemplate/spec/template/spec",
};

const TEMPLATE_JOB_SPEC: JobSpecAt = JobSpecAt {
    path: "spec.jobTemplate.spec",
    pod_spec: TEMPLATE_POD_SPEC,
};

/// How `CronJob` objects behave.
pub struct CronJobs;

fn cronjob_name(name: &str) -> Result<(), String> {
    crate::meta::names::check_dns1123_subdomain(name)?;
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be no more than {MAX_NAME_LEN} characters"));
    }
    Ok(())
}

impl Strategy for CronJobs {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::batch::v1::CronJob>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::batch::v1::CronJob>(generator)
    }

    fn name_rule(&self) -> NameRule {
        cronjob_name
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj_mut(obj, "spec") else { return };
        default(spec, "concurrencyPolicy", json!("Allow"));
        default(spec, "suspend", json!(false));
        default(spec, "successfulJobsHistoryLimit", json!(3));
        default(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job_spec) = spec
            .get_mut("jobTemplate")
            .and_then(|t| t.get_mut("spec"))
            .and_then(Value::as_object_mut)
        {
            defaults::default_template(job_spec);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        check(None, obj)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        check(Some(old), new)
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

fn check(old: Option<&Value>, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    let Some(spec) = obj.get("spec") else {
        errs.push(FieldError::required("spec", ""));
        return errs.0;
    };
    match spec.get("schedule").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
        Some(schedule) => {
            // A schedule kept unchanged by an update is not re-checked for
            // TZ= (Kubernetes lets old objects keep it).
            let unchanged = old.is_some_and(|o| o.pointer("/spec/schedule") == spec.get("schedule"));
            let result = if unchanged && sluice_cron::has_time_zone_prefix(schedule) {
                Ok(())
            } else {
                sluice_cron::parse(schedule).map(|_| ())
            };
            if let Err(e) = result {
                errs.push(FieldError::invalid("spec.schedule", &json!(schedule), e.to_string()));
            }
        }
    }
    if let Some(tz) = spec.get("timeZone").filter(|v| !v.is_null()) {
        if let Err(e) = sluice_cron::time_zone(Some(tz.as_str().unwrap_or_default())) {
            errs.push(FieldError::invalid("spec.timeZone", tz, e.to_string()));
        }
    }
    let policy = spec.get("concurrencyPolicy").unwrap_or(&Value::Null);
    if !matches!(policy.as_str(), Some("Allow" | "Forbid" | "Replace")) {
        errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n < 0) {
                errs.push(FieldError::invalid(
                    format!("spec.{key}"),
                    v,
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    let template = spec.get("jobTemplate");
    check_labels(
        &mut errs,
        template.and_then(|t| t.pointer("/metadata/labels")),
        "spec.jobTemplate.metadata.labels",
    );
    validate_job_spec(
        &mut errs,
        template.and_then(|t| t.get("spec")),
        TEMPLATE_JOB_SPEC,
        false,
    );
    errs.0
        .extend(pod_support::refuse_unsupported(TEMPLATE_POD_SPEC, old, obj));
    errs.0
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        0,
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        0,
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        0,
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col("Active", "integer", 0, "A list of pointers to currently running jobs."),
    col(
        "Last Schedule",
        "string",
        0,
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    col("Containers", "string", 1, "Names of each container in the template."),
    col("Images", "string", 1, "Images referenced by each container in the template."),
    col(
        "Selector",
        "string",
        1,
        "A label query over pods that should match the pod count.",
    ),
];

fn row(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let containers = arr(cj, &["spec", "jobTemplate", "spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    let last = s(cj, &["status", "lastScheduleTime"]);
    vec![
        name(cj),
        json!(s(cj, &["spec", "schedule"])),
        json!(or_none(s(cj, &["spec", "timeZone"]).to_string())),
        // Kubernetes prints the *bool as a word (`printBoolPtr`).
        json!(match get(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        }),
        json!(arr(cj, &["status", "active"]).len()),
        json!(if last.is_empty() {
            "<none>".to_string()
        } else {
            age_of(last, now)
        }),
        age(cj, now),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(or_none(label_selector_string(
            cj.pointer("/spec/jobTemplate/spec/selector").unwrap_or(&Value::Null)
        ))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob(schedule: &str, extra: Value) -> Value {
        let mut cj = json!({"metadata": {"name": "hello", "namespace": "default"}, "spec": {
            "schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        if let (Some(spec), Some(extra)) = (cj["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        CronJobs.default(&mut cj);
        cj
    }

    #[test]
    fn defaults() {
        let cj = cronjob("*/1 * * * *", json!({}));
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        // The job template's pod spec gets pod defaults, not Job defaults.
        let job_spec = &cj["spec"]["jobTemplate"]["spec"];
        assert_eq!(job_spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(job_spec.get("backoffLimit").is_none());
        assert!(CronJobs.validate(&cj).is_empty(), "{:?}", CronJobs.validate(&cj));
    }

    #[test]
    fn schedule_time_zone_and_policy_are_checked() {
        let lines = |cj: &Value| -> Vec<String> { CronJobs.validate(cj).iter().map(|e| e.to_line()).collect() };
        assert_eq!(
            lines(&cronjob("TZ=UTC 0 * * * *", json!({}))),
            ["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        assert!(lines(&cronjob("@hourly", json!({}))).is_empty());
        assert_eq!(lines(&cronjob("bad", json!({}))).len(), 1);
        assert_eq!(
            lines(&cronjob("@daily", json!({"timeZone": "Nowhere/Land"}))),
            ["spec.timeZone: Invalid value: \"Nowhere/Land\": unknown time zone Nowhere/Land"]
        );
        assert!(lines(&cronjob("@daily", json!({"timeZone": "Asia/Tokyo"}))).is_empty());
        assert_eq!(
            lines(&cronjob("@daily", json!({"concurrencyPolicy": "Never"}))).len(),
            1
        );
        let mut always = cronjob("@daily", json!({}));
        always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            lines(&always),
            ["spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        assert!(cronjob_name(&"a".repeat(53)).is_err());
        assert!(cronjob_name(&"a".repeat(52)).is_ok());
    }

    #[test]
    fn table_row() {
        let mut cj = cronjob("*/5 * * * *", json!({}));
        cj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        cj["status"] = json!({"active": [{"name": "hello-1"}], "lastScheduleTime": "2026-01-01T00:05:00Z"});
        let now = table::parse_time("2026-01-01T00:06:00Z").unwrap();
        let cells = CronJobs.cells(&cj, now);
        assert_eq!(
            cells[..7],
            [
                json!("hello"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("60s"),
                json!("6m")
            ]
        );
    }
}
