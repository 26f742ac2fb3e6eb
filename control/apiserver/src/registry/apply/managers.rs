//! `metadata.managedFields`: who owns which fields, and how a write moves
//! ownership (structured-merge-diff's `merge.Updater` with the apiserver's
//! field manager chain around it).
//!
//! - A manager is identified by name, operation and subresource, and for
//!   `Update` entries also by apiVersion.
//! - An Update takes the fields it added or changed from everyone and owns
//!   them; fields it removed are removed from every set.
//! - An Apply owns exactly the fields of its configuration; fields it
//!   applied before and no longer applies are removed from the object
//!   unless someone else owns them; changing a field another manager owns
//!   is a conflict unless forced, which takes the field from them.
//! - Sets left empty are dropped; at most ten Update entries are kept, the
//!   oldest merged into `ancient-changes`.
//! - Entries are listed Apply first, then by time, manager, apiVersion and
//!   subresource.

use serde_json::{json, Map, Value};

use crate::kinds::apply_schema::Ty;
use crate::registry::apply::conflicts::Conflict;
use crate::registry::apply::fieldset::{PathElement, Set};
use crate::registry::apply::merge::{merge, remove_items};
use crate::registry::apply::typed::{compare, to_field_set, Comparison};

/// `Apply` or `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `operation`.
    pub operation: Operation,
    /// `apiVersion` the fields were recorded in.
    pub api_version: String,
    /// `time` (RFC 3339, seconds), when known.
    pub time: Option<String>,
    /// `subresource` ("" for the main resource).
    pub subresource: String,
    /// `fieldsV1`.
    pub fields: Set,
}

