//! Helpers over a whole `CustomResourceDefinition`: versions, schemas, printer columns,
//! names/established conditions and the scale subresource.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionCondition,
    CustomResourceDefinitionNames, CustomResourceDefinitionVersion,
};
use serde_json::Value;

use crate::field::{FieldError, FieldPath};

/// The version stored in etcd (the one with `storage: true`).
pub fn storage_version(crd: &CustomResourceDefinition) -> Option<&str> {
    crd.spec.versions.iter().find(|v| v.storage).map(|v| v.name.as_str())
}

/// The names of the served versions, in the CRD's order.
pub fn served_versions(crd: &CustomResourceDefinition) -> Vec<&str> {
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .map(|v| v.name.as_str())
        .collect()
}

/// A version by name.
pub fn version<'a>(crd: &'a CustomResourceDefinition, name: &str) -> Option<&'a CustomResourceDefinitionVersion> {
    crd.spec.versions.iter().find(|v| v.name == name)
}

/// The `openAPIV3Schema` of a version as JSON, if it has one.
pub fn version_schema(crd: &CustomResourceDefinition, name: &str) -> Option<Value> {
    let s = version(crd, name)?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    serde_json::to_value(s).ok()
}

/// Checks of a CRD's spec outside the schemas' content: exactly one storage version,
/// unique version names, and for every version its schema ([`crate::structural`]) and
/// its scale subresource paths.
pub fn validate_crd(crd: &CustomResourceDefinition) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let versions_path = FieldPath::new("spec").child("versions");
    let storage = crd.spec.versions.iter().filter(|v| v.storage).count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            &versions_path,
            crate::field::BadValue::Raw(format!(
                "{:?}",
                crd.spec.versions.iter().map(|v| &v.name).collect::<Vec<_>>()
            )),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in crd.spec.versions.iter().enumerate() {
        let vp = versions_path.index(i);
        if !seen.insert(v.name.as_str()) {
            errs.push(FieldError::duplicate(&vp.child("name"), v.name.as_str()));
        }
        if let Some(schema) = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) {
            match serde_json::to_value(schema) {
                Ok(json) => errs.extend(crate::structural::validate_openapi_schema(
                    &json,
                    &vp.child("schema").child("openAPIV3Schema"),
                )),
                Err(e) => errs.push(FieldError::internal(&vp.child("schema"), e.to_string())),
            }
        }
        if let Some(scale) = v.subresources.as_ref().and_then(|s| s.scale.as_ref()) {
            let sp = vp.child("subresources");
            errs.extend(validate_scale_paths(
                &scale.spec_replicas_path,
                &scale.status_replicas_path,
                scale.label_selector_path.as_deref(),
                &sp,
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------
// Simple JSONPath

/// One step of a simple JSONPath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonPathStep {
    Field(String),
    Index(usize),
    /// `[*]`: every item of a list (or value of an object).
    Wildcard,
    /// `[?(@.a.b == "x")]` (or `!=`): the list items whose field at the
    /// relative path equals (or not) a literal.
    Filter {
        path: Vec<String>,
        equal: bool,
        value: Value,
    },
}

/// Parses the inside of `[?( ... )]`: `@.field.path <op> literal` where
/// `<op>` is `==` or `!=` and the literal is quoted text, a number, `true`,
/// `false` or `null`.
fn parse_filter(inner: &str) -> Result<JsonPathStep, String> {
    let (lhs, rhs, equal) = if let Some((l, r)) = inner.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = inner.split_once("!=") {
        (l, r, false)
    } else {
        return Err(format!("unsupported filter {inner:?}"));
    };
    let lhs = lhs.trim();
    let rel = lhs
        .strip_prefix("@.")
        .ok_or_else(|| format!("unsupported filter {inner:?}"))?;
    let path: Vec<String> = rel.split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!("unsupported filter {inner:?}"));
    }
    let rhs = rhs.trim();
    let value = if let Some(q) = rhs.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Value::String(q.to_string())
    } else if let Some(q) = rhs.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        Value::String(q.to_string())
    } else {
        serde_json::from_str(rhs).map_err(|_| format!("unsupported filter literal {rhs:?}"))?
    };
    Ok(JsonPathStep::Filter { path, equal, value })
}

