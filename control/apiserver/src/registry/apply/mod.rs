//! Server-side apply and `metadata.managedFields`, as Kubernetes'
//! structured-merge-diff and the apiserver's field manager do them.
//!
//! Every write records who changed what ([`track`], called by the registry
//! with the final object, before admission): a create, update or non-apply
//! patch is an `Update` entry of its manager (`fieldManager`, else the
//! first token of the User-Agent) owning the fields it added or changed,
//! which it takes from everyone else. An apply ([`apply_to`], called by the
//! PATCH handler with the live object) merges the configuration into the
//! object along the kind's schema ([`schema`]), owns exactly the applied
//! fields, removes the ones it stopped applying that nobody else owns, and
//! fails with a 409 on fields others own unless forced ([`conflicts`]).
//!
//! The pieces are pure: [`fieldset`] (FieldsV1 sets), [`typed`] (field
//! sets and comparisons of objects), [`merge`] (merge and removal),
//! [`managers`] (the entries and how writes move ownership).

pub mod conflicts;
pub mod fieldset;
pub mod managers;
pub mod merge;
pub mod typed;

use serde_json::{json, Map, Value};

pub use crate::kinds::apply_schema::{self as schema, ApplySchema, ListType};

use crate::kinds::Kind;
use crate::registry::apply::managers::{IgnoredFields, Managers, Writer};
use crate::status::{ApiError, ApiResult, FieldError};

/// The client-side apply annotation.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Longest accepted `fieldManager` (`FieldManagerMaxLength`).
pub const MAX_MANAGER_LENGTH: usize = 128;

/// How a write records ownership in `managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracking {
    /// Not recorded: the stored entries stay as they are (server-internal
    /// writes such as bindings and deletion marks).
    Untracked,
    /// A create, update or non-apply patch by `manager`, on `subresource`
    /// ("" for the main resource).
    Update {
        /// Field manager.
        manager: String,
        /// Subresource written.
        subresource: String,
    },
    /// An apply: the proposed object carries the entries [`apply_to`]
    /// computed.
    Applied,
}

impl Tracking {
    /// An update by `manager` on the main resource or `subresource`.
    pub fn update(manager: impl Into<String>, subresource: &str) -> Self {
        Tracking::Update {
            manager: manager.into(),
            subresource: subresource.to_string(),
        }
    }
}

