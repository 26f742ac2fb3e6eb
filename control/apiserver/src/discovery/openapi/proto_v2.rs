//! The `/openapi/v2` document in gnostic's protobuf encoding.
//!
//! kubectl (client-go's `OpenAPISchema`) requests `/openapi/v2` as
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes the
//! body as protobuf unconditionally; without a decodable answer, `kubectl apply`
//! with its default validation stops with "failed to download openapi". We
//! only need a handful of message fields (document, info, definitions, schema),
//! so they are encoded by hand here rather than pulling in a generated crate.
//! Field numbers follow gnostic's `openapi.v2` package.

use serde_json::{Map, Value};

/// Protobuf wire writer for one message.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(((field as u64) << 3) | wire_type as u64);
    }

    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, 2);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// `openapi.v2.Any` holding a value as YAML text (JSON is valid YAML).
fn any(value: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &serde_json::to_string(value).unwrap_or_default());
    m
}

/// `openapi.v2.NamedAny` for a vendor extension.
fn named_any(name: &str, value: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, name);
    m.message(2, any(value));
    m
}

/// `openapi.v2.Schema` from its JSON form.
fn schema(s: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(obj) = s.as_object() else {
        return m;
    };
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("");
    m.string(1, str_of("$ref"));
    m.string(2, str_of("format"));
    m.string(3, str_of("title"));
    m.string(4, str_of("description"));
    if let Some(d) = obj.get("default") {
        m.message(5, any(d));
    }
    if let Some(v) = obj.get("maximum").and_then(Value::as_f64) {
        m.double(7, v);
    }
    if let Some(v) = obj.get("minimum").and_then(Value::as_f64) {
        m.double(9, v);
    }
    m.int64(11, obj.get("maxLength").and_then(Value::as_i64).unwrap_or(0));
    m.int64(12, obj.get("minLength").and_then(Value::as_i64).unwrap_or(0));
    m.string(13, str_of("pattern"));
    m.bool(16, obj.get("uniqueItems") == Some(&Value::Bool(true)));
    for r in obj.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = r.as_str() {
            m.bytes(19, r.as_bytes());
        }
    }
    for e in obj.get("enum").and_then(Value::as_array).into_iter().flatten() {
        m.message(20, any(e));
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut ap = Msg::default();
            ap.key(2, 0);
            ap.varint(u64::from(*b));
            m.message(21, ap);
        }
        Some(v @ Value::Object(_)) => {
            let mut ap = Msg::default();
            ap.message(1, schema(v));
            m.message(21, ap);
        }
        _ => {}
    }
    match obj.get("type") {
        Some(Value::String(t)) => {
            let mut ty = Msg::default();
            ty.string(1, t);
            m.message(22, ty);
        }
        Some(Value::Array(ts)) => {
            let mut ty = Msg::default();
            for t in ts.iter().filter_map(Value::as_str) {
                ty.bytes(1, t.as_bytes());
            }
            m.message(22, ty);
        }
        _ => {}
    }
    if let Some(items) = obj.get("items") {
        let mut it = Msg::default();
        match items {
            Value::Array(list) => list.iter().for_each(|i| it.message(1, schema(i))),
            other => it.message(1, schema(other)),
        }
        m.message(23, it);
    }
    for a in obj.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        m.message(24, schema(a));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        m.message(25, named_schemas(props));
    }
    m.bool(27, obj.get("readOnly") == Some(&Value::Bool(true)));
    for (k, v) in obj {
        if k.starts_with("x-") {
            m.message(31, named_any(k, v));
        }
    }
    m
}

/// A message whose field 1 is `repeated NamedSchema` (Properties, Definitions).
fn named_schemas(map: &Map<String, Value>) -> Msg {
    let mut m = Msg::default();
    for (name, s) in map {
        let mut named = Msg::default();
        named.string(1, name);
        named.message(2, schema(s));
        m.message(1, named);
    }
    m
}

/// Encode a Swagger 2.0 JSON document (info and definitions; paths are left
/// empty) as an `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string(1, doc.get("swagger").and_then(Value::as_str).unwrap_or("2.0"));
    let mut info = Msg::default();
    info.string(1, doc.pointer("/info/title").and_then(Value::as_str).unwrap_or(""));
    info.string(2, doc.pointer("/info/version").and_then(Value::as_str).unwrap_or(""));
    m.message(2, info);
    m.message(8, Msg::default());
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        m.message(9, named_schemas(defs));
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Minimal protobuf reader for the tests: (field, wire type, payload) triples.
    fn fields(mut buf: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn varint(buf: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let b = buf[0];
                *buf = &buf[1..];
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf);
            let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
            match wt {
                0 => out.push((field, wt, varint(&mut buf).to_le_bytes().to_vec())),
                1 => {
                    out.push((field, wt, buf[..8].to_vec()));
                    buf = &buf[8..];
                }
                2 => {
                    let len = varint(&mut buf) as usize;
                    out.push((field, wt, buf[..len].to_vec()));
                    buf = &buf[len..];
                }
                _ => panic!("unexpected wire type {wt}"),
            }
        }
        out
    }

    #[test]
    fn document_encodes_definitions_with_refs_and_extensions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "definitions": {
                "a.Pod": {
                    "type": "object",
                    "properties": {"spec": {"$ref": "#/definitions/a.PodSpec", "description": "d"}},
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]
                }
            }
        });
        let bytes = encode_document(&doc);
        let top = fields(&bytes);
        assert_eq!(top[0], (1, 2, b"2.0".to_vec()));
        let defs = top.iter().find(|f| f.0 == 9).expect("definitions");
        let named = fields(&defs.2);
        let pod = fields(&named[0].2);
        assert_eq!(pod[0].2, b"a.Pod".to_vec());
        let pod_schema = fields(&pod[1].2);
        let ty = pod_schema.iter().find(|f| f.0 == 22).expect("type");
        assert_eq!(fields(&ty.2)[0].2, b"object".to_vec());
        let ext = pod_schema.iter().find(|f| f.0 == 31).expect("extension");
        let ext = fields(&ext.2);
        assert_eq!(ext[0].2, b"x-kubernetes-group-version-kind".to_vec());
        let yaml = fields(&ext[1].2);
        assert!(String::from_utf8_lossy(&yaml[0].2).contains("\"kind\":\"Pod\""));
        let props = pod_schema.iter().find(|f| f.0 == 25).expect("properties");
        let spec = fields(&fields(&props.2)[0].2);
        let spec_schema = fields(&spec[1].2);
        assert_eq!(spec_schema[0], (1, 2, b"#/definitions/a.PodSpec".to_vec()));
    }
}
