//! The type information server-side apply needs, as a cursor walked along
//! an object: how each list merges (`x-kubernetes-list-type` atomic, set or
//! map with `x-kubernetes-list-map-keys`), whether an object is atomic
//! (`x-kubernetes-map-type: atomic`), and whether a key is a declared field
//! or a key of a map.
//!
//! Built-in kinds read their k8s-openapi definitions (the ones OpenAPI
//! publishes) and the merge-key table [`crate::kinds::merge_keys`], where a
//! list that merges by key is a list-map and one that merges without a key
//! a set, as Kubernetes' `+listType` markers say for those fields. Custom
//! resources read their structural schema. `metadata` is `ObjectMeta`
//! everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value};
use sluice_apiextensions::schema::{AdditionalProperties, Schema as Structural};
use sluice_apiextensions::CustomResourceSchema;

use crate::kinds::{merge_keys, Resource};

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole (the default).
    Atomic,
    /// Unique scalars, unioned; items owned by value.
    Set,
    /// Objects identified by these key fields; items owned by key.
    Map(Vec<String>),
}

/// Structs Kubernetes marks `+structType=atomic` / `+mapType=atomic`: owned
/// and replaced as a whole.
const ATOMIC_DEFINITIONS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.SecretEnvSource",
    "io.k8s.api.core.v1.ConfigMapEnvSource",
];

/// The schema of a kind for server-side apply (what
/// [`crate::kinds::Strategy::apply_schema`] returns).
#[derive(Clone)]
pub enum ApplySchema {
    /// No type information: lists atomic, objects merged field by field.
    Untyped,
    /// A built-in kind: the OpenAPI definition of its root.
    Builtin(&'static str),
    /// A custom resource: its structural schema.
    Structural(Arc<CustomResourceSchema>),
}

impl ApplySchema {
    /// The schema of a built-in kind, from the definitions its `openapi`
    /// adds (shared by all built-in kinds, built once).
    pub fn builtin(r: &'static Resource, openapi: impl Fn(&mut SchemaGenerator) -> Option<String>) -> Self {
        type Roots = Mutex<HashMap<(&'static str, &'static str, &'static str), Option<&'static str>>>;
        static ROOTS: OnceLock<Roots> = OnceLock::new();
        let roots = ROOTS.get_or_init(Default::default);
        let key = (r.group, r.version, r.kind);
        if let Some(root) = roots.lock().expect("apply schema roots").get(&key) {
            return root.map_or(ApplySchema::Untyped, ApplySchema::Builtin);
        }
        let mut generator = new_generator();
        let root = openapi(&mut generator).and_then(|name| definitions().get_key_value(&name).map(|(k, _)| k.as_str()));
        roots.lock().expect("apply schema roots").insert(key, root);
        root.map_or(ApplySchema::Untyped, ApplySchema::Builtin)
    }

    /// The type at the object's root.
    pub fn root(&self) -> Ty<'_> {
        match self {
            ApplySchema::Untyped => Ty::Untyped,
            ApplySchema::Builtin(name) => Ty::Builtin {
                schema: reference(name),
                owner: None,
            },
            ApplySchema::Structural(s) => Ty::Root(s.schema()),
        }
    }
}

fn new_generator() -> SchemaGenerator {
    SchemaSettings::draft07()
        .with(|s| {
            s.meta_schema = None;
            s.transforms = Vec::new();
            s.definitions_path = "/definitions".into();
        })
        .into_generator()
}

/// The definitions of every built-in kind (and of the kinds their
/// subresources exchange), by name.
fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut generator = new_generator();
        for k in crate::kinds::BUILTIN {
            k.openapi(&mut generator);
            for s in k.resource().subresources {
                if let Some(m) = s.model {
                    m.openapi(&mut generator);
                }
            }
        }
        let _ = generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
        generator.take_definitions(false)
    })
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Where a walk is in a kind's schema.
#[derive(Clone, Copy, Debug)]
pub enum Ty<'a> {
    /// Nothing known.
    Untyped,
    /// A built-in schema node; `owner` is the (definition, property) it is
    /// the value of, which the merge-key table is keyed by.
    Builtin {
        /// The node (a property's schema, a definition, an item schema).
        schema: &'static Value,
        /// The definition and property this node is the value of.
        owner: Option<(&'static str, &'a str)>,
    },
    /// A structural schema node.
    Structural(&'a Structural),
    /// The root of a custom resource (its `metadata` is `ObjectMeta`).
    Root(&'a Structural),
}

/// The definition a built-in schema node refers to (`$ref`, possibly inside
/// `allOf`/`anyOf`/`oneOf`), with its name.
fn resolve(schema: &'static Value) -> Option<(&'static str, &'static Value)> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next()?;
        return definitions().get_key_value(name).map(|(k, v)| (k.as_str(), v));
    }
    ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
        .find_map(resolve)
}

