//! The `LimitRanger` admission step: the LimitRanges of a namespace applied
//! to pods and PersistentVolumeClaims on create, as Kubernetes'
//! `plugin/pkg/admission/limitranger` does.
//!
//! - Pods: every container and init container gets the `default` limits and
//!   `defaultRequest` requests of `Container` items for the resources it
//!   does not state, and the pod is annotated with what was set
//!   (`kubernetes.io/limit-ranger: LimitRanger plugin set: cpu, memory
//!   request for container app; cpu limit for container app`). Then each
//!   container is checked against `min`, `max` and `maxLimitRequestRatio` of
//!   `Container` items, and the pod's total (containers summed, at least the
//!   largest init container) against `Pod` items.
//! - Claims: `spec.resources.requests.storage` within the `min`/`max` of
//!   `PersistentVolumeClaim` items.
//!
//! A violation is a 403 with Kubernetes' words, e.g. `pods "p" is
//! forbidden: maximum cpu usage per Container is 1, but limit is 2`
//! (several: `[..., ...]`). Pod updates are not evaluated (containers'
//! resources cannot change), as in Kubernetes. It runs first among the
//! admission steps, before ResourceQuota counts the defaulted requests.

use serde_json::{json, Value};
use sluice_kube::resource_quota::{parse_list, pod_resources, Amount, ResourceList};

use crate::kinds::{self, limitrange, persistentvolumeclaim, pod};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::storage::store;

/// The annotation recording what LimitRanger set on a pod.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

impl Registry {
    async fn limit_ranges(&self, ns: &str) -> ApiResult<Vec<Value>> {
        let prefix = store::collection_prefix(&limitrange::RESOURCE, Some(ns));
        let ranges = self.admission_list(&limitrange::RESOURCE, &prefix).await?;
        Ok(ranges.into_iter().map(|s| s.object).collect())
    }

