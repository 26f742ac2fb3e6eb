//! Validation of objects before they are stored.
//!
//! Works on the JSON object (after defaulting) and returns every problem as a
//! [`FieldError`] with its field path, the way Kubernetes reports them:
//! names (DNS-1123 subdomain or label per kind), labels and annotations,
//! selectors, ports, required fields, and fields that may not change on
//! update. Pod-spec fields the cluster cannot honour are refused by
//! [`crate::kinds::pod_support`].

use serde_json::{json, Value};

use crate::kinds::strategy::NameRule;
use crate::kinds::Strategy;
use crate::meta::names::*;
use crate::meta::selectors::LabelSelector;
use crate::status::FieldError;

/// Collects errors while walking an object.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
}

pub fn check_labels(errs: &mut Errors, labels: Option<&Value>, path: &str) {
    let Some(labels) = labels else { return };
    let Some(map) = labels.as_object() else {
        errs.push(FieldError::invalid(path, labels, "must be a map of strings"));
        return;
    };
    for (k, v) in map {
        if let Err(e) = check_label_key(k) {
            errs.push(FieldError::invalid(path, &Value::String(k.clone()), e));
        }
        match v.as_str() {
            Some(s) => {
                if let Err(e) = check_label_value(s) {
                    errs.push(FieldError::invalid(format!("{path}[{k}]"), v, e));
                }
            }
            None => errs.push(FieldError::invalid(format!("{path}[{k}]"), v, "must be a string")),
        }
    }
}

fn check_annotations(errs: &mut Errors, ann: Option<&Value>, path: &str) {
    let Some(map) = ann.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        if let Err(e) = check_label_key(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, &Value::String(k.clone()), e));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > 256 * 1024 {
        errs.push(FieldError {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            message: "Too long: must have at most 262144 bytes".into(),
        });
    }
}

/// Validate object metadata (name, namespace, labels, annotations).
pub fn validate_metadata(errs: &mut Errors, name_rule: NameRule, obj: &Value) {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // generateName is checked as a name prefix (a trailing dash allowed), as
    // ValidateObjectMeta does, before the (possibly generated) name.
    let generate = meta
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !generate.is_empty() {
        let masked = match generate.strip_suffix('-') {
            Some(head) if !head.is_empty() => format!("{head}a"),
            _ => generate.to_string(),
        };
        if let Err(e) = name_rule(&masked) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                &Value::String(generate.into()),
                e,
            ));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if let Err(e) = name_rule(name) {
        errs.push(FieldError::invalid("metadata.name", &Value::String(name.into()), e));
    }
    check_labels(errs, meta.and_then(|m| m.get("labels")), "metadata.labels");
    check_annotations(errs, meta.and_then(|m| m.get("annotations")), "metadata.annotations");
}

pub fn check_port(errs: &mut Errors, v: Option<&Value>, path: &str, required: bool) {
    match v {
        None | Some(Value::Null) => {
            if required {
                errs.push(FieldError::required(path, ""));
            }
        }
        Some(p) => {
            let n = p.as_i64().unwrap_or(-1);
            if !(1..=65535).contains(&n) {
                errs.push(FieldError::invalid(path, p, "must be between 1 and 65535, inclusive"));
            }
        }
    }
}

pub fn check_protocol(errs: &mut Errors, v: Option<&Value>, path: &str) {
    if let Some(p) = v {
        if !matches!(p.as_str(), Some("TCP" | "UDP" | "SCTP")) {
            errs.push(FieldError::not_supported(path, p, &["SCTP", "TCP", "UDP"]));
        }
    }
}

