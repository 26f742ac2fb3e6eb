//! Assigning a pod to a node: `POST pods/{name}/binding` (what schedulers
//! send) and `POST bindings` (the older namespaced collection, which the
//! Python client's `create_namespaced_binding` posts to), as Kubernetes'
//! `BindingREST` does.
//!
//! The body is a core/v1 `Binding` naming the pod and its `target` node. One
//! guarded pod write then sets `spec.nodeName`, adds the binding's
//! annotations to the pod's and marks `PodScheduled` True. It is refused
//! with 409 on `pods/binding` when the pod is being deleted, is already
//! assigned to a node, or still has scheduling gates. On the subresource the
//! binding's `metadata.uid` and `metadata.resourceVersion` are preconditions
//! on the pod, so a decision made for a pod that was since deleted and
//! created again under the same name is refused. A create of the collection
//! drops them, as every create drops an object's system fields in
//! Kubernetes. The answer is a bare success `Status` with code 201.
//!
//! One deliberate difference: an invalid target (`target.name` missing,
//! `target.kind` other than `Node`) is a 422 naming the field. Kubernetes
//! returns that validation as an untyped error, hence a 500.

use serde_json::{json, Value};

use crate::kinds::{self, Kind, Strategy};
use crate::registry::{FieldValidation, Registry, UpdateMode, WriteOptions};
use crate::status::{ApiError, ApiResult, FieldError};

/// What a `Binding` asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The pod's name.
    pub pod: String,
    /// The node it goes to.
    pub node: String,
    /// Precondition: the pod's UID.
    pub uid: Option<String>,
    /// Precondition: the pod's resourceVersion.
    pub resource_version: Option<String>,
    /// Added to the pod's annotations (a binding's value wins).
    pub annotations: serde_json::Map<String, Value>,
}

