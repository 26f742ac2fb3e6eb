//! Sets of field paths, as structured-merge-diff's `fieldpath.Set`, and
//! their wire form `FieldsV1` (`metadata.managedFields[].fieldsV1`).
//!
//! A path is a list of [`PathElement`]s: a field name (`f:spec`), the key
//! of a list-map item (`k:{"name":"http"}`), a set item's value
//! (`v:"example.com"`) or a list index (`i:0`). A set is a tree: at each
//! node, the elements that are themselves in the set (*members*, written
//! `".": {}` when the node also has children) and the children below.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of an object.
    Field(String),
    /// A list-map item, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// A set item, by its value.
    Value(Value),
    /// A list item by position (lists without keys that are not atomic).
    Index(i64),
}

/// A field path from the object's root.
pub type Path = Vec<PathElement>;

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// An order on values (numbers numerically, strings lexically), so sets
/// serialize in a stable order.
fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let c = cmp_value(i, j);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(_), Value::Object(_)) => a.to_string().cmp(&b.to_string()),
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::*;
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Key(a), Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| cmp_value(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value(a), Value(b)) => cmp_value(a, b),
            (Index(a), Index(b)) => a.cmp(b),
            _ => self.kind_rank().cmp(&other.kind_rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PathElement {
    fn kind_rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// A list-map key from its fields (sorted by name, as Kubernetes keeps them).
    pub fn key(mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The FieldsV1 spelling: `f:name`, `k:{"name":"http"}`, `v:"x"`, `i:0`.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(fields) => {
                let m: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse the FieldsV1 spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, rest) = s
            .split_once(':')
            .filter(|(k, _)| k.len() == 1)
            .ok_or_else(|| format!("invalid path element {s:?}"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(m)) => Ok(PathElement::key(m.into_iter().collect())),
                _ => Err(format!("invalid key in path element {s:?}")),
            },
            "v" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|_| format!("invalid value in path element {s:?}")),
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index in path element {s:?}")),
            _ => Err(format!("unknown path element type in {s:?}")),
        }
    }
}

/// A scalar as Go's `value.ToString` prints it in paths (strings quoted).
fn show_value(v: &Value) -> String {
    v.to_string()
}