fn validate_containers(errs: &mut Errors, list: Option<&Value>, path: &str, required: bool) {
    let items = list.and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        if required {
            errs.push(FieldError::required(path, ""));
        }
        return;
    }
    let mut names = Vec::new();
    for (i, c) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
            Some(n) => {
                if let Err(e) = check_dns1123_label(n) {
                    errs.push(FieldError::invalid(format!("{p}.name"), &Value::String(n.into()), e));
                }
                if names.contains(&n) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), &Value::String(n.into())));
                }
                names.push(n);
            }
        }
        match c.get("image").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(format!("{p}.image"), "")),
            Some(img) if img.trim() != img => errs.push(FieldError::invalid(
                format!("{p}.image"),
                &Value::String(img.into()),
                "must not have leading or trailing whitespace",
            )),
            _ => {}
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            for (j, port) in ports.iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                check_port(errs, port.get("containerPort"), &format!("{pp}.containerPort"), true);
                if let Some(hp) = port.get("hostPort") {
                    if hp.as_i64() != Some(0) {
                        check_port(errs, Some(hp), &format!("{pp}.hostPort"), false);
                    }
                }
                check_protocol(errs, port.get("protocol"), &format!("{pp}.protocol"));
            }
        }
        if let Some(env) = c.get("env").and_then(Value::as_array) {
            for (j, e) in env.iter().enumerate() {
                if e.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
                    errs.push(FieldError::required(format!("{p}.env[{j}].name"), ""));
                }
            }
        }
        if let Some(policy) = c.get("imagePullPolicy") {
            if !matches!(policy.as_str(), Some("Always" | "IfNotPresent" | "Never")) {
                errs.push(FieldError::not_supported(
                    format!("{p}.imagePullPolicy"),
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
        }
    }
}

/// Kubernetes' rules for init containers, container restart policies and
/// lifecycle hooks (`validateInitContainers`, `validateLifecycle`): init
/// container names unique among all containers, `restartPolicy` only
/// `Always` and only on init containers (sidecars), probes and `lifecycle`
/// only on sidecars among init containers, each hook with exactly one handler.
fn validate_init_containers_and_hooks(errs: &mut Errors, spec: &Value, path: &str) {
    let list = |field: &str| spec.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
    let (containers, init) = (list("containers"), list("initContainers"));
    let grace = spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    let app_names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let set = |c: &Value, field: &str| c.get(field).is_some_and(|v| !v.is_null());
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        if set(c, "restartPolicy") {
            errs.push(FieldError::forbidden(
                format!("{p}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
        validate_lifecycle(errs, c.get("lifecycle"), &format!("{p}.lifecycle"), grace);
    }
    for (i, c) in init.iter().enumerate() {
        let p = format!("{path}.initContainers[{i}]");
        if let Some(n) = c.get("name").and_then(Value::as_str) {
            if app_names.contains(&n) {
                errs.push(FieldError::duplicate(format!("{p}.name"), &Value::String(n.into())));
            }
        }
        let sidecar = match c.get("restartPolicy") {
            None | Some(Value::Null) => false,
            Some(v) if v.as_str() == Some("Always") => true,
            Some(v) => {
                errs.push(FieldError::not_supported(format!("{p}.restartPolicy"), v, &["Always"]));
                false
            }
        };
        if sidecar {
            validate_lifecycle(errs, c.get("lifecycle"), &format!("{p}.lifecycle"), grace);
            continue;
        }
        for field in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if set(c, field) {
                errs.push(FieldError::forbidden(
                    format!("{p}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
}

/// A container's `postStart` and `preStop` hooks: one handler each (`exec`
/// with a command, `httpGet` on a valid port, `tcpSocket`, or `sleep` within
/// the grace period), as Kubernetes' `validateHandler`.
fn validate_lifecycle(errs: &mut Errors, lifecycle: Option<&Value>, path: &str, grace: Option<i64>) {
    let Some(lifecycle) = lifecycle else { return };
    for hook in ["postStart", "preStop"] {
        let Some(handler) = lifecycle.get(hook).filter(|h| !h.is_null()) else {
            continue;
        };
        let hp = format!("{path}.{hook}");
        let mut handlers = 0;
        for kind in ["exec", "httpGet", "tcpSocket", "sleep"] {
            let Some(action) = handler.get(kind).filter(|a| !a.is_null()) else {
                continue;
            };
            let ap = format!("{hp}.{kind}");
            if handlers > 0 {
                errs.push(FieldError::forbidden(ap, "may not specify more than 1 handler type"));
                continue;
            }
            handlers += 1;
            match kind {
                "exec"
                    if action
                        .get("command")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty) =>
                {
                    errs.push(FieldError::required(format!("{ap}.command"), ""));
                }
                "httpGet" | "tcpSocket" => {
                    if let Some(port) = action.get("port").filter(|p| p.is_i64() || p.is_u64()) {
                        check_port(errs, Some(port), &format!("{ap}.port"), true);
                    }
                }
                "sleep" => {
                    let seconds = action.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                    if let Some(grace) = grace.filter(|g| seconds <= 0 || seconds > *g) {
                        errs.push(FieldError::invalid(
                            ap,
                            &Value::from(seconds),
                            format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace}). Please enable PodLifecycleSleepActionAllowZero feature gate if you need a sleep of zero duration."),
                        ));
                    }
                }
                _ => {}
            }
        }
        if handlers == 0 {
            errs.push(FieldError::required(hp, "must specify a handler type"));
        }
    }
}

/// Validate a PodSpec at `path`.
/// `schedulingGates`: each a qualified name, none twice (Kubernetes'
/// `validateSchedulingGates`).
fn validate_scheduling_gates(errs: &mut Errors, gates: Option<&Value>, path: &str) {
    let mut seen = Vec::new();
    for (i, g) in gates.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = g.get("name").and_then(Value::as_str).unwrap_or_default();
        let field = format!("{path}[{i}].name");
        if let Err(why) = crate::meta::names::check_label_key(name) {
            errs.push(FieldError::invalid(&field, &json!(name), why));
        } else if seen.contains(&name) {
            errs.push(FieldError::duplicate(&field, &json!(name)));
        }
        seen.push(name);
    }
}

pub fn validate_pod_spec(errs: &mut Errors, spec: Option<&Value>, path: &str) {
    let Some(spec) = spec else {
        errs.push(FieldError::required(path, ""));
        return;
    };
    validate_containers(errs, spec.get("containers"), &format!("{path}.containers"), true);
    validate_containers(
        errs,
        spec.get("initContainers"),
        &format!("{path}.initContainers"),
        false,
    );
    validate_init_containers_and_hooks(errs, spec, path);
    if let Some(rp) = spec.get("restartPolicy") {
        if !matches!(rp.as_str(), Some("Always" | "OnFailure" | "Never")) {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                rp,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(dp) = spec.get("dnsPolicy") {
        if !matches!(
            dp.as_str(),
            Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None")
        ) {
            errs.push(FieldError::not_supported(
                format!("{path}.dnsPolicy"),
                dp,
                &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
            ));
        }
    }
    validate_scheduling_gates(errs, spec.get("schedulingGates"), &format!("{path}.schedulingGates"));
    validate_dns_config(
        errs,
        spec.get("dnsPolicy").and_then(Value::as_str),
        spec.get("dnsConfig"),
        &format!("{path}.dnsConfig"),
    );
    if let Some(g) = spec.get("terminationGracePeriodSeconds") {
        if g.as_i64().is_some_and(|g| g < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                g,
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        let mut names = Vec::new();
        for (i, v) in vols.iter().enumerate() {
            let n = v.get("name").and_then(Value::as_str).unwrap_or_default();
            if n.is_empty() {
                errs.push(FieldError::required(format!("{path}.volumes[{i}].name"), ""));
            } else if names.contains(&n) {
                errs.push(FieldError::duplicate(
                    format!("{path}.volumes[{i}].name"),
                    &Value::String(n.into()),
                ));
            }
            names.push(n);
        }
    }
    if let Some(ns) = spec.get("nodeSelector") {
        check_labels(errs, Some(ns), &format!("{path}.nodeSelector"));
    }
    validate_host_network_ports(errs, spec, path);
    validate_security_ids(errs, spec, path);
}

/// User and group ids of the pod's and its containers' `securityContext`
/// must be valid Linux ids, as Kubernetes' `IsValidUserID`/`IsValidGroupID`.
fn validate_security_ids(errs: &mut Errors, spec: &Value, path: &str) {
    let mut check = |v: Option<&Value>, field: String| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            if !v.as_i64().is_some_and(|id| (0..=i64::from(i32::MAX)).contains(&id)) {
                errs.push(FieldError::invalid(
                    field,
                    v,
                    format!("must be between 0 and {}, inclusive", i32::MAX),
                ));
            }
        }
    };
    let pod_sc = spec.get("securityContext");
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        check(
            pod_sc.and_then(|sc| sc.get(key)),
            format!("{path}.securityContext.{key}"),
        );
    }
    let groups = pod_sc
        .and_then(|sc| sc.get("supplementalGroups"))
        .and_then(Value::as_array);
    for (i, g) in groups.into_iter().flatten().enumerate() {
        check(Some(g), format!("{path}.securityContext.supplementalGroups[{i}]"));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for key in ["runAsUser", "runAsGroup"] {
                check(
                    c.pointer(&format!("/securityContext/{key}")),
                    format!("{path}.{list}[{i}].securityContext.{key}"),
                );
            }
        }
    }
}

/// A host-network pod's ports are the node's: each `hostPort` (defaulted to
/// it) must equal the `containerPort`, as Kubernetes' `validateHostNetwork`.
fn validate_host_network_ports(errs: &mut Errors, spec: &Value, path: &str) {
    if spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
        return;
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (j, port) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let container_port = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                let host_port = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if host_port != container_port {
                    errs.push(FieldError::invalid(
                        format!("{path}.{list}[{i}].ports[{j}].containerPort"),
                        &Value::from(container_port),
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
}

/// Kubernetes' resolver limits on a pod's `dnsConfig` (glibc reads at most
/// three nameservers; the kubelet's search list limits).
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// Validate `dnsConfig` against `dnsPolicy` as Kubernetes does: `None` needs a
/// `dnsConfig` with at least one nameserver; at most 3 nameservers, each an IP;
/// at most 32 search paths of 2048 characters in all, each a DNS subdomain
/// (a trailing dot allowed); every option named.
fn validate_dns_config(errs: &mut Errors, policy: Option<&str>, config: Option<&Value>, path: &str) {
    let config = config.filter(|c| !c.is_null());
    let list = |key: &str| -> Vec<&Value> {
        config
            .and_then(|c| c.get(key))
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let nameservers = list("nameservers");
    if policy == Some("None") {
        if config.is_none() {
            errs.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if nameservers.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    if config.is_none() {
        return;
    }
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(FieldError::invalid(
            format!("{path}.nameservers"),
            &Value::Array(nameservers.iter().map(|v| (*v).clone()).collect()),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()).is_none() {
            errs.push(FieldError::invalid(
                format!("{path}.nameservers[{i}]"),
                ns,
                "must be valid IP address",
            ));
        }
    }
    let searches = list("searches");
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(FieldError::invalid(
            format!("{path}.searches"),
            &Value::Array(searches.iter().map(|v| (*v).clone()).collect()),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    let chars: usize =
        searches.iter().map(|s| s.as_str().map_or(0, str::len)).sum::<usize>() + searches.len().saturating_sub(1);
    if chars > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(FieldError::invalid(
            format!("{path}.searches"),
            &Value::Array(searches.iter().map(|v| (*v).clone()).collect()),
            format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        let name = search.as_str().unwrap_or_default();
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if let Err(msg) = check_dns1123_subdomain(trimmed) {
            errs.push(FieldError::invalid(format!("{path}.searches[{i}]"), search, msg));
        }
    }
    for (i, option) in list("options").iter().enumerate() {
        if option
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            errs.push(FieldError::required(
                format!("{path}.options[{i}]"),
                "Must not be empty",
            ));
        }
    }
}

pub fn validate_selector_and_template(errs: &mut Errors, spec: Option<&Value>) {
    validate_selector_and_template_for(errs, "deployment", spec)
}

/// [`validate_selector_and_template`] for a workload whose empty-selector
/// error names `kind` (`empty selector is invalid for daemonset`).
pub fn validate_selector_and_template_for(errs: &mut Errors, kind: &str, spec: Option<&Value>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    if let Some(r) = spec.get("replicas") {
        if r.as_i64().is_some_and(|r| r < 0) {
            errs.push(FieldError::invalid(
                "spec.replicas",
                r,
                "must be greater than or equal to 0",
            ));
        }
    }
    let selector = spec.get("selector");
    let parsed = match selector {
        None | Some(Value::Null) => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
        Some(sel) => {
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(|m| m.is_empty());
            if empty {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel,
                    format!("empty selector is invalid for {kind}"),
                ));
                None
            } else {
                check_labels(errs, sel.get("matchLabels"), "spec.selector.matchLabels");
                match LabelSelector::from_object(sel) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errs.push(FieldError::invalid("spec.selector.matchExpressions", sel, e));
                        None
                    }
                }
            }
        }
    };
    let template = spec.get("template");
    let labels = template.and_then(|t| t.pointer("/metadata/labels"));
    check_labels(errs, labels, "spec.template.metadata.labels");
    if let Some(sel) = parsed {
        let tl = crate::meta::selectors::labels_of(template.unwrap_or(&Value::Null));
        if !sel.matches_labels(&tl) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.unwrap_or(&Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_spec(errs, template.and_then(|t| t.get("spec")), "spec.template.spec");
    if let Some(rp) = template.and_then(|t| t.pointer("/spec/restartPolicy")) {
        if rp.as_str() != Some("Always") {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                rp,
                &["Always"],
            ));
        }
    }
}

/// Metadata validation (name per the kind's rule, namespace, labels,
/// annotations) followed by the kind's own errors.
pub fn validate_object(k: &dyn Strategy, obj: &Value, kind_errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut errs = Errors::default();
    validate_metadata(&mut errs, k.name_rule(), obj);
    errs.0.extend(kind_errors);
    errs.0
}

/// A workload with a selector and a pod template (Deployments,
/// ReplicaSets, ...): the selector and template checks, and the template's
/// pod-spec fields the node cannot honour (on update, only changed ones).
pub fn validate_workload(old: Option<&Value>, obj: &Value) -> Errors {
    validate_workload_for("deployment", old, obj)
}

/// [`validate_workload`] for a workload whose empty-selector error names
/// `kind` (DaemonSets, StatefulSets).
pub fn validate_workload_for(kind: &str, old: Option<&Value>, obj: &Value) -> Errors {
    let mut errs = Errors::default();
    validate_selector_and_template_for(&mut errs, kind, obj.get("spec"));
    errs.0.extend(crate::kinds::pod_support::refuse_unsupported(
        crate::kinds::pod_support::TEMPLATE_SPEC_AT,
        old,
        obj,
    ));
    errs
}

/// Keys of `data` and `binaryData` (ConfigMaps, Secrets) are config keys.
pub fn validate_config_keys(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["data", "binaryData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("{field}[{k}]"),
                        &Value::String(k.clone()),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    ));
                }
            }
        }
    }
    errs
}

/// An int-or-percent field (`maxUnavailable`, `maxSurge`) checked as
/// Kubernetes' `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`
/// do; returns its number (the percentage for percents) when valid.
pub fn check_int_or_percent(errs: &mut Errors, v: Option<&Value>, path: &str) -> Option<i64> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) if i >= 0 => Some(i),
            _ => {
                errs.push(FieldError::invalid(
                    path,
                    v.unwrap_or(&Value::Null),
                    "must be greater than or equal to 0",
                ));
                None
            }
        },
        Some(Value::String(s)) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(p) if p > 100 => {
                    errs.push(FieldError::invalid(
                        path,
                        v.unwrap_or(&Value::Null),
                        "must not be greater than 100%",
                    ));
                    None
                }
                Some(p) => Some(p),
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        v.unwrap_or(&Value::Null),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
        Some(other) => {
            errs.push(FieldError::invalid(
                path,
                other,
                "must be an integer or percentage (e.g '5%')",
            ));
            None
        }
    }
}