/// Parses a simple JSONPath as CRDs use them: `.spec.replicas`, `.status.conditions[0].type`,
/// `.metadata.labels['app.kubernetes.io/name']`, optionally wrapped in `{...}`.
pub fn parse_json_path(path: &str) -> Result<Vec<JsonPathStep>, String> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        p = inner.trim();
    }
    if !p.starts_with('.') {
        return Err("must be a simple json path starting with .".into());
    }
    if p == "." {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".") {
            if r.starts_with('[') {
                rest = r;
                continue;
            }
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("must be a json path in the dot notation".into());
            }
            steps.push(JsonPathStep::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("[?(") {
            let end = r.find(")]").ok_or("unterminated [?(")?;
            steps.push(parse_filter(&r[..end])?);
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("unterminated [")?;
            let inner = r[..end].trim();
            if inner == "*" {
                steps.push(JsonPathStep::Wildcard);
            } else if let Some(q) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
                steps.push(JsonPathStep::Field(q.to_string()));
            } else if let Some(q) = inner.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                steps.push(JsonPathStep::Field(q.to_string()));
            } else {
                let i: usize = inner.parse().map_err(|_| format!("unsupported index {inner:?}"))?;
                steps.push(JsonPathStep::Index(i));
            }
            rest = &r[end + 1..];
        } else {
            return Err(format!("unexpected {rest:?}"));
        }
    }
    Ok(steps)
}

/// The value at a simple JSONPath, if present (the first, when a wildcard
/// or filter selects several).
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    get_all(obj, path).into_iter().next()
}

