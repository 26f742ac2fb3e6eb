//! JSON ⇄ protobuf for one message, as Kubernetes' Go types do it.
//!
//! The protobuf side is a `prost_reflect::DynamicMessage`; the JSON side a
//! `serde_json::Value`. Field names, inlined structs and zero values follow
//! the Go structs (see `schema`): decoding protobuf writes a zero scalar only
//! for pointer fields and fields without `omitempty`, as `encoding/json`
//! would after Kubernetes decoded the message, and a zero `Time` not at all
//! (Go writes `null`). Maps come out with sorted keys, as Go writes them.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use prost::bytes::Bytes;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value as Pb};
use serde_json::{Map, Number, Value};

use std::sync::Arc;

use crate::schema::{field_message, schema, Field, Message, Special};
use crate::Error;

fn mismatch(want: &str, got: &Value) -> Error {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    Error::Field {
        path: String::new(),
        message: format!("expected {want}, got {got}"),
    }
}

/// A field error (its path is filled in on the way out, see `Error::within`).
fn invalid(message: impl Into<String>) -> Error {
    Error::Field {
        path: String::new(),
        message: message.into(),
    }
}

/// A JSON object as the message `m`. `kind` and `apiVersion` (TypeMeta,
/// which Kubernetes' messages leave to the envelope) are skipped; any other
/// key the message does not have is an error.
pub fn message_from_json(m: &Message, obj: &Map<String, Value>) -> Result<DynamicMessage, Error> {
    let s = schema();
    let mut msg = DynamicMessage::new(m.desc.clone());
    let mut inlined: Vec<(usize, Map<String, Value>)> = Vec::new();
    for (k, v) in obj {
        if let Some(&i) = m.by_json.get(k) {
            let f = &m.fields[i];
            if let Some(value) = field_from_json(f, v).map_err(|e| e.within(k))? {
                msg.set_field(&f.desc, value);
            }
            continue;
        }
        let inline = m.fields.iter().enumerate().find(|(_, f)| {
            f.inline
                && field_message(&f.desc).is_some_and(|d| s.message(d.full_name()).is_some_and(|im| im.knows(k, s)))
        });
        match inline {
            Some((i, _)) => match inlined.iter_mut().find(|(j, _)| *j == i) {
                Some((_, sub)) => {
                    sub.insert(k.clone(), v.clone());
                }
                None => inlined.push((i, Map::from_iter([(k.clone(), v.clone())]))),
            },
            None if k == "kind" || k == "apiVersion" => {}
            None => return Err(invalid(format!("unknown field in {}", m.desc.full_name())).within(k)),
        }
    }
    // Go always writes an inlined (non-pointer) struct.
    for (idx, f) in m.fields.iter().enumerate().filter(|(_, f)| f.inline) {
        let Some(d) = field_message(&f.desc) else { continue };
        let Some(im) = s.message(d.full_name()) else { continue };
        let sub = inlined
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, o)| o.clone())
            .unwrap_or_default();
        msg.set_field(&f.desc, Pb::Message(message_from_json(im, &sub)?));
    }
    Ok(msg)
}

/// A `Time` held by value (not behind a pointer): Go writes its zero as `null`.
fn time_by_value(f: &Field) -> bool {
    matches!(f.special, Some(Special::Time | Special::MicroTime)) && !f.ptr && !f.desc.is_list() && !f.desc.is_map()
}