/// A field that must be a non-negative integer when set.
pub fn check_non_negative(errs: &mut Errors, v: Option<&Value>, path: &str) {
    if let Some(n) = v.filter(|n| n.as_i64().is_some_and(|n| n < 0)) {
        errs.push(FieldError::invalid(path, n, "must be greater than or equal to 0"));
    }
}

/// `field is immutable` when the value at `pointer` changed.
pub fn immutable(old: &Value, new: &Value, pointer: &str, field: &str) -> Vec<FieldError> {
    if old.pointer(pointer) == new.pointer(pointer) {
        return Vec::new();
    }
    vec![FieldError::invalid(
        field,
        new.pointer(pointer).unwrap_or(&Value::Null),
        "field is immutable",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::builtin as by_kind;

    fn validate(k: &dyn Strategy, obj: &Value) -> Vec<FieldError> {
        validate_object(k, obj, k.validate(obj))
    }

    fn validate_update(k: &dyn Strategy, old: &Value, new: &Value) -> Vec<FieldError> {
        k.validate_update(old, new)
    }
    use serde_json::json;

    #[test]
    fn names() {
        assert!(check_dns1123_label("my-name").is_ok());
        assert!(check_dns1123_label("My-name").is_err());
        assert!(check_dns1123_label("-a").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
        assert!(check_dns1123_subdomain("a.b-c.d").is_ok());
        assert!(check_dns1123_subdomain("a..b").is_err());
        assert!(check_dns1035_label("1abc").is_err());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("Bad Key").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("-x").is_err());
    }

    #[test]
    fn deployment_selector_must_match_template() {
        let d = by_kind("apps", "Deployment").unwrap();
        let obj = json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "other"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        });
        let errs = validate(d, &obj);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn init_containers_and_hooks_are_validated_with_the_kubernetes_messages() {
        let spec = json!({
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "i", "restartPolicy": "Always",
                            "lifecycle": {"postStart": {}, "preStop": {"exec": {"command": ["x"]}, "sleep": {"seconds": 1}}}}],
            "initContainers": [
                {"name": "app", "image": "i"},
                {"name": "setup", "image": "i", "readinessProbe": {"exec": {"command": ["true"]}},
                 "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}},
                {"name": "proxy", "image": "i", "restartPolicy": "Always",
                 "readinessProbe": {"exec": {"command": ["true"]}},
                 "lifecycle": {"preStop": {"sleep": {"seconds": 60}}, "postStart": {"exec": {"command": []}}}},
                {"name": "odd", "image": "i", "restartPolicy": "OnFailure"}
            ]
        });
        let mut errs = Errors::default();
        validate_pod_spec(&mut errs, Some(&spec), "spec");
        let lines: Vec<String> = errs.0.iter().map(FieldError::to_line).collect();
        assert_eq!(
            lines,
            [
                "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
                "spec.containers[0].lifecycle.postStart: Required value: must specify a handler type",
                "spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type",
                "spec.initContainers[0].name: Duplicate value: \"app\"",
                "spec.initContainers[1].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[1].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[2].lifecycle.postStart.exec.command: Required value",
                "spec.initContainers[2].lifecycle.preStop.sleep: Invalid value: 60: must be greater than 0 and less than terminationGracePeriodSeconds (30). Please enable PodLifecycleSleepActionAllowZero feature gate if you need a sleep of zero duration.",
                "spec.initContainers[3].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn pod_requires_containers_and_images_with_paths() {
        let p = by_kind("", "Pod").unwrap();
        let errs = validate(
            p,
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "Bad_Name", "ports": [{"containerPort": 70000}]}]}}),
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].name",
                "spec.containers[0].image",
                "spec.containers[0].ports[0].containerPort"
            ]
        );
        let errs = validate(p, &json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(errs[0].field, "spec.containers");
    }

    #[test]
    fn host_network_ports_must_be_host_ports() {
        let p = by_kind("", "Pod").unwrap();
        let pod = |host_port: i64| {
            json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i",
                "ports": [{"containerPort": 8080, "hostPort": host_port}]}]}})
        };
        assert!(validate(p, &pod(8080)).is_empty());
        assert_eq!(
            validate(p, &pod(9090))
                .iter()
                .map(FieldError::to_line)
                .collect::<Vec<_>>(),
            ["spec.containers[0].ports[0].containerPort: Invalid value: 8080: must match `hostPort` when `hostNetwork` is true"]
        );
    }

    #[test]
    fn security_context_ids_are_linux_ids() {
        let p = by_kind("", "Pod").unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "securityContext": {"runAsUser": -1, "runAsGroup": 0, "fsGroup": 2147483648_i64, "supplementalGroups": [1, -5]},
            "containers": [{"name": "c", "image": "i", "securityContext": {"runAsUser": 1000, "runAsGroup": -2}}]}});
        assert_eq!(
            validate(p, &pod).iter().map(FieldError::to_line).collect::<Vec<_>>(),
            [
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.fsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.supplementalGroups[1]: Invalid value: -5: must be between 0 and 2147483647, inclusive",
                "spec.containers[0].securityContext.runAsGroup: Invalid value: -2: must be between 0 and 2147483647, inclusive",
            ]
        );
    }

    #[test]
    fn dns_config_is_checked_against_dns_policy() {
        let p = by_kind("", "Pod").unwrap();
        let pod = |spec: Value| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "c", "image": "i"}]);
            json!({"metadata": {"name": "p"}, "spec": spec})
        };
        let lines = |spec: Value| -> Vec<String> { validate(p, &pod(spec)).iter().map(FieldError::to_line).collect() };
        assert_eq!(
            lines(json!({"dnsPolicy": "None"})),
            ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]
        );
        assert_eq!(
            lines(json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.example"]}})),
            ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"]
        );
        assert!(lines(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["192.0.2.53"], "searches": ["corp.example."]}})
        )
        .is_empty());
        assert!(lines(
            json!({"dnsPolicy": "ClusterFirst", "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}})
        )
        .is_empty());
        assert_eq!(
            lines(json!({"dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4", "5.6.7.8", "9.8.0.1", "2.3.4.c"],
                "searches": ["Bad_Domain"],
                "options": [{"value": "2"}]}})),
            [
                r#"spec.dnsConfig.nameservers: Invalid value: []string{"1.2.3.4", "5.6.7.8", "9.8.0.1", "2.3.4.c"}: must not have more than 3 nameservers"#,
                r#"spec.dnsConfig.nameservers[3]: Invalid value: "2.3.4.c": must be valid IP address"#,
                r#"spec.dnsConfig.searches[0]: Invalid value: "Bad_Domain": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                "spec.dnsConfig.options[0]: Required value: Must not be empty",
            ]
        );
        let many: Vec<String> = (0..33).map(|i| format!("s{i}.example")).collect();
        let errs = lines(json!({"dnsConfig": {"searches": many}}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].ends_with("must not have more than 32 search paths"), "{errs:?}");
    }

    #[test]
    fn service_ports_and_immutable_cluster_ip() {
        let s = by_kind("", "Service").unwrap();
        let errs = validate(
            s,
            &json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 0}]}}),
        );
        assert_eq!(errs[0].field, "spec.ports[0].port");
        let old = json!({"spec": {"clusterIP": "10.96.0.5"}});
        let new = json!({"spec": {"clusterIP": "10.96.0.6"}});
        assert!(validate_update(s, &old, &new)
            .iter()
            .any(|e| e.field == "spec.clusterIPs[0]"));
    }
}
