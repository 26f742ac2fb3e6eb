//! `x-kubernetes-validations` CEL rules, evaluated with the `cel` crate (the maintained
//! successor of `cel-interpreter`).
//!
//! Rules are compiled once per schema ([`CelRules::compile`]); compile errors are
//! reported at CRD validation time by [`compile_errors`]. At a schema node `self` is
//! bound to the value there, converted by the node's schema (`integer` → int, `number` →
//! double, `date-time` strings → timestamp, `duration` strings → duration, objects →
//! maps). A rule referencing `oldSelf` is a transition rule: it runs only on update and
//! only when an old value correlates with the new one (same property of the old object,
//! same key of a `x-kubernetes-list-type: map` list).
//!
//! Available functions: the CEL standard library and macros (`size`, `has`, `matches`,
//! `startsWith`, `endsWith`, `contains`, `all`, `exists`, `exists_one`, `map`,
//! `filter`, `int`, `string`, `timestamp`, `duration`, ...), the `cel` crate's string
//! (`lowerAscii`, `upperAscii`, `replace`, `split`, `join`, `indexOf`, `substring`,
//! `trim`, ...), list (`distinct`, `flatten`, `reverse`, `slice`, `sort`) and math
//! extension libraries, and Kubernetes' list helpers `isSorted`, `sum`, `min`, `max`,
//! `indexOf`, `lastIndexOf` on lists.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as CelValue};
use serde_json::Value;

use crate::field::{go_quote, BadValue, FieldError, FieldPath};
use crate::formats::{parse_date_time, parse_duration};
use crate::schema::{AdditionalProperties, Schema, ValidationRule};

/// The `reason`s a rule may declare.
pub const SUPPORTED_REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

struct CompiledRule {
    rule: ValidationRule,
    program: Program,
    message_program: Option<Program>,
    transition: bool,
}

#[derive(Default)]
struct CelNode {
    rules: Vec<CompiledRule>,
    properties: BTreeMap<String, CelNode>,
    additional: Option<Box<CelNode>>,
    items: Option<Box<CelNode>>,
}

impl CelNode {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.properties.is_empty() && self.additional.is_none() && self.items.is_none()
    }
}

/// The compiled CEL rules of a schema.
pub struct CelRules {
    env: Arc<Env>,
    root: CelNode,
}

impl std::fmt::Debug for CelRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRules")
            .field("has_rules", &!self.root.is_empty())
            .finish()
    }
}

/// One rule that failed to compile.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileError {
    /// The schema node's path, relative to the schema root (`properties[spec]`).
    pub schema_path: FieldPath,
    /// The rule's index in that node's `x-kubernetes-validations`.
    pub index: usize,
    /// Which part failed: `rule`, `messageExpression`, `fieldPath` or `reason`.
    pub part: &'static str,
    pub message: String,
    /// The rule itself.
    pub rule: ValidationRule,
}

fn new_env() -> Env {
    let mut env = Env::stdlib();
    // The extension libraries are optional conveniences: an error registering one leaves
    // the others usable.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    env
}

