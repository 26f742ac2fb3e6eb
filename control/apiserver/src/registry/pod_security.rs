//! Pod Security Admission (`k8s.io/pod-security-admission`): the Pod
//! Security Standards `privileged`, `baseline` and `restricted`, chosen
//! per namespace by its labels
//! `pod-security.kubernetes.io/{enforce,audit,warn}` (a level) and
//! `pod-security.kubernetes.io/{enforce,audit,warn}-version` (`latest` or
//! `v1.x`; unset is `latest`; an unset level is `privileged`).
//!
//! - **enforce**: a pod that violates the level is refused with 403 and
//!   Kubernetes' words, `pods "p" is forbidden: violates PodSecurity
//!   "restricted:latest": allowPrivilegeEscalation != false (container "c"
//!   must set securityContext.allowPrivilegeEscalation=false), ...`;
//! - **warn**: the response carries a `Warning` (`would violate PodSecurity
//!   "baseline:latest": ...`), for pods and for the pod templates of
//!   workloads (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs,
//!   CronJobs, ReplicationControllers, PodTemplates), which are never refused;
//! - **audit**: the audit annotations Kubernetes adds to the request's audit
//!   event (`pod-security.kubernetes.io/enforce-policy`,
//!   `pod-security.kubernetes.io/audit-violations`). Sluice has no audit
//!   log yet: they are emitted as `tracing` events with target
//!   [`AUDIT_TARGET`] (fields `annotation`, `value`, `resource`,
//!   `namespace`, `name`), the place an audit log will read them from.
//!
//! Namespace labels are validated on create and when they change (422,
//! `namespaces "n" is invalid: metadata.labels[...]: Invalid value: ...`);
//! an invalid level or version evaluates as `restricted`/`latest` (fail
//! closed). When a namespace's enforce level becomes stricter, its existing
//! pods are evaluated and the violations returned as warnings (`existing
//! pods in namespace "n" violate the new PodSecurity enforce level
//! "restricted:latest"`, then `pod (and 2 other pods): reasons`).
//!
//! The checks are those of the current Kubernetes version, in its order
//! (baseline checks, then restricted ones; the restricted capability,
//! seccomp and volume checks replace their baseline counterparts). Older
//! `-version`s differ only where the policy grew: the allowed sysctls (1.27,
//! 1.29) and `runAsUser=0` (1.23). No namespace, user or runtime class is
//! exempt (Kubernetes' default configuration). Pods are evaluated on create
//! and on updates that change their spec; this step runs after every
//! mutating step.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::kinds::{self, namespace, pod};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::store;

/// The `tracing` target audit annotations are written to.
pub const AUDIT_TARGET: &str = "sluice::audit";

const PREFIX: &str = "pod-security.kubernetes.io/";
const MODES: &[&str] = &["enforce", "audit", "warn"];
const LEVELS: &[&str] = &["privileged", "baseline", "restricted"];

/// A level and a version (`restricted:latest`, `baseline:v1.29`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelVersion {
    /// `privileged`, `baseline` or `restricted`.
    pub level: &'static str,
    /// The minor version of `v1.x`; `None` = `latest`.
    pub minor: Option<u32>,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.minor {
            None => write!(f, "{}:latest", self.level),
            Some(m) => write!(f, "{}:v1.{m}", self.level),
        }
    }
}

/// The three modes of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Refuses violating pods.
    pub enforce: LevelVersion,
    /// Annotates the audit event.
    pub audit: LevelVersion,
    /// Warns the client.
    pub warn: LevelVersion,
}

fn parse_version(v: &str) -> Result<Option<u32>, &'static str> {
    if v == "latest" {
        return Ok(None);
    }
    let err = "must be \"latest\" or \"v1.x\"";
    let minor = v.strip_prefix("v1.").ok_or(err)?;
    if minor.is_empty() || !minor.chars().all(|c| c.is_ascii_digit()) || (minor.len() > 1 && minor.starts_with('0')) {
        return Err(err);
    }
    minor.parse().map(Some).map_err(|_| err)
}

