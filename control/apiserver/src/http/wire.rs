//! Encoding API objects for the wire, as Kubernetes marshals them: JSON
//! through [`crate::meta::json`] (Kubernetes' field order, Go's escaping),
//! YAML, protobuf, and the responses and watch events that carry them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http::negotiation::Encoding;
pub use crate::meta::json::{json_watch_event, list_with_items, object_json, to_vec};
#[cfg(test)]
use crate::meta::json::{json_watch_event_and_object, json_watch_line};
use crate::status::{ApiError, ApiResult};

/// A JSON response with `Warning` headers (`299 - "text"`).
pub fn response(code: StatusCode, v: &Value, pretty: bool, warnings: &[String]) -> Response {
    encoded(code, v, Encoding::Json, pretty, warnings)
}

/// A response in the negotiated encoding with `Warning` headers. An
/// object with no protobuf form (which negotiation should have prevented)
/// is written as JSON, with its Content-Type saying so.
pub fn encoded(code: StatusCode, v: &Value, encoding: Encoding, pretty: bool, warnings: &[String]) -> Response {
    let (body, content_type) = match encoding {
        Encoding::Protobuf => match sluice_protobuf::encode(v) {
            Ok(b) => (b, sluice_protobuf::MEDIA_TYPE),
            Err(e) => {
                tracing::warn!(error = %e, kind = ?v.get("kind"), "no protobuf form; answering JSON");
                (to_vec(v, pretty), "application/json")
            }
        },
        Encoding::Json => (to_vec(v, pretty), "application/json"),
        Encoding::Yaml => (to_yaml(v), "application/yaml"),
    };
    with_headers(code, body, content_type, warnings)
}

/// A body already written as compact JSON, with `Warning` headers.
pub fn json_response(code: StatusCode, body: Vec<u8>, warnings: &[String]) -> Response {
    with_headers(code, body, "application/json", warnings)
}

fn with_headers(code: StatusCode, body: Vec<u8>, content_type: &'static str, warnings: &[String]) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for w in warnings {
        if let Ok(h) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
            resp.headers_mut().append("warning", h);
        }
    }
    resp
}

/// An object as Kubernetes' YAML serializer writes it: the JSON form
/// converted to YAML, so mapping keys come out sorted.
pub fn to_yaml(v: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> serde_yaml::Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_yaml::Value::Mapping(
                    keys.into_iter()
                        .map(|k| (serde_yaml::Value::String(k.clone()), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(sorted).collect()),
            Value::String(s) => serde_yaml::Value::String(s.clone()),
            Value::Bool(b) => serde_yaml::Value::Bool(*b),
            Value::Number(n) => serde_yaml::to_value(n).unwrap_or(serde_yaml::Value::Null),
            Value::Null => serde_yaml::Value::Null,
        }
    }
    serde_yaml::to_string(&sorted(v)).unwrap_or_default().into_bytes()
}