impl Entry {
    /// Whether `self` and `other` are the same manager (Kubernetes'
    /// manager identifier: apiVersion counts only for Update entries).
    pub fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// The entry's JSON, in `ManagedFieldsEntry` field order.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

/// Every manager of an object.
pub type Managers = Vec<Entry>;

/// Whether `managedFields` asks to reset ownership: `[]` or `[{}]`.
pub fn is_reset(v: &Value) -> bool {
    match v.as_array() {
        Some(a) if a.is_empty() => true,
        Some(a) if a.len() == 1 => a[0].as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Decode `managedFields`, as Kubernetes validates it.
pub fn decode(v: Option<&Value>) -> Result<Managers, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let entries = v.as_array().ok_or("managedFields must be a list")?;
    let mut out: Managers = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = match s("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = s("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match s("fieldsType").as_str() {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {i}")),
        }
        let fields = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => Set::from_fields_v1(f).map_err(|err| format!("error decoding set: {err}"))?,
        };
        let entry = Entry {
            manager: s("manager"),
            operation,
            api_version,
            time: e.get("time").and_then(Value::as_str).map(String::from),
            subresource: s("subresource"),
            fields,
        };
        // A later entry for the same manager replaces an earlier one (a Go map).
        out.retain(|o| !o.same_manager(&entry));
        out.push(entry);
    }
    Ok(out)
}

/// Encode managers as `managedFields` (`None`: no entries).
pub fn encode(managers: &Managers) -> Option<Value> {
    let sorted = sorted(managers);
    if sorted.is_empty() {
        return None;
    }
    Some(Value::Array(sorted.into_iter().map(|(_, e)| e.to_json()).collect()))
}

/// [`encode`], but an entry `untouched` marks (by position in `managers`)
/// is taken as it is from `previous`, the `managedFields` it was decoded
/// from, instead of being written anew. Its fields and time are what they
/// were, and `previous` was written by [`encode`] (an object's stored
/// `managedFields` always are), so its JSON is what writing it anew gives.
/// The fieldsV1 of most entries of an update do not change, and writing
/// them (keys such as `k:{"type":"Ready"}`) was most of encoding.
pub fn encode_reusing(managers: &Managers, untouched: &[bool], previous: Option<Value>) -> Option<Value> {
    let sorted = sorted(managers);
    if sorted.is_empty() {
        return None;
    }
    let mut previous = match previous {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let mut reused = |e: &Entry| {
        // decode keeps the last entry of a manager, so the last is its JSON.
        let same = |j: &Value| {
            let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or_default();
            s("manager") == e.manager
                && s("operation") == e.operation.as_str()
                && s("apiVersion") == e.api_version
                && s("subresource") == e.subresource
        };
        let at = previous.iter().rposition(same)?;
        Some(std::mem::take(&mut previous[at])).filter(|j| !j.is_null())
    };
    let items = sorted
        .into_iter()
        .map(|(i, e)| {
            let json = untouched.get(i).copied().unwrap_or(false).then(|| reused(e)).flatten();
            json.unwrap_or_else(|| e.to_json())
        })
        .collect();
    Some(Value::Array(items))
}

/// The entries `managedFields` lists (those owning a field) in its order,
/// with their positions in `managers`.
fn sorted(managers: &Managers) -> Vec<(usize, &Entry)> {
    let mut sorted: Vec<(usize, &Entry)> = managers
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.fields.is_empty())
        .collect();
    let seconds = |e: &Entry| {
        e.time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp())
    };
    sorted.sort_by(|(_, p), (_, q)| {
        p.operation
            .cmp(&q.operation)
            .then_with(|| seconds(p).cmp(&seconds(q)))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    sorted
}

/// Remove the fields no manager owns: identity and server-set metadata, and
/// `managedFields` itself (Kubernetes' `stripMeta`).
fn strip(set: &mut Set) {
    static STRIPPED: std::sync::OnceLock<Set> = std::sync::OnceLock::new();
    set.subtract(STRIPPED.get_or_init(|| {
        let mut s = Set::new();
        let f = |n: &str| PathElement::Field(n.into());
        for top in ["apiVersion", "kind", "metadata"] {
            s.insert(&[f(top)]);
        }
        for m in [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ] {
            s.insert(&[f("metadata"), f(m)]);
        }
        s
    }));
}

/// How many Update entries an object keeps (`DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// Merge the oldest Update entries into `ancient-changes` until at most
/// [`MAX_UPDATE_MANAGERS`] remain.
fn cap_update_managers(managers: &mut Managers) -> bool {
    let updates = managers.iter().filter(|e| e.operation == Operation::Update).count();
    if updates <= MAX_UPDATE_MANAGERS {
        return false;
    }
    let mut excess = updates - MAX_UPDATE_MANAGERS;
    // Oldest first (entries without time are oldest).
    let mut order: Vec<usize> = (0..managers.len())
        .filter(|i| managers[*i].operation == Operation::Update && managers[*i].manager != ANCIENT)
        .collect();
    order.sort_by(|a, b| managers[*a].time.cmp(&managers[*b].time));
    let mut drop = Vec::new();
    for i in order {
        if excess == 0 {
            break;
        }
        let e = managers[i].clone();
        let target = managers
            .iter()
            .position(|m| m.manager == ANCIENT && m.operation == Operation::Update && m.api_version == e.api_version);
        match target {
            Some(t) => {
                managers[t].fields = managers[t].fields.union(&e.fields);
                if e.time > managers[t].time {
                    managers[t].time = e.time.clone();
                }
                excess -= 1;
            }
            None => {
                managers.push(Entry {
                    manager: ANCIENT.into(),
                    operation: Operation::Update,
                    api_version: e.api_version.clone(),
                    time: e.time.clone(),
                    subresource: String::new(),
                    fields: e.fields.clone(),
                });
            }
        }
        drop.push(i);
    }
    let mut i = 0;
    managers.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
    true
}

const ANCIENT: &str = "ancient-changes";

/// Who is writing.
#[derive(Debug, Clone)]
pub struct Writer {
    /// The manager name.
    pub manager: String,
    /// The apiVersion of the request.
    pub api_version: String,
    /// The subresource written ("" for the main resource).
    pub subresource: String,
    /// Now, RFC 3339.
    pub now: String,
    /// Fields this write never owns (status on the main resource of a kind
    /// with a status subresource; everything but status on `/status`).
    pub ignored: IgnoredFields,
}

/// Fields a write's ownership leaves out (Kubernetes' reset fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredFields {
    /// None.
    None,
    /// `status`.
    Status,
    /// Everything but `status`.
    AllButStatus,
}

fn filter_ignored(mut set: Set, ignored: IgnoredFields) -> Set {
    let status = PathElement::Field("status".into());
    match ignored {
        IgnoredFields::None => set,
        IgnoredFields::Status => {
            let mut s = Set::new();
            s.insert(std::slice::from_ref(&status));
            set.recursive_subtract(&s);
            set
        }
        IgnoredFields::AllButStatus => set.only(status),
    }
}

/// The fields a write may own: neither ignored nor stripped.
fn ownable(set: Set, ignored: IgnoredFields) -> Set {
    let mut set = filter_ignored(set, ignored);
    strip(&mut set);
    set
}

fn filter_comparison(c: Comparison, ignored: IgnoredFields) -> Comparison {
    Comparison {
        added: ownable(c.added, ignored),
        modified: ownable(c.modified, ignored),
        removed: ownable(c.removed, ignored),
    }
}

/// Record a non-apply write of `new` over `old` by `w` (Kubernetes'
/// `Updater.Update` behind the `managedFieldsUpdater`): everyone loses the
/// fields it changed or removed, and `w` owns what it added or changed.
/// Returns, for each entry now in `managers`, whether it is untouched: as
/// it was before (for [`encode_reusing`]).
pub fn update(managers: &mut Managers, old: &Value, new: &Value, ty: Ty<'_>, w: &Writer) -> Vec<bool> {
    let c = filter_comparison(compare(old, new, ty), w.ignored);
    let mut changed = c.modified;
    changed.merge(c.added);
    let mut untouched: Vec<bool> = managers
        .iter_mut()
        .map(|e| {
            let lost_changed = e.fields.subtract(&changed);
            let lost_removed = e.fields.subtract(&c.removed);
            !(lost_changed || lost_removed)
        })
        .collect();
    if !changed.is_empty() {
        let me = Entry {
            manager: w.manager.clone(),
            operation: Operation::Update,
            api_version: w.api_version.clone(),
            time: Some(w.now.clone()),
            subresource: w.subresource.clone(),
            fields: changed,
        };
        match managers.iter().position(|e| e.same_manager(&me)) {
            Some(i) => {
                managers[i].fields.merge(me.fields);
                managers[i].time = me.time;
                untouched[i] = false;
            }
            None => {
                managers.push(me);
                untouched.push(false);
            }
        }
    }
    let (kept, untouched): (Managers, Vec<bool>) = std::mem::take(managers)
        .into_iter()
        .zip(untouched)
        .filter(|(e, _)| !e.fields.is_empty())
        .unzip();
    *managers = kept;
    if cap_update_managers(managers) {
        // The oldest were merged into one entry: none is taken as it was.
        return vec![false; managers.len()];
    }
    untouched
}

/// The result of an apply.
#[derive(Debug)]
pub struct Applied {
    /// The merged object.
    pub object: Value,
    /// Whether the object changed.
    pub changed: bool,
}

/// Apply `config` over `live` for `w` (Kubernetes' `Updater.Apply`).
/// `live` carries no `managedFields`; `managers` are updated in place.
/// Errors: `Err(Ok(conflicts))` unless forced, `Err(Err(msg))` for a
/// configuration that cannot be merged.
pub fn apply(
    managers: &mut Managers,
    live: &Value,
    config: &Value,
    ty: Ty<'_>,
    w: &Writer,
    force: bool,
) -> Result<Applied, Result<Vec<Conflict>, String>> {
    let me = Entry {
        manager: w.manager.clone(),
        operation: Operation::Apply,
        api_version: w.api_version.clone(),
        time: Some(w.now.clone()),
        subresource: w.subresource.clone(),
        fields: ownable(to_field_set(config, ty).map_err(Err)?, w.ignored),
    };
    let merged = merge(Some(live), Some(config), ty)
        .map_err(|e| Err(format!("failed to merge config: {e}")))?
        .unwrap_or_else(|| json!({}));
    let last = managers.iter().find(|e| e.same_manager(&me)).map(|e| e.fields.clone());
    let mut next: Managers = managers.iter().filter(|e| !e.same_manager(&me)).cloned().collect();
    next.push(me.clone());
    // Prune what this applier gave up and nobody else owns.
    let object = match last.filter(|l| !l.is_empty()) {
        None => merged,
        Some(last) => {
            let owned = next.iter().fold(Set::new(), |acc, e| acc.union(&e.fields));
            let last = last.with_fields_as_members();
            let present = to_field_set(&merged, ty).unwrap_or_default().with_fields_as_members();
            let remove = present.intersection(&last).difference(&owned.with_fields_as_members());
            remove_items(&merged, &remove, ty).unwrap_or_else(|| json!({}))
        }
    };
    let c = filter_comparison(compare(live, &object, ty), w.ignored);
    let changed = c.modified.union(&c.added);
    let mut conflicts = Vec::new();
    for e in &next {
        if e.same_manager(&me) {
            continue;
        }
        for p in e.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: e.clone(),
                path: p,
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Ok(conflicts));
    }
    for e in next.iter_mut() {
        if e.same_manager(&me) {
            continue;
        }
        e.fields = e.fields.difference(&changed).difference(&c.removed);
    }
    next.retain(|e| !e.fields.is_empty());
    let changed = object != *live;
    if !changed {
        // A no-op apply keeps the manager's previous time.
        if let (Some(prev), Some(mine)) = (
            managers.iter().find(|e| e.same_manager(&me)),
            next.iter_mut().find(|e| e.same_manager(&me)),
        ) {
            mine.time = prev.time.clone();
        }
    }
    *managers = next;
    Ok(Applied { object, changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::apply_schema::ApplySchema;
    use crate::registry::apply::fieldset::set_of;
    use std::sync::Arc;

    fn schema() -> ApplySchema {
        ApplySchema::Structural(Arc::new(
            sluice_apiextensions::CustomResourceSchema::from_json(&json!({
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"},
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}
                }}, "status": {"type": "object", "properties": {"s": {"type": "string"}}}}
            }))
            .unwrap(),
        ))
    }

    fn writer(manager: &str, t: &str) -> Writer {
        Writer {
            manager: manager.into(),
            api_version: "example.com/v1".into(),
            subresource: String::new(),
            now: format!("2024-01-01T00:00:0{t}Z"),
            ignored: IgnoredFields::Status,
        }
    }

    fn owned<'a>(m: &'a Managers, manager: &str) -> Option<&'a Set> {
        m.iter().find(|e| e.manager == manager).map(|e| &e.fields)
    }

    #[test]
    fn apply_owns_the_config_and_removes_what_it_stopped_applying() {
        let s = schema();
        let mut m = Managers::new();
        let live = json!({"spec": {}});
        let config = json!({"spec": {"a": "1", "b": "2"}});
        let out = apply(&mut m, &live, &config, s.root(), &writer("x", "1"), false).unwrap();
        assert_eq!(out.object, json!({"spec": {"a": "1", "b": "2"}}));
        assert_eq!(owned(&m, "x"), Some(&set_of(&["spec.a", "spec.b"])));
        // Another manager takes c by update; x stops applying b.
        update(
            &mut m,
            &out.object,
            &json!({"spec": {"a": "1", "b": "2", "c": "3"}}),
            s.root(),
            &writer("y", "2"),
        );
        let live = json!({"spec": {"a": "1", "b": "2", "c": "3"}});
        let out = apply(
            &mut m,
            &live,
            &json!({"spec": {"a": "1"}}),
            s.root(),
            &writer("x", "3"),
            false,
        )
        .unwrap();
        assert_eq!(out.object, json!({"spec": {"a": "1", "c": "3"}}));
        assert_eq!(owned(&m, "x"), Some(&set_of(&["spec.a"])));
        assert_eq!(owned(&m, "y"), Some(&set_of(&["spec.c"])));
    }

    #[test]
    fn a_field_another_manager_owns_stays_when_an_applier_drops_it() {
        let s = schema();
        let mut m = Managers::new();
        let cfg = json!({"spec": {"a": "1", "b": "2"}});
        let out = apply(&mut m, &json!({}), &cfg, s.root(), &writer("x", "1"), false).unwrap();
        let out2 = apply(
            &mut m,
            &out.object,
            &json!({"spec": {"b": "2"}}),
            s.root(),
            &writer("z", "2"),
            false,
        )
        .unwrap();
        assert_eq!(out2.object, out.object);
        let out3 = apply(
            &mut m,
            &out2.object,
            &json!({"spec": {"a": "1"}}),
            s.root(),
            &writer("x", "3"),
            false,
        )
        .unwrap();
        assert_eq!(out3.object, json!({"spec": {"a": "1", "b": "2"}}), "z still owns b");
        let out4 = apply(
            &mut m,
            &out3.object,
            &json!({"spec": {"a": "1"}, "kind": "K"}),
            s.root(),
            &writer("z", "4"),
            false,
        )
        .unwrap();
        assert_eq!(
            out4.object,
            json!({"spec": {"a": "1"}, "kind": "K"}),
            "nobody owns b now"
        );
    }

    #[test]
    fn conflicts_unless_forced() {
        let s = schema();
        let mut m = Managers::new();
        let live = apply(
            &mut m,
            &json!({}),
            &json!({"spec": {"a": "1", "b": "2"}}),
            s.root(),
            &writer("x", "1"),
            false,
        )
        .unwrap()
        .object;
        // Same value: shared, no conflict.
        apply(
            &mut m.clone(),
            &live,
            &json!({"spec": {"a": "1"}}),
            s.root(),
            &writer("y", "2"),
            false,
        )
        .unwrap();
        let err = apply(
            &mut m.clone(),
            &live,
            &json!({"spec": {"a": "9", "b": "8"}}),
            s.root(),
            &writer("y", "2"),
            false,
        )
        .unwrap_err()
        .unwrap();
        let paths: Vec<String> = err
            .iter()
            .map(|c| crate::registry::apply::fieldset::path_string(&c.path))
            .collect();
        assert_eq!(paths, [".spec.a", ".spec.b"]);
        assert!(err.iter().all(|c| c.manager.manager == "x"));
        let out = apply(
            &mut m,
            &live,
            &json!({"spec": {"a": "9"}}),
            s.root(),
            &writer("y", "2"),
            true,
        )
        .unwrap();
        assert_eq!(out.object["spec"]["a"], "9");
        assert_eq!(owned(&m, "x"), Some(&set_of(&["spec.b"])));
        assert_eq!(owned(&m, "y"), Some(&set_of(&["spec.a"])));
    }

    #[test]
    fn updates_take_what_they_change_and_ignore_reset_fields() {
        let s = schema();
        let mut m = Managers::new();
        let old = json!({"spec": {"a": "1"}});
        update(&mut m, &json!({}), &old, s.root(), &writer("create", "1"));
        assert_eq!(owned(&m, "create"), Some(&set_of(&["spec", "spec.a"])));
        let new = json!({"spec": {"a": "2", "items": [{"name": "p", "v": 1}]}, "status": {"s": "x"}});
        update(&mut m, &old, &new, s.root(), &writer("edit", "2"));
        assert_eq!(owned(&m, "create"), Some(&set_of(&["spec"])));
        assert_eq!(
            owned(&m, "edit").unwrap().to_fields_v1(),
            json!({"f:spec": {"f:a": {}, "f:items": {".": {}, "k:{\"name\":\"p\"}": {".": {}, "f:name": {}, "f:v": {}}}}})
        );
        // Removing a field removes it from every owner; empty sets go.
        update(
            &mut m,
            &new,
            &json!({"spec": {"a": "2"}}),
            s.root(),
            &writer("other", "3"),
        );
        assert_eq!(owned(&m, "edit"), Some(&set_of(&["spec.a"])));
        assert!(owned(&m, "other").is_none());
    }

    #[test]
    fn encoding_orders_entries_and_round_trips() {
        let s = schema();
        let mut m = Managers::new();
        update(
            &mut m,
            &json!({}),
            &json!({"spec": {"a": "1"}}),
            s.root(),
            &writer("b-updater", "2"),
        );
        update(
            &mut m,
            &json!({"spec": {"a": "1"}}),
            &json!({"spec": {"a": "1", "b": "1"}}),
            s.root(),
            &writer("a-updater", "3"),
        );
        apply(
            &mut m,
            &json!({"spec": {"a": "1", "b": "1"}}),
            &json!({"spec": {"c": "1"}}),
            s.root(),
            &writer("z", "4"),
            false,
        )
        .unwrap();
        let enc = encode(&m).unwrap();
        let names: Vec<&str> = enc
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["z", "b-updater", "a-updater"]);
        assert_eq!(
            enc[0],
            json!({"manager": "z", "operation": "Apply", "apiVersion": "example.com/v1", "time": "2024-01-01T00:00:04Z",
                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:c": {}}}})
        );
        let back = decode(Some(&enc)).unwrap();
        assert_eq!(back.len(), m.len());
        assert!(m.iter().all(|e| back.contains(e)));
        assert!(is_reset(&json!([])) && is_reset(&json!([{}])) && !is_reset(&json!([{"manager": "x"}])));
        for bad in [
            json!([{"manager": "x", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "x", "operation": "Update", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
            json!([{"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"q:x": {}}}]),
        ] {
            assert!(decode(Some(&bad)).is_err(), "{bad}");
        }
    }

    /// Writing an update's managers with its untouched entries taken from
    /// the stored `managedFields` gives what writing them all anew gives:
    /// through writes that touch nobody else, take fields from another
    /// manager, empty one, come from a subresource, and past the cap on
    /// update managers.
    #[test]
    fn entries_taken_as_they_were_are_what_writing_them_anew_gives() {
        let s = schema();
        let mut stored: Option<Value> = None;
        let mut obj = json!({});
        let mut steps: Vec<(String, Value)> = vec![
            ("create".into(), json!({"spec": {"a": "1", "b": "1"}})),
            ("scaler".into(), json!({"spec": {"a": "1", "b": "1", "c": "1"}})),
            ("scaler".into(), json!({"spec": {"a": "1", "b": "1", "c": "2"}})),
            ("other".into(), json!({"spec": {"a": "2", "b": "1", "c": "2"}})),
            (
                "status".into(),
                json!({"spec": {"a": "2", "b": "1", "c": "2"}, "status": {"s": "x"}}),
            ),
            (
                "other".into(),
                json!({"spec": {"a": "3", "b": "2", "c": "2"}, "status": {"s": "x"}}),
            ),
            (
                "items".into(),
                json!({"spec": {"a": "3", "b": "2", "c": "2", "items": [{"name": "p", "v": 1}]}}),
            ),
        ];
        for i in 0..12 {
            let mut next = steps.last().unwrap().1.clone();
            next["spec"]["items"] = json!([{"name": "p", "v": 1}, {"name": format!("q{i}"), "v": i}]);
            steps.push((format!("m{i:02}"), next));
        }
        let mut reused = 0;
        for (n, (manager, next)) in steps.into_iter().enumerate() {
            let mut w = writer(&manager, "0");
            w.now = format!("2024-01-01T00:{n:02}:00Z");
            if manager == "status" {
                w.subresource = "status".into();
                w.ignored = IgnoredFields::AllButStatus;
            }
            let mut m = decode(stored.as_ref()).unwrap();
            let untouched = update(&mut m, &obj, &next, s.root(), &w);
            assert_eq!(untouched.len(), m.len(), "step {n}");
            reused += untouched.iter().filter(|u| **u).count();
            let anew = encode(&m);
            assert_eq!(
                encode_reusing(&m, &untouched, stored.clone()),
                anew,
                "step {n} ({manager})"
            );
            stored = anew;
            obj = next;
        }
        assert!(reused >= 10, "entries were taken as they were ({reused})");
    }

    #[test]
    fn at_most_ten_update_managers() {
        let s = schema();
        let mut m = Managers::new();
        let mut obj = json!({"spec": {}});
        for i in 0..12 {
            let mut next = obj.clone();
            next["spec"][format!("f{i}")] = json!("x");
            let mut w = writer(&format!("m{i:02}"), "0");
            w.now = format!("2024-01-01T00:00:{i:02}Z");
            update(&mut m, &obj, &next, Ty::Untyped, &w);
            obj = next;
        }
        let _ = s;
        assert_eq!(
            m.iter().filter(|e| e.operation == Operation::Update).count(),
            MAX_UPDATE_MANAGERS
        );
        let ancient = m.iter().find(|e| e.manager == ANCIENT).expect("ancient-changes");
        assert!(ancient
            .fields
            .has(&[PathElement::Field("spec".into()), PathElement::Field("f0".into())]));
    }
}