/// The policy of a namespace's labels, and what is wrong with them
/// (Kubernetes' `PolicyToEvaluate`).
pub fn policy(labels: Option<&Value>) -> (Policy, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut out = [(); 3].map(|_| LevelVersion {
        level: "privileged",
        minor: None,
    });
    for (i, mode) in MODES.iter().enumerate() {
        let label = format!("{PREFIX}{mode}");
        if let Some(v) = labels.and_then(|l| l.get(&label)).and_then(Value::as_str) {
            match LEVELS.iter().find(|l| **l == v) {
                Some(l) => out[i].level = l,
                None => {
                    errs.push(FieldError::invalid(
                        format!("metadata.labels[{label}]"),
                        &json!(v),
                        "must be one of privileged, baseline, restricted",
                    ));
                    out[i].level = "restricted";
                }
            }
        }
        let label = format!("{PREFIX}{mode}-version");
        if let Some(v) = labels.and_then(|l| l.get(&label)).and_then(Value::as_str) {
            match parse_version(v) {
                Ok(m) => out[i].minor = m,
                Err(e) => {
                    errs.push(FieldError::invalid(format!("metadata.labels[{label}]"), &json!(v), e));
                    out[i].minor = None;
                }
            }
        }
    }
    let [enforce, audit, warn] = out;
    (Policy { enforce, audit, warn }, errs)
}

/// One failed check: the reason and its detail.
pub type Violation = (String, String);

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn pluralize(one: &str, many: &str, n: usize) -> String {
    if n == 1 {
        one.into()
    } else {
        many.into()
    }
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn all_containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| spec.get(*f).and_then(Value::as_array).into_iter().flatten())
        .collect()
}

fn cname(c: &Value) -> String {
    str_at(c, "/name").to_string()
}

/// `pod and containers "a", "b"` from who set a bad value.
fn setters(pod: bool, containers: &[String]) -> String {
    let mut parts = Vec::new();
    if pod {
        parts.push("pod".to_string());
    }
    if !containers.is_empty() {
        parts.push(format!(
            "{} {}",
            pluralize("container", "containers", containers.len()),
            join_quote(containers)
        ));
    }
    parts.join(" and ")
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn allowed_sysctls(minor: Option<u32>) -> Vec<&'static str> {
    let m = minor.unwrap_or(u32::MAX);
    let mut out = vec![
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
    ];
    if m >= 27 {
        out.push("net.ipv4.ip_local_reserved_ports");
    }
    if m >= 29 {
        out.extend([
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ]);
    }
    out
}

fn app_armor(meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad: Vec<String> = Vec::new();
    let prefix = "container.apparmor.security.beta.kubernetes.io/";
    if let Some(a) = meta.get("annotations").and_then(Value::as_object) {
        for (k, v) in a {
            let v = v.as_str().unwrap_or_default();
            if k.starts_with(prefix) && v != "runtime/default" && !v.starts_with("localhost/") {
                bad.push(format!("{k}={v:?}"));
            }
        }
    }
    let mut check = |p: Option<&Value>| {
        if let Some(t) = p.and_then(|p| p.get("type")).and_then(Value::as_str) {
            if t != "RuntimeDefault" && t != "Localhost" {
                bad.push(format!("{t:?}"));
            }
        }
    };
    check(spec.pointer("/securityContext/appArmorProfile"));
    for c in all_containers(spec) {
        check(c.pointer("/securityContext/appArmorProfile"));
    }
    bad.sort();
    bad.dedup();
    (!bad.is_empty()).then(|| {
        (
            pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad.len()),
            bad.join(", "),
        )
    })
}

fn capabilities_baseline(spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut caps = BTreeSet::new();
    for c in all_containers(spec) {
        let mut bad = false;
        for cap in c
            .pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                bad = true;
                caps.insert(cap.to_string());
            }
        }
        if bad {
            names.push(cname(c));
        }
    }
    (!names.is_empty()).then(|| {
        let caps: Vec<String> = caps.into_iter().collect();
        (
            "non-default capabilities".into(),
            format!(
                "{} {} must not include {} in securityContext.capabilities.add",
                pluralize("container", "containers", names.len()),
                join_quote(&names),
                join_quote(&caps)
            ),
        )
    })
}