fn add_kubernetes_functions(ctx: &mut Context<'_, '_>) {
    fn list_arg(this: &CelValue) -> Option<&Arc<Vec<CelValue>>> {
        match this {
            CelValue::List(l) => Some(l),
            _ => None,
        }
    }
    fn cmp(a: &CelValue, b: &CelValue) -> Option<std::cmp::Ordering> {
        match (a, b) {
            (CelValue::Int(x), CelValue::Int(y)) => Some(x.cmp(y)),
            (CelValue::UInt(x), CelValue::UInt(y)) => Some(x.cmp(y)),
            (CelValue::Float(x), CelValue::Float(y)) => x.partial_cmp(y),
            (CelValue::String(x), CelValue::String(y)) => Some(x.cmp(y)),
            (CelValue::Bool(x), CelValue::Bool(y)) => Some(x.cmp(y)),
            (CelValue::Timestamp(x), CelValue::Timestamp(y)) => Some(x.cmp(y)),
            (CelValue::Duration(x), CelValue::Duration(y)) => Some(x.cmp(y)),
            _ => None,
        }
    }
    use cel::extractors::{Arguments, This};
    let _ = ctx.add_function(
        "isSorted",
        |This(this): This<CelValue>| -> Result<bool, cel::ExecutionError> {
            let l = list_arg(&this).ok_or_else(|| cel::ExecutionError::function_error("isSorted", "not a list"))?;
            Ok(l.windows(2)
                .all(|w| cmp(&w[0], &w[1]).is_some_and(|o| o != std::cmp::Ordering::Greater)))
        },
    );
    let _ = ctx.add_function(
        "sum",
        |This(this): This<CelValue>| -> Result<CelValue, cel::ExecutionError> {
            let l = list_arg(&this).ok_or_else(|| cel::ExecutionError::function_error("sum", "not a list"))?;
            let mut acc = CelValue::Int(0);
            for (i, v) in l.iter().enumerate() {
                acc = match (i, &acc, v) {
                    (0, _, v) => v.clone(),
                    (_, CelValue::Int(a), CelValue::Int(b)) => CelValue::Int(
                        a.checked_add(*b)
                            .ok_or_else(|| cel::ExecutionError::function_error("sum", "overflow"))?,
                    ),
                    (_, CelValue::UInt(a), CelValue::UInt(b)) => CelValue::UInt(
                        a.checked_add(*b)
                            .ok_or_else(|| cel::ExecutionError::function_error("sum", "overflow"))?,
                    ),
                    (_, CelValue::Float(a), CelValue::Float(b)) => CelValue::Float(a + b),
                    (_, CelValue::Duration(a), CelValue::Duration(b)) => CelValue::Duration(*a + *b),
                    _ => return Err(cel::ExecutionError::function_error("sum", "unsupported element types")),
                };
            }
            Ok(acc)
        },
    );
    for (name, want) in [("min", std::cmp::Ordering::Less), ("max", std::cmp::Ordering::Greater)] {
        let _ = ctx.add_function(
            name,
            move |This(this): This<CelValue>| -> Result<CelValue, cel::ExecutionError> {
                let l = list_arg(&this).ok_or_else(|| cel::ExecutionError::function_error(name, "not a list"))?;
                let mut best: Option<&CelValue> = None;
                for v in l.iter() {
                    best = match best {
                        None => Some(v),
                        Some(b) => match cmp(v, b) {
                            Some(o) if o == want => Some(v),
                            Some(_) => Some(b),
                            None => return Err(cel::ExecutionError::function_error(name, "incomparable elements")),
                        },
                    };
                }
                best.cloned()
                    .ok_or_else(|| cel::ExecutionError::function_error(name, "empty list"))
            },
        );
    }
    let _ = ctx.add_function(
        "lastIndexOf",
        |This(this): This<CelValue>, Arguments(args): Arguments| -> Result<CelValue, cel::ExecutionError> {
            match (&this, args.first()) {
                (CelValue::List(l), Some(x)) => Ok(CelValue::Int(
                    l.iter().rposition(|v| v == x).map(|i| i as i64).unwrap_or(-1),
                )),
                (CelValue::String(s), Some(CelValue::String(x))) => Ok(CelValue::Int(
                    s.rfind(x.as_str()).map(|b| s[..b].chars().count() as i64).unwrap_or(-1),
                )),
                _ => Err(cel::ExecutionError::function_error(
                    "lastIndexOf",
                    "unsupported arguments",
                )),
            }
        },
    );
}

fn compile_one(env: &Env, source: &str) -> Result<Program, String> {
    match catch_unwind(AssertUnwindSafe(|| env.compile(source))) {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("internal error while compiling".to_string()),
    }
}

