//! Pods (core/v1): created `Pending` with their QoS class; the spec is
//! immutable but for images, `activeDeadlineSeconds`, tolerations and the
//! grace period; `metadata.generation` does not follow the spec; deletion of
//! a bound pod is graceful and finished by its node (delete with grace 0).
//! Fields the node cannot honour are refused ([`crate::kinds::pod_support`]).

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::defaults::obj_mut;
use crate::kinds::strategy::openapi_ref;
use crate::kinds::table::{age, arr, col, get, human_duration, i, name, or_none, parse_time, s, Column, AGE, NAME};
use crate::kinds::validation::Errors;
use crate::kinds::{defaults, pod_support, status, table, validation, Resource, Strategy, Subresource, BINDING, LOG};
use crate::meta::selectors::bool_field;
use crate::status::{ApiResult, FieldError};

/// A streaming subresource (served by `http::node_proxy` on the pod's node).
const fn stream(name: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name,
        kind,
        kind_group: "",
        kind_version: "v1",
        verbs: &["create", "get"],
        model: None,
    }
}

/// `pods/ephemeralcontainers`: the Pod, of which only
/// `spec.ephemeralContainers` is written (see `pod_support::ephemeral_write`).
const EPHEMERAL_CONTAINERS: Subresource = Subresource {
    name: "ephemeralcontainers",
    kind: "Pod",
    kind_group: "",
    kind_version: "v1",
    verbs: crate::kinds::STATUS_VERBS,
    model: None,
};

/// `pods/eviction`: a policy/v1 `Eviction` (policy/v1beta1 accepted too),
/// served by `registry::eviction`.
const EVICTION: Subresource = Subresource {
    name: "eviction",
    kind: "Eviction",
    kind_group: "policy",
    kind_version: "v1",
    verbs: &["create"],
    model: Some(crate::meta::typed::Model::of::<k8s_openapi::api::policy::v1::Eviction>()),
};

/// `pods/exec`, `pods/attach`, `pods/portforward`.
const EXEC: Subresource = stream("exec", "PodExecOptions");
const ATTACH: Subresource = stream("attach", "PodAttachOptions");
const PORTFORWARD: Subresource = stream("portforward", "PodPortForwardOptions");

/// The `Pod` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[
        status("Pod", "", "v1"),
        BINDING,
        EPHEMERAL_CONTAINERS,
        EVICTION,
        LOG,
        EXEC,
        ATTACH,
        PORTFORWARD,
    ],
    field_labels: Some(&[
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ]),
};

/// How `Pod` objects behave.
pub struct Pods;

impl Strategy for Pods {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn unknown_fields(&self, obj: &Value) -> ApiResult<Option<Vec<String>>> {
        crate::meta::typed::unknown_fields::<k8s_openapi::api::core::v1::Pod>(obj).map(Some)
    }