/// A node's own shape: itself or the definition it refers to.
fn shape(schema: &'static Value) -> (Option<&'static str>, &'static Value) {
    match resolve(schema) {
        Some((name, def)) => (Some(name), def),
        None => (None, schema),
    }
}

/// A reference to definition `name`, so a walk starting there knows the
/// definition it is in (the merge-key table is keyed by it).
fn reference(name: &'static str) -> &'static Value {
    type Refs = Mutex<HashMap<&'static str, &'static Value>>;
    static REFS: OnceLock<Refs> = OnceLock::new();
    let mut refs = REFS.get_or_init(Default::default).lock().expect("definition refs");
    refs.entry(name)
        .or_insert_with(|| Box::leak(Box::new(serde_json::json!({ "$ref": format!("#/definitions/{name}") }))))
}

fn object_meta() -> Ty<'static> {
    Ty::Builtin {
        schema: reference(OBJECT_META),
        owner: None,
    }
}

impl<'a> Ty<'a> {
    /// The type of field `name` of an object of this type, and whether it
    /// is a declared field (false: a key of a map).
    pub fn field(&self, name: &'a str) -> (Ty<'a>, bool) {
        match *self {
            Ty::Untyped => (Ty::Untyped, true),
            Ty::Builtin { schema, .. } => {
                let (def_name, def) = shape(schema);
                if let Some(p) = def.get("properties").and_then(|p| p.get(name)) {
                    let owner = def_name.map(|d| (d, name));
                    return (Ty::Builtin { schema: p, owner }, true);
                }
                match def.get("additionalProperties").filter(|v| v.is_object()) {
                    Some(ap) => (
                        Ty::Builtin {
                            schema: ap,
                            owner: None,
                        },
                        false,
                    ),
                    None => (Ty::Untyped, true),
                }
            }
            Ty::Root(s) if name == "metadata" => {
                let _ = s;
                (object_meta(), true)
            }
            Ty::Root(s) | Ty::Structural(s) => {
                if s.x_embedded_resource && name == "metadata" {
                    return (object_meta(), true);
                }
                if let Some(p) = s.properties.get(name) {
                    return (Ty::Structural(p), true);
                }
                match &s.additional_properties {
                    Some(AdditionalProperties::Schema(ap)) => (Ty::Structural(ap), false),
                    Some(AdditionalProperties::Bool(true)) => (Ty::Untyped, false),
                    _ => (Ty::Untyped, !s.x_preserve_unknown_fields),
                }
            }
        }
    }