fn field_from_json(f: &Field, v: &Value) -> Result<Option<Pb>, Error> {
    if v.is_null() {
        // `"lastProbeTime": null` is the zero Time Go would put on the wire.
        return Ok(match (time_by_value(f), field_message(&f.desc)) {
            (true, Some(d)) => Some(Pb::Message(DynamicMessage::new(d))),
            _ => None,
        });
    }
    if f.desc.is_map() {
        let Value::Object(o) = v else {
            return Err(mismatch("object", v));
        };
        let Kind::Message(entry) = f.desc.kind() else {
            return Err(mismatch("map", v));
        };
        let vf = entry.map_entry_value_field();
        let mut out = std::collections::HashMap::with_capacity(o.len());
        for (k, x) in o {
            if x.is_null() {
                continue;
            }
            out.insert(
                MapKey::String(k.clone()),
                single(&vf.kind(), f.special, f.target(), x).map_err(|e| e.within(k))?,
            );
        }
        return Ok(Some(Pb::Map(out)));
    }
    if f.desc.is_list() {
        let Value::Array(a) = v else {
            return Err(mismatch("array", v));
        };
        let kind = f.desc.kind();
        let items = a
            .iter()
            .enumerate()
            .map(|(i, x)| single(&kind, f.special, f.target(), x).map_err(|e| e.within(&format!("[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(Pb::List(items)));
    }
    single(&f.desc.kind(), f.special, f.target(), v).map(Some)
}

fn int(v: &Value) -> Result<i64, Error> {
    v.as_i64().ok_or_else(|| mismatch("integer", v))
}

fn single(kind: &Kind, special: Option<Special>, target: Option<&Arc<Message>>, v: &Value) -> Result<Pb, Error> {
    let range = || invalid("integer out of range");
    Ok(match kind {
        Kind::Message(d) => {
            if let Some(sp) = special {
                return special_from_json(d, sp, v);
            }
            let Value::Object(o) = v else {
                return Err(mismatch("object", v));
            };
            let m = match target {
                Some(m) => m,
                None => schema()
                    .message(d.full_name())
                    .ok_or_else(|| Error::UnknownType(d.full_name().into()))?,
            };
            Pb::Message(message_from_json(m, o)?)
        }
        Kind::String => Pb::String(v.as_str().ok_or_else(|| mismatch("string", v))?.to_string()),
        Kind::Bytes => {
            let s = v.as_str().ok_or_else(|| mismatch("base64 string", v))?;
            let b = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| invalid(format!("illegal base64 data: {e}")))?;
            Pb::Bytes(Bytes::from(b))
        }
        Kind::Bool => Pb::Bool(v.as_bool().ok_or_else(|| mismatch("bool", v))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Pb::I32(i32::try_from(int(v)?).map_err(|_| range())?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Pb::I64(int(v)?),
        Kind::Uint32 | Kind::Fixed32 => {
            let n = v.as_u64().ok_or_else(|| mismatch("unsigned integer", v))?;
            Pb::U32(u32::try_from(n).map_err(|_| range())?)
        }
        Kind::Uint64 | Kind::Fixed64 => Pb::U64(v.as_u64().ok_or_else(|| mismatch("unsigned integer", v))?),
        Kind::Double => Pb::F64(v.as_f64().ok_or_else(|| mismatch("number", v))?),
        Kind::Float => Pb::F32(v.as_f64().ok_or_else(|| mismatch("number", v))? as f32),
        Kind::Enum(_) => return Err(mismatch("enum", v)),
    })
}

fn set(msg: &mut DynamicMessage, name: &str, value: Pb) {
    if let Some(f) = msg.descriptor().get_field_by_name(name) {
        msg.set_field(&f, value);
    }
}

fn child(msg: &DynamicMessage, name: &str) -> Option<prost_reflect::MessageDescriptor> {
    msg.descriptor().get_field_by_name(name).and_then(|f| field_message(&f))
}

fn schema_from_json(parent: &DynamicMessage, name: &str, v: &Value) -> Result<Pb, Error> {
    let d =
        child(parent, name).ok_or_else(|| Error::UnknownType(format!("{}.{name}", parent.descriptor().full_name())))?;
    single(&Kind::Message(d), None, None, v)
}

fn time_from_json(msg: &mut DynamicMessage, v: &Value) -> Result<(), Error> {
    let s = v.as_str().ok_or_else(|| mismatch("RFC 3339 time", v))?;
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| invalid(format!("parsing time {s:?}: {e}")))?;
    set(msg, "seconds", Pb::I64(t.timestamp()));
    set(msg, "nanos", Pb::I32(t.timestamp_subsec_nanos() as i32));
    Ok(())
}

fn special_from_json(d: &prost_reflect::MessageDescriptor, sp: Special, v: &Value) -> Result<Pb, Error> {
    let mut msg = DynamicMessage::new(d.clone());
    match sp {
        Special::Quantity => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(mismatch("quantity", v)),
            };
            set(&mut msg, "string", Pb::String(s));
        }
        Special::Time | Special::MicroTime => time_from_json(&mut msg, v)?,
        Special::Duration => {
            let s = v.as_str().ok_or_else(|| mismatch("duration string", v))?;
            let n = crate::duration::parse(s).ok_or_else(|| invalid(format!("time: invalid duration {s:?}")))?;
            set(&mut msg, "duration", Pb::I64(n));
        }
        Special::IntOrString => match v {
            Value::Number(_) => {
                let n = i32::try_from(int(v)?).map_err(|_| mismatch("int32", v))?;
                set(&mut msg, "type", Pb::I64(0));
                set(&mut msg, "intVal", Pb::I32(n));
            }
            Value::String(s) => {
                set(&mut msg, "type", Pb::I64(1));
                set(&mut msg, "strVal", Pb::String(s.clone()));
            }
            _ => return Err(mismatch("integer or string", v)),
        },
        Special::Raw => {
            let raw = serde_json::to_vec(v).map_err(|e| invalid(e.to_string()))?;
            // `raw` (RawExtension, apiextensions JSON) or `Raw` (FieldsV1).
            let name = if d.get_field_by_name("raw").is_some() {
                "raw"
            } else {
                "Raw"
            };
            set(&mut msg, name, Pb::Bytes(Bytes::from(raw)));
        }
        Special::PropsOrArray => match v {
            Value::Array(a) => {
                let items = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| schema_from_json(&msg, "jSONSchemas", x).map_err(|e| e.within(&format!("[{i}]"))))
                    .collect::<Result<Vec<_>, _>>()?;
                set(&mut msg, "jSONSchemas", Pb::List(items));
            }
            _ => {
                let s = schema_from_json(&msg, "schema", v)?;
                set(&mut msg, "schema", s);
            }
        },
        Special::PropsOrBool => match v {
            Value::Bool(b) => set(&mut msg, "allows", Pb::Bool(*b)),
            _ => {
                let s = schema_from_json(&msg, "schema", v)?;
                set(&mut msg, "allows", Pb::Bool(true));
                set(&mut msg, "schema", s);
            }
        },
        Special::PropsOrStringArray => match v {
            Value::Array(a) => {
                let items = a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(|s| Pb::String(s.to_string()))
                            .ok_or_else(|| mismatch("string", x))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set(&mut msg, "property", Pb::List(items));
            }
            _ => {
                let s = schema_from_json(&msg, "schema", v)?;
                set(&mut msg, "schema", s);
            }
        },
    }
    Ok(Pb::Message(msg))
}

/// The JSON object of a message (without `kind`/`apiVersion`).
pub fn message_to_json(msg: &DynamicMessage) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(m) = schema().message(msg.descriptor().full_name()) else {
        return out;
    };
    write_fields(m, msg, &mut out);
    out
}