/// Where a binding was posted.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// `pods/{name}/binding`: the binding must name that pod; its UID and
    /// resourceVersion are preconditions.
    Subresource(&'a str),
    /// `bindings`: the pod is the binding's own name.
    Collection,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Check a posted `Binding` in namespace `ns`.
pub fn decode(body: &Value, ns: &str, at: Target<'_>) -> ApiResult<Binding> {
    if !body.is_object() {
        return Err(ApiError::bad_request("not a Binding object"));
    }
    let name = text(body, "/metadata/name").unwrap_or_default();
    let pod = match at {
        Target::Subresource(url_name) if url_name != name => {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        Target::Subresource(url_name) => url_name,
        Target::Collection if name.is_empty() => return Err(ApiError::bad_request("Name parameter required.")),
        Target::Collection => name,
    };
    if text(body, "/metadata/namespace").is_some_and(|n| n != ns) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut causes = Vec::new();
    let kind = body.pointer("/target/kind").and_then(Value::as_str).unwrap_or_default();
    if !kind.is_empty() && kind != "Node" {
        causes.push(FieldError::not_supported(
            "target.kind",
            &json!(kind),
            &["Node", "<empty>"],
        ));
    }
    let node = text(body, "/target/name").unwrap_or_default();
    if node.is_empty() {
        causes.push(FieldError::required("target.name", ""));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind("", "Binding", pod, causes));
    }
    let preconditions = matches!(at, Target::Subresource(_));
    let kept = |pointer: &str| text(body, pointer).filter(|_| preconditions).map(str::to_string);
    Ok(Binding {
        pod: pod.to_string(),
        node: node.to_string(),
        uid: kept("/metadata/uid"),
        resource_version: kept("/metadata/resourceVersion"),
        annotations: body
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

/// Check a posted `Binding`'s fields against the typed schema, as every
/// create's body is: with `fieldValidation=Strict` an unknown field is a 400,
/// with `Warn` (the default) it is dropped and warned about, with `Ignore`
/// dropped. Returns the warnings. A body that does not decode as a Binding
/// (no `target`, a name that is not a string) is left to [`decode`], which
/// names what is missing as Kubernetes' validation does.
pub fn check_fields(body: &mut Value, fv: FieldValidation) -> ApiResult<Vec<String>> {
    match kinds::binding::Bindings.unknown_fields(body) {
        Ok(Some(unknown)) => crate::registry::field_validation(body, &unknown, fv),
        _ => Ok(Vec::new()),
    }
}

/// The 409 of a pod that cannot be bound, worded as Kubernetes' (on `pods/binding`).
fn refused(pod: &str, why: &str) -> ApiError {
    ApiError::subresource_conflict(&kinds::pod::RESOURCE, "binding", pod, why)
}

/// The pod `cur` (as stored, with its `resourceVersion`) bound as `b` asks, or why not.
pub fn assign(b: &Binding, cur: &Value, now: &str) -> ApiResult<Value> {
    crate::registry::check_preconditions(
        &kinds::pod::RESOURCE,
        &b.pod,
        cur,
        text(cur, "/metadata/resourceVersion").unwrap_or_default(),
        b.uid.as_deref(),
        b.resource_version.as_deref(),
    )?;
    if cur.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err(refused(
            &b.pod,
            &format!("pod {} is being deleted, cannot be assigned to a host", b.pod),
        ));
    }
    if let Some(node) = text(cur, "/spec/nodeName") {
        return Err(refused(
            &b.pod,
            &format!("pod {} is already assigned to node {node:?}", b.pod),
        ));
    }
    if kinds::pod::has_scheduling_gates(cur) {
        return Err(refused(
            &b.pod,
            &format!("pod {} has non-empty .spec.schedulingGates", b.pod),
        ));
    }
    let mut new = cur.clone();
    new["spec"]["nodeName"] = json!(b.node);
    if !b.annotations.is_empty() {
        let meta = &mut new["metadata"];
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        if let Some(a) = meta["annotations"].as_object_mut() {
            a.extend(b.annotations.clone());
        }
    }
    set_scheduled(&mut new, now);
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Ok(new)
}

/// `PodScheduled` True, replacing the condition where it is (Kubernetes'
/// `UpdatePodCondition`): its transition time is kept when it was True already.
fn set_scheduled(pod: &mut Value, now: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let at = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let since = at
        .map(|i| &conditions[i])
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let condition = json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": since});
    match at {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Bind as `b` asks, in namespace `ns`.
pub async fn bind(reg: &Registry, ns: &str, b: &Binding, opts: WriteOptions) -> ApiResult<()> {
    let pods = kinds::builtin("", "Pod")
        .map(Kind::Builtin)
        .ok_or_else(|| ApiError::internal("Pod is not served"))?;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // A refusal on the watch cache's copy is tried again on etcd's current
    // state (see `Registry::update_tracked`), so a stale copy refuses nothing.
    reg.update(&pods, Some(ns), &b.pod, UpdateMode::Internal, opts, |cur| {
        assign(b, cur, &now)
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-07T00:00:00Z";

    fn binding(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}})
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "uid": "u1", "resourceVersion": "7", "annotations": {"a": "pod"}},
               "spec": {"containers": [{"name": "c", "image": "i"}]},
               "status": {"phase": "Pending", "conditions": [
                   {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                   {"type": "Other", "status": "True"}]}})
    }

    #[test]
    fn the_binding_must_name_the_pod_of_the_url_and_a_node() {
        let e = decode(&binding("q"), "default", Target::Subresource("p")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "name in URL does not match name in Binding object")
        );
        let e = decode(&binding(""), "default", Target::Subresource("p")).unwrap_err();
        assert_eq!(e.code, 400);
        let e = decode(&binding(""), "default", Target::Collection).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "Name parameter required."));
        let mut b = binding("p");
        b["metadata"]["namespace"] = json!("other");
        assert_eq!(decode(&b, "default", Target::Collection).unwrap_err().code, 400);
        let b = json!({"metadata": {"name": "p"}, "target": {"kind": "Pod"}});
        let e = decode(&b, "default", Target::Subresource("p")).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Binding \"p\" is invalid: [target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]"
        );
    }

    #[test]
    fn preconditions_are_kept_on_the_subresource_only() {
        let mut b = binding("p");
        b["metadata"]["uid"] = json!("u1");
        b["metadata"]["resourceVersion"] = json!("7");
        let on_pod = decode(&b, "default", Target::Subresource("p")).unwrap();
        assert_eq!(
            (on_pod.uid.as_deref(), on_pod.resource_version.as_deref()),
            (Some("u1"), Some("7"))
        );
        let posted = decode(&b, "default", Target::Collection).unwrap();
        assert_eq!((posted.uid, posted.resource_version), (None, None));
    }

    #[test]
    fn binding_sets_the_node_the_annotations_and_pod_scheduled_in_place() {
        let mut b = binding("p");
        b["metadata"]["annotations"] = json!({"a": "binding", "b": "x"});
        let b = decode(&b, "default", Target::Subresource("p")).unwrap();
        let new = assign(&b, &pod(), NOW).unwrap();
        assert_eq!(new["spec"]["nodeName"], "n1");
        assert_eq!(new["metadata"]["annotations"], json!({"a": "binding", "b": "x"}));
        assert_eq!(
            new["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": NOW}, {"type": "Other", "status": "True"}])
        );
        assert!(new["metadata"].get("resourceVersion").is_none());
        // Already True: the transition time stays.
        let mut was_true = pod();
        was_true["status"]["conditions"][0] =
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let new = assign(&b, &was_true, NOW).unwrap();
        assert_eq!(
            new["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        // No status at all.
        let mut bare = pod();
        bare.as_object_mut().unwrap().remove("status");
        let new = assign(&b, &bare, NOW).unwrap();
        assert_eq!(new["status"]["conditions"][0]["type"], "PodScheduled");
    }

    #[test]
    fn a_pod_that_cannot_be_bound_is_a_conflict_on_pods_binding() {
        let b = decode(&binding("p"), "default", Target::Subresource("p")).unwrap();
        let cases = [
            (
                "/metadata/deletionTimestamp",
                json!(NOW),
                "pod p is being deleted, cannot be assigned to a host",
            ),
            (
                "/spec/nodeName",
                json!("n0"),
                "pod p is already assigned to node \"n0\"",
            ),
            (
                "/spec/schedulingGates",
                json!([{"name": "wait"}]),
                "pod p has non-empty .spec.schedulingGates",
            ),
        ];
        for (pointer, value, why) in cases {
            let mut p = pod();
            *p.pointer_mut(pointer.rsplit_once('/').unwrap().0)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .entry(pointer.rsplit_once('/').unwrap().1)
                .or_insert(Value::Null) = value;
            let e = assign(&b, &p, NOW).unwrap_err();
            assert_eq!(e.code, 409, "{pointer}");
            assert_eq!(
                e.message,
                format!("Operation cannot be fulfilled on pods/binding \"p\": {why}")
            );
        }
        // Empty gates are no gates.
        let mut p = pod();
        p["spec"]["schedulingGates"] = json!([]);
        assert!(assign(&b, &p, NOW).is_ok());
    }

    #[test]
    fn a_decision_for_an_earlier_pod_of_the_same_name_is_refused() {
        let mut body = binding("p");
        body["metadata"]["uid"] = json!("u0");
        let b = decode(&body, "default", Target::Subresource("p")).unwrap();
        let e = assign(&b, &pod(), NOW).unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"p\": Precondition failed: UID in precondition: u0, UID in object meta: u1"
        );
        let mut body = binding("p");
        body["metadata"]["resourceVersion"] = json!("6");
        let b = decode(&body, "default", Target::Subresource("p")).unwrap();
        let e = assign(&b, &pod(), NOW).unwrap_err();
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"p\": Precondition failed: ResourceVersion in precondition: 6, ResourceVersion in object meta: 7"
        );
        // Both stale: the UID is told, as Kubernetes checks it first.
        body["metadata"]["uid"] = json!("u0");
        let b = decode(&body, "default", Target::Subresource("p")).unwrap();
        let e = assign(&b, &pod(), NOW).unwrap_err();
        assert!(
            e.message.ends_with("UID in precondition: u0, UID in object meta: u1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_fields_follow_field_validation() {
        let body = || {
            let mut b = binding("p");
            b["target"]["nmae"] = json!("typo");
            b["extra"] = json!(1);
            b
        };
        let e = check_fields(&mut body(), FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "strict decoding error: unknown field \"target.nmae\", unknown field \"extra\""
        );
        let mut warned = body();
        assert_eq!(
            check_fields(&mut warned, FieldValidation::Warn).unwrap(),
            ["unknown field \"target.nmae\"", "unknown field \"extra\""]
        );
        assert_eq!(warned, binding("p"));
        let mut ignored = body();
        assert!(check_fields(&mut ignored, FieldValidation::Ignore).unwrap().is_empty());
        assert_eq!(ignored, binding("p"));
        assert!(check_fields(&mut binding("p"), FieldValidation::Strict)
            .unwrap()
            .is_empty());
        // Decoding comes before validation: an unknown field of a body
        // without a target is the 400; without it, decode's 422 names the target.
        let mut no_target = json!({"metadata": {"name": "p"}, "extra": 1});
        assert_eq!(
            check_fields(&mut no_target, FieldValidation::Strict).unwrap_err().code,
            400
        );
        let mut no_target = json!({"metadata": {"name": "p"}});
        assert!(check_fields(&mut no_target, FieldValidation::Strict)
            .unwrap()
            .is_empty());
        assert_eq!(
            decode(&no_target, "default", Target::Subresource("p"))
                .unwrap_err()
                .code,
            422
        );
        // A body that does not decode as a Binding is left to decode.
        let mut bad = json!({"metadata": {"name": "p"}, "target": {"name": 5}});
        assert!(check_fields(&mut bad, FieldValidation::Strict).unwrap().is_empty());
    }
}
