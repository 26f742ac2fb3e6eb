//! Field paths and field errors worded as Kubernetes' `field.Path` and `field.Error`.
//!
//! A [`FieldError`] displays as `<path>: <type>[: <value>][: <detail>]`, e.g.
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.

use std::fmt;

use serde_json::Value;

/// A path to a field, rendered like Kubernetes' `field.Path`: children are joined with
/// `.`, list indices are `[0]`, map keys are `[key]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The empty (root) path.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// A path made of the given `.`-joined children, e.g. `FieldPath::new("spec")`.
    pub fn new(first: &str) -> Self {
        Self(first.to_string())
    }

    /// The path `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path `self[key]`.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a field error, as Kubernetes' `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    /// Kubernetes' `TypeInvalid`: displayed as `Invalid value` as well.
    TypeInvalid,
}

impl ErrorType {
    /// The wording Kubernetes uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }

    /// The `reason` of the matching `StatusCause` (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The offending value of a field error, printed the way Go's `field.Error` prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// Not printed at all.
    Omit,
    /// Printed as `null`.
    Null,
    /// Printed quoted, as Go's `%q`.
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Printed as is (e.g. a Go-like rendering of a map or list).
    Raw(String),
}

impl BadValue {
    /// The bad value for a JSON value: scalars as themselves, objects and arrays rendered
    /// as Go renders `map[string]interface {}` / `[]interface {}`.
    pub fn from_json(v: &Value) -> Self {
        match v {
            Value::Null => BadValue::Null,
            Value::Bool(b) => BadValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => BadValue::Int(i),
                None => BadValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => BadValue::Str(s.clone()),
            other => BadValue::Raw(go_repr(other)),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_string())
    }
}

impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}

impl From<i64> for BadValue {
    fn from(i: i64) -> Self {
        BadValue::Int(i)
    }
}

impl From<bool> for BadValue {
    fn from(b: bool) -> Self {
        BadValue::Bool(b)
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omit => Ok(()),
            BadValue::Null => f.write_str("null"),
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Float(x) => f.write_str(&go_float(*x)),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::Raw(s) => f.write_str(s),
        }
    }
}

/// Quotes a string as Go's `%q` does for the common cases.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats a float as Go's `%v` does for the common cases (`10`, `1.5`, `1e+21`).
pub fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let abs = x.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{x:e}");
        // Rust: 1e21, 1.5e-5; Go: 1e+21, 1.5e-05
        if let Some((mantissa, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{mantissa}e{sign}{digits}");
        }
        return s;
    }
    format!("{x}")
}

/// Renders a JSON value as Go's `%#v` renders the unstructured equivalent (close enough
/// for error messages).
pub fn go_repr(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_repr).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_repr(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// One field error: a path, a type, the offending value and a detail.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct FieldError {
    pub path: FieldPath,
    pub error_type: ErrorType,
    pub bad_value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn new(error_type: ErrorType, path: &FieldPath, bad_value: BadValue, detail: impl Into<String>) -> Self {
        Self {
            path: path.clone(),
            error_type,
            bad_value,
            detail: detail.into(),
        }
    }

    /// `field.Required(path, detail)`.
    pub fn required(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, path, BadValue::Omit, detail)
    }

    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, path, BadValue::Omit, detail)
    }

    /// `field.Invalid(path, value, detail)`.
    pub fn invalid(path: &FieldPath, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, path, value.into(), detail)
    }

    /// `field.TypeInvalid(path, value, detail)`.
    pub fn type_invalid(path: &FieldPath, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::TypeInvalid, path, value.into(), detail)
    }

    /// `field.Duplicate(path, value)`.
    pub fn duplicate(path: &FieldPath, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, path, value.into(), "")
    }

    /// `field.NotSupported(path, value, supported)`.
    pub fn not_supported<S: AsRef<str>>(path: &FieldPath, value: impl Into<BadValue>, supported: &[S]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, path, value.into(), detail)
    }

    /// `field.TooLong(path, value, max)`: the value is not printed.
    pub fn too_long(path: &FieldPath, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("may not be more than {max} {}", if max == 1 { "byte" } else { "bytes" })
        } else {
            "value is too long".to_string()
        };
        Self::new(ErrorType::TooLong, path, BadValue::Omit, detail)
    }

    /// `field.TooMany(path, actual, max)`.
    pub fn too_many(path: &FieldPath, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            format!("must have at most {max} {}", if max == 1 { "item" } else { "items" })
        } else {
            "has too many items".to_string()
        };
        let bad = if actual >= 0 {
            BadValue::Int(actual)
        } else {
            BadValue::Omit
        };
        Self::new(ErrorType::TooMany, path, bad, detail)
    }

    /// `field.InternalError(path, err)`.
    pub fn internal(path: &FieldPath, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, path, BadValue::Omit, detail)
    }

    /// The part after `<path>: `, as Go's `ErrorBody`.
    pub fn body(&self) -> String {
        let mut s = match self.error_type {
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal => {
                self.error_type.as_str().to_string()
            }
            _ => match &self.bad_value {
                BadValue::Omit => self.error_type.as_str().to_string(),
                v => format!("{}: {v}", self.error_type),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.path, self.body())
        }
    }
}

/// Renders errors as Kubernetes' aggregate: one error alone, else `[e1, e2]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(|e| e.to_string()).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_render_like_kubernetes() {
        let p = FieldPath::new("spec")
            .child("versions")
            .index(0)
            .child("schema")
            .child("openAPIV3Schema");
        assert_eq!(
            p.key("spec").child("type").as_str(),
            "spec.versions[0].schema.openAPIV3Schema[spec].type"
        );
        assert_eq!(FieldPath::root().child("a").as_str(), "a");
    }

    #[test]
    fn errors_render_like_kubernetes() {
        let p = FieldPath::new("spec").child("replicas");
        let e = FieldError::type_invalid(
            &p,
            "string",
            "spec.replicas in body must be of type integer: \"string\"",
        );
        assert_eq!(
            e.to_string(),
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        );
        let e = FieldError::not_supported(&FieldPath::new("spec").child("size"), "huge", &["small", "large"]);
        assert_eq!(
            e.to_string(),
            r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#
        );
        let e = FieldError::required(&FieldPath::new("spec").child("image"), "");
        assert_eq!(e.to_string(), "spec.image: Required value");
        let e = FieldError::too_many(&FieldPath::new("spec").child("l"), 5, 3);
        assert_eq!(e.to_string(), "spec.l: Too many: 5: must have at most 3 items");
        let e = FieldError::too_long(&FieldPath::new("spec").child("s"), 1);
        assert_eq!(e.to_string(), "spec.s: Too long: may not be more than 1 byte");
        let e = FieldError::duplicate(
            &FieldPath::new("spec").child("l").index(2),
            BadValue::from_json(&json!({"a": 1})),
        );
        assert_eq!(
            e.to_string(),
            r#"spec.l[2]: Duplicate value: map[string]interface {}{"a":1}"#
        );
        let e = FieldError::invalid(&FieldPath::new("x"), BadValue::Null, "bad");
        assert_eq!(e.to_string(), "x: Invalid value: null: bad");
    }

    #[test]
    fn go_number_formatting() {
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
    }
}
