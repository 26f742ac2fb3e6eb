//! Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`)
//! for API objects held as JSON.
//!
//! A body is the 4-byte magic `k8s\0` and a `runtime.Unknown` envelope:
//! `typeMeta` (apiVersion, kind), `raw` (the object's message, which has no
//! TypeMeta of its own), `contentEncoding` and `contentType` (empty). A watch
//! is a stream of frames, each a 4-byte big-endian length and a
//! `meta.v1.WatchEvent` whose `object.raw` is such a body.
//!
//! The messages are not hand-written: `build.rs` compiles the `.proto` files
//! k8s-pb 0.9.0 is generated from (Kubernetes 1.35.0, pinned in `proto/`)
//! into a descriptor set, and [`convert`] walks it with prost-reflect's
//! `DynamicMessage`. Which kind has which message is derived from the proto
//! packages ([`schema::message_for`]), so every kind of those files is
//! covered with no per-kind code. What the descriptors cannot say — JSON names
//! that differ, inlined structs, which zero values Go writes — comes from the
//! Go types of the same release (`proto/go_fields.txt`, written by
//! `gen/go_fields.py`).

pub mod convert;
mod duration;
pub mod schema;

use prost::bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DynamicMessage, ReflectMessage, Value as Pb};
use serde_json::{Map, Value};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// What every protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a body could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body does not start with `k8s\0`.
    #[error("provided object is not a valid protobuf message: missing the k8s\\0 prefix")]
    NotProtobuf,
    /// Malformed protobuf.
    #[error("unable to decode protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// No protobuf message for this kind.
    #[error("no protobuf message for kind {kind:?} in {api_version:?}")]
    NoMessage {
        /// `apiVersion` asked for.
        api_version: String,
        /// `kind` asked for.
        kind: String,
    },
    /// A message type missing from the descriptors.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// A JSON value that does not fit the message.
    #[error("{path}: {message}")]
    Field {
        /// Where, as a JSON path (`spec.replicas`).
        path: String,
        /// What.
        message: String,
    },
}

impl Error {
    /// The error as seen from the object holding `segment` (a JSON key or `[i]`).
    pub fn within(self, segment: &str) -> Error {
        match self {
            Error::Field { path, message } => Error::Field {
                path: if path.is_empty() {
                    segment.to_string()
                } else if path.starts_with('[') {
                    format!("{segment}{path}")
                } else {
                    format!("{segment}.{path}")
                },
                message,
            },
            other => other,
        }
    }
}

/// Whether Kubernetes has a protobuf message for `kind` in `api_version`.
pub fn has_message(api_version: &str, kind: &str) -> bool {
    schema::has_message_for(api_version, kind)
}

fn type_meta(obj: &Value) -> (&str, &str) {
    (
        obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
        obj.get("kind").and_then(Value::as_str).unwrap_or_default(),
    )
}

fn field(msg: &mut DynamicMessage, name: &str, value: Pb) {
    if let Some(f) = msg.descriptor().get_field_by_name(name) {
        msg.set_field(&f, value);
    }
}

fn message(full_name: &str) -> Result<DynamicMessage, Error> {
    schema::schema()
        .pool
        .get_message_by_name(full_name)
        .map(DynamicMessage::new)
        .ok_or_else(|| Error::UnknownType(full_name.into()))
}

/// The message of a JSON object (which names its own `apiVersion`/`kind`).
pub fn to_message(obj: &Value) -> Result<DynamicMessage, Error> {
    let (api_version, kind) = type_meta(obj);
    let m = schema::message_for(api_version, kind).ok_or_else(|| Error::NoMessage {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let Value::Object(o) = obj else {
        return Err(Error::Field {
            path: String::new(),
            message: "expected an object".into(),
        });
    };
    convert::message_from_json(m, o)
}

/// Encode a JSON object as a protobuf body (magic + `runtime.Unknown`).
pub fn encode(obj: &Value) -> Result<Vec<u8>, Error> {
    let (api_version, kind) = type_meta(obj);
    let raw = to_message(obj)?.encode_to_vec();
    let mut tm = message("apimachinery.pkg.runtime.TypeMeta")?;
    field(&mut tm, "apiVersion", Pb::String(api_version.into()));
    field(&mut tm, "kind", Pb::String(kind.into()));
    let mut unknown = message("apimachinery.pkg.runtime.Unknown")?;
    field(&mut unknown, "typeMeta", Pb::Message(tm));
    field(&mut unknown, "raw", Pb::Bytes(Bytes::from(raw)));
    // Go writes the (empty) strings too.
    field(&mut unknown, "contentEncoding", Pb::String(String::new()));
    field(&mut unknown, "contentType", Pb::String(String::new()));
    let mut out = Vec::with_capacity(MAGIC.len() + unknown.encoded_len());
    out.extend_from_slice(MAGIC);
    unknown.encode(&mut out).map_err(|e| Error::Field {
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Decode a protobuf body into the JSON object, `kind` and `apiVersion` first.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(Error::NotProtobuf)?;
    let unknown = DynamicMessage::decode(message("apimachinery.pkg.runtime.Unknown")?.descriptor(), rest)?;
    let tm = convert::message_to_json(&unknown);
    let api_version = tm
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = tm.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let raw = match unknown
        .descriptor()
        .get_field_by_name("raw")
        .map(|f| unknown.get_field(&f).into_owned())
    {
        Some(Pb::Bytes(b)) => b,
        _ => Bytes::new(),
    };
    let m = schema::message_for(&api_version, &kind).ok_or_else(|| Error::NoMessage {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let msg = DynamicMessage::decode(m.desc.clone(), raw)?;
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind));
    out.insert("apiVersion".into(), Value::String(api_version));
    out.extend(convert::message_to_json(&msg));
    Ok(Value::Object(out))
}

/// One watch event as a length-prefixed frame.
pub fn encode_watch_event(event_type: &str, obj: &Value) -> Result<Vec<u8>, Error> {
    let inner = encode(obj)?;
    let mut raw = message("apimachinery.pkg.runtime.RawExtension")?;
    field(&mut raw, "raw", Pb::Bytes(Bytes::from(inner)));
    let mut ev = message("apimachinery.pkg.apis.meta.v1.WatchEvent")?;
    field(&mut ev, "type", Pb::String(event_type.into()));
    field(&mut ev, "object", Pb::Message(raw));
    let len = ev.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    ev.encode(&mut out).map_err(|e| Error::Field {
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Take the next complete frame off the front of `buf` (a watch stream's
/// bytes so far), if there is one.
pub fn next_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    let frame = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Some(frame)
}

/// Decode one watch frame (without its length): the event type and object.
pub fn decode_watch_event(frame: &[u8]) -> Result<(String, Value), Error> {
    let ev = DynamicMessage::decode(message("apimachinery.pkg.apis.meta.v1.WatchEvent")?.descriptor(), frame)?;
    let d = ev.descriptor();
    let ty = match d.get_field_by_name("type").map(|f| ev.get_field(&f).into_owned()) {
        Some(Pb::String(s)) => s,
        _ => String::new(),
    };
    let raw = match d.get_field_by_name("object").map(|f| ev.get_field(&f).into_owned()) {
        Some(Pb::Message(m)) => match m
            .descriptor()
            .get_field_by_name("raw")
            .map(|f| m.get_field(&f).into_owned())
        {
            Some(Pb::Bytes(b)) => b,
            _ => Bytes::new(),
        },
        _ => Bytes::new(),
    };
    Ok((ty, decode(&raw)?))
}

#[cfg(test)]
mod tests;