/// The manager of a non-apply write: `fieldManager`, else the User-Agent
/// up to its first `/`, printable characters only, at most 128 bytes (as
/// Kubernetes' `managerOrUserAgent`).
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prefix = user_agent.unwrap_or_default().split('/').next().unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// `fieldManager` errors (`ValidateFieldManager`): too long, unprintable.
pub fn validate_field_manager(m: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if m.len() > MAX_MANAGER_LENGTH {
        errs.push(FieldError {
            reason: "FieldValueTooLong",
            field: "fieldManager".into(),
            message: format!("Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"),
        });
    }
    for (i, c) in m.chars().enumerate() {
        if c.is_control() {
            errs.push(FieldError::invalid(
                "fieldManager",
                &json!(m),
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errs
}

/// The fields a write never owns: status on the main resource of a kind
/// with a status subresource, everything but status on `/status`.
pub fn ignored_fields(k: &Kind, subresource: &str) -> IgnoredFields {
    match subresource {
        "status" => IgnoredFields::AllButStatus,
        "" if k.resource().subresource("status").is_some() => IgnoredFields::Status,
        _ => IgnoredFields::None,
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/managedFields").filter(|v| !v.is_null())
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    set_managed_fields(&mut o, None);
    o
}

fn set_managed_fields(obj: &mut Value, mf: Option<Value>) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    match mf {
        Some(v) => {
            m.insert("managedFields".into(), v);
        }
        None => {
            m.remove("managedFields");
        }
    }
}

/// Record a write in `new`'s `managedFields`. `old` is the stored object
/// (`None` for a create); `proposed` is the `managedFields` the request's
/// object carried; `ignored` the fields this write does not own.
pub fn track(
    k: &Kind,
    old: Option<&Value>,
    new: &mut Value,
    proposed: Option<Value>,
    tracking: &Tracking,
    ignored: IgnoredFields,
) {
    let live = old.and_then(managed_fields).cloned();
    let (manager, subresource) = match tracking {
        Tracking::Untracked => {
            set_managed_fields(new, live);
            return;
        }
        Tracking::Applied => {
            set_managed_fields(new, proposed.filter(|v| !v.is_null()));
            return;
        }
        Tracking::Update { manager, subresource } => (manager, subresource),
    };
    // Clients may set managedFields (a valid, non-empty list replaces the
    // stored one; `[]` or `[{}]` resets it), except through subresources.
    let decoded_live = || managers::decode(live.as_ref()).unwrap_or_default();
    // Whether `managed` are the stored entries (not the client's).
    let (mut managed, stored): (Managers, bool) = if !subresource.is_empty() {
        (decoded_live(), true)
    } else {
        match proposed.as_ref() {
            Some(p) if managers::is_reset(p) => (Vec::new(), false),
            Some(p) => match managers::decode(Some(p)) {
                Ok(m) if !m.is_empty() => (m, false),
                _ => (decoded_live(), true),
            },
            None => (decoded_live(), true),
        }
    };
    // An existing object nobody manages stays unmanaged until an apply.
    if managed.is_empty() && old.is_some() {
        set_managed_fields(new, None);
        return;
    }
    let schema = k.apply_schema();
    let ty = schema.root();
    let w = Writer {
        manager: manager.clone(),
        api_version: k.resource().api_version(),
        subresource: subresource.clone(),
        now: now(),
        ignored,
    };
    match old {
        // `new` holds the stored managedFields while it is compared, so
        // that they compare equal and the old object needs no copy
        // without them. The entries the write does not touch are then
        // taken from them as they are.
        Some(o) => {
            set_managed_fields(new, live);
            let untouched = managers::update(&mut managed, o, new, ty, &w);
            let previous = new
                .get_mut("metadata")
                .and_then(|m| m.get_mut("managedFields"))
                .map(Value::take)
                .filter(|_| stored);
            set_managed_fields(new, managers::encode_reusing(&managed, &untouched, previous));
        }
        None => {
            set_managed_fields(new, None);
            managers::update(&mut managed, &typed::zero_of(new, ty), new, ty, &w);
            set_managed_fields(new, managers::encode(&managed));
        }
    }
}

/// JSON with object keys sorted, as Go's `encoding/json` writes maps.
fn sorted_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted_json(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

/// The fields of the client-side apply annotation that still hold their
/// applied value in `live`: kubectl upgrading from client-side apply may
/// take those without conflict (Kubernetes' `lastAppliedManager`).
fn last_applied_fields(live: &Value, api_version: &str, ty: schema::Ty<'_>) -> Option<fieldset::Set> {
    let text = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let set = typed::to_field_set(&last, ty).ok()?;
    let c = typed::compare(&last, live, ty);
    Some(set.difference(&c.modified).difference(&c.added).difference(&c.removed))
}

/// Server-side apply of `config` by `manager` over `live` (`None`: the
/// object does not exist yet) on the main resource or `subresource`:
/// the merged object, carrying its new `managedFields`.
pub fn apply_to(
    k: &Kind,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
) -> ApiResult<Value> {
    let r = k.resource();
    let Some(cfg) = config.as_object() else {
        return Err(ApiError::bad_request("the applied configuration must be an object"));
    };
    let api_version = r.api_version();
    let given = cfg.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if given != api_version {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {api_version}"
        )));
    }
    if managed_fields(config).is_some() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let schema = k.apply_schema();
    let ty = schema.root();
    let live_obj = live.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let mut managed: Managers = live
        .and_then(managed_fields)
        .map(|m| managers::decode(Some(m)).unwrap_or_default())
        .unwrap_or_default();
    let ignored = ignored_fields(k, subresource);
    let writer = |name: &str| Writer {
        manager: name.to_string(),
        api_version: api_version.clone(),
        subresource: subresource.to_string(),
        now: now(),
        ignored,
    };
    // Fields of an object nobody managed yet belong to `before-first-apply`.
    if managed.is_empty() && live.is_some() {
        let before = typed::zero_of(&live_obj, ty);
        let mut w = writer("before-first-apply");
        w.subresource = String::new();
        managers::update(&mut managed, &before, &live_obj, ty, &w);
    }
    let w = writer(manager);
    let attempt = |force: bool, managed: &mut Managers| managers::apply(managed, &live_obj, config, ty, &w, force);
    let mut result_managers = managed.clone();
    let result = match attempt(force, &mut result_managers) {
        Err(Ok(conflicts)) if manager == "kubectl" => {
            // Upgrading from client-side apply: conflicts on fields the
            // annotation applied and that still hold that value are taken.
            let allowed = last_applied_fields(&live_obj, &api_version, ty);
            let remaining: Vec<_> = conflicts
                .iter()
                .filter(|c| !allowed.as_ref().is_some_and(|a| a.has(&c.path)))
                .cloned()
                .collect();
            if allowed.is_some() && remaining.is_empty() {
                result_managers = managed.clone();
                attempt(true, &mut result_managers)
            } else if allowed.is_some() {
                Err(Ok(remaining))
            } else {
                Err(Ok(conflicts))
            }
        }
        other => other,
    };
    let applied = match result {
        Ok(a) => a,
        Err(Ok(conflicts)) => return Err(conflicts::error(&conflicts)),
        Err(Err(msg)) => return Err(ApiError::bad_request(msg)),
    };
    let mut object = applied.object;
    // kubectl's server-side apply keeps an existing client-side apply
    // annotation in step with what it applied.
    let has_last_applied = live_obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_some();
    if manager == "kubectl" && has_last_applied {
        let mut cfg = config.clone();
        if let Some(a) = cfg.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
        }
        let text = format!("{}\n", sorted_json(&cfg));
        if let Some(o) = object.as_object_mut() {
            let meta = o.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = meta.as_object_mut() {
                let ann = m.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
                if let Some(a) = ann.as_object_mut() {
                    a.insert(LAST_APPLIED.into(), Value::String(text));
                }
            }
        }
    }
    set_managed_fields(&mut object, managers::encode(&result_managers));
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_names_as_kubernetes_defaults_them() {
        let cases = [
            (Some("ops"), Some("kubectl/v1.32.0 (linux/amd64)"), "ops"),
            (None, Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc"), "kubectl"),
            (
                Some(""),
                Some("kube-controller-manager/v1.31"),
                "kube-controller-manager",
            ),
            (None, None, ""),
            (None, Some("a\u{7}b/1"), "ab"),
        ];
        for (fm, ua, want) in cases {
            assert_eq!(manager_or_user_agent(fm, ua), want, "{fm:?} {ua:?}");
        }
        assert_eq!(manager_or_user_agent(None, Some(&"x".repeat(300))).len(), 128);
        assert!(validate_field_manager(&"m".repeat(129))[0].message.contains("Too long"));
        assert!(validate_field_manager("ok").is_empty());
    }

    #[test]
    fn last_applied_json_sorts_keys() {
        let v = json!({"b": 1, "a": {"d": 2, "c": [ {"z": 1, "y": 2} ]}});
        assert_eq!(
            sorted_json(&v).to_string(),
            r#"{"a":{"c":[{"y":2,"z":1}],"d":2},"b":1}"#
        );
    }
}