/// Validates a rule's `fieldPath` (`.a.b`, `.a['b.c']`, `.a[0]`) against the schema node
/// and returns the field path it designates, relative to the node.
pub fn parse_field_path(s: &Schema, field_path: &str) -> Result<Vec<PathStep>, String> {
    let mut steps = Vec::new();
    let mut rest = field_path.trim();
    let mut node = Some(s);
    if rest.is_empty() {
        return Err("must not be empty".into());
    }
    while !rest.is_empty() {
        let step = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("must be a valid path".into());
            }
            rest = &r[end..];
            PathStep::Field(r[..end].to_string())
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").ok_or("must be a valid path")?;
            rest = &r[end + 2..];
            PathStep::Field(r[..end].to_string())
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("must be a valid path")?;
            let i: usize = r[..end].parse().map_err(|_| "must be a valid path".to_string())?;
            rest = &r[end + 1..];
            PathStep::Index(i)
        } else {
            return Err("must be a valid path".into());
        };
        node = match (&step, node) {
            (PathStep::Field(f), Some(n)) => match n.property(f) {
                Some(c) => Some(c),
                None if n.x_preserve_unknown_fields => None,
                None => return Err(format!("does not refer to a valid field: {f}")),
            },
            (PathStep::Index(_), Some(n)) => match &n.items {
                Some(i) => Some(i.as_ref()),
                None if n.x_preserve_unknown_fields => None,
                None => return Err("does not refer to a valid field".into()),
            },
            (_, None) => None,
        };
        steps.push(step);
    }
    Ok(steps)
}

/// One step of a rule's `fieldPath`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Field(String),
    Index(usize),
}

fn compile_node(env: &Env, s: &Schema, path: &FieldPath, errors: &mut Vec<CompileError>, depth: usize) -> CelNode {
    let mut node = CelNode::default();
    if depth > crate::schema::MAX_SCHEMA_DEPTH {
        return node;
    }
    for (i, rule) in s.x_validations.iter().enumerate() {
        if rule.rule.trim().is_empty() {
            // reported by the CRD's validation ("rule is not specified")
            continue;
        }
        let mut ok = true;
        let program = match compile_one(env, &rule.rule) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(CompileError {
                    schema_path: path.clone(),
                    index: i,
                    part: "rule",
                    message: format!("compilation failed: {e}"),
                    rule: rule.clone(),
                });
                ok = false;
                None
            }
        };
        let message_program = if rule.message_expression.trim().is_empty() {
            None
        } else {
            match compile_one(env, &rule.message_expression) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push(CompileError {
                        schema_path: path.clone(),
                        index: i,
                        part: "messageExpression",
                        message: format!("messageExpression compilation failed: {e}"),
                        rule: rule.clone(),
                    });
                    ok = false;
                    None
                }
            }
        };
        if !rule.field_path.is_empty() {
            if let Err(e) = parse_field_path(s, &rule.field_path) {
                errors.push(CompileError {
                    schema_path: path.clone(),
                    index: i,
                    part: "fieldPath",
                    message: e,
                    rule: rule.clone(),
                });
                ok = false;
            }
        }
        if !rule.reason.is_empty() && !SUPPORTED_REASONS.contains(&rule.reason.as_str()) {
            errors.push(CompileError {
                schema_path: path.clone(),
                index: i,
                part: "reason",
                message: format!("supported values: {}", SUPPORTED_REASONS.map(go_quote).join(", ")),
                rule: rule.clone(),
            });
            ok = false;
        }
        if let (true, Some(program)) = (ok, program) {
            let transition = program.references().has_variable("oldSelf");
            if rule.optional_old_self && !transition {
                errors.push(CompileError {
                    schema_path: path.clone(),
                    index: i,
                    part: "optionalOldSelf",
                    message: "may not be set if rule does not use oldSelf".into(),
                    rule: rule.clone(),
                });
                continue;
            }
            node.rules.push(CompiledRule {
                rule: rule.clone(),
                program,
                message_program,
                transition,
            });
        }
    }
    for (k, p) in &s.properties {
        let child = compile_node(env, p, &path.child("properties").key(k), errors, depth + 1);
        if !child.is_empty() {
            node.properties.insert(k.clone(), child);
        }
    }
    if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
        let child = compile_node(env, ap, &path.child("additionalProperties"), errors, depth + 1);
        if !child.is_empty() {
            node.additional = Some(Box::new(child));
        }
    }
    if let Some(items) = &s.items {
        let child = compile_node(env, items, &path.child("items"), errors, depth + 1);
        if !child.is_empty() {
            node.items = Some(Box::new(child));
        }
    }
    node
}

