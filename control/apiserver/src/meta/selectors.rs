//! Label and field selectors.
//!
//! Parses the `labelSelector` query syntax (`=`, `==`, `!=`, `in`, `notin`,
//! `key`, `!key`) and `fieldSelector` (`=`, `==`, `!=` on dotted field
//! paths), and matches them against stored JSON objects. Also evaluates a
//! `metav1.LabelSelector` object (matchLabels/matchExpressions).

use serde_json::Value;

use crate::kinds::Resource;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `key=value` / `key==value`
    Equals(String, String),
    /// `key!=value` (also matches when the key is absent)
    NotEquals(String, String),
    /// `key in (a,b)`
    In(String, Vec<String>),
    /// `key notin (a,b)` (also matches when the key is absent)
    NotIn(String, Vec<String>),
    /// `key`
    Exists(String),
    /// `!key`
    DoesNotExist(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    if !rest.starts_with('(') || !rest.ends_with(')') {
        return Err(format!("expected a parenthesised set of values, found {rest:?}"));
    }
    Ok(rest[1..rest.len() - 1]
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parse the query-string syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self(reqs));
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty requirement in selector {s:?}"));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(idx) = part.find(" notin ").or_else(|| part.find(" notin(")) {
                Requirement::NotIn(part[..idx].trim().into(), parse_set(&part[idx + 6..])?)
            } else if let Some(idx) = part.find(" in ").or_else(|| part.find(" in(")) {
                Requirement::In(part[..idx].trim().into(), parse_set(&part[idx + 3..])?)
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(part.to_string())
            } else {
                return Err(format!("unable to parse requirement {part:?}"));
            };
            let key = match &req {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::DoesNotExist(k) => k,
            };
            if let Err(e) = crate::meta::names::check_label_key(key) {
                return Err(format!("invalid label key {key:?}: {e}"));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Build from a `metav1.LabelSelector` JSON object.
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
                reqs.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                });
            }
        }
        Ok(Self(reqs))
    }

    /// Whether this selects nothing-in-particular (matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Match an object's labels.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::DoesNotExist(k) => labels.get(k).is_none(),
        })
    }

    /// Match an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches_labels(&labels_of(obj))
    }
}

/// `metadata.labels` as a map.
pub fn labels_of(obj: &Value) -> Labels {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Strings kept one after another in one buffer, with where each ends: one
/// allocation for the text and one for the ends, where a `String` each
/// costs an allocation and 24 bytes. The watch cache keeps an object's
/// labels ([`Labels`]) and selectable fields this way beside every version
/// it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedStrs {
    text: Box<str>,
    /// Where each string ends in `text`.
    ends: Box<[u32]>,
}

impl PackedStrs {
    /// The strings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let s = self.text.get(start..end as usize).unwrap_or_default();
            start = end as usize;
            s
        })
    }

    /// The `i`-th string.
    pub fn get(&self, i: usize) -> Option<&str> {
        let start = match i {
            0 => 0,
            _ => *self.ends.get(i - 1)? as usize,
        };
        self.text.get(start..*self.ends.get(i)? as usize)
    }
}

