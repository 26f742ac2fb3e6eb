//! `pods/eviction`: deleting a pod only when its PodDisruptionBudget allows
//! it, as Kubernetes' eviction REST handler does.
//!
//! The body is a `policy/v1` (or `policy/v1beta1`) `Eviction` naming the pod,
//! with optional `deleteOptions`. Pods that already stopped counting
//! (Pending, Succeeded, Failed, or being deleted) are deleted without looking
//! at budgets. Otherwise the one budget whose selector matches the pod decides:
//! none → delete; more than one → 500; a pod that is not Ready is deleted
//! without spending the budget when `unhealthyPodEvictionPolicy` is
//! `AlwaysAllow` or the budget is healthy (`currentHealthy >= desiredHealthy
//! > 0`), guarded by the pod's resourceVersion; a Ready pod spends one
//! `disruptionsAllowed` (one guarded status write that also records the pod
//! in `disruptedPods`, so the disruption controller does not count it) or is
//! refused with 429 and the budget's numbers. The pod gets the
//! `DisruptionTarget` condition (`EvictionByEvictionAPI`) just before it is
//! deleted with the eviction's `deleteOptions` (grace period, preconditions,
//! propagation). `dryRun` checks everything and writes nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::kinds::{self, Kind};
use crate::meta::selectors::{labels_of, LabelSelector};
use crate::registry::{ListQuery, Registry, UpdateMode, WriteOptions};
use crate::status::{ApiError, ApiResult};

/// Most entries `status.disruptedPods` may hold before evictions are
/// refused (evictions the disruption controller has not seen yet).
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// Attempts when a guarded pod write loses a race (Kubernetes' EvictionsRetry:
/// 20 steps of 500 ms).
const EVICTION_RETRIES: usize = 20;
const EVICTION_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The 429 message of a refused eviction.
pub const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// The 500 message when several budgets select the pod.
pub const SEVERAL_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

fn builtin(group: &str, kind: &str) -> ApiResult<Kind> {
    kinds::builtin(group, kind)
        .map(Kind::Builtin)
        .ok_or_else(|| ApiError::internal(format!("{kind} is not served")))
}

/// 429 with a `DisruptionBudget` cause.
fn too_many_requests(cause: String, retry_after: i64) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError {
        code: 429,
        reason: "TooManyRequests",
        message: VIOLATES_BUDGET.to_string(),
        details: Some(details),
    }
}

/// The 429 while the budget's status does not reflect its spec yet.
fn still_processing(pdb: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {pdb} is still being processed by the server."),
        10,
    )
}

/// 403 on a budget, worded as `errors.NewForbidden(policy.Resource("poddisruptionbudget"), ...)`.
fn budget_forbidden(pdb: &str, why: &str) -> ApiError {
    ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!("poddisruptionbudget.policy {pdb:?} is forbidden: {why}"),
        details: Some(json!({"name": pdb, "group": "policy", "kind": "poddisruptionbudget"})),
    }
}

/// 409 on the pod, worded as `errors.NewConflict({"", "Pod"}, ...)`.
fn pod_conflict(name: &str, why: String) -> ApiError {
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!("Operation cannot be fulfilled on Pod {name:?}: {why}"),
        details: Some(json!({"name": name, "kind": "Pod"})),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn i64_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Checks the Eviction's type, name and namespace and returns it decoded.
fn decode(body: &Value, ns: &str, name: &str) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be an Eviction object"));
    }
    let api_version = str_at(body, "/apiVersion").unwrap_or_default();
    if !api_version.is_empty() && !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )));
    }
    let kind = str_at(body, "/kind").unwrap_or_default();
    if !kind.is_empty() && kind != "Eviction" {
        return Err(ApiError::bad_request(format!("not a Eviction object: {kind}")));
    }
    // policy/v1beta1's Eviction is the same object: decode both as v1.
    let mut v1 = body.clone();
    v1["apiVersion"] = json!("policy/v1");
    v1["kind"] = json!("Eviction");
    let eviction = crate::meta::typed::round_trip::<k8s_openapi::api::policy::v1::Eviction>(&v1)?;
    if str_at(&eviction, "/metadata/name").unwrap_or_default() != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    if let Some(body_ns) = str_at(&eviction, "/metadata/namespace").filter(|n| !n.is_empty()) {
        if body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(eviction)
}

