//! ResourceQuota accounting, shared by the API server's ResourceQuota
//! admission step and the controller-manager's `resourcequota` controller so
//! that both count the same way (Kubernetes' `pkg/quota/v1` evaluators):
//!
//! - what an object uses ([`usage`]): `count/<resource>[.<group>]` for every
//!   object; `pods` and the compute resources (`requests.cpu` and its alias
//!   `cpu`, `limits.cpu`, memory, ephemeral storage, hugepages, extended
//!   resources) for pods that are not terminal; `services`,
//!   `services.nodeports`, `services.loadbalancers`; `persistentvolumeclaims`,
//!   `requests.storage` and their `<class>.storageclass.storage.k8s.io/`
//!   variants; the legacy names of `configmaps`, `secrets`,
//!   `replicationcontrollers` and `resourcequotas`;
//! - which quota resource names an object's kind is charged for
//!   ([`matching_resources`]) and whether a quota's scopes select it
//!   ([`matches_scopes`]: `Terminating`, `NotTerminating`, `BestEffort`,
//!   `NotBestEffort`, `PriorityClass`);
//! - the requests a pod must state under a compute quota
//!   ([`pod_constraints`], `must specify ...`);
//! - quantities as [`Amount`]s, added exactly and printed the way
//!   Kubernetes' `Quantity.String()` canonicalises them (`256Mi`, `500m`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::quantity::parse_milli;

/// A quantity: its value in thousandths and whether it prints in binary
/// (`Ki`, `Mi`, ...) or decimal SI suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// The value times 1000 (Go's `MilliValue`).
    pub milli: i64,
    /// Printed with binary suffixes (the first operand was written so).
    pub binary: bool,
}

/// Resource name → amount, ordered by name as Kubernetes prints them.
pub type ResourceList = BTreeMap<String, Amount>;

impl Amount {
    /// A whole count.
    pub fn count(n: i64) -> Self {
        Self {
            milli: n.saturating_mul(1000),
            binary: false,
        }
    }

    /// Parse a quantity string; `None` when it is not one.
    pub fn parse(q: &str) -> Option<Self> {
        let milli = parse_milli(q).ok()?;
        Some(Self {
            milli,
            binary: q.trim().ends_with('i'),
        })
    }

    /// `self + other`, in `self`'s format (`other`'s when `self` is zero,
    /// as Go's `Quantity.Add`).
    pub fn plus(self, other: Amount) -> Self {
        Self {
            milli: self.milli.saturating_add(other.milli),
            binary: if self.milli == 0 { other.binary } else { self.binary },
        }
    }

    /// `self - other`, keeping `self`'s format.
    pub fn minus(self, other: Amount) -> Self {
        Self {
            milli: self.milli.saturating_sub(other.milli),
            binary: self.binary,
        }
    }

    /// The canonical string, as `Quantity.String()` prints it.
    pub fn format(&self) -> String {
        let (sign, m) = if self.milli < 0 {
            ("-", self.milli.unsigned_abs())
        } else {
            ("", self.milli as u64)
        };
        if m == 0 {
            return "0".into();
        }
        if m % 1000 != 0 {
            return format!("{sign}{m}m");
        }
        let v = m / 1000;
        if self.binary {
            for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                let unit = 1u64 << shift;
                if v % unit == 0 {
                    return format!("{sign}{}{suffix}", v / unit);
                }
            }
            return format!("{sign}{v}");
        }
        for (suffix, unit) in [
            ("E", 1_000_000_000_000_000_000u64),
            ("P", 1_000_000_000_000_000),
            ("T", 1_000_000_000_000),
            ("G", 1_000_000_000),
            ("M", 1_000_000),
            ("k", 1_000),
        ] {
            if v % unit == 0 {
                return format!("{sign}{}{suffix}", v / unit);
            }
        }
        format!("{sign}{v}")
    }
}