/// The compile errors of a schema's rules as CRD validation reports them, under
/// `schema_path` (e.g. `spec.versions[0].schema.openAPIV3Schema`).
pub fn compile_errors(schema: &Schema, schema_path: &FieldPath) -> Vec<FieldError> {
    let env = new_env();
    let mut errors = Vec::new();
    compile_node(&env, schema, &FieldPath::root(), &mut errors, 0);
    errors
        .into_iter()
        .map(|e| {
            let mut p = schema_path.clone();
            if !e.schema_path.is_root() {
                p = FieldPath::new(&format!(
                    "{}{}{}",
                    schema_path,
                    if schema_path.is_root() { "" } else { "." },
                    e.schema_path
                ));
            }
            let p = p.child("x-kubernetes-validations").index(e.index).child(e.part);
            match e.part {
                "reason" => FieldError::new(
                    crate::field::ErrorType::NotSupported,
                    &p,
                    BadValue::Str(e.rule.reason.clone()),
                    e.message,
                ),
                "optionalOldSelf" => FieldError::invalid(&p, true, e.message),
                "fieldPath" => FieldError::invalid(&p, e.rule.field_path.clone(), e.message),
                _ => FieldError::invalid(&p, BadValue::Raw(rule_repr(&e.rule)), e.message),
            }
        })
        .collect()
}

/// The rule as Go's `%#v` prints an `apiextensions.ValidationRule`.
fn rule_repr(r: &ValidationRule) -> String {
    let ptr = |s: &str, ty: &str| {
        if s.is_empty() {
            format!("(*{ty})(nil)")
        } else {
            format!("&{}", go_quote(s))
        }
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{}, FieldPath:{}, OptionalOldSelf:{}}}",
        go_quote(&r.rule),
        go_quote(&r.message),
        go_quote(&r.message_expression),
        ptr(&r.reason, "apiextensions.FieldValueErrorReason"),
        go_quote(&r.field_path),
        if r.optional_old_self { "&true" } else { "(*bool)(nil)" }
    )
}

impl CelRules {
    /// Compiles every rule of the schema; any compile error is returned instead.
    pub fn compile(schema: &Schema) -> Result<CelRules, Vec<CompileError>> {
        let env = new_env();
        let mut errors = Vec::new();
        let root = compile_node(&env, schema, &FieldPath::root(), &mut errors, 0);
        if errors.is_empty() {
            Ok(CelRules {
                env: Arc::new(env),
                root,
            })
        } else {
            Err(errors)
        }
    }

    /// Whether the schema has any rule at all.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Evaluates the rules on a custom resource; `old` is the stored object on update.
    pub fn validate(&self, schema: &Schema, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        self.validate_at(schema, obj, old, &FieldPath::root())
    }