/// Go's `%v` of a `[]string`.
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// The DeleteOptions of the eviction with the request's `dryRun` pushed in
/// (Kubernetes' `propagateDryRun`): both may set it, but not differently.
pub fn propagate_dry_run(eviction: &Value, request_dry_run: bool) -> ApiResult<Value> {
    let request: Vec<String> = if request_dry_run {
        vec!["All".into()]
    } else {
        Vec::new()
    };
    let mut options = match eviction.get("deleteOptions") {
        Some(o) if o.is_object() => o.clone(),
        _ => json!({}),
    };
    let content: Vec<String> = options
        .get("dryRun")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if content.is_empty() {
        if !request.is_empty() {
            options["dryRun"] = json!(request);
        }
    } else if !request.is_empty() && request != content {
        return Err(ApiError::new(
            500,
            "",
            format!(
                "Non-matching dry-run options in request and content: {} and {}",
                go_list(&request),
                go_list(&content)
            ),
        ));
    }
    Ok(options)
}

fn is_dry_run(options: &Value) -> bool {
    options
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn user_resource_version(options: &Value) -> bool {
    options
        .pointer("/preconditions/resourceVersion")
        .is_some_and(Value::is_string)
}

fn set_precondition_rv(options: &mut Value, rv: &str) {
    if !options.get("preconditions").is_some_and(Value::is_object) {
        options["preconditions"] = json!({});
    }
    options["preconditions"]["resourceVersion"] = json!(rv);
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase").unwrap_or_default()
}

fn is_deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Pods whose eviction disrupts nothing more (Kubernetes' `canIgnorePDB`).
pub fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || is_deleting(pod)
}

/// Whether the delete must be guarded by the pod's resourceVersion, so a pod
/// turning Ready meanwhile is not deleted outside its budget.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !(matches!(phase(pod), "Succeeded" | "Failed") || is_deleting(pod))
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| str_at(c, "/type") == Some("Ready") && str_at(c, "/status") == Some("True"))
        })
}

/// Whether the budget `pdb` covers a pod with these labels: a valid,
/// non-empty selector that matches (a null or empty selector matches no
/// pod here, as in Kubernetes' eviction handler).
pub fn budget_selects(pdb: &Value, labels: &crate::meta::selectors::Labels) -> bool {
    let Some(sel) = pdb.pointer("/spec/selector").filter(|s| s.is_object()) else {
        return false;
    };
    match LabelSelector::from_object(sel) {
        Ok(s) => !s.is_empty() && s.matches_labels(labels),
        Err(_) => false,
    }
}

/// What a Ready pod's eviction does to its budget's status (Kubernetes'
/// `checkAndDecrement`): the new status, or the refusal.
pub fn decrement(pdb: &Value, pod: &str, now: &str) -> ApiResult<Value> {
    let name = str_at(pdb, "/metadata/name").unwrap_or_default();
    if i64_at(pdb, "/status/observedGeneration") < i64_at(pdb, "/metadata/generation") {
        return Err(still_processing(name));
    }
    let allowed = i64_at(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(budget_forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_POD_SIZE {
        return Err(budget_forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                i64_at(pdb, "/status/desiredHealthy"),
                i64_at(pdb, "/status/currentHealthy")
            ),
            0,
        ));
    }
    let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        let generation = i64_at(pdb, "/status/observedGeneration");
        set_condition(
            &mut status,
            json!({"type": "DisruptionAllowed", "status": "False", "observedGeneration": generation, "reason": "InsufficientPods", "message": ""}),
            now,
        );
    }
    if !status.get("disruptedPods").is_some_and(Value::is_object) {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    Ok(status)
}