    fn openapi(&self, generator: &mut SchemaGenerator) -> Option<String> {
        openapi_ref::<k8s_openapi::api::core::v1::Pod>(generator)
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj_mut(obj, "spec") {
            defaults::default_pod_spec(spec);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending", "qosClass": pod_qos_class(&obj["spec"])});
        if has_scheduling_gates(obj) {
            // As Kubernetes' `applySchedulingGatedCondition` (no times set).
            obj["status"]["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null, "lastTransitionTime": null,
            }]);
        }
    }

    fn generation_tracks_spec(&self) -> bool {
        false
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validation::validate_pod_spec(&mut errs, obj.get("spec"), "spec");
        errs.0
            .extend(pod_support::refuse_unsupported(pod_support::POD_SPEC_AT, None, obj));
        errs.0
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_status_update(old, new);
        errs.extend(only_deleted_scheduling_gates(old, new));
        let gated = has_scheduling_gates(old);
        if gated {
            errs.extend(only_added_node_selector(old, new));
            errs.extend(only_narrowed_node_affinity(old, new));
        }
        if mutable_spec(old, gated) != mutable_spec(new, gated) {
            errs.push(FieldError::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
        errs
    }

    fn validate_status_update(&self, old: &Value, new: &Value) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validation::validate_pod_spec(&mut errs, new.get("spec"), "spec");
        errs.0.extend(pod_support::refuse_unsupported(
            pod_support::POD_SPEC_AT,
            Some(old),
            new,
        ));
        errs.0
    }

    fn ready_to_remove(&self, obj: &Value) -> bool {
        // A pod in graceful deletion is removed by its node (delete with grace 0).
        obj.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
    }

    fn begin_delete(&self, obj: &mut Value, grace: Option<i64>, pending: bool) -> bool {
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let default_grace = obj
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        let grace = if !bound || terminal {
            0
        } else {
            grace.unwrap_or(default_grace).max(0)
        };
        let current = obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let effective = match current {
            Some(c) if deleting => c.min(grace),
            _ => grace,
        };
        if !deleting || current != Some(effective) {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("deletionGracePeriodSeconds".into(), json!(effective));
                m.insert("deletionTimestamp".into(), json!(rfc3339_in(effective)));
            }
        }
        pending || effective > 0
    }

    fn field_label_alias(&self, label: &str) -> Option<&'static str> {
        // Old v1 clients' name for spec.nodeName.
        (label == "spec.host").then_some("spec.nodeName")
    }

    fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        let str_at = |p: &str| obj.pointer(p).and_then(Value::as_str).map(String::from);
        match label {
            "spec.hostNetwork" => Some(bool_field(obj, label)),
            "status.podIP" => Some(
                str_at("/status/podIPs/0/ip")
                    .or_else(|| str_at("/status/podIP"))
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    fn columns(&self) -> Vec<Value> {
        table::column_definitions(COLUMNS)
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        row(obj, now)
    }
}

/// Whether `pod` has scheduling gates left.
pub(crate) fn has_scheduling_gates(pod: &Value) -> bool {
    pod.pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
}

fn gate_names(pod: &Value) -> Vec<&str> {
    pod.pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("name").and_then(Value::as_str))
        .collect()
}

/// Scheduling gates may only be removed (Kubernetes'
/// `validateOnlyDeletedSchedulingGates`).
fn only_deleted_scheduling_gates(old: &Value, new: &Value) -> Vec<FieldError> {
    let before = gate_names(old);
    gate_names(new)
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !before.contains(g))
        .map(|(i, g)| {
            FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{g}'"),
            )
        })
        .collect()
}

/// While a pod is gated, `spec.nodeSelector` may gain entries (what a
/// queueing controller such as Kueue adds as it ungates a pod), none
/// changed or removed; once it is not gated, the selector is fixed (by
/// [`mutable_spec`]). For a pod that was gated.
fn only_added_node_selector(old: &Value, new: &Value) -> Vec<FieldError> {
    let (Some(before), after) = (
        old.pointer("/spec/nodeSelector").and_then(Value::as_object),
        new.pointer("/spec/nodeSelector").and_then(Value::as_object),
    ) else {
        return Vec::new();
    };
    let kept = before
        .iter()
        .all(|(k, v)| after.and_then(|a| a.get(k)) == Some(v));
    if kept {
        return Vec::new();
    }
    vec![FieldError::invalid(
        "spec.nodeSelector",
        new.pointer("/spec/nodeSelector").unwrap_or(&Value::Null),
        "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
    )]
}

const REQUIRED_NODE_AFFINITY: &str = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution";

