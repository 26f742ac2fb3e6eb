//! Encoding API objects for the wire, as Kubernetes marshals them.
//!
//! Kubernetes serializes Go structs, so every object comes out in the
//! struct's field order: `kind, apiVersion` (TypeMeta), `metadata`, then the
//! kind's own fields (`spec, status` for most). Stored objects keep whatever
//! order their writers used, so every response body and watch event is
//! written through [`to_vec`], which emits the envelope fields in
//! Kubernetes' order without copying the object: the top level, each list
//! item, a watch event's `object` and a Table row's `object`, plus
//! `ObjectMeta`/`ListMeta` inside them. Nested spec/status fields keep their
//! stored order.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::http::negotiation::Encoding;
use crate::status::{ApiError, ApiResult};

/// `metav1.ObjectMeta` then `metav1.ListMeta` field order (their names do not overlap).
const META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "continue",
    "remainingItemCount",
];

/// Top-level field order of an object of `kind` (after which any other
/// fields follow in stored order).
fn top_order(kind: &str) -> &'static [&'static str] {
    match kind {
        "Status" => &[
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ],
        "ConfigMap" => &["kind", "apiVersion", "metadata", "immutable", "data", "binaryData"],
        "Secret" => &[
            "kind",
            "apiVersion",
            "metadata",
            "immutable",
            "data",
            "stringData",
            "type",
        ],
        "ServiceAccount" => &[
            "kind",
            "apiVersion",
            "metadata",
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "Endpoints" => &["kind", "apiVersion", "metadata", "subsets"],
        "EndpointSlice" => &["kind", "apiVersion", "metadata", "addressType", "endpoints", "ports"],
        "Event" => &[
            "kind",
            "apiVersion",
            "metadata",
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        "Binding" => &["kind", "apiVersion", "metadata", "target"],
        "Table" => &["kind", "apiVersion", "metadata", "columnDefinitions", "rows"],
        k if k.ends_with("List") => &["kind", "apiVersion", "metadata", "items"],
        _ => &["kind", "apiVersion", "metadata", "spec", "status"],
    }
}

/// Where a JSON value sits, which decides how its keys are ordered.
#[derive(Clone, Copy)]
enum Place {
    /// An API object (or list, Status, watch event, Table, Table row).
    Object,
    /// `metadata` of an object or list.
    Meta,
    /// Anything else: stored order.
    Plain,
}

struct Ordered<'a>(&'a Value, Place);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(map) = self.0 else {
            return match (self.0, self.1) {
                // `items` of a list and `rows` of a Table hold objects.
                (Value::Array(a), Place::Object) => {
                    let mut seq = s.serialize_seq(Some(a.len()))?;
                    for v in a {
                        seq.serialize_element(&Ordered(v, Place::Object))?;
                    }
                    seq.end()
                }
                (v, _) => v.serialize(s),
            };
        };
        let order: &[&str] = match self.1 {
            Place::Object => top_order(map.get("kind").and_then(Value::as_str).unwrap_or_default()),
            Place::Meta => META_ORDER,
            Place::Plain => &[],
        };
        let child = |k: &str| match (self.1, k) {
            (Place::Object, "metadata") => Place::Meta,
            (Place::Object, "items" | "rows" | "object") => Place::Object,
            _ => Place::Plain,
        };
        let mut m = s.serialize_map(Some(map.len()))?;
        for k in order {
            if let Some(v) = map.get(*k) {
                m.serialize_entry(k, &Ordered(v, child(k)))?;
            }
        }
        for (k, v) in map {
            if !order.contains(&k.as_str()) {
                m.serialize_entry(k, &Ordered(v, child(k)))?;
            }
        }
        m.end()
    }
}

/// Go's `encoding/json` string escaping on top of a serde_json formatter:
/// `<`, `>`, `&`, U+2028 and U+2029 are written as `\u003c`-style escapes.
struct GoEscapes<F>(F);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.0.$name(w $(, $arg)*)
        })*
    };
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for GoEscapes<F> {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        end_object_key();
        begin_object_value();
        end_object_value();
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Encode an API object (or list, Status, watch event, Table) as
/// Kubernetes' JSON serializer does: field order as above, Go's escaping,
/// compact with a trailing newline (`json.Encoder`), or with `pretty`
/// indented by two spaces and no trailing newline (`json.MarshalIndent`).
pub fn to_vec(v: &Value, pretty: bool) -> Vec<u8> {
    let o = Ordered(v, Place::Object);
    if !pretty {
        return compact_line(&o);
    }
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoEscapes(serde_json::ser::PrettyFormatter::new()));
    // Writing a `Value` into a Vec cannot fail (its map keys are strings).
    let _ = o.serialize(&mut ser);
    out
}

/// `v` compact, with Go's escaping and a trailing newline (`json.Encoder`).
fn compact_line(v: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoEscapes(serde_json::ser::CompactFormatter));
    // Writing into a Vec cannot fail (every map key here is a string).
    let _ = v.serialize(&mut ser);
    out.push(b'\n');
    out
}

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

/// A JSON watch event line, `{"type":..,"object":..}`, the object in
/// Kubernetes' field order, of an object the caller may keep (no copy is
/// made to wrap it).
pub fn json_watch_event(event_type: &str, object: &Value) -> bytes::Bytes {
    struct Event<'a>(&'a str, &'a Value);
    impl Serialize for Event<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("type", self.0)?;
            m.serialize_entry("object", &Ordered(self.1, Place::Object))?;
            m.end()
        }
    }
    bytes::Bytes::from(compact_line(&Event(event_type, object)))
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
            watch_event(Encoding::Json, "MODIFIED", pod),
            format!("{line}\n").as_bytes()
        );
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