impl std::fmt::Display for PathElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", show_value(v))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", show_value(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.ports[port=80,protocol="TCP"].targetPort`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no path is in the set.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Add `path` (the empty path is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is in the set.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths below `pe` (structured-merge-diff's `WithPrefix`).
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe).filter(|c| !c.is_empty())
    }

    /// The set's paths that start with `pe` (`pe` itself included).
    pub fn only(mut self, pe: PathElement) -> Set {
        let mut out = Set::new();
        if let Some(c) = self.children.remove(&pe).filter(|c| !c.is_empty()) {
            out.children.insert(pe.clone(), c);
        }
        if self.members.contains(&pe) {
            out.members.insert(pe);
        }
        out
    }

    /// Whether `pe` itself is a member here.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    fn pruned(mut self) -> Self {
        self.prune();
        self
    }

    fn prune(&mut self) {
        self.children.retain(|_, c| !c.is_empty());
    }

    /// Paths in either set.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.merge(other.clone());
        out
    }

    /// Add every path of `other` ([`Set::union`] in place, taking `other`'s
    /// elements instead of copying them).
    pub fn merge(&mut self, other: Set) {
        self.members.extend(other.members);
        for (pe, c) in other.children {
            match self.children.entry(pe) {
                std::collections::btree_map::Entry::Occupied(mut mine) => mine.get_mut().merge(c),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(c);
                }
            }
        }
        self.prune();
    }

    /// Paths of `self` not in `other` (members only: a member of `other`
    /// does not remove what is below it; see [`Set::recursive_difference`]).
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// Remove the paths of `other` ([`Set::difference`] in place). Returns
    /// whether any was there.
    pub fn subtract(&mut self, other: &Set) -> bool {
        let members = self.members.len();
        if !other.members.is_empty() {
            self.members.retain(|pe| !other.members.contains(pe));
        }
        let mut removed = self.members.len() != members;
        for (pe, c) in self.children.iter_mut() {
            if let Some(o) = other.children.get(pe) {
                removed |= c.subtract(o);
            }
        }
        self.prune();
        removed
    }

    /// Paths of `self` that are neither in `other` nor below a member of it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.recursive_subtract(other);
        out
    }

    /// Remove the paths of `other` and everything below its members
    /// ([`Set::recursive_difference`] in place).
    pub fn recursive_subtract(&mut self, other: &Set) {
        if !other.members.is_empty() {
            self.members.retain(|pe| !other.members.contains(pe));
            self.children.retain(|pe, _| !other.members.contains(pe));
        }
        for (pe, c) in self.children.iter_mut() {
            if let Some(o) = other.children.get(pe) {
                c.recursive_subtract(o);
            }
        }
        self.prune();
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| other.children.get(pe).map(|o| (pe.clone(), c.intersection(o))))
            .collect();
        Set { members, children }.pruned()
    }

    /// The set with every field that has paths below it a member too
    /// (`EnsureNamedFieldsAreMembers`): owning `.spec.x.y` counts as owning
    /// `.spec.x` when deciding what an applier may remove.
    pub fn with_fields_as_members(&self) -> Set {
        let mut out = Set::new();
        out.members = self.members.clone();
        for (pe, c) in &self.children {
            if c.is_empty() {
                continue;
            }
            if matches!(pe, PathElement::Field(_)) {
                out.members.insert(pe.clone());
            }
            out.children.insert(pe.clone(), c.with_fields_as_members());
        }
        out
    }

    /// Every path in the set, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        // Members and children interleaved in element order, as Go iterates.
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(pe) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut m = Map::new();
        if include_self && !self.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.iter().filter(|(_, c)| !c.is_empty()).map(|(k, _)| k));
        for pe in keys {
            let member = self.members.contains(pe);
            let body = match self.children.get(pe).filter(|c| !c.is_empty()) {
                Some(c) => c.emit(member),
                None => Map::new(),
            };
            m.insert(pe.serialize(), Value::Object(body));
        }
        m
    }

    /// Parse `fieldsV1`.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let m = v.as_object().ok_or("fieldsV1 must be an object")?;
        let mut set = Set::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::parse(k)?;
            let c = child.as_object().ok_or_else(|| format!("{k}: expected an object"))?;
            if c.is_empty() || c.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let sub = Set::from_fields_v1(child)?;
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok(set)
    }
}

/// `Set` from paths written as `.`-separated field names, for tests.
#[cfg(test)]
pub fn set_of(paths: &[&str]) -> Set {
    let mut s = Set::new();
    for p in paths {
        let path: Path = p
            .split('.')
            .map(|part| match part.strip_prefix('#') {
                Some(json) => PathElement::parse(json).expect("element"),
                None => PathElement::Field(part.to_string()),
            })
            .collect();
        s.insert(&path);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_with_self_markers() {
        let cases = [
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}),
            json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}}}),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}}),
            json!({"f:spec": {"f:args": {}}, "f:x": {"i:0": {}}}),
        ];
        for c in cases {
            let s = Set::from_fields_v1(&c).unwrap();
            assert_eq!(s.to_fields_v1(), c, "{c}");
        }
    }

    #[test]
    fn keys_sort_by_value_not_by_text() {
        let mut s = Set::new();
        for port in [8080, 80, 443] {
            s.insert(&[
                PathElement::Field("ports".into()),
                PathElement::key(vec![("port".into(), json!(port))]),
            ]);
        }
        let out = s.to_fields_v1();
        let keys: Vec<&String> = out["f:ports"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["k:{\"port\":80}", "k:{\"port\":443}", "k:{\"port\":8080}"]);
    }

    /// Sets of up to a dozen paths, up to three deep, over three names (so
    /// that sets share prefixes and members have paths below them).
    fn arbitrary_set() -> impl proptest::strategy::Strategy<Value = Set> {
        use proptest::prelude::*;
        proptest::collection::vec(proptest::collection::vec(0..3u8, 1..4), 0..12).prop_map(|paths| {
            let mut s = Set::new();
            for p in paths {
                let path: Path = p.iter().map(|i| PathElement::Field(format!("f{i}"))).collect();
                s.insert(&path);
            }
            s
        })
    }

    proptest::proptest! {
        /// The set operations (done in place, the copying ones through
        /// them) agree with the same operations on the sets' paths.
        #[test]
        fn set_algebra_agrees_with_the_paths(a in arbitrary_set(), b in arbitrary_set()) {
            let pa: BTreeSet<Path> = a.paths().into_iter().collect();
            let pb: BTreeSet<Path> = b.paths().into_iter().collect();
            let paths = |s: &Set| s.paths().into_iter().collect::<BTreeSet<Path>>();
            proptest::prop_assert_eq!(paths(&a.union(&b)), pa.union(&pb).cloned().collect());
            proptest::prop_assert_eq!(paths(&a.difference(&b)), pa.difference(&pb).cloned().collect());
            proptest::prop_assert_eq!(paths(&a.intersection(&b)), pa.intersection(&pb).cloned().collect());
            let below_b = |p: &Path| (1..p.len()).any(|n| pb.contains(&p[..n]));
            proptest::prop_assert_eq!(
                paths(&a.recursive_difference(&b)),
                pa.iter().filter(|p| !pb.contains(*p) && !below_b(p)).cloned().collect()
            );
            let first = PathElement::Field("f0".into());
            proptest::prop_assert_eq!(
                paths(&a.clone().only(first.clone())),
                pa.iter().filter(|p| p[0] == first).cloned().collect()
            );
            // Emptiness follows the paths, so a pruned-away branch leaves nothing.
            proptest::prop_assert_eq!(a.difference(&b).is_empty(), pa.difference(&pb).next().is_none());
        }
    }

    #[test]
    fn set_algebra() {
        let a = set_of(&["spec.a", "spec.b.c", "spec.b.d"]);
        let b = set_of(&["spec.b.c", "spec.e"]);
        assert_eq!(a.union(&b), set_of(&["spec.a", "spec.b.c", "spec.b.d", "spec.e"]));
        assert_eq!(a.difference(&b), set_of(&["spec.a", "spec.b.d"]));
        assert_eq!(a.intersection(&b), set_of(&["spec.b.c"]));
        assert!(a.difference(&a).is_empty());
        // A member does not remove what is below it, except recursively.
        let parent = set_of(&["spec.b"]);
        assert_eq!(a.difference(&parent), a);
        assert_eq!(a.recursive_difference(&parent), set_of(&["spec.a"]));
        assert_eq!(
            set_of(&["spec.b.c"]).with_fields_as_members(),
            set_of(&["spec", "spec.b", "spec.b.c"])
        );
    }

    #[test]
    fn paths_print_as_kubernetes_does() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("ports".into()),
            PathElement::key(vec![("protocol".into(), json!("TCP")), ("port".into(), json!(80))]),
            PathElement::Field("targetPort".into()),
        ];
        assert_eq!(path_string(&p), ".spec.ports[port=80,protocol=\"TCP\"].targetPort");
        assert_eq!(
            path_string(&[PathElement::Field("f".into()), PathElement::Value(json!("a"))]),
            ".f[=\"a\"]"
        );
        assert_eq!(
            path_string(&[PathElement::Field("f".into()), PathElement::Index(2)]),
            ".f[2]"
        );
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:notjson": {}})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }
}