/// A protobuf request body as the JSON object the registry works on (400
/// when it is not one, as Kubernetes' decoder answers).
pub fn from_protobuf(body: &[u8]) -> ApiResult<Value> {
    sluice_protobuf::decode(body).map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

/// One watch event in the stream's encoding: a JSON line, or a
/// length-prefixed protobuf frame (an object with no protobuf form becomes
/// an ERROR event saying so, never a JSON line inside a protobuf stream).
pub fn watch_event(encoding: Encoding, event_type: &str, object: Value) -> bytes::Bytes {
    match encoding {
        // Never negotiated for a watch (`negotiation::stream_encoding`).
        Encoding::Json | Encoding::Yaml => json_watch_event(event_type, &object),
        Encoding::Protobuf => match sluice_protobuf::encode_watch_event(event_type, &object) {
            Ok(frame) => bytes::Bytes::from(frame),
            Err(e) => {
                let status = ApiError::internal(format!("unable to encode watch object: {e}")).to_status();
                bytes::Bytes::from(sluice_protobuf::encode_watch_event("ERROR", &status).unwrap_or_default())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &Value) -> String {
        let mut out = String::from_utf8(to_vec(v, false)).unwrap();
        assert_eq!(out.pop(), Some('\n'), "json.Encoder ends with a newline");
        out
    }

    /// A list put together from items written one by one is the list
    /// [`to_vec`] writes whole: field order, escaping, the newline.
    #[test]
    fn a_list_from_items_written_one_by_one_is_the_list_written_whole() {
        let items = [
            json!({"status": {"phase": "Running"}, "metadata": {"uid": "u", "name": "a<b>&c"}, "spec": {"z": 1, "a": [1, 2]}, "apiVersion": "v1", "kind": "Pod"}),
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "\u{2028}"}}),
        ];
        let list =
            json!({"apiVersion": "v1", "metadata": {"continue": "t", "resourceVersion": "9"}, "kind": "PodList"});
        let mut whole = list.clone();
        whole["items"] = Value::Array(items.to_vec());
        let written: Vec<Vec<u8>> = items.iter().map(object_json).collect();
        assert_eq!(
            String::from_utf8(list_with_items(&list, &written)).unwrap(),
            String::from_utf8(to_vec(&whole, false)).unwrap()
        );
        let none: [Vec<u8>; 0] = [];
        let mut empty = list.clone();
        empty["items"] = json!([]);
        assert_eq!(list_with_items(&list, &none), to_vec(&empty, false));
    }

    /// A JSON watch line: the type, then the object in Kubernetes' order
    /// with Go's escaping, one line.
    #[test]
    fn json_watch_lines_are_kubernetes_lines() {
        let pod = json!({
            "status": {"phase": "Running"},
            "metadata": {"resourceVersion": "7", "name": "p<1>", "namespace": "default"},
            "apiVersion": "v1",
            "kind": "Pod",
        });
        let line = r#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p\u003c1\u003e","namespace":"default","resourceVersion":"7"},"status":{"phase":"Running"}}}"#;
        assert_eq!(json_watch_event("MODIFIED", &pod), format!("{line}\n").as_bytes());
        assert_eq!(
            watch_event(Encoding::Json, "MODIFIED", pod.clone()),
            format!("{line}\n").as_bytes()
        );
        // The same line around an object already written, and the object
        // within a written line, for every event type a change is sent as.
        for kind in ["ADDED", "MODIFIED", "DELETED"] {
            let (whole, object) = json_watch_event_and_object(kind, &pod);
            assert_eq!(whole, json_watch_event(kind, &pod), "{kind}");
            assert_eq!(&object[..], &object_json(&pod)[..], "{kind}");
            assert_eq!(json_watch_line(kind, &object_json(&pod)), whole, "{kind}");
        }
    }

    #[test]
    fn objects_come_out_in_kubernetes_order() {
        let pod = json!({
            "status": {"phase": "Pending"},
            "spec": {"b": 1, "a": 2},
            "metadata": {"labels": {"z": "1", "a": "2"}, "resourceVersion": "5", "namespace": "default", "name": "p", "uid": "u"},
            "apiVersion": "v1",
            "kind": "Pod",
        });
        assert_eq!(
            s(&pod),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default","uid":"u","resourceVersion":"5","labels":{"z":"1","a":"2"}},"spec":{"b":1,"a":2},"status":{"phase":"Pending"}}"#
        );
        let list = json!({"items": [pod.clone()], "metadata": {"continue": "c", "resourceVersion": "9"}, "apiVersion": "v1", "kind": "PodList"});
        assert!(s(&list).starts_with(
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"c"},"items":[{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p""#
        ));
        let ev = json!({"type": "ADDED", "object": pod});
        assert!(s(&ev).starts_with(r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata""#));
        let cm = json!({"data": {"k": "v"}, "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "immutable": true});
        assert_eq!(
            s(&cm),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c"},"immutable":true,"data":{"k":"v"}}"#
        );
        // Nested objects that look like API objects keep their order (ownerReferences).
        let owned = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet"}]}});
        assert!(s(&owned).contains(r#"[{"apiVersion":"apps/v1","kind":"ReplicaSet"}]"#));
    }

    #[test]
    fn pretty_is_two_space_indented() {
        let v = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}});
        assert_eq!(
            String::from_utf8(to_vec(&v, true)).unwrap(),
            "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {}\n}"
        );
    }

    #[test]
    fn strings_are_escaped_as_go_does() {
        let v = json!({"kind": "X", "data": {"a": "<b>&\u{2028}é\"\n"}});
        assert_eq!(s(&v), r#"{"kind":"X","data":{"a":"\u003cb\u003e\u0026\u2028é\"\n"}}"#);
    }

    #[test]
    fn yaml_is_json_converted_with_sorted_keys() {
        let v = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "m", "labels": {}}, "data": {"b": "true", "a": "x\ny"}, "n": [1, 2.5]});
        let y = String::from_utf8(to_yaml(&v)).unwrap();
        assert_eq!(
            y,
            "apiVersion: v1\ndata:\n  a: |-\n    x\n    y\n  b: 'true'\nkind: ConfigMap\nmetadata:\n  labels: {}\n  name: m\nn:\n- 1\n- 2.5\n"
        );
    }
}