fn write_fields(m: &Message, msg: &DynamicMessage, out: &mut Map<String, Value>) {
    for f in &m.fields {
        if !msg.has_field(&f.desc) {
            continue;
        }
        let value = msg.get_field(&f.desc);
        if f.inline {
            if let Pb::Message(sub) = value.as_ref() {
                if let Some(im) = schema().message(sub.descriptor().full_name()) {
                    write_fields(im, sub, out);
                }
            }
            continue;
        }
        if let Some(j) = field_to_json(f, &value) {
            out.insert(f.json.clone(), j);
        }
    }
}

fn field_to_json(f: &Field, v: &Pb) -> Option<Value> {
    match v {
        Pb::List(items) => {
            let a: Vec<Value> = items
                .iter()
                .map(|x| single_to_json(x, f.special, f.target()).unwrap_or(Value::Null))
                .collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        Pb::Map(map) => {
            let mut entries: Vec<(&MapKey, &Pb)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let o: Map<String, Value> = entries
                .into_iter()
                .map(|(k, x)| {
                    let key = match k {
                        MapKey::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (key, single_to_json(x, f.special, f.target()).unwrap_or(Value::Null))
                })
                .collect();
            (!o.is_empty()).then_some(Value::Object(o))
        }
        scalar if !f.keep_zero && is_zero(scalar) => None,
        other => single_to_json(other, f.special, f.target()).or_else(|| time_by_value(f).then_some(Value::Null)),
    }
}

fn is_zero(v: &Pb) -> bool {
    match v {
        Pb::Bool(b) => !b,
        Pb::I32(n) => *n == 0,
        Pb::I64(n) => *n == 0,
        Pb::U32(n) => *n == 0,
        Pb::U64(n) => *n == 0,
        Pb::F32(n) => *n == 0.0,
        Pb::F64(n) => *n == 0.0,
        Pb::String(s) => s.is_empty(),
        Pb::Bytes(b) => b.is_empty(),
        Pb::EnumNumber(n) => *n == 0,
        Pb::Message(_) | Pb::List(_) | Pb::Map(_) => false,
    }
}

fn float(f: f64) -> Value {
    // Go writes a float64 that holds an integer without a fraction.
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

fn get<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Pb>> {
    let f = msg.descriptor().get_field_by_name(name)?;
    msg.has_field(&f).then(|| msg.get_field(&f))
}

fn get_i64(msg: &DynamicMessage, name: &str) -> i64 {
    match get(msg, name).as_deref() {
        Some(Pb::I64(n)) => *n,
        Some(Pb::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn get_str(msg: &DynamicMessage, name: &str) -> String {
    match get(msg, name).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn single_to_json(v: &Pb, special: Option<Special>, target: Option<&Arc<Message>>) -> Option<Value> {
    Some(match v {
        Pb::Message(msg) => match (special, target) {
            (Some(sp), _) => return special_to_json(msg, sp),
            (None, Some(m)) => {
                let mut out = Map::new();
                write_fields(m, msg, &mut out);
                Value::Object(out)
            }
            (None, None) => Value::Object(message_to_json(msg)),
        },
        Pb::Bool(b) => Value::Bool(*b),
        Pb::I32(n) => Value::from(*n),
        Pb::I64(n) => Value::from(*n),
        Pb::U32(n) => Value::from(*n),
        Pb::U64(n) => Value::from(*n),
        Pb::F32(n) => float(f64::from(*n)),
        Pb::F64(n) => float(*n),
        Pb::String(s) => Value::String(s.clone()),
        Pb::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::EnumNumber(n) => Value::from(*n),
        Pb::List(_) | Pb::Map(_) => return None,
    })
}

fn special_to_json(msg: &DynamicMessage, sp: Special) -> Option<Value> {
    Some(match sp {
        Special::Quantity => {
            let s = get_str(msg, "string");
            Value::String(if s.is_empty() { "0".into() } else { s })
        }
        Special::Time | Special::MicroTime => {
            let (secs, nanos) = (get_i64(msg, "seconds"), get_i64(msg, "nanos"));
            if secs == 0 && nanos == 0 {
                return None;
            }
            let t = DateTime::<Utc>::from_timestamp(secs, u32::try_from(nanos).unwrap_or(0))?;
            Value::String(if sp == Special::Time {
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            })
        }
        Special::Duration => Value::String(crate::duration::format(get_i64(msg, "duration"))),
        Special::IntOrString => {
            if get_i64(msg, "type") == 1 {
                Value::String(get_str(msg, "strVal"))
            } else {
                Value::from(get_i64(msg, "intVal"))
            }
        }
        Special::Raw => {
            let raw = get(msg, "raw").or_else(|| get(msg, "Raw"))?;
            let Pb::Bytes(b) = raw.as_ref() else { return None };
            if b.is_empty() {
                return None;
            }
            serde_json::from_slice(b).ok()?
        }
        Special::PropsOrArray => match get(msg, "schema") {
            Some(s) => single_to_json(&s, None, None)?,
            None => match get(msg, "jSONSchemas").as_deref() {
                Some(Pb::List(items)) => {
                    Value::Array(items.iter().filter_map(|x| single_to_json(x, None, None)).collect())
                }
                _ => return None,
            },
        },
        Special::PropsOrBool => match get(msg, "schema") {
            Some(s) => single_to_json(&s, None, None)?,
            None => Value::Bool(matches!(get(msg, "allows").as_deref(), Some(Pb::Bool(true)))),
        },
        Special::PropsOrStringArray => match get(msg, "schema") {
            Some(s) => single_to_json(&s, None, None)?,
            None => match get(msg, "property").as_deref() {
                Some(Pb::List(items)) => {
                    Value::Array(items.iter().filter_map(|x| single_to_json(x, None, None)).collect())
                }
                _ => return None,
            },
        },
    })
}