    /// The type of this list's items.
    pub fn items(&self) -> Ty<'a> {
        match *self {
            Ty::Untyped => Ty::Untyped,
            Ty::Builtin { schema, .. } => {
                let (_, def) = shape(schema);
                let items = def.get("items").or_else(|| {
                    ["anyOf", "oneOf", "allOf"]
                        .iter()
                        .filter_map(|k| def.get(*k).and_then(Value::as_array))
                        .flatten()
                        .find_map(|s| s.get("items"))
                });
                match items {
                    Some(i) => Ty::Builtin { schema: i, owner: None },
                    None => Ty::Untyped,
                }
            }
            Ty::Root(s) | Ty::Structural(s) => match &s.items {
                Some(i) => Ty::Structural(i),
                None => Ty::Untyped,
            },
        }
    }

    /// How a list of this type merges.
    pub fn list_type(&self) -> ListType {
        match *self {
            Ty::Untyped | Ty::Root(_) => ListType::Atomic,
            Ty::Builtin { owner, schema } => {
                if let Some(p) = owner.and_then(|(d, prop)| merge_keys::lookup(d, prop)) {
                    if p.strategy.split(',').any(|s| s == "merge") {
                        return match p.merge_key {
                            _ if !p.list_map_keys.is_empty() => {
                                ListType::Map(p.list_map_keys.iter().map(|k| k.to_string()).collect())
                            }
                            Some(k) => ListType::Map(vec![k.to_string()]),
                            None => ListType::Set,
                        };
                    }
                }
                list_type_of(
                    schema.get("x-kubernetes-list-type").and_then(Value::as_str),
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                        .unwrap_or_default(),
                )
            }
            Ty::Structural(s) => list_type_of(s.x_list_type.as_deref(), s.x_list_map_keys.clone()),
        }
    }

    /// Whether an object of this type is atomic.
    pub fn atomic_map(&self) -> bool {
        match *self {
            Ty::Untyped | Ty::Root(_) => false,
            Ty::Builtin { schema, .. } => {
                let (name, def) = shape(schema);
                name.is_some_and(|n| ATOMIC_DEFINITIONS.contains(&n))
                    || def.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
                    || schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            Ty::Structural(s) => s.x_map_type.as_deref() == Some("atomic"),
        }
    }

    /// Whether objects of this type are structs whose zero value exists
    /// (a Go value-typed struct field); used to tell what a create added.
    pub fn is_struct(&self) -> bool {
        match *self {
            Ty::Builtin { schema, .. } => {
                let (name, def) = shape(schema);
                name.is_some() && def.get("properties").is_some() && !self.atomic_map()
            }
            _ => false,
        }
    }

    /// The schema default of this field, if any (list-map keys left out of
    /// an item take it, as structured-merge-diff does).
    pub fn default_value(&self) -> Option<Value> {
        match *self {
            Ty::Structural(s) => s.default.clone(),
            Ty::Builtin {
                owner: Some((_, "protocol")),
                ..
            } => Some(Value::String("TCP".into())),
            Ty::Builtin { schema, .. } => schema.get("default").cloned(),
            _ => None,
        }
    }
}

fn list_type_of(t: Option<&str>, keys: Vec<String>) -> ListType {
    match t {
        Some("set") => ListType::Set,
        Some("map") if !keys.is_empty() => ListType::Map(keys),
        _ => ListType::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> ApplySchema {
        let k = crate::kinds::BUILTIN
            .iter()
            .find(|k| k.resource().kind == "Deployment")
            .expect("deployments");
        ApplySchema::builtin(k.resource(), |g| k.openapi(g))
    }

    fn at<'a>(mut ty: Ty<'a>, path: &[&'a str]) -> Ty<'a> {
        for p in path {
            ty = if *p == "[]" { ty.items() } else { ty.field(p).0 };
        }
        ty
    }

    #[test]
    fn built_in_lists_and_atomic_structs() {
        let s = deployment();
        let root = s.root();
        let cases: &[(&[&str], ListType)] = &[
            (
                &["spec", "template", "spec", "containers"],
                ListType::Map(vec!["name".into()]),
            ),
            (
                &["spec", "template", "spec", "containers", "[]", "ports"],
                ListType::Map(vec!["containerPort".into(), "protocol".into()]),
            ),
            (
                &["spec", "template", "spec", "containers", "[]", "args"],
                ListType::Atomic,
            ),
            (&["metadata", "finalizers"], ListType::Set),
            (&["metadata", "ownerReferences"], ListType::Map(vec!["uid".into()])),
            (&["spec", "template", "spec", "tolerations"], ListType::Atomic),
        ];
        for (path, want) in cases {
            assert_eq!(at(root, path).list_type(), *want, "{path:?}");
        }
        assert!(at(root, &["spec", "selector"]).atomic_map());
        assert!(!at(root, &["spec", "template"]).atomic_map());
        assert!(at(root, &["spec", "template"]).is_struct());
        assert!(!root.field("metadata").0.field("labels").0.is_struct());
        assert!(!root.field("metadata").0.field("labels").0.field("app").1);
        assert!(root.field("spec").1);
    }

    #[test]
    fn structural_list_and_map_types() {
        let schema = CustomResourceSchema::from_json(&serde_json::json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "listeners": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "ref": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"name": {"type": "string"}}},
                "extra": {"type": "object", "additionalProperties": {"type": "string"}}
            }}}
        }))
        .unwrap();
        let s = ApplySchema::Structural(Arc::new(schema));
        let spec = s.root().field("spec").0;
        assert_eq!(
            spec.field("listeners").0.list_type(),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(spec.field("hosts").0.list_type(), ListType::Set);
        assert_eq!(spec.field("args").0.list_type(), ListType::Atomic);
        assert!(spec.field("ref").0.atomic_map());
        assert!(!spec.field("extra").0.field("k").1);
        assert_eq!(
            s.root().field("metadata").0.field("finalizers").0.list_type(),
            ListType::Set
        );
    }
}