/// A `ResourceList` JSON map (`{"cpu": "1"}`), invalid quantities skipped.
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, q)| Some((k.clone(), Amount::parse(q.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON map of a list, canonical strings.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, a)| (k.clone(), json!(a.format()))).collect())
}

/// `a + b` per name (Kubernetes' `quota.Add`).
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone()).and_modify(|x| *x = x.plus(*v)).or_insert(*v);
    }
    out
}

/// `a - b` per name (Kubernetes' `quota.Subtract`).
pub fn subtract(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| *x = x.minus(*v))
            .or_insert(Amount { milli: -v.milli, ..*v });
    }
    out
}

/// Only the names in `names` (Kubernetes' `quota.Mask`).
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| list.get(n).map(|a| (n.clone(), *a)))
        .collect()
}

/// `name=value,name=value` (Kubernetes' `prettyPrint`).
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, a)| format!("{k}={}", a.format()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The names whose usage exceeds the limit (`quota.LessThanOrEqual`'s
/// second result); a name without a limit is not limited.
pub fn exceeded(usage: &ResourceList, hard: &ResourceList) -> Vec<String> {
    usage
        .iter()
        .filter(|(k, a)| hard.get(*k).is_some_and(|h| a.milli > h.milli))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The suffix of per-StorageClass quota names.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The resource names the compute quota of a pod is checked against.
const POD_VALIDATION: &[&str] = &[
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
];

/// The object-count name of a resource: `count/pods`, `count/deployments.apps`.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn is_pod_compute(name: &str) -> bool {
    matches!(name, "pods" | "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

/// Of the quota resource names `hard`, those an object of this resource is
/// charged for (Kubernetes' evaluators' `MatchingResources`).
pub fn matching_resources<'a>(group: &str, plural: &str, hard: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let count = object_count_name(group, plural);
    hard.into_iter()
        .filter(|n| {
            let n = n.as_str();
            if n == count {
                return true;
            }
            match (group, plural) {
                ("", "pods") => is_pod_compute(n),
                ("", "services") => matches!(n, "services" | "services.nodeports" | "services.loadbalancers"),
                ("", "persistentvolumeclaims") => {
                    matches!(n, "persistentvolumeclaims" | "requests.storage")
                        || n.split_once(STORAGE_CLASS_SUFFIX)
                            .is_some_and(|(_, r)| r == "persistentvolumeclaims" || r == "requests.storage")
                }
                ("", "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas") => n == plural,
                _ => false,
            }
        })
        .cloned()
        .collect()
}

/// Whether a pod is charged for compute resources: not `Succeeded` or
/// `Failed`, and not past the end of its deletion grace period (Kubernetes'
/// `QuotaV1Pod`). `now` is seconds since the epoch.
pub fn pod_counts(pod: &Value, now: i64) -> bool {
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return false;
    }
    let deleted = str_at(pod, "/metadata/deletionTimestamp");
    if let (false, Some(grace)) = (
        deleted.is_empty(),
        pod.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64),
    ) {
        if let Ok(at) = deleted.parse::<k8s_openapi::jiff::Timestamp>() {
            if now > at.as_second() + grace {
                return false;
            }
        }
    }
    true
}

fn containers(pod: &Value, field: &str) -> Vec<Value> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn max_list(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| {
                if v.milli > x.milli {
                    *x = *v
                }
            })
            .or_insert(*v);
    }
    out
}