/// apimachinery's `SetStatusCondition`: replaces the condition of the same
/// type, keeping its `lastTransitionTime` unless the status changed.
pub fn set_condition(status: &mut Value, mut cond: Value, now: &str) {
    let ty = str_at(&cond, "/type").unwrap_or_default().to_string();
    let mut list = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = list.iter().position(|c| str_at(c, "/type") == Some(ty.as_str()));
    let keep_time = existing
        .map(|i| &list[i])
        .filter(|old| old.get("status") == cond.get("status"))
        .and_then(|old| old.get("lastTransitionTime").cloned());
    let at = keep_time.unwrap_or_else(|| json!(now));
    // metav1.Condition's field order: type, status, observedGeneration,
    // lastTransitionTime, reason, message.
    let mut ordered = serde_json::Map::new();
    for key in ["type", "status", "observedGeneration"] {
        if let Some(v) = cond
            .get(key)
            .filter(|v| !(key == "observedGeneration" && v.as_i64() == Some(0)))
        {
            ordered.insert(key.into(), v.clone());
        }
    }
    ordered.insert("lastTransitionTime".into(), at);
    for key in ["reason", "message"] {
        ordered.insert(key.into(), cond.get_mut(key).map(Value::take).unwrap_or(json!("")));
    }
    match existing {
        Some(i) => list[i] = Value::Object(ordered),
        None => list.push(Value::Object(ordered)),
    }
    status["conditions"] = Value::Array(list);
}

/// The pod's `DisruptionTarget` condition, set as Kubernetes'
/// `UpdatePodCondition` sets it (the transition time kept when the status
/// does not change).
fn add_disruption_target(pod: &mut Value, now: &str) {
    let cond = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    });
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let mut list = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match list.iter().position(|c| str_at(c, "/type") == Some("DisruptionTarget")) {
        Some(i) => {
            let mut cond = cond;
            if list[i].get("status") == cond.get("status") {
                cond["lastTransitionTime"] = list[i].get("lastTransitionTime").cloned().unwrap_or(json!(now));
            }
            list[i] = cond;
        }
        None => list.push(cond),
    }
    pod["status"]["conditions"] = Value::Array(list);
}

/// Kubernetes' `addConditionAndDeletePod`: the `DisruptionTarget` condition
/// on the latest pod (checked against the options' preconditions), then the
/// delete, its resourceVersion precondition moved past our own write.
async fn add_condition_and_delete(
    reg: &Registry,
    pods: &Kind,
    ns: &str,
    name: &str,
    mut options: Value,
    opts: WriteOptions,
) -> ApiResult<()> {
    if !opts.dry_run {
        let want_uid = str_at(&options, "/preconditions/uid")
            .filter(|u| !u.is_empty())
            .map(String::from);
        let want_rv = str_at(&options, "/preconditions/resourceVersion")
            .filter(|r| !r.is_empty())
            .map(String::from);
        let now = now_rfc3339();
        let written = reg
            .update(pods, Some(ns), name, UpdateMode::Status, WriteOptions::default(), |cur| {
                let uid = str_at(cur, "/metadata/uid").unwrap_or_default();
                if let Some(want) = want_uid.as_deref().filter(|w| *w != uid) {
                    return Err(pod_conflict(name, format!("the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated")));
                }
                let rv = str_at(cur, "/metadata/resourceVersion").unwrap_or_default();
                if let Some(want) = want_rv.as_deref().filter(|w| *w != rv) {
                    return Err(pod_conflict(name, format!("the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified")));
                }
                let mut new = cur.clone();
                add_disruption_target(&mut new, &now);
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            })
            .await?;
        if want_rv.is_some() {
            if let Some(rv) = str_at(&written.object, "/metadata/resourceVersion") {
                set_precondition_rv(&mut options, rv);
            }
        }
    }
    reg.delete(pods, Some(ns), name, &options, opts).await?;
    Ok(())
}