    /// Evaluates the rules on `value` with errors reported under `base`.
    pub fn validate_at(
        &self,
        schema: &Schema,
        value: &Value,
        old: Option<&Value>,
        base: &FieldPath,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        self.walk(&self.root, schema, value, old, base, &mut errs, 0);
        errs
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        node: &CelNode,
        s: &Schema,
        v: &Value,
        old: Option<&Value>,
        path: &FieldPath,
        errs: &mut Vec<FieldError>,
        depth: usize,
    ) {
        if v.is_null() || node.is_empty() || depth > crate::schema::MAX_SCHEMA_DEPTH {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        if !node.rules.is_empty() {
            self.eval_rules(node, s, v, old, path, errs);
        }
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    let Some(child) = m.get(k) else { continue };
                    let old_child = old.and_then(|o| o.get(k.as_str()));
                    if let (Some(cn), Some(cs)) = (node.properties.get(k), s.properties.get(k)) {
                        self.walk(cn, cs, child, old_child, &path.child(k), errs, depth + 1);
                    } else if let (Some(cn), Some(AdditionalProperties::Schema(cs)), false) =
                        (&node.additional, &s.additional_properties, s.properties.contains_key(k))
                    {
                        self.walk(cn, cs, child, old_child, &path.child(k), errs, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                let (Some(cn), Some(is)) = (&node.items, &s.items) else {
                    return;
                };
                let old_items = old.and_then(|o| o.as_array());
                for (i, item) in items.iter().enumerate() {
                    let old_item = match (s.x_list_type.as_deref(), old_items) {
                        (Some("map"), Some(olds)) => olds.iter().find(|o| same_map_keys(&s.x_list_map_keys, o, item)),
                        (Some("set"), Some(olds)) => olds.iter().find(|o| *o == item),
                        _ => None,
                    };
                    self.walk(cn, is, item, old_item, &path.index(i), errs, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn eval_rules(
        &self,
        node: &CelNode,
        s: &Schema,
        v: &Value,
        old: Option<&Value>,
        path: &FieldPath,
        errs: &mut Vec<FieldError>,
    ) {
        let self_val = to_cel(Some(s), v, 0);
        let old_val = old.map(|o| to_cel(Some(s), o, 0));
        let type_name = if s.type_.is_empty() {
            crate::validation::json_type_name(v)
        } else {
            s.type_.as_str()
        };
        for rule in &node.rules {
            if rule.transition && old_val.is_none() && !rule.rule.optional_old_self {
                continue;
            }
            let mut ctx = Context::with_env(self.env.clone());
            add_kubernetes_functions(&mut ctx);
            ctx.add_variable_from_value("self", self_val.clone());
            if rule.transition {
                let o = match &old_val {
                    Some(o) => optional_or_value(o.clone(), rule.rule.optional_old_self, true),
                    None => optional_or_value(CelValue::Null, rule.rule.optional_old_self, false),
                };
                ctx.add_variable_from_value("oldSelf", o);
            }
            let result = catch_unwind(AssertUnwindSafe(|| rule.program.execute(&ctx)));
            let err_path = match parse_field_path(s, &rule.rule.field_path) {
                Ok(steps) if !rule.rule.field_path.is_empty() => steps.iter().fold(path.clone(), |p, st| match st {
                    PathStep::Field(f) => p.child(f),
                    PathStep::Index(i) => p.index(*i),
                }),
                _ => path.clone(),
            };
            match result {
                Ok(Ok(CelValue::Bool(true))) => {}
                Ok(Ok(CelValue::Bool(false))) => {
                    let message = self.message(rule, &ctx);
                    errs.push(rule_error(&rule.rule.reason, &err_path, type_name, message));
                }
                Ok(Ok(_)) => errs.push(FieldError::invalid(
                    path,
                    type_name,
                    format!(
                        "rule evaluation error: {}: rule did not evaluate to a bool",
                        rule.rule.rule.trim()
                    ),
                )),
                Ok(Err(e)) => errs.push(FieldError::invalid(
                    path,
                    type_name,
                    format!("rule evaluation error: {}: {e}", rule.rule.rule.trim()),
                )),
                Err(_) => errs.push(FieldError::internal(path, "rule evaluation panicked")),
            }
        }
    }

    fn message(&self, rule: &CompiledRule, ctx: &Context<'_, '_>) -> String {
        if let Some(mp) = &rule.message_program {
            if let Ok(Ok(CelValue::String(s))) = catch_unwind(AssertUnwindSafe(|| mp.execute(ctx))) {
                let t = s.trim();
                if !t.is_empty() && !t.contains(['\n', '\r']) {
                    return t.to_string();
                }
            }
        }
        if !rule.rule.message.trim().is_empty() {
            rule.rule.message.trim().to_string()
        } else {
            format!("failed rule: {}", rule.rule.rule.trim())
        }
    }
}

fn optional_or_value(v: CelValue, optional: bool, present: bool) -> CelValue {
    // Without optional-type support wired to values, an absent optional oldSelf is null.
    let _ = optional;
    if present {
        v
    } else {
        CelValue::Null
    }
}

fn rule_error(reason: &str, path: &FieldPath, type_name: &str, message: String) -> FieldError {
    match reason {
        "FieldValueForbidden" => FieldError::forbidden(path, message),
        "FieldValueRequired" => FieldError::required(path, message),
        "FieldValueDuplicate" => FieldError::new(
            crate::field::ErrorType::Duplicate,
            path,
            BadValue::Str(type_name.into()),
            message,
        ),
        _ => FieldError::invalid(path, type_name, message),
    }
}

fn same_map_keys(keys: &[String], a: &Value, b: &Value) -> bool {
    !keys.is_empty() && keys.iter().all(|k| a.get(k) == b.get(k))
}

/// Converts a JSON value to a CEL value as Kubernetes does, guided by the schema.
pub fn to_cel(s: Option<&Schema>, v: &Value, depth: usize) -> CelValue {
    if depth > 256 {
        return CelValue::Null;
    }
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let want_double = s.is_some_and(|s| s.type_ == "number");
            match (want_double, n.as_i64(), n.as_u64()) {
                (false, Some(i), _) => CelValue::Int(i),
                (false, None, Some(u)) => CelValue::UInt(u),
                _ => CelValue::Float(n.as_f64().unwrap_or(0.0)),
            }
        }
        Value::String(st) => {
            let format = s
                .filter(|s| s.type_ == "string")
                .map(|s| s.format.as_str())
                .unwrap_or("");
            match format {
                "date-time" | "datetime" => match parse_date_time(st) {
                    Some(t) => CelValue::Timestamp(t),
                    None => CelValue::String(Arc::new(st.clone())),
                },
                "duration" => match parse_duration(st) {
                    Some(d) => CelValue::Duration(d),
                    None => CelValue::String(Arc::new(st.clone())),
                },
                _ => CelValue::String(Arc::new(st.clone())),
            }
        }
        Value::Array(items) => {
            let is = s.and_then(|s| s.items.as_deref());
            CelValue::List(Arc::new(items.iter().map(|i| to_cel(is, i, depth + 1)).collect()))
        }
        Value::Object(m) => {
            let mut h: HashMap<Key, CelValue> = HashMap::with_capacity(m.len());
            for (k, child) in m {
                let cs = s.and_then(|s| s.property(k));
                h.insert(Key::String(Arc::new(k.clone())), to_cel(cs, child, depth + 1));
            }
            CelValue::Map(CelMap { map: Arc::new(h) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::from_json(&v).unwrap()
    }

    fn run(s: &Schema, obj: Value, old: Option<Value>) -> Vec<String> {
        let rules = CelRules::compile(s).unwrap();
        rules
            .validate(s, &obj, old.as_ref())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn rules_with_messages_and_defaults() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
                    {"rule": "!has(self.image) || self.image.startsWith('registry.example.com/')"},
                    {"rule": "self.tags.all(t, t.matches('^[a-z]+$'))", "messageExpression": "'bad tags: ' + self.tags.join(',')"},
                    {"rule": "size(self.tags) <= 3", "fieldPath": ".tags", "reason": "FieldValueForbidden", "message": "too many tags"}
                ],
                "properties": {
                    "minReplicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "image": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }
            }}
        }));
        assert!(run(
            &s,
            json!({"spec": {"minReplicas": 1, "maxReplicas": 2, "tags": ["a"]}}),
            None
        )
        .is_empty());
        assert_eq!(
            run(
                &s,
                json!({"spec": {"minReplicas": 3, "maxReplicas": 2, "image": "docker.io/x", "tags": ["A", "b", "c", "d"]}}),
                None
            ),
            vec![
                r#"spec: Invalid value: "object": minReplicas must not exceed maxReplicas"#,
                r#"spec: Invalid value: "object": failed rule: !has(self.image) || self.image.startsWith('registry.example.com/')"#,
                r#"spec: Invalid value: "object": bad tags: A,b,c,d"#,
                "spec.tags: Forbidden: too many tags",
            ]
        );
    }

    #[test]
    fn transition_rules_need_an_old_value() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "is immutable"}]},
                "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"], "items": {
                    "type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer",
                        "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "may only grow"}]}}
                }}
            }}}
        }));
        assert!(run(&s, json!({"spec": {"name": "a"}}), None).is_empty());
        assert!(run(&s, json!({"spec": {"name": "a"}}), Some(json!({"spec": {"name": "a"}}))).is_empty());
        assert_eq!(
            run(&s, json!({"spec": {"name": "b"}}), Some(json!({"spec": {"name": "a"}}))),
            vec![r#"spec.name: Invalid value: "string": is immutable"#]
        );
        // old value missing for that field: the transition rule does not run
        assert!(run(&s, json!({"spec": {"name": "b"}}), Some(json!({"spec": {}}))).is_empty());
        assert_eq!(
            run(
                &s,
                json!({"spec": {"items": [{"k": "x", "v": 1}, {"k": "y", "v": 5}, {"k": "new", "v": 0}]}}),
                Some(json!({"spec": {"items": [{"k": "y", "v": 2}, {"k": "x", "v": 3}]}}))
            ),
            vec![r#"spec.items[0].v: Invalid value: "integer": may only grow"#]
        );
    }

    #[test]
    fn compile_errors_are_reported_with_paths() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object",
                "properties": {"a": {"type": "string"}},
                "x-kubernetes-validations": [
                    {"rule": "self.a >"},
                    {"rule": "true", "reason": "Nope"},
                    {"rule": "true", "fieldPath": ".missing"},
                    {"rule": "true", "messageExpression": "'x' +"}
                ]}}
        }));
        let base = FieldPath::new("spec")
            .child("versions")
            .index(0)
            .child("schema")
            .child("openAPIV3Schema");
        let errs: Vec<String> = compile_errors(&s, &base).iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs[0].starts_with(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: "
        ));
        assert!(errs[0].contains("compilation failed: ERROR: <input>:1:"), "{}", errs[0]);
        assert_eq!(
            errs[1],
            r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired""#
        );
        assert!(errs[2].contains("x-kubernetes-validations[2].fieldPath"), "{}", errs[2]);
        assert!(
            errs[3].contains("x-kubernetes-validations[3].messageExpression"),
            "{}",
            errs[3]
        );
        assert!(CelRules::compile(&s).is_err());
    }

    #[test]
    fn runtime_errors_and_types() {
        let s = schema(json!({
            "type": "object",
            "properties": {"spec": {"type": "object",
                "properties": {
                    "n": {"type": "number"},
                    "when": {"type": "string", "format": "date-time"},
                    "timeout": {"type": "string", "format": "duration"},
                    "list": {"type": "array", "items": {"type": "integer"}}
                },
                "x-kubernetes-validations": [
                    {"rule": "self.n > 1.0"},
                    {"rule": "self.when < timestamp('2030-01-01T00:00:00Z')"},
                    {"rule": "self.timeout <= duration('1h')"},
                    {"rule": "self.list.isSorted() && self.list.sum() == 6 && self.list.max() == 3 && self.list.min() == 1"},
                    {"rule": "self.list.exists(x, x == 2) && self.list.exists_one(x, x == 2) && self.list.map(x, x * 2)[0] == 2"},
                    {"rule": "self.missing == 1"}
                ]}}
        }));
        let errs = run(
            &s,
            json!({"spec": {"n": 2, "when": "2024-01-01T00:00:00Z", "timeout": "30m", "list": [1, 2, 3]}}),
            None,
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with(r#"spec: Invalid value: "object": rule evaluation error: self.missing == 1: "#),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn root_rules_see_the_whole_object() {
        let s = schema(json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('x-')", "message": "name must start with x-"}],
            "properties": {"spec": {"type": "object"}}
        }));
        assert!(run(&s, json!({"metadata": {"name": "x-a"}}), None).is_empty());
        assert_eq!(
            run(&s, json!({"metadata": {"name": "a"}}), None),
            vec![r#"Invalid value: "object": name must start with x-"#]
        );
    }

    #[test]
    fn compiled_rules_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CelRules>();
    }
}
