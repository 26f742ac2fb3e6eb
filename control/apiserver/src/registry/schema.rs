//! Schema checks against the k8s-openapi types.
//!
//! Every incoming object is decoded into its k8s-openapi type (wrong types
//! are a 400 naming the field); the fields its decoding skips are unknown
//! fields ([`crate::meta::typed::unknown_fields`]; for custom resources,
//! the fields structural pruning drops: [`crate::meta::typed::dropped_fields`]). They are
//! dropped from the stored object and reported per `fieldValidation`
//! (Strict: 400; Warn/Ignore: a warning / nothing). The stored JSON keeps
//! the client's own representation of every known field.

use serde_json::Value;

use crate::kinds::BUILTIN;
use crate::status::ApiError;

/// The fields of `v` the typed representation of `group`/`kind` does not
/// know: a built-in kind's own decoding, or the model a built-in
/// subresource declares for the kind it exchanges (`Binding`, `Scale`).
/// Returns `None` for kinds without a typed model.
pub fn typed_unknown_fields(group: &str, kind: &str, v: &Value) -> Result<Option<Vec<String>>, ApiError> {
    if let Some(k) = crate::kinds::builtin(group, kind) {
        return k.unknown_fields(v);
    }
    let model = BUILTIN
        .iter()
        .flat_map(|k| k.resource().subresources)
        .find(|s| s.kind_group == group && s.kind == kind)
        .and_then(|s| s.model);
    model.map(|m| m.unknown_fields(v)).transpose()
}

/// Remove the fields at `paths` (as [`typed_unknown_fields`] gives them).
pub fn remove_fields(v: &mut Value, paths: &[String]) {
    for p in paths {
        remove_path(v, p);
    }
}

fn remove_path(v: &mut Value, path: &str) {
    // Split the last segment off; navigate the rest.
    let mut cur = v;
    let segments = split_path(path);
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Some(o)) = (last, cur.as_object_mut()) {
        o.remove(k.as_str());
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(idx) = rest.find('[') {
            out.push(Seg::Key(rest[..idx].to_string()));
            rest = &rest[idx..];
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_and_removes_unknown_fields() {
        let input = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": null, "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}]},
            "extra": true
        });
        let unknown = typed_unknown_fields("", "Pod", &input).unwrap().unwrap();
        assert_eq!(
            unknown,
            ["metadata.bogus", "spec.containers[0].imagePullPolcy", "extra"]
        );
        let mut cleaned = input.clone();
        remove_fields(&mut cleaned, &unknown);
        assert!(cleaned.get("extra").is_none());
        assert!(cleaned.pointer("/spec/containers/0/imagePullPolcy").is_none());
        assert_eq!(cleaned.pointer("/spec/containers/0/image"), Some(&json!("i")));
    }

    /// A field is known when it survives the typed round trip (decoded into
    /// the k8s-openapi type and encoded back); the decoding alone must tell
    /// the same fields apart, in the input's order: at every depth, in list
    /// items, beside known fields set to null (kept) and unknown ones set to
    /// null (not reported), inside maps (every key known) and free-form
    /// values (everything known), and with dots in the key.
    #[test]
    fn the_decoding_tells_the_fields_the_round_trip_drops() {
        fn by_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(input: &Value) -> Vec<String> {
            crate::meta::typed::dropped_fields(input, &crate::meta::typed::round_trip::<T>(input).unwrap())
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "top": {"deep": [1]},
            "metadata": {
                "name": "p", "creationTimestamp": null, "gone": null, "a.b/c": "x",
                "labels": {"app.kubernetes.io/name": "web", "x": ""},
                "annotations": {"k": "v"},
                "managedFields": [{"manager": "m", "operation": "Update", "fieldsV1": {"f:spec": {"f:anything": {}}}, "typo": 1}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "contoller": true}]
            },
            "spec": {
                "containers": [
                    {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPorts": 1}],
                     "resources": {"limits": {"cpu": "1"}, "requets": {"cpu": "1"}},
                     "env": [{"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "x", "bogus": null}}}]},
                    {"name": "b", "image": "i", "livenessProbe": {"httpGet": {"port": "http", "paht": "/"}}}
                ],
                "volumes": [{"name": "v", "emptyDir": {}, "hostPth": {"path": "/"}}],
                "nodeSelector": {"disk": "ssd"},
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"topologyKey": "k", "labelSelector": {"matchLabels": {"a": "b"}, "matchExpression": []}}
                ]}}
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "reason2": "r"}]}
        });
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxSurg": 1}},
                     "template": {"metadata": {"labels": {"a": "b"}, "labls": {}}, "spec": {"containers": [{"name": "c", "image": "i", "x": [1, 2]}]}}}
        });
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "ws.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "ws", "kind": "W", "singluar": "w"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                              "properties": {"spec": {"type": "object", "defualt": {}}}}}}]}
        });
        let cases = [
            ("", "Pod", by_round_trip::<k8s_openapi::api::core::v1::Pod>(&pod), &pod),
            (
                "apps",
                "Deployment",
                by_round_trip::<k8s_openapi::api::apps::v1::Deployment>(&deployment),
                &deployment,
            ),
            (
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                by_round_trip::<
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
                >(&crd),
                &crd,
            ),
        ];
        for (group, kind, expected, input) in cases {
            assert!(expected.len() >= 2, "{kind}: the case has unknown fields to find");
            assert_eq!(
                typed_unknown_fields(group, kind, input).unwrap().unwrap(),
                expected,
                "{kind}"
            );
        }
        assert_eq!(
            by_round_trip::<k8s_openapi::api::core::v1::Pod>(&pod),
            [
                "top",
                "metadata.a.b/c",
                "metadata.managedFields[0].typo",
                "metadata.ownerReferences[0].contoller",
                "spec.containers[0].ports[0].hostPorts",
                "spec.containers[0].resources.requets",
                "spec.containers[1].livenessProbe.httpGet.paht",
                "spec.volumes[0].hostPth",
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpression",
                "status.conditions[0].reason2",
            ]
        );
    }

    #[test]
    fn wrong_types_are_bad_requests_naming_the_field() {
        let input = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        let err = typed_unknown_fields("apps", "Deployment", &input).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("spec.replicas"), "{}", err.message);
        let input = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
        let err = typed_unknown_fields("", "Pod", &input).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("spec.containers[0].ports[0].containerPort"),
            "{}",
            err.message
        );
    }

    #[test]
    fn subresource_kinds_decode_by_their_declared_models() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d"}, "spec": {"replicas": 2}, "bogus": 1});
        assert_eq!(
            typed_unknown_fields("autoscaling", "Scale", &scale).unwrap().unwrap(),
            ["bogus"]
        );
        let err = typed_unknown_fields("autoscaling", "Scale", &json!({"spec": {"replicas": "two"}})).unwrap_err();
        assert_eq!(err.code, 400);
        let binding = json!({"kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n"}});
        assert_eq!(typed_unknown_fields("", "Binding", &binding).unwrap(), Some(vec![]));
        assert!(typed_unknown_fields("example.com", "Widget", &json!({}))
            .unwrap()
            .is_none());
    }
}
