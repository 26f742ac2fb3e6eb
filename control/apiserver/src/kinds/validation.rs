//! Validation of objects before they are stored.
//!
//! Works on the JSON object (after defaulting) and returns every problem as a
//! [`FieldError`] with its field path, the way Kubernetes reports them:
//! names (DNS-1123 subdomain or label per kind), labels and annotations,
//! selectors, ports, required fields, and fields that may not change on
//! update. Pod-spec fields the cluster cannot honour are refused by
//! [`crate::kinds::pod_support`].

use serde_json::Value;

use crate::kinds::Resource;
use crate::registry::selectors::LabelSelector;
use crate::status::FieldError;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, ≤ 63.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > DNS1123_LABEL_MAX {
        return Err(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    let ok = s.chars().all(is_label_char)
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    Ok(())
}

/// A DNS-1035 label (Service names): like DNS-1123 but starting with a letter.
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= DNS1123_LABEL_MAX
        && s.chars().all(is_label_char)
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into());
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated labels, ≤ 253.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    let ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.chars().all(is_label_char)
            && l.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && l.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    });
    if !ok {
        return Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    Ok(())
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A label/annotation key: `[prefix/]name`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_dns1123_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if !is_qualified_name_part(name) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with at most 63 characters".into());
    }
    Ok(())
}

/// A label value: empty, or ≤ 63 of alphanumerics, '-', '_', '.', alphanumeric ends.
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_qualified_name_part(v) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') with at most 63 characters".into())
    }
}

/// Collects errors while walking an object.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
}