/// While a pod is gated, its required node affinity may be narrowed
/// (Kubernetes' `validateNodeAffinityMutation`): set freely when it had
/// none or no terms; otherwise the same number of terms, each keeping its
/// expressions and fields as they were and only adding more. The preferred
/// terms may change freely. For a pod that was gated.
fn only_narrowed_node_affinity(old: &Value, new: &Value) -> Vec<FieldError> {
    let terms = |pod: &Value| -> Vec<Value> {
        pod.pointer(REQUIRED_NODE_AFFINITY)
            .and_then(|r| r.get("nodeSelectorTerms"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if old.pointer(REQUIRED_NODE_AFFINITY).is_none_or(Value::is_null) {
        return Vec::new();
    }
    let (before, after) = (terms(old), terms(new));
    let path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    if !before.is_empty() && before.len() != after.len() {
        return vec![FieldError::invalid(
            path,
            &Value::Array(after),
            "no additions/deletions to non-empty NodeSelectorTerms list are allowed",
        )];
    }
    before
        .iter()
        .zip(&after)
        .enumerate()
        .filter(|(_, (b, a))| !only_added_requirements(b, a))
        .map(|(i, (_, a))| {
            FieldError::invalid(
                format!("{path}[{i}]"),
                a,
                "only additions are allowed (no mutations or deletions)",
            )
        })
        .collect()
}

/// Whether node selector term `after` is `before` with requirements added
/// at the end of its `matchExpressions` and `matchFields`, the others as
/// they were (an empty list of values the same as none, as Kubernetes'
/// semantic equality has it).
fn only_added_requirements(before: &Value, after: &Value) -> bool {
    fn normalized(requirement: &Value) -> Value {
        let mut r = requirement.clone();
        if let Some(o) = r.as_object_mut() {
            o.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
        }
        r
    }
    ["matchExpressions", "matchFields"].iter().all(|list| {
        let items = |term: &Value| -> Vec<Value> {
            term.get(*list)
                .and_then(Value::as_array)
                .map(|l| l.iter().map(normalized).collect())
                .unwrap_or_default()
        };
        let (b, a) = (items(before), items(after));
        b.len() <= a.len() && b.iter().zip(&a).all(|(x, y)| x == y)
    })
}

/// What of `pod`'s spec an update may not change; `gated`: whether the
/// pod was gated before the update.
fn mutable_spec(pod: &Value, gated: bool) -> Value {
    let mut s = pod.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(o) = s.as_object_mut() {
        // Removing gates is checked by `only_deleted_scheduling_gates`, a
        // gated pod's selector additions by `only_added_node_selector`.
        o.remove("schedulingGates");
        if gated {
            o.remove("nodeSelector");
            // The node affinity too (`only_narrowed_node_affinity`); an
            // affinity left empty is the same as none.
            if let Some(affinity) = o.get_mut("affinity").and_then(Value::as_object_mut) {
                affinity.remove("nodeAffinity");
                affinity.retain(|_, v| !v.is_null());
            }
            if o.get("affinity").is_some_and(|a| a.is_null() || a.as_object().is_some_and(|a| a.is_empty())) {
                o.remove("affinity");
            }
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("image");
            }
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("activeDeadlineSeconds");
        o.remove("tolerations");
        o.remove("terminationGracePeriodSeconds");
    }
    s
}

fn rfc3339_in(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A resource quantity ("500m", "1Gi", "1e3", or a JSON number) in
/// thousandths, for exact comparisons (the shared parser, as the scheduler
/// and the node read it).
fn quantity(v: &Value) -> Option<i64> {
    match v {
        Value::String(q) => sluice_kube::quantity::parse_milli(q).ok(),
        Value::Number(n) => sluice_kube::quantity::parse_milli(&n.to_string()).ok(),
        _ => None,
    }
}

/// The QoS class Kubernetes records in `status.qosClass` at Pod create:
/// `Guaranteed` when every container (init containers included) limits cpu
/// and memory with requests equal to the limits, `BestEffort` when no
/// container requests or limits cpu or memory, else `Burstable`.
/// Expects the spec after defaulting (requests filled from limits).
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .map(|c| {
            let get = |kind: &str, r: &str| c.pointer(&format!("/resources/{kind}/{r}")).and_then(quantity);
            sluice_kube::qos::ContainerResources {
                cpu_request: get("requests", "cpu"),
                cpu_limit: get("limits", "cpu"),
                memory_request: get("requests", "memory"),
                memory_limit: get("limits", "memory"),
            }
        });
    sluice_kube::qos::qos_class(containers)
}

// ---- Table ----

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", 0, "The aggregate status of the containers in this pod."),
    col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    col("IP", "string", 1, "IP address allocated to the pod."),
    col("Node", "string", 1, "Name of the node the pod is assigned to."),
    col("Nominated Node", "string", 1, "Node the scheduler nominated for this pod, if any."),
    col("Readiness Gates", "string", 1, "Readiness gates that are true, out of those declared."),
];

/// The STATUS column: the most telling reason among phase, init containers and containers.
fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, &["status", "phase"]).to_string();
    if !s(pod, &["status", "reason"]).is_empty() {
        reason = s(pod, &["status", "reason"]).to_string();
    }
    if arr(pod, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let init_statuses = arr(pod, &["status", "initContainerStatuses"]);
    let init_total = arr(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (idx, c) in init_statuses.iter().enumerate() {
        let terminated = get(c, &["state", "terminated"]);
        let waiting = get(c, &["state", "waiting"]);
        if terminated.is_some_and(|t| i(t, &["exitCode"]) == 0)
            || (is_sidecar(pod, s(c, &["name"])) && c.get("started") == Some(&json!(true)))
        {
            continue;
        }
        if let Some(t) = terminated {
            let r = s(t, &["reason"]);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if i(t, &["signal"]) != 0 {
                format!("Init:Signal:{}", i(t, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", i(t, &["exitCode"]))
            };
        } else if let Some(w) =
            waiting.filter(|w| !s(w, &["reason"]).is_empty() && s(w, &["reason"]) != "PodInitializing")
        {
            reason = format!("Init:{}", s(w, &["reason"]));
        } else {
            reason = format!("Init:{idx}/{init_total}");
        }
        initializing = true;
        break;
    }
    let initialized = arr(pod, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "Initialized" && s(c, &["status"]) == "True");
    if !initializing || initialized {
        let mut has_running = false;
        for c in arr(pod, &["status", "containerStatuses"]).iter().rev() {
            if let Some(w) = get(c, &["state", "waiting"]) {
                if !s(w, &["reason"]).is_empty() {
                    reason = s(w, &["reason"]).to_string();
                }
            } else if let Some(t) = get(c, &["state", "terminated"]) {
                let r = s(t, &["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if i(t, &["signal"]) != 0 {
                    format!("Signal:{}", i(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", i(t, &["exitCode"]))
                };
            } else if get(c, &["state", "running"]).is_some() && c.get("ready") == Some(&json!(true)) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".to_string();
        }
    }
    if get(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        reason = if s(pod, &["status", "reason"]) == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    if reason.is_empty() {
        "Pending".to_string()
    } else {
        reason
    }
}

/// Whether init container `name` of `pod` is a sidecar (`restartPolicy: Always`).
fn is_sidecar(pod: &Value, name: &str) -> bool {
    arr(pod, &["spec", "initContainers"])
        .iter()
        .any(|c| s(c, &["name"]) == name && s(c, &["restartPolicy"]) == "Always")
}

fn row(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let statuses = arr(pod, &["status", "containerStatuses"]);
    // As kubectl: sidecars count among the containers, ready once started and ready.
    let sidecars = arr(pod, &["spec", "initContainers"])
        .iter()
        .filter(|c| s(c, &["restartPolicy"]) == "Always")
        .count();
    let total = arr(pod, &["spec", "containers"]).len() + sidecars;
    let ready_sidecars = arr(pod, &["status", "initContainerStatuses"])
        .iter()
        .filter(|c| {
            is_sidecar(pod, s(c, &["name"]))
                && c.get("started") == Some(&json!(true))
                && c.get("ready") == Some(&json!(true))
        })
        .count();
    let ready = statuses.iter().filter(|c| c.get("ready") == Some(&json!(true))).count() + ready_sidecars;
    // As kubectl: once the pod is initialized, only sidecars' and containers' restarts count.
    let init_statuses = arr(pod, &["status", "initContainerStatuses"]);
    let initializing = init_statuses.iter().any(|c| {
        let done = get(c, &["state", "terminated"]).is_some_and(|t| i(t, &["exitCode"]) == 0);
        let started_sidecar = is_sidecar(pod, s(c, &["name"])) && c.get("started") == Some(&json!(true));
        !done && !started_sidecar
    });
    let initialized = arr(pod, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "Initialized" && s(c, &["status"]) == "True");
    let counted_init = init_statuses
        .iter()
        .filter(|c| (initializing && !initialized) || is_sidecar(pod, s(c, &["name"])));
    let mut restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    for c in counted_init.chain(statuses) {
        restarts += i(c, &["restartCount"]);
        if let Some(t) = parse_time(s(c, &["lastState", "terminated", "finishedAt"])) {
            if last_restart.is_none_or(|l| t > l) {
                last_restart = Some(t);
            }
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now.signed_duration_since(t))),
        _ => restarts.to_string(),
    };
    let gates = arr(pod, &["spec", "readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(pod, &["status", "conditions"]);
        let true_gates = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .any(|c| s(c, &["type"]) == s(g, &["conditionType"]) && s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        age(pod, now),
        json!(or_none(s(pod, &["status", "podIP"]).to_string())),
        json!(or_none(s(pod, &["spec", "nodeName"]).to_string())),
        json!(or_none(s(pod, &["status", "nominatedNodeName"]).to_string())),
        json!(gates),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gated_pod(gates: &[&str], selector: Value) -> Value {
        let gates: Vec<Value> = gates.iter().map(|g| json!({"name": g})).collect();
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}],
               "schedulingGates": gates, "nodeSelector": selector}})
    }

    /// What an update from `old` to `new` is refused with, as `field: message`.
    fn messages(old: &Value, new: &Value) -> Vec<String> {
        Pods.validate_update(old, new).iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn a_gated_pod_is_created_scheduling_gated() {
        let mut p = gated_pod(&["a"], json!({}));
        Pods.prepare_for_create(&mut p);
        assert_eq!(p["status"]["conditions"][0]["reason"], "SchedulingGated");
        assert_eq!(p["status"]["conditions"][0]["status"], "False");
        let mut free = gated_pod(&[], json!({}));
        Pods.prepare_for_create(&mut free);
        assert!(free["status"].get("conditions").is_none());
    }

    #[test]
    fn gates_may_only_be_removed_and_a_gated_selector_only_grow() {
        let old = gated_pod(&["a", "b"], json!({"zone": "x"}));
        assert!(messages(&old, &gated_pod(&["b"], json!({"zone": "x"}))).is_empty());
        assert!(messages(&old, &gated_pod(&[], json!({"zone": "x", "flavor": "f"}))).is_empty());
        assert_eq!(
            messages(&old, &gated_pod(&["a", "c"], json!({"zone": "x"}))),
            vec!["spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'c'"]
        );
        assert_eq!(
            messages(&old, &gated_pod(&[], json!({"zone": "y"}))),
            vec![r#"spec.nodeSelector: Invalid value: {"zone":"y"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)"#]
        );
        // Without gates the selector is part of the fixed spec.
        let ungated = gated_pod(&[], json!({"zone": "x"}));
        let errs = messages(&ungated, &gated_pod(&[], json!({"zone": "x", "more": "y"})));
        assert!(errs.len() == 1 && errs[0].starts_with("spec: Forbidden: pod updates may not change"), "{errs:?}");
    }

    #[test]
    fn a_gated_pods_required_node_affinity_may_only_be_narrowed() {
        let a = json!({"key": "a", "operator": "In", "values": ["x"]});
        let b = json!({"key": "b", "operator": "Exists"});
        let with = |gates: &[&str], terms: Option<Value>, preferred: Value| {
            let mut p = gated_pod(gates, json!({}));
            let mut node_affinity = json!({"preferredDuringSchedulingIgnoredDuringExecution": preferred});
            if let Some(t) = terms {
                node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": t});
            }
            p["spec"]["affinity"] = json!({"nodeAffinity": node_affinity});
            p
        };
        let none = gated_pod(&["g"], json!({}));
        let one = with(&["g"], Some(json!([{"matchExpressions": [a]}])), json!([]));
        // None before: anything may be set; a term may gain requirements;
        // the preferred terms change freely.
        assert!(messages(&none, &one).is_empty());
        assert!(messages(&one, &with(&[], Some(json!([{"matchExpressions": [a, b]}])), json!([]))).is_empty());
        let preferred = json!([{"weight": 1, "preference": {"matchExpressions": [b]}}]);
        assert!(messages(&one, &with(&["g"], Some(json!([{"matchExpressions": [a]}])), preferred)).is_empty());
        // A changed requirement, a term added.
        assert_eq!(
            messages(&one, &with(&["g"], Some(json!([{"matchExpressions": [b]}])), json!([]))),
            vec![r#"spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]: Invalid value: {"matchExpressions":[{"key":"b","operator":"Exists"}]}: only additions are allowed (no mutations or deletions)"#]
        );
        let two = with(&["g"], Some(json!([{"matchExpressions": [a]}, {"matchExpressions": [b]}])), json!([]));
        let errs = messages(&one, &two);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].ends_with("no additions/deletions to non-empty NodeSelectorTerms list are allowed"), "{errs:?}");
        // Once ungated, the affinity is fixed again.
        let ungated = with(&[], Some(json!([{"matchExpressions": [a]}])), json!([]));
        let errs = messages(&ungated, &with(&[], Some(json!([{"matchExpressions": [a, b]}])), json!([])));
        assert!(errs.len() == 1 && errs[0].starts_with("spec: Forbidden: pod updates may not change"), "{errs:?}");
        // Other affinity stays fixed while gated.
        let mut anti = one.clone();
        anti["spec"]["affinity"]["podAntiAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": []});
        let errs = messages(&one, &anti);
        assert!(errs.len() == 1 && errs[0].starts_with("spec: Forbidden"), "{errs:?}");
    }

    #[test]
    fn gate_names_are_qualified_and_unique() {
        let p = gated_pod(&["example.com/a", "example.com/a", "no spaces"], json!({}));
        let errs: Vec<String> = Pods.validate(&p).iter().map(|e| e.field.clone()).collect();
        assert!(errs.contains(&"spec.schedulingGates[1].name".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.schedulingGates[2].name".to_string()), "{errs:?}");
        assert!(!errs.contains(&"spec.schedulingGates[0].name".to_string()), "{errs:?}");
    }

    #[test]
    fn sidecars_count_as_containers_once_started() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": true},
                {"name": "proxy", "state": {"running": {}}, "started": false, "ready": false}]}
        });
        assert_eq!(pod_status(&pod), "Init:1/2");
        let mut running = pod.clone();
        running["status"] = json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "ready": true},
                {"name": "proxy", "state": {"running": {}}, "started": true, "ready": true}],
            "containerStatuses": [{"name": "a", "state": {"running": {}}, "ready": true}]});
        assert_eq!(pod_status(&running), "Running");
        let now = chrono::Utc::now();
        assert_eq!(row(&running, now)[1], json!("2/2"));
        // A regular init container's restarts stop counting once the pod is initialized.
        running["status"]["initContainerStatuses"][0]["restartCount"] = json!(3);
        running["status"]["initContainerStatuses"][1]["restartCount"] = json!(1);
        assert_eq!(row(&running, now)[3], json!("1"));
        let mut initializing = pod.clone();
        initializing["status"]["initContainerStatuses"][0] =
            json!({"name": "setup", "state": {"running": {}}, "restartCount": 2});
        assert_eq!(row(&initializing, now)[3], json!("2"));
        assert_eq!(row(&pod, now)[1], json!("0/2"));
    }

    #[test]
    fn pod_status_covers_pending_init_and_terminating() {
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pod_status(&pending), "Pending");
        let init = json!({
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [{"state": {"running": {}}}]}
        });
        assert_eq!(pod_status(&init), "Init:0/1");
        let terminating = json!({
            "metadata": {"deletionTimestamp": "2026-01-01T11:59:00Z"},
            "status": {"phase": "Running"}
        });
        assert_eq!(pod_status(&terminating), "Terminating");
        let gated = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(pod_status(&gated), "SchedulingGated");
        let completed = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}});
        assert_eq!(pod_status(&completed), "Completed");
    }

    #[test]
    fn qos_class() {
        let pod = |res: Value| json!({"containers": [{"name": "a", "resources": res}, {"name": "b"}]});
        assert_eq!(pod_qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "0"}}}]})),
            "BestEffort"
        );
        assert_eq!(pod_qos_class(&pod(json!({"requests": {"cpu": "1"}}))), "Burstable");
        let full = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}});
        assert_eq!(
            pod_qos_class(&json!({"containers": [{"name": "a", "resources": full}]})),
            "Guaranteed"
        );
        // One container without limits makes the pod Burstable.
        assert_eq!(pod_qos_class(&pod(full.clone())), "Burstable");
        let unequal = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}});
        assert_eq!(
            pod_qos_class(&json!({"containers": [{"name": "a", "resources": unequal}]})),
            "Burstable"
        );
        let only_cpu = json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}});
        assert_eq!(
            pod_qos_class(&json!({"containers": [{"name": "a", "resources": only_cpu}]})),
            "Burstable"
        );
        // Requests filled from limits by defaulting make a limits-only pod Guaranteed.
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "2", "memory": "128Mi"}}}]}});
        Pods.default(&mut p);
        assert_eq!(pod_qos_class(&p["spec"]), "Guaranteed");
        assert_eq!(quantity(&json!("1.5Gi")), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(quantity(&json!("2e3")), Some(2_000_000));
        assert_eq!(quantity(&json!(2)), Some(2000));
        assert_eq!(quantity(&json!("bogus")), None);
    }
}