/// A pod's effective requests or limits (`which` = `requests`/`limits`):
/// the sum over its containers and sidecars, at least the largest init
/// container, plus `spec.overhead` (Kubernetes' `PodRequests`/`PodLimits`).
pub fn pod_resources(pod: &Value, which: &str) -> ResourceList {
    let of = |c: &Value| parse_list(c.pointer(&format!("/resources/{which}")));
    let mut sum = ResourceList::new();
    for c in containers(pod, "containers") {
        sum = add(&sum, &of(&c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in containers(pod, "initContainers") {
        if str_at(&c, "/restartPolicy") == "Always" {
            sidecars = add(&sidecars, &of(&c));
            init_max = max_list(&init_max, &sidecars);
        } else {
            init_max = max_list(&init_max, &add(&of(&c), &sidecars));
        }
    }
    let total = max_list(&add(&sum, &sidecars), &init_max);
    add(&total, &parse_list(pod.pointer("/spec/overhead")))
}

fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests.")
}

/// The compute usage of requests and limits (Kubernetes'
/// `podComputeUsageHelper`): `pods` = 1 and each resource under its names.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Amount::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (r, q) in requests {
        if r.starts_with("hugepages-") {
            out.insert(r.clone(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if is_extended(r) {
            out.insert(format!("requests.{r}"), *q);
        }
    }
    out
}

/// What `obj` (of `group`/`plural`) uses, `now` in seconds since the epoch.
pub fn usage(group: &str, plural: &str, obj: &Value, now: i64) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(group, plural), Amount::count(1));
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" if pod_counts(obj, now) => {
            out = add(
                &out,
                &compute_usage(&pod_resources(obj, "requests"), &pod_resources(obj, "limits")),
            );
        }
        "services" => {
            out.insert("services".into(), Amount::count(1));
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len) as i64;
            let (node_ports, lbs) = match str_at(obj, "/spec/type") {
                "NodePort" => (ports, 0),
                "LoadBalancer" => {
                    let allocate = obj
                        .pointer("/spec/allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    let n = if allocate {
                        ports
                    } else {
                        obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, |p| {
                            p.iter()
                                .filter(|p| p.get("nodePort").is_some_and(|n| n.as_i64().unwrap_or(0) != 0))
                                .count()
                        }) as i64
                    };
                    (n, 1)
                }
                _ => (0, 0),
            };
            out.insert("services.nodeports".into(), Amount::count(node_ports));
            out.insert("services.loadbalancers".into(), Amount::count(lbs));
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), Amount::count(1));
            let class = match str_at(obj, "/spec/storageClassName") {
                "" => str_at(obj, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class"),
                c => c,
            };
            if !class.is_empty() {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    Amount::count(1),
                );
            }
            let requested = parse_list(obj.pointer("/spec/resources/requests"))
                .get("storage")
                .copied();
            let allocated = parse_list(obj.pointer("/status/allocatedResources"))
                .get("storage")
                .copied();
            let storage = match (requested, allocated) {
                (Some(r), Some(a)) if a.milli > r.milli => Some(a),
                (Some(r), _) => Some(r),
                (None, a) => a,
            };
            if let Some(s) = storage {
                out.insert("requests.storage".into(), s);
                if !class.is_empty() {
                    out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
                }
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            out.insert(plural.into(), Amount::count(1));
        }
        _ => {}
    }
    out
}

/// The scopes Sluice evaluates; others are refused when a quota is written.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
];

fn is_best_effort(pod: &Value) -> bool {
    let mut all = containers(pod, "containers");
    all.extend(containers(pod, "initContainers"));
    all.iter().all(|c| {
        ["requests", "limits"].iter().all(|w| {
            let l = parse_list(c.pointer(&format!("/resources/{w}")));
            ["cpu", "memory"].iter().all(|r| l.get(*r).is_none_or(|a| a.milli == 0))
        })
    })
}

/// One scope selector of a quota: `(scopeName, operator, values)`; plain
/// `spec.scopes` entries are `Exists`.
pub fn scope_selectors(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        out.push((str_at(e, "/scopeName").into(), str_at(e, "/operator").into(), values));
    }
    out
}

/// Whether every scope of `quota` selects `obj`. Scopes select pods only:
/// a scoped quota does not apply to other kinds (Kubernetes' generic
/// evaluators match no scope).
pub fn matches_scopes(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let selectors = scope_selectors(quota);
    if selectors.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    selectors.iter().all(|(scope, op, values)| {
        let terminating = obj
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|d| d >= 0);
        let truth = match scope.as_str() {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => is_best_effort(obj),
            "NotBestEffort" => !is_best_effort(obj),
            "PriorityClass" => {
                let class = str_at(obj, "/spec/priorityClassName");
                return match op.as_str() {
                    "In" => values.iter().any(|v| v == class),
                    "NotIn" => !values.iter().any(|v| v == class),
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    _ => false,
                };
            }
            _ => false,
        };
        match op.as_str() {
            "DoesNotExist" | "NotIn" => !truth,
            _ => truth,
        }
    })
}