/// Spends one disruption of the budget `pdb` on `pod` (a guarded status
/// write, retried on races), or only checks it in a dry run.
async fn check_and_decrement(
    reg: &Registry,
    pdb_kind: &Kind,
    ns: &str,
    pdb: &Value,
    pod: &str,
    dry_run: bool,
) -> ApiResult<()> {
    let pdb_name = str_at(pdb, "/metadata/name").unwrap_or_default().to_string();
    let now = now_rfc3339();
    if dry_run {
        return decrement(pdb, pod, &now).map(|_| ());
    }
    let result = reg
        .update(
            pdb_kind,
            Some(ns),
            &pdb_name,
            UpdateMode::Status,
            WriteOptions::default(),
            |cur| {
                let status = decrement(cur, pod, &now)?;
                let mut new = cur.clone();
                new["status"] = status;
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            },
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 && e.reason == "Conflict" => Err(ApiError {
            code: 504,
            reason: "Timeout",
            message: format!("Timeout: couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"),
            details: Some(json!({"retryAfterSeconds": 10})),
        }),
        Err(e) => Err(e),
    }
}

/// Evicts pod `ns/name` as the `Eviction` `body` asks; returns the success
/// `Status` (201).
pub async fn evict(reg: &Registry, ns: &str, name: &str, body: Value, opts: WriteOptions) -> ApiResult<Value> {
    let eviction = decode(&body, ns, name)?;
    let options = propagate_dry_run(&eviction, opts.dry_run)?;
    let dry_run = is_dry_run(&options);
    let wopts = WriteOptions { dry_run, ..opts };
    let user_rv = user_resource_version(&options);
    let pods = builtin("", "Pod")?;

    // Pods that no longer count are deleted without asking any budget.
    let mut attempt = 0;
    let pod = loop {
        let pod = reg.get(&pods, Some(ns), name).await?.object;
        if !can_ignore_pdb(&pod) {
            break pod;
        }
        let mut delete = options.clone();
        if should_enforce_resource_version(&pod) && !user_rv {
            set_precondition_rv(
                &mut delete,
                str_at(&pod, "/metadata/resourceVersion").unwrap_or_default(),
            );
        }
        match add_condition_and_delete(reg, &pods, ns, name, delete, wopts).await {
            Ok(()) => return Ok(crate::status::created_status()),
            Err(e) if e.code == 409 && !user_rv && attempt + 1 < EVICTION_RETRIES => {
                attempt += 1;
                tokio::time::sleep(EVICTION_RETRY_DELAY).await;
            }
            Err(e) => return Err(e),
        }
    };

    let pdb_kind = builtin("policy", "PodDisruptionBudget")?;
    let list = reg.list(&pdb_kind, Some(ns), &ListQuery::default()).await?;
    let labels = labels_of(&pod);
    let budgets: Vec<&Value> = list["items"]
        .as_array()
        .map(|items| items.iter().filter(|p| budget_selects(p, &labels)).collect())
        .unwrap_or_default();
    if budgets.len() > 1 {
        return Err(ApiError::new(500, "", SEVERAL_BUDGETS));
    }
    let mut guard_unready = false;
    let mut pdb_name = String::new();
    if let Some(pdb) = budgets.first() {
        pdb_name = str_at(pdb, "/metadata/name").unwrap_or_default().to_string();
        let always_allow = str_at(pdb, "/spec/unhealthyPodEvictionPolicy") == Some("AlwaysAllow");
        let desired = i64_at(pdb, "/status/desiredHealthy");
        let healthy_budget = i64_at(pdb, "/status/currentHealthy") >= desired && desired > 0;
        if !is_ready(&pod) && (always_allow || healthy_budget) {
            // An unready pod does not count as healthy: nothing to spend.
            guard_unready = true;
        } else {
            check_and_decrement(reg, &pdb_kind, ns, pdb, name, dry_run).await?;
        }
    }
    let mut delete = options.clone();
    if guard_unready {
        set_precondition_rv(
            &mut delete,
            str_at(&pod, "/metadata/resourceVersion").unwrap_or_default(),
        );
    }
    match add_condition_and_delete(reg, &pods, ns, name, delete, wopts).await {
        Ok(()) => Ok(crate::status::created_status()),
        // The pod changed (it may have turned Ready): the client retries.
        Err(e) if e.code == 409 && guard_unready && !user_rv => Err(still_processing(&pdb_name)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2},
        })
    }

    #[test]
    fn a_budget_without_disruptions_refuses_with_its_numbers() {
        let err = decrement(&pdb(0, 1, 1), "web-1", "2026-12-01T10:00:00Z").unwrap_err();
        let s = err.to_status();
        assert_eq!(
            s,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "reason": "TooManyRequests",
                "details": {"causes": [{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]},
                "code": 429,
            })
        );
    }

    #[test]
    fn a_stale_budget_asks_to_come_back() {
        let s = decrement(&pdb(1, 2, 1), "web-1", "t").unwrap_err().to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        let s = decrement(&pdb(-1, 1, 1), "web-1", "t").unwrap_err().to_status();
        assert_eq!(
            s["message"],
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn spending_the_last_disruption_records_the_pod_and_the_condition() {
        let status = decrement(&pdb(1, 1, 1), "web-1", "2026-12-01T10:00:00Z").unwrap();
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["disruptedPods"], json!({"web-1": "2026-12-01T10:00:00Z"}));
        assert_eq!(
            status["conditions"],
            json!([{"type": "DisruptionAllowed", "status": "False", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T10:00:00Z", "reason": "InsufficientPods", "message": ""}])
        );
        let status = decrement(&pdb(3, 1, 1), "web-2", "t").unwrap();
        assert_eq!(status["disruptionsAllowed"], 2);
        assert!(status.get("conditions").is_none());
    }

    #[test]
    fn both_eviction_versions_are_accepted_for_the_named_pod() {
        let ev = |v: &str, name: &str| json!({"apiVersion": v, "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
        assert!(decode(&ev("policy/v1", "web-1"), "default", "web-1").is_ok());
        assert!(decode(&ev("policy/v1beta1", "web-1"), "default", "web-1").is_ok());
        assert!(decode(&json!({"metadata": {"name": "web-1"}}), "default", "web-1").is_ok());
        let err = decode(&ev("v1", "web-1"), "default", "web-1").unwrap_err();
        assert_eq!(err.code, 400);
        let err = decode(&ev("policy/v1", "web-2"), "default", "web-1").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "name in URL does not match name in Eviction object")
        );
        let err = decode(&ev("policy/v1", "web-1"), "other", "web-1").unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn dry_run_options_must_agree() {
        let ev = json!({"deleteOptions": {"dryRun": ["All"], "gracePeriodSeconds": 3}});
        assert_eq!(propagate_dry_run(&ev, false).unwrap()["gracePeriodSeconds"], 3);
        assert!(is_dry_run(&propagate_dry_run(&ev, true).unwrap()));
        assert!(is_dry_run(&propagate_dry_run(&json!({}), true).unwrap()));
        assert!(!is_dry_run(&propagate_dry_run(&json!({}), false).unwrap()));
        let err = propagate_dry_run(&json!({"deleteOptions": {"dryRun": ["Some"]}}), true).unwrap_err();
        assert_eq!(
            err.message,
            "Non-matching dry-run options in request and content: [All] and [Some]"
        );
    }

    #[test]
    fn only_non_empty_selectors_cover_pods() {
        let labels = labels_of(&json!({"metadata": {"labels": {"app": "web"}}}));
        assert!(budget_selects(&pdb(0, 1, 1), &labels));
        assert!(!budget_selects(&json!({"spec": {"selector": {}}}), &labels));
        assert!(!budget_selects(&json!({"spec": {}}), &labels));
        let other = labels_of(&json!({"metadata": {"labels": {"app": "db"}}}));
        assert!(!budget_selects(&pdb(0, 1, 1), &other));
    }

    #[test]
    fn terminal_pending_and_deleting_pods_skip_budgets() {
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Succeeded"}})));
        assert!(can_ignore_pdb(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_pdb(
            &json!({"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_pdb(&json!({"status": {"phase": "Running"}})));
        assert!(should_enforce_resource_version(
            &json!({"status": {"phase": "Pending"}})
        ));
        assert!(!should_enforce_resource_version(
            &json!({"status": {"phase": "Failed"}})
        ));
    }

    #[test]
    fn the_disruption_target_keeps_its_transition_time() {
        let mut pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        add_disruption_target(&mut pod, "t1");
        add_disruption_target(&mut pod, "t2");
        let conds = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1]["lastTransitionTime"], "t1");
        assert_eq!(conds[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conds[1]["message"], "Eviction API: evicting");
    }
}