impl<S: AsRef<str>> FromIterator<S> for PackedStrs {
    fn from_iter<I: IntoIterator<Item = S>>(strs: I) -> Self {
        let strs = strs.into_iter();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(strs.size_hint().0);
        for s in strs {
            text.push_str(s.as_ref());
            // What is packed is a few strings of an object under etcd's
            // 1.5 MiB limit on values: far below u32's range.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        PackedStrs {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

/// An object's `metadata.labels` as label selectors read them: every key
/// and value in one buffer ([`PackedStrs`]), each key followed by its
/// value, in key order.
///
/// The watch cache keeps one beside every object it holds (shared by the
/// versions whose labels did not change). As a `BTreeMap<String, String>`
/// a pod's two labels took a whole B-tree leaf (about 540 bytes) and four
/// strings: about 16 MB of the API server's heap at 14,000 pods
/// (heaptrack, 5,000-node scheduler benchmark). Objects carry a few labels,
/// so a lookup scans them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(PackedStrs);

impl Labels {
    /// The labels as (key, value), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut strs = self.0.iter();
        std::iter::from_fn(move || Some((strs.next()?, strs.next()?)))
    }

    /// The value of label `key`, if the object has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> Self {
        let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        pairs.sort_unstable();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
    }
}

/// A parsed field selector: (field, equals?, value) terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

/// Split a selector into terms at unescaped commas (`fields.splitTerms`).
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if in_slash => in_slash = false,
            '\\' => in_slash = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Split a term at its first operator (`!=`, `==`, `=`, earliest position wins).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if rest.starts_with("!=") {
            return Some((&term[..i], false, &term[i + 2..]));
        }
        if rest.starts_with("==") {
            return Some((&term[..i], true, &term[i + 2..]));
        }
        if rest.starts_with('=') {
            return Some((&term[..i], true, &term[i + 1..]));
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` are the only escapes, and
/// `,`/`=` must be escaped.
fn unescape_value(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut in_slash = false;
    for c in v.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!("invalid field selector: invalid escape sequence: \\{c}"));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v: its code point.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".into());
    }
    Ok(out)
}

impl FieldSelector {
    /// Parse a field selector for resource `r` as Kubernetes does: the
    /// syntax of `fields.ParseSelector` (terms sorted, values unescaped, no
    /// trimming), then each field checked against the kind's field labels
    /// (`r.field_labels`), with the kind's error text.
    pub fn parse(s: &str, r: &Resource) -> Result<Self, String> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut reqs = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, eq, value)) = split_term(part) else {
                return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
            };
            reqs.push((field.to_string(), eq, unescape_value(value)?));
        }
        for (field, _, _) in &mut reqs {
            *field = convert_field_label(r, field)?;
        }
        Ok(Self(reqs))
    }

    /// Match an object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, value)| {
            let actual = field_value(obj, field);
            (actual == *value) == *eq
        })
    }

    /// The value required for `metadata.name`, if the selector pins it.
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, eq, _)| f == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }
}

/// The object a list or watch's raw field selector names, as Kubernetes'
/// RequestInfo finds it: a term `metadata.name=<name>` (or `==`) in a
/// selector that parses, whose value is a valid path segment (not `.` or
/// `..`, no `/` or `%`). Authorization then sees that name, so a rule for
/// one named object (the Node authorizer's Secrets and ConfigMaps, RBAC's
/// `resourceNames`) allows listing and watching just it.
pub fn named_by(selector: &str) -> Option<String> {
    let mut name = None;
    for part in split_terms(selector).into_iter().filter(|p| !p.is_empty()) {
        let (field, eq, value) = split_term(part)?;
        let value = unescape_value(value).ok()?;
        if field == "metadata.name" && eq && name.is_none() {
            name = Some(value);
        }
    }
    name.filter(|n| !matches!(n.as_str(), "." | "..") && !n.contains(['/', '%']))
}

/// `Scheme.ConvertFieldLabel`: the kind's own conversion when it has one,
/// else `DefaultMetaV1FieldSelectorConversion`.
fn convert_field_label(r: &Resource, field: &str) -> Result<String, String> {
    match r.field_labels {
        Some(labels) => {
            if let Some(alias) = crate::kinds::builtin(r.group, r.kind).and_then(|k| k.field_label_alias(field)) {
                return Ok(alias.into());
            }
            if labels.contains(&field) {
                Ok(field.to_string())
            } else {
                Err(format!("field label not supported: {field}"))
            }
        }
        None if field == "metadata.name" || field == "metadata.namespace" => Ok(field.to_string()),
        None => Err(format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            crate::meta::go::go_quote(field)
        )),
    }
}

/// The value of a selectable field as Kubernetes' field sets compute it
/// ("" when absent; booleans and counts formatted as Go does): the kind's
/// own computation ([`crate::kinds::Strategy::field_value`]) when it has
/// one, else the value at the dotted path.
pub fn field_value(obj: &Value, path: &str) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let strategy = match api_version.rsplit_once('/') {
        _ if api_version.is_empty() => crate::kinds::BUILTIN
            .iter()
            .copied()
            .find(|k| k.resource().kind == kind),
        Some((group, _)) => crate::kinds::builtin(group, kind),
        None => crate::kinds::builtin("", kind),
    };
    if let Some(v) = strategy.and_then(|k| k.field_value(obj, path)) {
        return v;
    }
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A boolean field at the dotted `path` of `obj`, `false` when absent, as
/// Go formats it (selectable fields of Go `bool`s).
pub fn bool_field(obj: &Value, path: &str) -> String {
    let p = format!("/{}", path.replace('.', "/"));
    obj.pointer(&p).and_then(Value::as_bool).unwrap_or(false).to_string()
}

/// A `LabelSelector` object as the selector string Kubernetes prints
/// (`a=b,c in (d,e),!f`), as in a Scale's `status.selector`.
pub fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;
    use serde_json::json;

    /// Packed strings read back as written, empty and non-ASCII ones
    /// included; an index past the last is none.
    #[test]
    fn packed_strings_read_back_as_written() {
        let strs: PackedStrs = ["", "wéb", "", "node-1"].into_iter().collect();
        assert_eq!(strs.iter().collect::<Vec<_>>(), ["", "wéb", "", "node-1"]);
        assert_eq!(
            (strs.get(0), strs.get(1), strs.get(3), strs.get(4)),
            (Some(""), Some("wéb"), Some("node-1"), None)
        );
        assert_eq!(PackedStrs::default().get(0), None);
    }

    /// An object's labels read back as they were written, in key order
    /// whatever the object's order, and every requirement reads them.
    #[test]
    fn labels_are_kept_in_one_string_and_read_by_key() {
        let obj =
            json!({"metadata": {"labels": {"tier": "front", "app": "web", "empty": "", "kubernetes.io/os": "linux"}}});
        let labels = labels_of(&obj);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [
                ("app", "web"),
                ("empty", ""),
                ("kubernetes.io/os", "linux"),
                ("tier", "front")
            ]
        );
        assert_eq!(labels.get("tier"), Some("front"));
        assert_eq!(labels.get("empty"), Some(""));
        assert_eq!(labels.get("ap"), None);
        assert_eq!(labels.get("webtier"), None);
        let reordered = labels_of(
            &json!({"metadata": {"labels": {"kubernetes.io/os": "linux", "app": "web", "tier": "front", "empty": ""}}}),
        );
        assert_eq!(labels, reordered);
        assert_eq!(labels_of(&json!({"metadata": {}})), Labels::default());
        assert_eq!(labels_of(&json!({"metadata": {}})).iter().count(), 0);
        for (selector, want) in [
            ("app=web,tier!=back", true),
            ("app in (db,web),empty", true),
            ("app notin (web)", false),
            ("!tier", false),
            ("!missing,empty=", true),
            ("kubernetes.io/os=linux", true),
        ] {
            let sel = LabelSelector::parse(selector).expect("selector");
            assert_eq!(sel.matches_labels(&labels), want, "{selector}");
            assert_eq!(sel.matches(&obj), want, "{selector}");
        }
    }

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selector_operators() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("missing notin (db)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("tier in (front),!missing,app", true),
            ("", true),
        ] {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&p), want, "{sel}");
        }
    }

    #[test]
    fn label_selector_rejects_garbage() {
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse("bad key!x=1").is_err());
    }

    #[test]
    fn object_selector() {
        let s = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
        }))
        .unwrap();
        assert!(s.matches(&pod(json!({"app": "web", "tier": "front"}))));
        assert!(!s.matches(&pod(json!({"app": "web"}))));
    }

    #[test]
    fn field_selectors() {
        let pods = by_kind("", "Pod").unwrap();
        let p = pod(json!({}));
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed", pods).unwrap();
        assert!(s.matches(&p));
        let s = FieldSelector::parse("spec.nodeName=", pods).unwrap();
        assert!(!s.matches(&p));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", pods).unwrap_err(),
            "field label not supported: spec.foo"
        );
        let events = by_kind("", "Event").unwrap();
        let ev = json!({"kind": "Event", "involvedObject": {"name": "x", "kind": "Pod", "uid": "u"}, "reportingComponent": "kubelet"});
        let s = FieldSelector::parse("involvedObject.name=x,involvedObject.kind=Pod", events).unwrap();
        assert!(s.matches(&ev));
        // source falls back to reportingComponent.
        assert!(
            FieldSelector::parse("source=kubelet,reportingComponent==kubelet", events)
                .unwrap()
                .matches(&ev)
        );
    }

    #[test]
    fn field_labels_per_kind() {
        let ok = |kind: (&str, &str), sel: &str| FieldSelector::parse(sel, by_kind(kind.0, kind.1).unwrap());
        for (kind, sel) in [
            (("", "Node"), "spec.unschedulable=true"),
            (("", "Node"), "metadata.name=n"),
            (
                ("", "Pod"),
                "spec.schedulerName=s,spec.serviceAccountName=a,spec.restartPolicy=Always",
            ),
            (
                ("", "Pod"),
                "status.podIP=1.2.3.4,status.nominatedNodeName=n,spec.hostNetwork=false",
            ),
            (("", "Secret"), "type=Opaque,metadata.namespace=d"),
            (("", "Namespace"), "status.phase=Active"),
            (("", "Service"), "spec.type=ClusterIP,spec.clusterIP=None"),
            (("", "Event"), "reason=x,type=Normal,source=s,metadata.namespace=d"),
            (("", "ConfigMap"), "metadata.name=a,metadata.namespace=b"),
            (("apps", "Deployment"), "metadata.name=a"),
        ] {
            assert!(ok(kind, sel).is_ok(), "{kind:?} {sel}: {:?}", ok(kind, sel));
        }
        assert_eq!(
            ok(("", "Node"), "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            ok(("", "Namespace"), "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            ok(("", "ConfigMap"), "data.x=1").unwrap_err(),
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(ok(("", "Pod"), "spec.host=n").unwrap().0[0].0, "spec.nodeName");
    }

    #[test]
    fn a_field_selector_pinning_the_name_names_the_object() {
        assert_eq!(
            named_by("metadata.name=kube-root-ca.crt").as_deref(),
            Some("kube-root-ca.crt")
        );
        assert_eq!(named_by("metadata.namespace=a,metadata.name==b").as_deref(), Some("b"));
        assert_eq!(named_by("metadata.name=a\\,b").as_deref(), Some("a,b"));
        for none in [
            "",
            "metadata.name!=a",
            "metadata.namespace=a",
            "metadata.name=..",
            "metadata.name=a/b",
            "metadata.name=a%2F",
            "metadata.name=a,=b=c",
            "metadata.name",
        ] {
            assert_eq!(named_by(none), None, "{none:?}");
        }
    }

    #[test]
    fn field_selector_syntax_is_kubernetes() {
        let pods = by_kind("", "Pod").unwrap();
        // The earliest operator wins; values are unescaped, nothing is trimmed.
        let s = FieldSelector::parse("metadata.name!=a\\=b", pods).unwrap();
        assert_eq!(s.0, vec![("metadata.name".to_string(), false, "a=b".to_string())]);
        assert_eq!(
            FieldSelector::parse("metadata.name=a!=b", pods).unwrap_err(),
            "invalid field selector: unescaped character in value: 61"
        );
        let s = FieldSelector::parse("metadata.name=a\\,b", pods).unwrap();
        assert_eq!(s.0[0].2, "a,b");
        assert_eq!(
            FieldSelector::parse("metadata.name", pods).unwrap_err(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a\\x", pods).unwrap_err(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name==a=b", pods).unwrap_err(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName = n1", pods).unwrap_err(),
            "field label not supported: spec.nodeName "
        );
        assert!(FieldSelector::parse(",,", pods).unwrap().0.is_empty());
    }

    #[test]
    fn node_and_pod_booleans_default_to_false() {
        let nodes = by_kind("", "Node").unwrap();
        let node = json!({"kind": "Node", "metadata": {"name": "n"}, "spec": {}});
        let cordoned = json!({"kind": "Node", "metadata": {"name": "c"}, "spec": {"unschedulable": true}});
        for (sel, plain, cord) in [
            ("spec.unschedulable=false", true, false),
            ("spec.unschedulable==true", false, true),
            ("spec.unschedulable!=true", true, false),
        ] {
            let s = FieldSelector::parse(sel, nodes).unwrap();
            assert_eq!((s.matches(&node), s.matches(&cordoned)), (plain, cord), "{sel}");
        }
        let pods = by_kind("", "Pod").unwrap();
        let p = json!({"kind": "Pod", "spec": {}, "status": {"podIPs": [{"ip": "10.0.0.2"}], "podIP": "10.0.0.2"}});
        assert!(
            FieldSelector::parse("spec.hostNetwork=false,status.podIP=10.0.0.2", pods)
                .unwrap()
                .matches(&p)
        );
    }
}