/// The requests or limits each container must state because a quota
/// limits them (Kubernetes' pod evaluator `Constraints`): `Err("must specify
/// limits.cpu for: a,b; requests.memory for: a")`.
pub fn pod_constraints(required: &[String], pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| POD_VALIDATION.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut all = containers(pod, "containers");
    all.extend(containers(pod, "initContainers"));
    for c in &all {
        let usage = compute_usage(
            &parse_list(c.pointer("/resources/requests")),
            &parse_list(c.pointer("/resources/limits")),
        );
        for r in &required {
            if !usage.contains_key(*r) {
                missing.entry(r).or_default().insert(str_at(c, "/name").to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Amount::parse(v).expect("quantity")))
            .collect()
    }

    #[test]
    fn amounts_print_like_quantities() {
        let f = |q: &str| Amount::parse(q).expect("q").format();
        assert_eq!(f("500m"), "500m");
        assert_eq!(f("1000m"), "1");
        assert_eq!(f("256Mi"), "256Mi");
        assert_eq!(f("2048Ki"), "2Mi");
        assert_eq!(f("0"), "0");
        assert_eq!(f("2000"), "2k");
        assert_eq!(
            Amount::parse("128Mi")
                .expect("q")
                .plus(Amount::parse("128Mi").expect("q"))
                .format(),
            "256Mi"
        );
    }

    #[test]
    fn pod_usage_counts_compute_unless_terminal() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "300m"}}}
        ]}});
        let u = usage("", "pods", &pod, 0);
        assert_eq!(
            pretty(&u),
            "count/pods=1,cpu=400m,limits.cpu=200m,memory=64Mi,pods=1,requests.cpu=400m,requests.memory=64Mi"
        );
        let mut done = pod.clone();
        done["status"] = json!({"phase": "Succeeded"});
        assert_eq!(pretty(&usage("", "pods", &done, 0)), "count/pods=1");
    }

    #[test]
    fn services_and_claims() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        assert_eq!(
            pretty(&usage("", "services", &svc, 0)),
            "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2"
        );
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            pretty(&usage("", "persistentvolumeclaims", &pvc, 0)),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=1Gi,persistentvolumeclaims=1,requests.storage=1Gi"
        );
        assert_eq!(
            pretty(&usage("apps", "deployments", &json!({}), 0)),
            "count/deployments.apps=1"
        );
    }

    #[test]
    fn constraints_name_missing_requests() {
        let pod =
            json!({"spec": {"containers": [{"name": "c"}, {"name": "d", "resources": {"limits": {"cpu": "1"}}}]}});
        let req = vec![
            "limits.cpu".to_string(),
            "requests.memory".to_string(),
            "pods".to_string(),
        ];
        assert_eq!(
            pod_constraints(&req, &pod),
            Err("must specify limits.cpu for: c; requests.memory for: c,d".into())
        );
    }

    #[test]
    fn scopes_select_pods() {
        let q = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(matches_scopes(
            &q,
            "",
            "pods",
            &json!({"spec": {"containers": [{"name": "c"}]}})
        ));
        assert!(!matches_scopes(&q, "", "services", &json!({})));
        let q = json!({"spec": {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(matches_scopes(
            &q,
            "",
            "pods",
            &json!({"spec": {"priorityClassName": "high"}})
        ));
        assert!(!matches_scopes(&q, "", "pods", &json!({"spec": {}})));
        assert_eq!(
            exceeded(&list(&[("pods", "3")]), &list(&[("pods", "2")])),
            vec!["pods".to_string()]
        );
    }
}