/// Every value a JSONPath selects, in order.
pub fn get_all<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Ok(steps) = parse_json_path(path) else {
        return Vec::new();
    };
    let mut cur = vec![obj];
    for s in &steps {
        let mut next = Vec::new();
        for v in cur {
            match s {
                JsonPathStep::Field(f) => next.extend(v.as_object().and_then(|o| o.get(f))),
                JsonPathStep::Index(i) => next.extend(v.as_array().and_then(|a| a.get(*i))),
                JsonPathStep::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(o) => next.extend(o.values()),
                    _ => {}
                },
                JsonPathStep::Filter { path, equal, value } => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut field = Some(item);
                        for p in path {
                            field = field.and_then(|f| f.as_object()).and_then(|o| o.get(p));
                        }
                        // A missing field matches neither `==` nor `!=`, as in kubectl.
                        if let Some(f) = field {
                            if (f == value) == *equal {
                                next.push(item);
                            }
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// Sets the value at a simple JSONPath made of fields only, creating missing objects.
pub fn set_path(obj: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let steps = parse_json_path(path)?;
    let Some((last, parents)) = steps.split_last() else {
        return Err("empty path".into());
    };
    let mut cur = obj;
    for s in parents {
        let JsonPathStep::Field(f) = s else {
            return Err("only fields are supported when setting".into());
        };
        let m = cur
            .as_object_mut()
            .ok_or_else(|| format!("{f}'s parent is not an object"))?;
        cur = m.entry(f.clone()).or_insert_with(|| Value::Object(Default::default()));
        if cur.is_null() {
            *cur = Value::Object(Default::default());
        }
    }
    let JsonPathStep::Field(f) = last else {
        return Err("only fields are supported when setting".into());
    };
    let m = cur
        .as_object_mut()
        .ok_or_else(|| format!("{f}'s parent is not an object"))?;
    m.insert(f.clone(), value);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Printer columns

/// A column of `kubectl get` for a custom resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

impl From<&CustomResourceColumnDefinition> for PrinterColumn {
    fn from(c: &CustomResourceColumnDefinition) -> Self {
        PrinterColumn {
            name: c.name.clone(),
            type_: c.type_.clone(),
            format: c.format.clone().unwrap_or_default(),
            description: c.description.clone().unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
            json_path: c.json_path.clone(),
        }
    }
}

/// The columns of a version: `Name` first, then the CRD's `additionalPrinterColumns`, or
/// `Age` (`.metadata.creationTimestamp`) when it declares none, as the API server builds
/// its table.
pub fn printer_columns(crd: &CustomResourceDefinition, version_name: &str) -> Vec<PrinterColumn> {
    let mut cols = vec![PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names".into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    }];
    let declared = version(crd, version_name).and_then(|v| v.additional_printer_columns.as_ref());
    match declared {
        Some(list) if !list.is_empty() => cols.extend(list.iter().map(PrinterColumn::from)),
        _ => cols.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }),
    }
    cols
}

/// The cell of `column` for `obj`, as the API server's table convertor computes it:
/// `null` when absent or of the wrong type, integers/numbers/booleans as such, strings
/// as text (other values rendered as JSON), `date` as a human-readable age relative to
/// `now` (`5m`, `3d2h`) or `<invalid>`.
pub fn printer_cell(column: &PrinterColumn, obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
    let Some(v) = get_path(obj, &column.json_path) else {
        return Value::Null;
    };
    if v.is_null() {
        return Value::Null;
    }
    match column.type_.as_str() {
        "integer" => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Value::from(i),
                None => n.as_f64().map(|f| Value::from(f as i64)).unwrap_or(Value::Null),
            },
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "string" => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
        "date" => match v {
            Value::String(s) => match crate::formats::parse_date_time(s) {
                Some(t) => Value::String(human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc)))),
                None => Value::String("<invalid>".into()),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The cells of all `columns` for `obj`.
pub fn printer_cells(columns: &[PrinterColumn], obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    columns.iter().map(|c| printer_cell(c, obj, now)).collect()
}

/// Kubernetes' `duration.HumanDuration`: `0s`, `90s`, `5m3s`, `3h`, `2d4h`, `1y30d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------
// Names and conditions

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> CustomResourceDefinitionCondition {
    CustomResourceDefinitionCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// What the naming controller decides for a CRD: the names it accepts and the
/// `NamesAccepted` and `Established` conditions (without transition times).
#[derive(Clone, Debug)]
pub struct NamesStatus {
    pub accepted_names: CustomResourceDefinitionNames,
    pub names_accepted: CustomResourceDefinitionCondition,
    pub established: CustomResourceDefinitionCondition,
}

/// Computes the accepted names and conditions of `crd` against the other CRDs of the
/// cluster (those of the same group matter; `crd` itself, by name, is skipped).
///
/// A requested name is accepted when it equals the currently accepted one or no other
/// CRD of the group has accepted it (plural, singular and short names share one space,
/// kind and list kind another). Conflicts set `NamesAccepted=False` with reason
/// `PluralConflict`, `SingularConflict`, `ShortNamesConflict`, `KindConflict` or
/// `ListKindConflict` and message `"<name>" is already in use`; the old accepted name is
/// kept. `Established` becomes true once names are accepted and stays true.
pub fn names_status(crd: &CustomResourceDefinition, others: &[CustomResourceDefinition]) -> NamesStatus {
    use std::collections::HashSet;
    let my_name = crd.metadata.name.as_deref().unwrap_or("");
    let mut resources: HashSet<&str> = HashSet::new();
    let mut kinds: HashSet<&str> = HashSet::new();
    for o in others {
        if o.spec.group != crd.spec.group || o.metadata.name.as_deref().unwrap_or("") == my_name {
            continue;
        }
        let Some(a) = o.status.as_ref().and_then(|s| s.accepted_names.as_ref()) else {
            continue;
        };
        resources.insert(a.plural.as_str());
        if let Some(s) = &a.singular {
            resources.insert(s.as_str());
        }
        for s in a.short_names.iter().flatten() {
            resources.insert(s.as_str());
        }
        kinds.insert(a.kind.as_str());
        if let Some(l) = &a.list_kind {
            kinds.insert(l.as_str());
        }
    }
    let requested = &crd.spec.names;
    let accepted = crd
        .status
        .as_ref()
        .and_then(|s| s.accepted_names.clone())
        .unwrap_or_default();
    let mut new = accepted.clone();
    let mut conflict: Option<(&str, String)> = None;
    let check = |req: &str, acc: &str, used: &HashSet<&str>| -> Result<(), String> {
        if req == acc || !used.contains(req) {
            Ok(())
        } else {
            Err(format!("{} is already in use", crate::field::go_quote(req)))
        }
    };
    let mut set_conflict = |reason: &'static str, msg: String| {
        conflict = Some((reason, msg));
    };
    match check(&requested.plural, &accepted.plural, &resources) {
        Ok(()) => new.plural = requested.plural.clone(),
        Err(m) => set_conflict("PluralConflict", m),
    }
    let req_singular = requested.singular.clone().unwrap_or_default();
    match check(&req_singular, accepted.singular.as_deref().unwrap_or(""), &resources) {
        Ok(()) => new.singular = requested.singular.clone(),
        Err(m) => set_conflict("SingularConflict", m),
    }
    let acc_short: HashSet<&str> = accepted.short_names.iter().flatten().map(String::as_str).collect();
    let mut short_ok = true;
    for s in requested.short_names.iter().flatten() {
        if !acc_short.contains(s.as_str()) && resources.contains(s.as_str()) {
            set_conflict(
                "ShortNamesConflict",
                format!("{} is already in use", crate::field::go_quote(s)),
            );
            short_ok = false;
        }
    }
    if short_ok {
        new.short_names = requested.short_names.clone();
    }
    match check(&requested.kind, &accepted.kind, &kinds) {
        Ok(()) => new.kind = requested.kind.clone(),
        Err(m) => set_conflict("KindConflict", m),
    }
    let req_list = requested
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{}List", requested.kind));
    match check(&req_list, accepted.list_kind.as_deref().unwrap_or(""), &kinds) {
        Ok(()) => new.list_kind = Some(req_list),
        Err(m) => set_conflict("ListKindConflict", m),
    }
    new.categories = requested.categories.clone();

    let names_accepted = match &conflict {
        None => condition("NamesAccepted", true, "NoConflicts", "no conflicts found"),
        Some((reason, msg)) => condition("NamesAccepted", false, reason, msg),
    };
    let was_established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    let established = if was_established || conflict.is_none() {
        condition(
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
    } else {
        condition("Established", false, "NotAccepted", "not all names are accepted")
    };
    NamesStatus {
        accepted_names: new,
        names_accepted,
        established,
    }
}

// ---------------------------------------------------------------------------------------
// Scale subresource

/// The scale subresource paths of a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// The scale subresource of a version, if it has one.
pub fn scale_paths(crd: &CustomResourceDefinition, version_name: &str) -> Option<ScalePaths> {
    let s = version(crd, version_name)?.subresources.as_ref()?.scale.as_ref()?;
    Some(ScalePaths {
        spec_replicas_path: s.spec_replicas_path.clone(),
        status_replicas_path: s.status_replicas_path.clone(),
        label_selector_path: s.label_selector_path.clone().filter(|p| !p.is_empty()),
    })
}

/// Whether a version has the status subresource.
pub fn has_status_subresource(crd: &CustomResourceDefinition, version_name: &str) -> bool {
    version(crd, version_name)
        .and_then(|v| v.subresources.as_ref())
        .is_some_and(|s| s.status.is_some())
}

/// The values a `Scale` object is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleValues {
    /// `spec.replicas` of the Scale (0 when the path is absent).
    pub spec_replicas: i64,
    /// `status.replicas` of the Scale (0 when absent).
    pub status_replicas: i64,
    /// `status.selector` of the Scale (empty when absent or not a string).
    pub selector: String,
}

/// Reads the scale values of a custom resource. A non-integer replicas value is an error
/// worded like the API server's.
pub fn read_scale(paths: &ScalePaths, obj: &Value) -> Result<ScaleValues, String> {
    let int_at = |p: &str| -> Result<i64, String> {
        match get_path(obj, p) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or(0)),
            Some(other) => Err(format!("value at {p} is not an integer: {other}")),
        }
    };
    Ok(ScaleValues {
        spec_replicas: int_at(&paths.spec_replicas_path)?,
        status_replicas: int_at(&paths.status_replicas_path)?,
        selector: paths
            .label_selector_path
            .as_deref()
            .and_then(|p| get_path(obj, p))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

/// Writes a new desired replica count at `specReplicasPath`.
pub fn write_spec_replicas(paths: &ScalePaths, obj: &mut Value, replicas: i64) -> Result<(), String> {
    set_path(obj, &paths.spec_replicas_path, Value::from(replicas))
}

/// The CRD validation of scale subresource paths (`scale.specReplicasPath` under
/// `.spec.`, `scale.statusReplicasPath` under `.status.`, `scale.labelSelectorPath` under
/// either), reported under `path` (`spec.versions[i].subresources`).
pub fn validate_scale_paths(
    spec_replicas_path: &str,
    status_replicas_path: &str,
    label_selector_path: Option<&str>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let simple = |s: &str, p: &FieldPath, errs: &mut Vec<FieldError>| -> bool {
        if s.is_empty() {
            errs.push(FieldError::invalid(p, s, "must not be empty"));
            false
        } else if !s.starts_with('.') {
            errs.push(FieldError::invalid(p, s, "must be a simple json path starting with ."));
            false
        } else {
            true
        }
    };
    let sp = path.child("scale.specReplicasPath");
    if spec_replicas_path.is_empty() {
        errs.push(FieldError::required(&sp, ""));
    } else if simple(spec_replicas_path, &sp, &mut errs) && !spec_replicas_path.starts_with(".spec.") {
        errs.push(FieldError::invalid(
            &sp,
            spec_replicas_path,
            "should be a json path under .spec",
        ));
    }
    let st = path.child("scale.statusReplicasPath");
    if status_replicas_path.is_empty() {
        errs.push(FieldError::required(&st, ""));
    } else if simple(status_replicas_path, &st, &mut errs) && !status_replicas_path.starts_with(".status.") {
        errs.push(FieldError::invalid(
            &st,
            status_replicas_path,
            "should be a json path under .status",
        ));
    }
    if let Some(ls) = label_selector_path.filter(|s| !s.is_empty()) {
        let lp = path.child("scale.labelSelectorPath");
        if simple(ls, &lp, &mut errs) && !ls.starts_with(".spec.") && !ls.starts_with(".status.") {
            errs.push(FieldError::invalid(
                &lp,
                ls,
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(v: Value) -> CustomResourceDefinition {
        serde_json::from_value(v).unwrap()
    }

    fn widgets() -> CustomResourceDefinition {
        crd(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1alpha1", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                     "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
                        {"name": "Ratio", "type": "number", "jsonPath": ".status.ratio", "priority": 1},
                        {"name": "Image", "type": "string", "jsonPath": ".spec.template.containers[0].image"},
                        {"name": "App", "type": "string", "jsonPath": ".metadata.labels['app.kubernetes.io/name']"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                     ]}
                ]
            }
        }))
    }

    #[test]
    fn versions() {
        let c = widgets();
        assert_eq!(storage_version(&c), Some("v1"));
        assert_eq!(served_versions(&c), vec!["v1"]);
        assert_eq!(
            version_schema(&c, "v1").unwrap()["properties"]["spec"]["type"],
            json!("object")
        );
        assert!(version_schema(&c, "v2").is_none());
        assert!(has_status_subresource(&c, "v1"));
        assert!(validate_crd(&c).is_empty(), "{:?}", validate_crd(&c));
    }

    #[test]
    fn crd_level_errors() {
        let mut c = widgets();
        c.spec.versions[0].storage = true;
        c.spec.versions[1]
            .subresources
            .as_mut()
            .unwrap()
            .scale
            .as_mut()
            .unwrap()
            .spec_replicas_path = ".status.x".into();
        let errs: Vec<String> = validate_crd(&c).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec![
                r#"spec.versions: Invalid value: ["v1alpha1", "v1"]: must have exactly one version marked as storage version"#,
                r#"spec.versions[1].subresources.scale.specReplicasPath: Invalid value: ".status.x": should be a json path under .spec"#,
            ]
        );
    }

    #[test]
    fn printer_columns_and_cells() {
        let c = widgets();
        let cols = printer_columns(&c, "v1");
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["Name", "Replicas", "Ready", "Ratio", "Image", "App", "Age"]);
        assert_eq!(cols[3].priority, 1);
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-03T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let obj = json!({
            "metadata": {"name": "w1", "creationTimestamp": "2024-01-01T20:00:00Z", "labels": {"app.kubernetes.io/name": "shop"}},
            "spec": {"replicas": 3, "template": {"containers": [{"image": "nginx:1"}]}},
            "status": {"ready": "yes", "ratio": 1}
        });
        assert_eq!(
            printer_cells(&cols, &obj, now),
            vec![
                json!("w1"),
                json!(3),
                Value::Null,
                json!(1.0),
                json!("nginx:1"),
                json!("shop"),
                json!("28h")
            ]
        );
        let defaults = printer_columns(&c, "v1alpha1");
        assert_eq!(
            defaults.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["Name", "Age"]
        );
        assert_eq!(
            printer_cell(&defaults[1], &json!({"metadata": {"creationTimestamp": "bad"}}), now),
            json!("<invalid>")
        );
    }

    #[test]
    fn human_durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(-5)), "<invalid>");
        assert_eq!(human_duration(d(-1)), "0s");
        assert_eq!(human_duration(d(90)), "90s");
        assert_eq!(human_duration(d(5 * 60 + 3)), "5m3s");
        assert_eq!(human_duration(d(45 * 60)), "45m");
        assert_eq!(human_duration(d(5 * 3600 + 120)), "5h2m");
        assert_eq!(human_duration(d(30 * 3600)), "30h");
        assert_eq!(human_duration(d(3 * 86400 + 4 * 3600)), "3d4h");
        assert_eq!(human_duration(d(100 * 86400)), "100d");
        assert_eq!(human_duration(d(3 * 365 * 86400 + 10 * 86400)), "3y10d");
        assert_eq!(human_duration(d(9 * 365 * 86400)), "9y");
    }

    #[test]
    fn names_conflicts_and_conditions() {
        let mut other = widgets();
        other.metadata.name = Some("gadgets.example.com".into());
        other.status = Some(serde_json::from_value(json!({
            "acceptedNames": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList", "shortNames": ["wd"]}
        })).unwrap());
        let c = widgets();
        let st = names_status(&c, std::slice::from_ref(&other));
        assert_eq!(st.names_accepted.status, "False");
        assert_eq!(st.names_accepted.reason.as_deref(), Some("ShortNamesConflict"));
        assert_eq!(st.names_accepted.message.as_deref(), Some(r#""wd" is already in use"#));
        assert_eq!(st.established.status, "False");
        assert_eq!(st.established.reason.as_deref(), Some("NotAccepted"));
        assert_eq!(st.accepted_names.plural, "widgets");
        assert_eq!(st.accepted_names.short_names, None);

        let mut kind_clash = other.clone();
        kind_clash.status = Some(
            serde_json::from_value(json!({
                "acceptedNames": {"plural": "gadgets", "kind": "Widget"}
            }))
            .unwrap(),
        );
        let st = names_status(&c, &[kind_clash]);
        assert_eq!(st.names_accepted.reason.as_deref(), Some("KindConflict"));

        // another group: no conflict
        let mut elsewhere = other.clone();
        elsewhere.spec.group = "other.io".into();
        let st = names_status(&c, &[elsewhere, c.clone()]);
        assert_eq!(st.names_accepted.status, "True");
        assert_eq!(st.names_accepted.reason.as_deref(), Some("NoConflicts"));
        assert_eq!(st.established.status, "True");
        assert_eq!(st.established.reason.as_deref(), Some("InitialNamesAccepted"));
        assert_eq!(st.accepted_names.list_kind.as_deref(), Some("WidgetList"));
        assert_eq!(st.accepted_names.short_names, Some(vec!["wd".to_string()]));
    }

    #[test]
    fn scale_subresource() {
        let c = widgets();
        let paths = scale_paths(&c, "v1").unwrap();
        let mut obj = json!({"spec": {"replicas": 2}, "status": {"replicas": 1, "selector": "app=w"}});
        assert_eq!(
            read_scale(&paths, &obj).unwrap(),
            ScaleValues {
                spec_replicas: 2,
                status_replicas: 1,
                selector: "app=w".into()
            }
        );
        assert_eq!(read_scale(&paths, &json!({})).unwrap().spec_replicas, 0);
        assert!(read_scale(&paths, &json!({"spec": {"replicas": "x"}})).is_err());
        write_spec_replicas(&paths, &mut obj, 5).unwrap();
        assert_eq!(obj["spec"]["replicas"], json!(5));
        let mut empty = json!({});
        write_spec_replicas(&paths, &mut empty, 1).unwrap();
        assert_eq!(empty, json!({"spec": {"replicas": 1}}));
        let errs = validate_scale_paths(
            "",
            "status.r",
            Some(".meta.x"),
            &FieldPath::new("spec").child("versions").index(0).child("subresources"),
        );
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errs,
            vec![
                "spec.versions[0].subresources.scale.specReplicasPath: Required value",
                r#"spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: "status.r": must be a simple json path starting with ."#,
                r#"spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: ".meta.x": should be a json path under either .spec or .status"#,
            ]
        );
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_json_path("{.a.b[2]['c.d']}").unwrap(),
            vec![
                JsonPathStep::Field("a".into()),
                JsonPathStep::Field("b".into()),
                JsonPathStep::Index(2),
                JsonPathStep::Field("c.d".into())
            ]
        );
        assert!(parse_json_path("a.b").is_err());
        assert!(parse_json_path(".a[x]").is_err());
        assert_eq!(get_path(&json!({"a": [1, {"b": 2}]}), ".a[1].b"), Some(&json!(2)));
        assert_eq!(get_path(&json!({"a": 1}), ".a.b"), None);
    }

    #[test]
    fn json_path_filters_and_wildcards_as_printer_columns_use_them() {
        let obj = json!({"status": {"conditions": [
            {"type": "Issuing", "status": "False"},
            {"type": "Ready", "status": "True", "message": "ok"}
        ]}});
        assert_eq!(
            get_path(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(
            get_path(&obj, ".status.conditions[?(@.type == 'Ready')].message"),
            Some(&json!("ok"))
        );
        assert_eq!(get_path(&obj, r#".status.conditions[?(@.type=="Gone")].status"#), None);
        assert_eq!(
            get_all(&obj, ".status.conditions[*].type"),
            vec![&json!("Issuing"), &json!("Ready")]
        );
        assert_eq!(
            get_all(&obj, r#".status.conditions[?(@.status!="True")].type"#),
            vec![&json!("Issuing")]
        );
        assert!(set_path(&mut obj.clone(), ".status.conditions[*].x", json!(1)).is_err());
    }
}
