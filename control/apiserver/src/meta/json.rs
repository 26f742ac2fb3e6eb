//! Kubernetes' JSON serialization of API objects, below every layer: the
//! HTTP layer answers with it ([`crate::http::wire`]) and the watch cache
//! keeps objects written with it, so that a list can copy them into its
//! answer as they are.
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

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

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

/// An API object as a list's item, or a watch event's object, is written:
/// [`to_vec`] without its trailing newline. The watch cache keeps objects
/// in this form, so that a list can copy them into its answer as they are
/// ([`list_with_items`]).
pub fn object_json(v: &Value) -> Vec<u8> {
    let mut out = to_vec(v, false);
    out.pop();
    out
}

/// A JSON list, compact, as [`to_vec`] writes it, from the list without
/// its items (`items` empty or absent) and the items already written by
/// [`object_json`]: `items` is the last field of a list, so they go in
/// place of its `[]`.
pub fn list_with_items(list: &Value, items: &[impl AsRef<[u8]>]) -> Vec<u8> {
    let mut head = list.clone();
    if let Some(m) = head.as_object_mut() {
        m.insert("items".into(), Value::Array(Vec::new()));
    }
    let mut out = to_vec(&head, false);
    // `..,"items":[]}\n`: drop `]}\n`, append the items, close again.
    out.truncate(out.len().saturating_sub(3));
    out.reserve(items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 3);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_ref());
    }
    out.extend_from_slice(b"]}\n");
    out
}

/// Output up to this size is written into the thread's scratch buffer and
/// copied out at its exact length; a larger one (a big list) is handed
/// over as written, and the scratch buffer starts again from empty.
const SCRATCH_KEEP: usize = 64 * 1024;

/// `v` compact, with Go's escaping and a trailing newline (`json.Encoder`).
///
/// An object's line is written into a scratch buffer kept by the thread and
/// returned in an allocation of its own length. Written into a new vector
/// instead, it came out of a run of doublings from 256 bytes, its capacity
/// the next power of two: the watch cache keeps these lines for their
/// object's life (a `Bytes` keeps its vector's capacity), and a heap profile
/// of the 2,000-node scheduler benchmark found them to be over half of the
/// server's heap, so that slack was held for every object and recent change.
fn compact_line(v: &impl Serialize) -> Vec<u8> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let write = |out: &mut Vec<u8>| {
        let mut ser = serde_json::Serializer::with_formatter(&mut *out, GoEscapes(serde_json::ser::CompactFormatter));
        // Writing into a Vec cannot fail (every map key here is a string).
        let _ = v.serialize(&mut ser);
        out.push(b'\n');
    };
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            write(&mut buf);
            if buf.len() > SCRATCH_KEEP {
                std::mem::take(&mut *buf)
            } else {
                buf.to_vec()
            }
        }
        // Only a serializer writing another line from inside this one
        // would get here; it gets a buffer of its own.
        Err(_) => {
            let mut out = Vec::new();
            write(&mut out);
            out
        }
    })
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

/// How a JSON watch event line of `event_type` starts, up to its object
/// (event types are plain ASCII: nothing to escape).
fn watch_line_head(event_type: &str) -> Vec<u8> {
    format!(r#"{{"type":"{event_type}","object":"#).into_bytes()
}

/// The line [`json_watch_event`] writes, of an object already written by
/// [`object_json`].
pub fn json_watch_line(event_type: &str, object: &[u8]) -> bytes::Bytes {
    let mut line = watch_line_head(event_type);
    line.reserve(object.len() + 2);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

/// [`json_watch_event`], with its object's JSON as [`object_json`] writes
/// it: a slice of the line's own buffer, not a copy.
pub fn json_watch_event_and_object(event_type: &str, object: &Value) -> (bytes::Bytes, bytes::Bytes) {
    let line = json_watch_event(event_type, object);
    // The line ends with the event's `}` and the newline.
    let json = line.slice(watch_line_head(event_type).len()..line.len().saturating_sub(2));
    (line, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A line is returned in an allocation of its own length, the same
    /// bytes as a fresh serializer writes, one line after another from the
    /// same thread; a line larger than the scratch buffer keeps is whole.
    #[test]
    fn lines_are_allocated_at_their_length() {
        let fresh = |v: &Value| {
            let mut out = Vec::new();
            let mut ser =
                serde_json::Serializer::with_formatter(&mut out, GoEscapes(serde_json::ser::CompactFormatter));
            Ordered(v, Place::Object)
                .serialize(&mut ser)
                .expect("a value serializes");
            out.push(b'\n');
            out
        };
        let small = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "labels": {"a": "<b>"}}});
        let big = json!({"kind": "ConfigMap", "data": {"x": "y".repeat(3 * SCRATCH_KEEP)}});
        for v in [&small, &big, &small, &json!({}), &big] {
            let line = to_vec(v, false);
            assert_eq!(line, fresh(v));
            if line.len() <= SCRATCH_KEEP {
                assert_eq!(line.capacity(), line.len(), "{} bytes", line.len());
            }
        }
        let (line, object) = json_watch_event_and_object("ADDED", &small);
        assert_eq!(&object[..], &object_json(&small)[..]);
        assert!(line.starts_with(br#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1""#));
    }
}