fn host_namespaces(spec: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces".into(), set.join(", ")))
}

fn volumes(spec: &Value) -> Vec<&Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

fn host_path_volumes(spec: &Value) -> Option<Violation> {
    let names: Vec<String> = volumes(spec)
        .into_iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(|v| str_at(v, "/name").to_string())
        .collect();
    (!names.is_empty()).then(|| {
        (
            "hostPath volumes".into(),
            format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)),
        )
    })
}

fn host_ports(spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut ports = BTreeSet::new();
    for c in all_containers(spec) {
        let mut bad = false;
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p != 0) {
                bad = true;
                ports.insert(hp);
            }
        }
        if bad {
            names.push(cname(c));
        }
    }
    (!names.is_empty()).then(|| {
        let ports: Vec<String> = ports.iter().map(i64::to_string).collect();
        (
            "hostPort".into(),
            format!(
                "{} {} {} {} {}",
                pluralize("container", "containers", names.len()),
                join_quote(&names),
                pluralize("uses", "use", names.len()),
                pluralize("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

fn privileged(spec: &Value) -> Option<Violation> {
    let names: Vec<String> = all_containers(spec)
        .into_iter()
        .filter(|c| c.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true))
        .map(cname)
        .collect();
    (!names.is_empty()).then(|| {
        (
            "privileged".into(),
            format!(
                "{} {} must not set securityContext.privileged=true",
                pluralize("container", "containers", names.len()),
                join_quote(&names)
            ),
        )
    })
}

fn proc_mount(spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut values = BTreeSet::new();
    for c in all_containers(spec) {
        let v = str_at(c, "/securityContext/procMount");
        if !v.is_empty() && v != "Default" {
            names.push(cname(c));
            values.insert(v.to_string());
        }
    }
    (!names.is_empty()).then(|| {
        let values: Vec<String> = values.into_iter().collect();
        (
            "procMount".into(),
            format!(
                "{} {} must not set securityContext.procMount to {}",
                pluralize("container", "containers", names.len()),
                join_quote(&names),
                join_quote(&values)
            ),
        )
    })
}

fn se_linux(spec: &Value) -> Option<Violation> {
    const TYPES: &[&str] = &[
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut pod_bad = false;
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut check = |o: Option<&Value>| -> bool {
        let Some(o) = o.filter(|o| o.is_object()) else {
            return false;
        };
        let mut bad = false;
        let t = o.get("type").and_then(Value::as_str).unwrap_or_default();
        if !TYPES.contains(&t) {
            types.insert(t.to_string());
            bad = true;
        }
        if !o.get("user").and_then(Value::as_str).unwrap_or_default().is_empty() {
            user = true;
            bad = true;
        }
        if !o.get("role").and_then(Value::as_str).unwrap_or_default().is_empty() {
            role = true;
            bad = true;
        }
        bad
    };
    if check(spec.pointer("/securityContext/seLinuxOptions")) {
        pod_bad = true;
    }
    for c in all_containers(spec) {
        if check(c.pointer("/securityContext/seLinuxOptions")) {
            names.push(cname(c));
        }
    }
    if !pod_bad && names.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !types.is_empty() {
        let t: Vec<String> = types.into_iter().collect();
        what.push(format!("{} {}", pluralize("type", "types", t.len()), join_quote(&t)));
    }
    if user {
        what.push("user may not be set".into());
    }
    if role {
        what.push("role may not be set".into());
    }
    Some((
        "seLinuxOptions".into(),
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters(pod_bad, &names),
            what.join("; ")
        ),
    ))
}

fn seccomp_baseline(spec: &Value) -> Option<Violation> {
    let bad = |o: Option<&Value>| o.and_then(|p| p.get("type")).and_then(Value::as_str) == Some("Unconfined");
    let pod_bad = bad(spec.pointer("/securityContext/seccompProfile"));
    let names: Vec<String> = all_containers(spec)
        .into_iter()
        .filter(|c| bad(c.pointer("/securityContext/seccompProfile")))
        .map(cname)
        .collect();
    (pod_bad || !names.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                setters(pod_bad, &names)
            ),
        )
    })
}

fn sysctls(spec: &Value, minor: Option<u32>) -> Option<Violation> {
    let allowed = allowed_sysctls(minor);
    let bad: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| str_at(s, "/name").to_string())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".into(), bad.join(", ")))
}

