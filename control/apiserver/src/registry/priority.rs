//! The Priority admission step (Kubernetes' `Priority` plugin), run on
//! create before mutating webhooks:
//!
//! - a Pod's `spec.priorityClassName` is resolved into `spec.priority` and
//!   `spec.preemptionPolicy`; without a class name the `globalDefault`
//!   class applies (and is named in the pod), else priority 0 and
//!   `PreemptLowerPriority`. A class that does not exist, or a pod that
//!   states a different priority or policy than its class gives, is
//!   forbidden with Kubernetes' words;
//! - a PriorityClass may be `globalDefault` only while no other class is.
//!
//! The classes are read from etcd at each admission (a handful of small
//! objects); Kubernetes reads them from an informer.

use serde_json::{json, Value};

use crate::kinds::{self, priorityclass};
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::storage::store;

/// The priority of a pod whose class is not given and no class is the default.
const DEFAULT_PRIORITY: i64 = 0;
/// The preemption policy of a class (or pod) that names none.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The name Kubernetes' admission errors give an object not yet named.
fn admission_name(obj: &Value) -> &str {
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    meta("name").or_else(|| meta("generateName")).unwrap_or("Unknown")
}

/// What a pod's priority fields become, or why it is refused.
fn resolve_pod(pod: &mut Value, class: Option<&Value>, default_class: Option<&Value>) -> Result<(), String> {
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return Ok(()),
    };
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (class_name, priority, policy) = match (&named, class, default_class) {
        (Some(name), None, _) => return Err(format!("no PriorityClass with name {name} was found")),
        (Some(name), Some(pc), _) => (Some(name.clone()), value_of(pc), policy_of(pc)),
        (None, _, Some(pc)) => (
            pc.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string),
            value_of(pc),
            policy_of(pc),
        ),
        (None, _, None) => (None, DEFAULT_PRIORITY, DEFAULT_PREEMPTION_POLICY.to_string()),
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ));
        }
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if given != policy {
            return Err(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ));
        }
    }
    if let Some(name) = class_name {
        spec.insert("priorityClassName".into(), json!(name));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

fn value_of(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn policy_of(pc: &Value) -> String {
    pc.get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_PREEMPTION_POLICY)
        .to_string()
}

fn is_global_default(pc: &Value) -> bool {
    pc.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
}

impl Registry {
    /// Every stored PriorityClass.
    async fn priority_classes(&self) -> ApiResult<Vec<Value>> {
        let prefix = store::collection_prefix(&priorityclass::RESOURCE, None);
        let classes = self.store.list(&prefix).await?;
        Ok(classes.into_iter().map(|s| s.object).collect())
    }

    /// The Priority admission step for a create of `obj` (a Pod or a
    /// PriorityClass); other kinds pass unchanged.
    pub(super) async fn admit_priority_create(&self, r: &kinds::Resource, obj: &mut Value) -> ApiResult<()> {
        if *r == kinds::pod::RESOURCE {
            let named = obj
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            let (class, default_class) = match named {
                Some(name) => {
                    let key = store::object_key(&priorityclass::RESOURCE, None, &name);
                    let class = self.admission_get(&priorityclass::RESOURCE, &key).await?;
                    (class.map(|s| s.object), None)
                }
                None => {
                    let prefix = store::collection_prefix(&priorityclass::RESOURCE, None);
                    let classes = self.admission_list(&priorityclass::RESOURCE, &prefix).await?;
                    (None, classes.into_iter().map(|s| s.object).find(is_global_default))
                }
            };
            let name = admission_name(obj).to_string();
            return resolve_pod(obj, class.as_ref(), default_class.as_ref())
                .map_err(|why| ApiError::forbidden(r, &name, why));
        }
        if *r == priorityclass::RESOURCE {
            return self.check_single_default(r, obj, None).await;
        }
        Ok(())
    }

    /// The Priority admission step for an update from `old` to `new`: a Pod
    /// keeps the priority admission gave it when the update leaves it out
    /// (validation refuses any other change); a PriorityClass may become the
    /// default only while no other class is.
    pub(super) async fn admit_priority_update(
        &self,
        r: &kinds::Resource,
        old: &Value,
        new: &mut Value,
    ) -> ApiResult<()> {
        if *r == kinds::pod::RESOURCE {
            for field in ["priority", "preemptionPolicy"] {
                let kept = old
                    .get("spec")
                    .and_then(|s| s.get(field))
                    .filter(|v| !v.is_null())
                    .cloned();
                if let (Some(kept), Some(spec)) = (kept, new.get_mut("spec").and_then(Value::as_object_mut)) {
                    if spec.get(field).is_none_or(Value::is_null) {
                        spec.insert(field.into(), kept);
                    }
                }
            }
            return Ok(());
        }
        if *r == priorityclass::RESOURCE {
            let name = new
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return self.check_single_default(r, new, Some(&name)).await;
        }
        Ok(())
    }

    /// A class may become the global default only while no other is.
    async fn check_single_default(&self, r: &kinds::Resource, pc: &Value, updating: Option<&str>) -> ApiResult<()> {
        if !is_global_default(pc) {
            return Ok(());
        }
        let existing = self.priority_classes().await?.into_iter().find(is_global_default);
        let Some(existing) = existing else { return Ok(()) };
        let existing_name = existing
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if updating == Some(existing_name) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            r,
            admission_name(pc),
            format!("PriorityClass {existing_name} is already marked as default. Only one default can exist"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"generateName": "p-"}, "spec": spec})
    }

    #[test]
    fn a_class_gives_priority_and_policy() {
        let high = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"});
        let mut p = pod(json!({"priorityClassName": "high"}));
        resolve_pod(&mut p, Some(&high), None).unwrap();
        assert_eq!(p["spec"]["priority"], 1000);
        assert_eq!(p["spec"]["preemptionPolicy"], "Never");
        assert_eq!(
            resolve_pod(&mut pod(json!({"priorityClassName": "nope"})), None, None).unwrap_err(),
            "no PriorityClass with name nope was found"
        );
    }

    #[test]
    fn without_a_class_the_default_applies_or_zero() {
        let mut p = pod(json!({}));
        resolve_pod(&mut p, None, None).unwrap();
        assert_eq!(p["spec"]["priority"], 0);
        assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert!(p["spec"].get("priorityClassName").is_none());
        let default = json!({"metadata": {"name": "normal"}, "value": 50, "globalDefault": true});
        let mut p = pod(json!({}));
        resolve_pod(&mut p, None, Some(&default)).unwrap();
        assert_eq!(
            (&p["spec"]["priorityClassName"], &p["spec"]["priority"]),
            (&json!("normal"), &json!(50))
        );
    }

    #[test]
    fn a_pod_may_not_state_another_priority() {
        let mut p = pod(json!({"priority": 7}));
        assert_eq!(
            resolve_pod(&mut p, None, None).unwrap_err(),
            "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
        );
        // The value the class gives is accepted (a pod re-created from a stored one).
        let mut p = pod(json!({"priority": 0, "preemptionPolicy": "PreemptLowerPriority"}));
        assert!(resolve_pod(&mut p, None, None).is_ok());
        let mut p = pod(json!({"preemptionPolicy": "Never"}));
        assert_eq!(
            resolve_pod(&mut p, None, None).unwrap_err(),
            "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        );
    }

    #[test]
    fn unnamed_objects_are_named_as_kubernetes_does() {
        assert_eq!(admission_name(&json!({"metadata": {"name": "a"}})), "a");
        assert_eq!(admission_name(&json!({"metadata": {"generateName": "g-"}})), "g-");
        assert_eq!(admission_name(&json!({})), "Unknown");
    }
}