fn check_labels(errs: &mut Errors, labels: Option<&Value>, path: &str) {
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

/// How a kind's names are validated.
fn name_rule(kind: &str) -> fn(&str) -> Result<(), String> {
    match kind {
        "Namespace" => check_dns1123_label,
        "Service" => check_dns1035_label,
        _ => check_dns1123_subdomain,
    }
}

/// Validate object metadata (name, namespace, labels, annotations).
pub fn validate_metadata(errs: &mut Errors, r: &Resource, obj: &Value) {
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
        if let Err(e) = name_rule(r.kind)(&masked) {
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
    } else if let Err(e) = name_rule(r.kind)(name) {
        errs.push(FieldError::invalid("metadata.name", &Value::String(name.into()), e));
    }
    check_labels(errs, meta.and_then(|m| m.get("labels")), "metadata.labels");
    check_annotations(errs, meta.and_then(|m| m.get("annotations")), "metadata.annotations");
}

fn check_port(errs: &mut Errors, v: Option<&Value>, path: &str, required: bool) {
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

fn check_protocol(errs: &mut Errors, v: Option<&Value>, path: &str) {
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

/// Validate a PodSpec at `path`.
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
}

fn validate_selector_and_template(errs: &mut Errors, spec: Option<&Value>) {
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
                    "empty selector is invalid for deployment",
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
        let tl = crate::registry::selectors::labels_of(template.unwrap_or(&Value::Null));
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

fn validate_deployment_strategy(errs: &mut Errors, spec: Option<&Value>) {
    let Some(strategy) = spec.and_then(|s| s.get("strategy")) else {
        return;
    };
    match strategy.get("type").and_then(Value::as_str) {
        Some("RollingUpdate") | None => {}
        Some("Recreate") => {
            if strategy.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some(_) => errs.push(FieldError::not_supported(
            "spec.strategy.type",
            strategy.get("type").unwrap_or(&Value::Null),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

fn validate_service(errs: &mut Errors, spec: Option<&Value>) {
    let Some(spec) = spec else {
        errs.push(FieldError::required("spec", ""));
        return;
    };
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errs.push(FieldError::not_supported(
            "spec.type",
            spec.get("type").unwrap_or(&Value::Null),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if headless && matches!(ty, "NodePort" | "LoadBalancer") {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            &Value::String("None".into()),
            format!("may not be set to 'None' for {ty} services"),
        ));
    }
    let mut names = Vec::new();
    let mut seen = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        if !name.is_empty() {
            if let Err(e) = check_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{path}.name"),
                    &Value::String(name.into()),
                    e,
                ));
            }
            if names.contains(&name) {
                errs.push(FieldError::duplicate(
                    format!("{path}.name"),
                    &Value::String(name.into()),
                ));
            }
            names.push(name);
        }
        check_port(errs, p.get("port"), &format!("{path}.port"), true);
        check_protocol(errs, p.get("protocol"), &format!("{path}.protocol"));
        match p.get("targetPort") {
            Some(Value::Number(n)) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                errs.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    &Value::Number(n.clone()),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(Value::String(s))
                if (s.is_empty()
                    || s.len() > 15
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) =>
            {
                errs.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    &Value::String(s.clone()),
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters",
                ));
            }
            _ => {}
        }
        if let Some(np) = p.get("nodePort") {
            if np.as_i64() != Some(0) && (ty == "ClusterIP" || ty == "ExternalName") {
                errs.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            }
        }
        let key = (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
        );
        if seen.contains(&key) {
            errs.push(FieldError::duplicate(
                path.to_string(),
                &serde_json::json!({"port": key.0, "protocol": key.1}),
            ));
        }
        seen.push(key);
    }
    if let Some(sel) = spec.get("selector") {
        check_labels(errs, Some(sel), "spec.selector");
    }
    if let Some(sa) = spec.get("sessionAffinity") {
        if !matches!(sa.as_str(), Some("None" | "ClientIP")) {
            errs.push(FieldError::not_supported(
                "spec.sessionAffinity",
                sa,
                &["ClientIP", "None"],
            ));
        }
    }
}

/// Validate a whole object of resource `r` on create, including the pod-spec
/// fields this cluster cannot honour ([`crate::kinds::pod_support`]).
pub fn validate(r: &Resource, obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_fields(r, obj);
    errs.extend(crate::kinds::pod_support::refuse_unsupported(r, None, obj));
    errs
}

/// Validate the new object of an update: as [`validate`], except that an
/// unsupported pod-spec field is refused only when its value changed, so
/// objects stored before it was refused can still be updated and deleted.
pub fn validate_for_update(r: &Resource, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_fields(r, new);
    errs.extend(crate::kinds::pod_support::refuse_unsupported(r, Some(old), new));
    errs
}

fn validate_fields(r: &Resource, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errors::default();
    validate_metadata(&mut errs, r, obj);
    let spec = obj.get("spec");
    match (r.group, r.kind) {
        ("", "Pod") => validate_pod_spec(&mut errs, spec, "spec"),
        ("apps", "Deployment") => {
            validate_selector_and_template(&mut errs, spec);
            validate_deployment_strategy(&mut errs, spec);
        }
        ("apps", "ReplicaSet") => validate_selector_and_template(&mut errs, spec),
        ("", "Service") => validate_service(&mut errs, spec),
        ("", "ConfigMap") | ("", "Secret") => {
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
        }
        ("", "Event") if obj.get("involvedObject").is_none() => {
            errs.push(FieldError::required("involvedObject", ""));
        }
        _ => {}
    }
    errs.0
}

fn differs(old: &Value, new: &Value, pointer: &str) -> bool {
    old.pointer(pointer) != new.pointer(pointer)
}

/// Fields that may not change on update (beyond metadata the server keeps).
pub fn validate_update(r: &Resource, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = |errs: &mut Vec<FieldError>, pointer: &str, field: &str| {
        if differs(old, new, pointer) {
            errs.push(FieldError::invalid(
                field,
                new.pointer(pointer).unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    match (r.group, r.kind) {
        ("apps", "Deployment") | ("apps", "ReplicaSet") => immutable(&mut errs, "/spec/selector", "spec.selector"),
        ("", "Service") => {
            let old_ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let new_ip = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let old_ty = old.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            let new_ty = new.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            if !old_ip.is_empty() && old_ip != new_ip && old_ty != "ExternalName" && new_ty != "ExternalName" {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &Value::String(new_ip.into()),
                    "may not change once set",
                ));
            }
        }
        ("", "Pod") => {
            // Only images, activeDeadlineSeconds, tolerations and
            // terminationGracePeriodSeconds may change in a pod spec.
            let mask = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
                for list in ["containers", "initContainers"] {
                    if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(c) = c.as_object_mut() {
                                c.remove("image");
                            }
                        }
                    }
                }
                if let Some(o) = s.as_object_mut() {
                    o.remove("activeDeadlineSeconds");
                    o.remove("tolerations");
                    o.remove("terminationGracePeriodSeconds");
                }
                s
            };
            if mask(old) != mask(new) {
                errs.push(FieldError::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;
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
    fn service_ports_and_immutable_cluster_ip() {
        let s = by_kind("", "Service").unwrap();
        let errs = validate(
            s,
            &json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 0}]}}),
        );
        assert_eq!(errs[0].field, "spec.ports[0].port");
        let old = json!({"spec": {"clusterIP": "10.96.0.5"}});
        let new = json!({"spec": {"clusterIP": "10.96.0.6"}});
        assert_eq!(validate_update(s, &old, &new)[0].field, "spec.clusterIPs[0]");
    }
}