fn host_process(spec: &Value) -> Option<Violation> {
    let set = |o: Option<&Value>| o.and_then(Value::as_bool) == Some(true);
    let pod_bad = set(spec.pointer("/securityContext/windowsOptions/hostProcess"));
    let names: Vec<String> = all_containers(spec)
        .into_iter()
        .filter(|c| set(c.pointer("/securityContext/windowsOptions/hostProcess")))
        .map(cname)
        .collect();
    (pod_bad || !names.is_empty()).then(|| {
        (
            "hostProcess".into(),
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters(pod_bad, &names)
            ),
        )
    })
}

fn allow_privilege_escalation(spec: &Value) -> Option<Violation> {
    let names: Vec<String> = all_containers(spec)
        .into_iter()
        .filter(|c| {
            c.pointer("/securityContext/allowPrivilegeEscalation")
                .and_then(Value::as_bool)
                != Some(false)
        })
        .map(cname)
        .collect();
    (!names.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} {} must set securityContext.allowPrivilegeEscalation=false",
                pluralize("container", "containers", names.len()),
                join_quote(&names)
            ),
        )
    })
}

fn capabilities_restricted(spec: &Value) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in all_containers(spec) {
        let Some(k) = c.pointer("/securityContext/capabilities").filter(|k| k.is_object()) else {
            missing_drop.push(cname(c));
            continue;
        };
        let list = |f: &str| -> Vec<String> {
            k.get(f)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        };
        if !list("drop").iter().any(|d| d == "ALL") {
            missing_drop.push(cname(c));
        }
        let bad: Vec<String> = list("add").into_iter().filter(|a| a != "NET_BIND_SERVICE").collect();
        if !bad.is_empty() {
            adding.push(cname(c));
            caps.extend(bad);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            pluralize("container", "containers", missing_drop.len()),
            join_quote(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} {} must not include {} in securityContext.capabilities.add",
            pluralize("container", "containers", adding.len()),
            join_quote(&adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".into(), details.join("; ")))
}

fn restricted_volumes(spec: &Value) -> Option<Violation> {
    let mut names = Vec::new();
    let mut kinds = BTreeSet::new();
    for v in volumes(spec) {
        let Some(o) = v.as_object() else { continue };
        let bad: Vec<&String> = o
            .iter()
            .filter(|(k, val)| k.as_str() != "name" && !val.is_null() && !RESTRICTED_VOLUMES.contains(&k.as_str()))
            .map(|(k, _)| k)
            .collect();
        if !bad.is_empty() {
            names.push(str_at(v, "/name").to_string());
            kinds.extend(bad.into_iter().cloned());
        }
    }
    (!names.is_empty()).then(|| {
        let kinds: Vec<String> = kinds.into_iter().collect();
        (
            "restricted volume types".into(),
            format!(
                "{} {} {} restricted volume {} {}",
                pluralize("volume", "volumes", names.len()),
                join_quote(&names),
                pluralize("uses", "use", names.len()),
                pluralize("type", "types", kinds.len()),
                join_quote(&kinds)
            ),
        )
    })
}

fn run_as_non_root(spec: &Value) -> Option<Violation> {
    let pod = spec.pointer("/securityContext/runAsNonRoot").and_then(Value::as_bool);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in all_containers(spec) {
        match c.pointer("/securityContext/runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(cname(c)),
            Some(true) => {}
            None if pod != Some(true) => implicit.push(cname(c)),
            None => {}
        }
    }
    if pod == Some(false) || !explicit.is_empty() {
        return Some((
            "runAsNonRoot != true".into(),
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters(pod == Some(false), &explicit)
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "runAsNonRoot != true".into(),
            format!(
                "pod or {} {} must set securityContext.runAsNonRoot=true",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

fn run_as_user(spec: &Value) -> Option<Violation> {
    let root = |o: Option<&Value>| o.and_then(Value::as_i64) == Some(0);
    let pod_bad = root(spec.pointer("/securityContext/runAsUser"));
    let names: Vec<String> = all_containers(spec)
        .into_iter()
        .filter(|c| root(c.pointer("/securityContext/runAsUser")))
        .map(cname)
        .collect();
    (pod_bad || !names.is_empty()).then(|| {
        (
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", setters(pod_bad, &names)),
        )
    })
}

fn seccomp_restricted(spec: &Value) -> Option<Violation> {
    let kind = |o: Option<&Value>| {
        o.filter(|o| o.is_object())
            .map(|o| o.get("type").and_then(Value::as_str).unwrap_or_default().to_string())
    };
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut bad_values = BTreeSet::new();
    let pod_kind = kind(spec.pointer("/securityContext/seccompProfile"));
    let pod_bad = pod_kind.as_deref().is_some_and(|t| !valid(t));
    if pod_bad {
        bad_values.insert(pod_kind.clone().unwrap_or_default());
    }
    let pod_set = pod_kind.as_deref().is_some_and(valid);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in all_containers(spec) {
        match kind(c.pointer("/securityContext/seccompProfile")) {
            Some(t) if !valid(&t) => {
                explicit.push(cname(c));
                bad_values.insert(t);
            }
            Some(_) => {}
            None if !pod_set => implicit.push(cname(c)),
            None => {}
        }
    }
    if pod_bad || !explicit.is_empty() {
        let values: Vec<String> = bad_values.into_iter().collect();
        return Some((
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters(pod_bad, &explicit),
                join_quote(&values)
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                pluralize("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

/// The violations of `lv` by a pod's metadata and spec, in Kubernetes'
/// order.
pub fn evaluate(lv: &LevelVersion, meta: &Value, spec: &Value) -> Vec<Violation> {
    if lv.level == "privileged" {
        return Vec::new();
    }
    let restricted = lv.level == "restricted";
    let mut out: Vec<Option<Violation>> = vec![app_armor(meta, spec)];
    if !restricted {
        out.push(capabilities_baseline(spec));
    }
    out.push(host_namespaces(spec));
    if !restricted {
        out.push(host_path_volumes(spec));
    }
    out.push(host_ports(spec));
    out.push(privileged(spec));
    out.push(proc_mount(spec));
    out.push(se_linux(spec));
    if !restricted {
        out.push(seccomp_baseline(spec));
    }
    out.push(sysctls(spec, lv.minor));
    out.push(host_process(spec));
    if restricted {
        out.push(allow_privilege_escalation(spec));
        out.push(capabilities_restricted(spec));
        out.push(restricted_volumes(spec));
        out.push(run_as_non_root(spec));
        if lv.minor.is_none_or(|m| m >= 23) {
            out.push(run_as_user(spec));
        }
        out.push(seccomp_restricted(spec));
    }
    out.into_iter().flatten().collect()
}

/// `reason (detail), reason (detail)` (Kubernetes' `ForbiddenDetail`).
pub fn forbidden_detail(v: &[Violation]) -> String {
    v.iter()
        .map(|(r, d)| if d.is_empty() { r.clone() } else { format!("{r} ({d})") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reason, reason` (Kubernetes' `ForbiddenReason`).
pub fn forbidden_reason(v: &[Violation]) -> String {
    v.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>().join(", ")
}

/// The pod template of a workload object: its metadata and spec.
pub fn template_of<'a>(r: &kinds::Resource, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let t = match (r.group, r.plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => obj.pointer("/spec/template"),
        ("batch", "cronjobs") => obj.pointer("/spec/jobTemplate/spec/template"),
        ("", "podtemplates") => obj.get("template"),
        _ => None,
    }?;
    Some((t.get("metadata").unwrap_or(&Value::Null), t.get("spec")?))
}

fn audit(r: &kinds::Resource, ns: &str, name: &str, key: &str, value: &str) {
    tracing::info!(
        target: AUDIT_TARGET,
        annotation = %format!("{PREFIX}{key}"),
        value = %value,
        resource = r.plural,
        namespace = ns,
        name = name,
        "audit annotation"
    );
}

fn invalid_labels(name: &str, errs: &[FieldError]) -> ApiError {
    let lines: Vec<String> = errs.iter().map(FieldError::to_line).collect();
    let summary = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("[{}]", lines.join(", "))
    };
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("namespaces {name:?} is invalid: {summary}"),
        // Kubernetes' PodSecurity response carries no details: kubectl
        // prints the message as it is.
        details: None,
    }
}

/// Kubernetes' warnings about existing pods that violate a new enforce level.
pub fn existing_pod_warnings(ns: &str, enforce: &LevelVersion, pods: &[Value]) -> Vec<String> {
    let mut by_reason: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for p in pods {
        let v = evaluate(
            enforce,
            p.get("metadata").unwrap_or(&Value::Null),
            p.get("spec").unwrap_or(&Value::Null),
        );
        if v.is_empty() {
            continue;
        }
        let name = str_at(p, "/metadata/name").to_string();
        let e = by_reason
            .entry(forbidden_reason(&v))
            .or_insert_with(|| (name.clone(), 0));
        if name < e.0 {
            e.0 = name;
        }
        e.1 += 1;
    }
    if by_reason.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = by_reason
        .into_iter()
        .map(|(reason, (pod, n))| match n {
            1 => format!("{pod}: {reason}"),
            2 => format!("{pod} (and 1 other pod): {reason}"),
            n => format!("{pod} (and {} other pods): {reason}", n - 1),
        })
        .collect();
    out.sort();
    out.insert(
        0,
        format!("existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{enforce}\""),
    );
    out
}

impl Registry {
    async fn namespace_labels(&self, ns: &str) -> ApiResult<Option<Value>> {
        let key = store::object_key(&namespace::RESOURCE, None, ns);
        Ok(self
            .admission_get(&namespace::RESOURCE, &key)
            .await?
            .and_then(|s| s.object.pointer("/metadata/labels").cloned()))
    }

    /// Pod Security for a create of `obj`: the warnings to return, or the
    /// 403 of the enforce level.
    pub(super) async fn admit_pod_security_create(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        obj: &Value,
    ) -> ApiResult<Vec<String>> {
        let name = str_at(obj, "/metadata/name");
        if *r == namespace::RESOURCE {
            let (_, errs) = policy(obj.pointer("/metadata/labels"));
            if !errs.is_empty() {
                return Err(invalid_labels(name, &errs));
            }
            return Ok(Vec::new());
        }
        let Some(ns) = ns else { return Ok(Vec::new()) };
        self.evaluate_object(r, ns, name, obj).await
    }

    /// Pod Security for an update: namespace labels (validated when they
    /// change; a stricter enforce level warns about existing pods), pods
    /// whose spec changed, workloads whose template changed.
    pub(super) async fn admit_pod_security_update(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        old: &Value,
        new: &Value,
    ) -> ApiResult<Vec<String>> {
        let name = str_at(new, "/metadata/name");
        if *r == namespace::RESOURCE {
            let (old_policy, old_errs) = policy(old.pointer("/metadata/labels"));
            let (new_policy, new_errs) = policy(new.pointer("/metadata/labels"));
            if !new_errs.is_empty() && (old_errs.is_empty() || old_policy != new_policy) {
                return Err(invalid_labels(name, &new_errs));
            }
            let (o, n) = (&old_policy.enforce, &new_policy.enforce);
            let rank = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap_or(0);
            if o == n || n.level == "privileged" || (o.minor == n.minor && rank(n.level) <= rank(o.level)) {
                return Ok(Vec::new());
            }
            let prefix = store::collection_prefix(&pod::RESOURCE, Some(name));
            let pods: Vec<Value> = self.store.list(&prefix).await?.into_iter().map(|s| s.object).collect();
            return Ok(existing_pod_warnings(name, n, &pods));
        }
        let Some(ns) = ns else { return Ok(Vec::new()) };
        let changed = if *r == pod::RESOURCE {
            old.get("spec") != new.get("spec")
        } else {
            template_of(r, old) != template_of(r, new)
        };
        if !changed {
            return Ok(Vec::new());
        }
        self.evaluate_object(r, ns, name, new).await
    }

    async fn evaluate_object(&self, r: &kinds::Resource, ns: &str, name: &str, obj: &Value) -> ApiResult<Vec<String>> {
        let is_pod = *r == pod::RESOURCE;
        let (meta, spec) = if is_pod {
            match obj.get("spec") {
                Some(spec) => (obj.get("metadata").unwrap_or(&Value::Null), spec),
                None => return Ok(Vec::new()),
            }
        } else {
            match template_of(r, obj) {
                Some(t) => t,
                None => return Ok(Vec::new()),
            }
        };
        let labels = self.namespace_labels(ns).await?;
        let (p, _) = policy(labels.as_ref());
        let mut warnings = Vec::new();
        if is_pod {
            audit(r, ns, name, "enforce-policy", &p.enforce.to_string());
            let v = evaluate(&p.enforce, meta, spec);
            if !v.is_empty() {
                return Err(ApiError::forbidden(
                    r,
                    name,
                    format!("violates PodSecurity \"{}\": {}", p.enforce, forbidden_detail(&v)),
                ));
            }
        }
        if !is_pod || p.audit != p.enforce {
            let v = evaluate(&p.audit, meta, spec);
            if !v.is_empty() {
                let value = format!("would violate PodSecurity \"{}\": {}", p.audit, forbidden_detail(&v));
                audit(r, ns, name, "audit-violations", &value);
            }
        }
        if !is_pod || p.warn != p.enforce {
            let v = evaluate(&p.warn, meta, spec);
            if !v.is_empty() {
                warnings.push(format!(
                    "would violate PodSecurity \"{}\": {}",
                    p.warn,
                    forbidden_detail(&v)
                ));
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(level: &'static str) -> LevelVersion {
        LevelVersion { level, minor: None }
    }

    #[test]
    fn labels_choose_levels_and_invalid_values_fail_closed() {
        let (p, errs) = policy(Some(&json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "baseline",
            "pod-security.kubernetes.io/warn-version": "v1.29"
        })));
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "restricted:latest");
        assert_eq!(p.warn.to_string(), "baseline:v1.29");
        assert_eq!(p.audit.to_string(), "privileged:latest");
        let (p, errs) = policy(Some(&json!({"pod-security.kubernetes.io/enforce": "strict",
                                             "pod-security.kubernetes.io/audit-version": "1.2"})));
        assert_eq!(p.enforce.level, "restricted");
        assert_eq!(
            errs[0].to_line(),
            "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"
        );
        assert_eq!(
            errs[1].to_line(),
            "metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: \"1.2\": must be \"latest\" or \"v1.x\""
        );
    }

    #[test]
    fn restricted_lists_violations_in_kubernetes_order() {
        let spec = json!({"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]});
        let v = evaluate(&lv("restricted"), &json!({}), &spec);
        assert_eq!(
            forbidden_detail(&v),
            "privileged (container \"c\" must not set securityContext.privileged=true), \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
        assert!(evaluate(&lv("restricted"), &json!({}), &good).is_empty());
    }

    #[test]
    fn baseline_checks() {
        let spec = json!({"hostNetwork": true, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}],
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}}]});
        let v = evaluate(&lv("baseline"), &json!({}), &spec);
        assert_eq!(
            forbidden_detail(&v),
            "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), \
host namespaces (hostNetwork=true), hostPath volumes (volume \"h\"), hostPort (container \"a\" uses hostPort 80)"
        );
        assert!(evaluate(&lv("privileged"), &json!({}), &spec).is_empty());
        let v = evaluate(&lv("restricted"), &json!({}), &spec);
        assert!(forbidden_detail(&v)
            .contains("restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")"));
    }

    #[test]
    fn existing_pods_are_grouped_by_reason() {
        let p = |n: &str| json!({"metadata": {"name": n}, "spec": {"containers": [{"name": "c", "securityContext": {"privileged": true}}]}});
        let w = existing_pod_warnings("ns", &lv("baseline"), &[p("b"), p("a"), p("c")]);
        assert_eq!(
            w,
            vec![
                "existing pods in namespace \"ns\" violate the new PodSecurity enforce level \"baseline:latest\""
                    .to_string(),
                "a (and 2 other pods): privileged".to_string()
            ]
        );
    }
}