    /// The LimitRanger step for a create of `obj` in `ns`.
    pub(super) async fn admit_limit_ranger_create(
        &self,
        r: &kinds::Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let is_pod = *r == pod::RESOURCE;
        if !(is_pod || *r == persistentvolumeclaim::RESOURCE) {
            return Ok(());
        }
        let Some(ns) = ns else { return Ok(()) };
        let ranges = self.limit_ranges(ns).await?;
        if ranges.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::new();
        for range in &ranges {
            if is_pod {
                apply_defaults(range, obj);
                errors.extend(validate_pod(range, obj));
            } else {
                errors.extend(validate_claim(range, obj));
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Err(ApiError::forbidden(r, &name, aggregate(&errors)))
    }
}

/// Go's `utilerrors.NewAggregate(errs).Error()`.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn items<'a>(range: &'a Value, t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(t))
}

/// Set the `Container` defaults of `range` on every container of `pod` and
/// record them in the pod's annotation.
pub fn apply_defaults(range: &Value, pod: &mut Value) {
    let mut limits = serde_json::Map::new();
    let mut requests = serde_json::Map::new();
    for item in items(range, "Container") {
        for (key, into) in [("default", &mut limits), ("defaultRequest", &mut requests)] {
            if let Some(m) = item.get(key).and_then(Value::as_object) {
                for (k, v) in m {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    for (field, what) in [("initContainers", "init container"), ("containers", "container")] {
        let Some(list) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(co) = c.as_object_mut() else { continue };
            let res = co.entry("resources").or_insert_with(|| json!({}));
            if !res.is_object() {
                *res = json!({});
            }
            let mut set = |key: &str, defaults: &serde_json::Map<String, Value>| -> Vec<String> {
                let Some(ro) = res.as_object_mut() else {
                    return Vec::new();
                };
                let list = ro.entry(key).or_insert_with(|| json!({}));
                if !list.is_object() {
                    *list = json!({});
                }
                let mut added = Vec::new();
                if let Some(lo) = list.as_object_mut() {
                    for (k, v) in defaults {
                        if !lo.contains_key(k) {
                            lo.insert(k.clone(), v.clone());
                            added.push(k.clone());
                        }
                    }
                }
                if ro.get(key).and_then(Value::as_object).is_some_and(|m| m.is_empty()) {
                    ro.remove(key);
                }
                added.sort();
                added
            };
            let set_limits = set("limits", &limits);
            let set_requests = set("requests", &requests);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {what} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    if let Some(a) = ann.as_object_mut() {
        a.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

fn sorted(item: &Value, key: &str) -> Vec<(String, Amount)> {
    parse_list(item.get(key)).into_iter().collect()
}

fn min_constraint(t: &str, k: &str, enforced: Amount, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let e = enforced.format();
    let Some(r) = req.get(k) else {
        return Some(format!("minimum {k} usage per {t} is {e}.  No request is specified"));
    };
    if r.milli < enforced.milli {
        return Some(format!(
            "minimum {k} usage per {t} is {e}, but request is {}",
            r.format()
        ));
    }
    if let Some(l) = lim.get(k).filter(|l| l.milli < enforced.milli) {
        return Some(format!("minimum {k} usage per {t} is {e}, but limit is {}", l.format()));
    }
    None
}

fn max_constraint(t: &str, k: &str, enforced: Amount, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let e = enforced.format();
    let Some(l) = lim.get(k) else {
        return Some(format!("maximum {k} usage per {t} is {e}.  No limit is specified"));
    };
    if l.milli > enforced.milli {
        return Some(format!("maximum {k} usage per {t} is {e}, but limit is {}", l.format()));
    }
    if let Some(r) = req.get(k).filter(|r| r.milli > enforced.milli) {
        return Some(format!(
            "maximum {k} usage per {t} is {e}, but request is {}",
            r.format()
        ));
    }
    None
}

fn ratio_constraint(t: &str, k: &str, enforced: Amount, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let e = enforced.format();
    let r = req.get(k).map_or(0, |r| r.milli);
    let l = lim.get(k).map_or(0, |l| l.milli);
    if r == 0 {
        return Some(format!(
            "{k} max limit to request ratio per {t} is {e}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{k} max limit to request ratio per {t} is {e}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    if observed * 1000.0 > enforced.milli as f64 {
        return Some(format!(
            "{k} max limit to request ratio per {t} is {e}, but provided ratio is {observed:.6}"
        ));
    }
    None
}

fn check(t: &str, item: &Value, req: &ResourceList, lim: &ResourceList, out: &mut Vec<String>) {
    for (k, v) in sorted(item, "min") {
        out.extend(min_constraint(t, &k, v, req, lim));
    }
    for (k, v) in sorted(item, "max") {
        out.extend(max_constraint(t, &k, v, req, lim));
    }
    for (k, v) in sorted(item, "maxLimitRequestRatio") {
        out.extend(ratio_constraint(t, &k, v, req, lim));
    }
}

/// The violations of `range` by `pod` (Kubernetes' `PodValidateLimitFunc`).
pub fn validate_pod(range: &Value, pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{field}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let req = parse_list(c.pointer("/resources/requests"));
                        let lim = parse_list(c.pointer("/resources/limits"));
                        check("Container", item, &req, &lim, &mut out);
                    }
                }
            }
            Some("Pod") => {
                let req = pod_resources(pod, "requests");
                let lim = pod_resources(pod, "limits");
                check("Pod", item, &req, &lim, &mut out);
            }
            _ => {}
        }
    }
    out
}

/// The violations of `range` by a claim's storage request.
pub fn validate_claim(range: &Value, claim: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let req = parse_list(claim.pointer("/spec/resources/requests"));
    for item in items(range, "PersistentVolumeClaim") {
        for (k, v) in sorted(item, "min") {
            out.extend(min_constraint(
                "PersistentVolumeClaim",
                &k,
                v,
                &req,
                &ResourceList::new(),
            ));
        }
        for (k, v) in sorted(item, "max") {
            let e = v.format();
            match req.get(&k) {
                None => out.push(format!(
                    "maximum {k} usage per PersistentVolumeClaim is {e}.  No request is specified"
                )),
                Some(r) if r.milli > v.milli => out.push(format!(
                    "maximum {k} usage per PersistentVolumeClaim is {e}, but request is {}",
                    r.format()
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Value {
        json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "250m", "memory": "64Mi"},
            "max": {"cpu": "1"}}]}})
    }

    #[test]
    fn defaults_requests_and_limits_and_annotates() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}}]}});
        apply_defaults(&range(), &mut pod);
        assert_eq!(
            pod.pointer("/spec/containers/0/resources"),
            Some(
                &json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}})
            )
        );
        assert_eq!(
            pod.pointer("/metadata/annotations/kubernetes.io~1limit-ranger"),
            Some(&json!(
                "LimitRanger plugin set: cpu request for container app; cpu limit for container app"
            ))
        );
    }

    #[test]
    fn checks_max_min_and_ratio_with_kubernetes_words() {
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "100m"}}}]}});
        assert_eq!(
            validate_pod(&range(), &pod),
            vec!["maximum cpu usage per Container is 1, but limit is 2".to_string()]
        );
        let ratio = json!({"spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}});
        assert_eq!(
            validate_pod(&ratio, &pod),
            vec!["cpu max limit to request ratio per Container is 2, but provided ratio is 20.000000".to_string()]
        );
        let min = json!({"spec": {"limits": [{"type": "Pod", "min": {"memory": "1Gi"}}]}});
        assert_eq!(
            validate_pod(&min, &pod),
            vec!["minimum memory usage per Pod is 1Gi.  No request is specified".to_string()]
        );
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn claims_stay_within_storage_bounds() {
        let lr = json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}]}});
        let claim = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert_eq!(
            validate_claim(&lr, &claim),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi".to_string()]
        );
    }
}
