//! What a kind is and how its objects behave: the [`Strategy`] trait, in the
//! spirit of Kubernetes' `RESTCreateStrategy`/`RESTUpdateStrategy`/
//! `RESTDeleteStrategy` and `TableConvertor`.
//!
//! The registry is generic: it does the same read → compute → one guarded
//! etcd transaction for every kind, and asks the kind's strategy at each step
//! (decode, default, prepare, validate, delete, print). Built-in kinds
//! implement it in their own file under `kinds/`; custom resources implement
//! it from their CustomResourceDefinition.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::schemars::generate::SchemaGenerator;
use serde_json::{json, Value};

use crate::kinds::Resource;
use crate::status::{ApiResult, FieldError};

/// What the storage layer does besides storing the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageHooks {
    /// Service ClusterIPs and NodePorts are allocated on create/update and
    /// released on delete, in the same etcd transaction as the object.
    pub allocates_service_addresses: bool,
    /// Objects are stored under an etcd lease and expire (Events, `--event-ttl`).
    pub expires: bool,
}

/// Adds the schema of the k8s-openapi type `T` to `generator`, returning
/// its definition name (what built-in kinds' [`Strategy::openapi`] does).
pub fn openapi_ref<T: k8s_openapi::schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
    generator
        .subschema_for::<T>()
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_string)
}

/// Objects computed on each read (a read-only kind without storage).
pub trait Computed: Send + Sync {
    /// Every object, in order.
    fn list<'a>(
        &'a self,
        store: &'a crate::storage::store::Store,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<Vec<Value>>> + Send + 'a>>;
}

/// A name rule: `Ok` or the reason the name is invalid.
pub type NameRule = fn(&str) -> Result<(), String>;

/// The per-kind behaviour the generic registry asks for.
///
/// Every method but [`Strategy::resource`] has the default Kubernetes uses
/// for a kind that does not override it.
pub trait Strategy: Send + Sync + 'static {
    /// Group, version, kind, resource, scope, names and subresources.
    fn resource(&self) -> &'static Resource;

    /// The fields of `obj` the kind does not know (dotted paths, `[i]` for
    /// list items): what its k8s-openapi type's decoding skips for built-in
    /// kinds (a wrong type is a 400 naming the field), what structural
    /// pruning drops for custom resources. They are dropped, warned about or
    /// refused per `fieldValidation`. `None`: every field is kept.
    fn unknown_fields(&self, _obj: &Value) -> ApiResult<Option<Vec<String>>> {
        Ok(None)
    }

    /// The `Warning` every response about this kind carries when its
    /// version is deprecated (`v1 ComponentStatus is deprecated in v1.19+`).
    fn deprecation(&self) -> Option<String> {
        None
    }

    /// Verbs the kind serves (discovery lists them; others are 405).
    fn verbs(&self) -> &'static [&'static str] {
        crate::kinds::STANDARD_VERBS
    }

    /// For kinds whose objects are computed on each read instead of stored
    /// (componentstatuses): what computes them.
    fn computed(&self) -> Option<&dyn Computed> {
        None
    }

    /// Where objects are stored: the kind's own resource, or another one it
    /// is a second view of (`events.k8s.io/v1` Events are core Events).
    fn storage_resource(&self) -> &'static Resource {
        self.resource()
    }

    /// Whether [`Strategy::on_read`] or [`Strategy::to_storage`] change
    /// objects (watches then convert every event instead of sharing the
    /// stored bytes; writes copy the object to convert it). A kind that
    /// overrides either says true here.
    fn converts_on_read(&self) -> bool {
        false
    }

    /// Whether objects may be created now (custom resources of a deleting
    /// CRD may not).
    fn check_create(&self) -> ApiResult<()> {
        Ok(())
    }

    /// Fill in defaults (on create and on every update, before validation).
    fn default(&self, _obj: &mut Value) {}

    /// Decorate an object read from storage before it is served (custom
    /// resources: the served version's `apiVersion`, schema defaults).
    fn on_read(&self, _obj: &mut Value) {}

    /// Prepare an object for storage (custom resources: the storage
    /// version's `apiVersion`).
    fn to_storage(&self, _obj: &mut Value) {}

    /// Whether a created object keeps the status it was sent with. Kinds
    /// with a status subresource normally drop it (status is written
    /// through `/status`); Nodes and Namespaces keep it.
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// Server-set fields of a new object (e.g. a Pod's `Pending` phase).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Server-kept fields on a main-resource update (e.g. a Namespace's
    /// `spec.finalizers`, which only `/finalize` changes).
    fn prepare_for_update(&self, _old: &Value, _new: &mut Value) {}

    /// Whether `metadata.generation` is bumped when `spec` changes (Pods: no).
    fn generation_tracks_spec(&self) -> bool {
        true
    }

    /// Whether objects of kinds with a status subresource always have a
    /// `status` (Go structs without `omitempty`); the zero values a kind
    /// always reports go in [`Strategy::empty_status`].
    fn empty_status(&self, obj: &mut Value) {
        if self.resource().subresource("status").is_some() {
            if let Some(o) = obj.as_object_mut() {
                if !o.get("status").is_some_and(Value::is_object) {
                    o.insert("status".into(), json!({}));
                }
            }
        }
    }

    /// How names of this kind are validated.
    fn name_rule(&self) -> NameRule {
        crate::meta::names::check_dns1123_subdomain
    }

    /// Validate a new object (metadata is validated by the registry).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validate a main-resource update: the new object, and fields that may
    /// not change.
    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Validate a status (or other subresource) update.
    fn validate_status_update(&self, _old: &Value, new: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Whether a deleting object with no finalizers left may now be removed
    /// (Pods wait for their node; Namespaces for `spec.finalizers`).
    fn ready_to_remove(&self, _obj: &Value) -> bool {
        true
    }

    /// Mark `obj` for deletion. `pending` says whether metadata finalizers
    /// hold the object; returns whether deletion is pending (graceful
    /// termination and spec finalizers may hold it too). `grace` is the
    /// request's `gracePeriodSeconds`.
    fn begin_delete(&self, _obj: &mut Value, _grace: Option<i64>, pending: bool) -> bool {
        pending
    }

    /// The propagation policy of a delete that states none (no
    /// `propagationPolicy`, no `orphanDependents`) and of an object with
    /// neither the `orphan` nor the `foregroundDeletion` finalizer
    /// (Kubernetes' `DefaultGarbageCollectionPolicy`): `None` is background
    /// deletion; `Some("Orphan")` keeps the dependents (core/v1
    /// ReplicationControllers, for compatibility).
    fn default_propagation_policy(&self) -> Option<&'static str> {
        None
    }

    /// Whether strategic merge patches apply (Kubernetes refuses them for
    /// custom resources with 415).
    fn strategic_merge(&self) -> bool {
        true
    }

    /// How the kind's lists and maps merge under server-side apply and are
    /// owned in `managedFields` (list types and keys, atomic maps). Built-in
    /// kinds: their OpenAPI definitions and [`crate::kinds::merge_keys`].
    fn apply_schema(&self) -> crate::kinds::apply_schema::ApplySchema {
        crate::kinds::apply_schema::ApplySchema::builtin(self.resource(), |g| self.openapi(g))
    }

    /// The autoscaling/v1 `Scale` view of `obj`, for kinds serving `/scale`.
    fn scale(&self, obj: &Value) -> Option<ApiResult<Value>> {
        self.resource().subresource("scale")?;
        Some(Ok(replicas_scale(obj)))
    }

    /// Set the desired replicas of `obj` (a write through `/scale`).
    fn set_replicas(&self, obj: &mut Value, replicas: i64) -> Option<ApiResult<()>> {
        self.resource().subresource("scale")?;
        obj["spec"]["replicas"] = json!(replicas);
        Some(Ok(()))
    }

    /// What storage does besides storing.
    fn storage(&self) -> StorageHooks {
        StorageHooks::default()
    }

    /// Adds the kind's OpenAPI schema (and what it references) to
    /// `generator`, returning the definition's name; `None`: no schema.
    fn openapi(&self, _generator: &mut SchemaGenerator) -> Option<String> {
        None
    }

    /// Table column definitions (`meta.k8s.io/v1` `TableColumnDefinition`s).
    fn columns(&self) -> Vec<Value> {
        crate::kinds::table::default_columns()
    }

    /// One Table row's cells for `obj`, ages computed against `now`.
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        crate::kinds::table::default_cells(obj, now)
    }

    /// The field a deprecated field-selector label stands for, as the kind's
    /// field label conversion func says (a Pod's `spec.host` is
    /// `spec.nodeName`); checked before [`Resource::field_labels`].
    fn field_label_alias(&self, _label: &str) -> Option<&'static str> {
        None
    }

    /// The value of the selectable field `label` of `obj` when the kind
    /// computes it (Kubernetes' `<Kind>ToSelectableFields`: booleans that
    /// default to `false`, a Pod's first `podIPs`); `None`: the value at
    /// that path, `""` when absent.
    fn field_value(&self, _obj: &Value, _label: &str) -> Option<String> {
        None
    }
}

/// The Scale of a kind with `spec.replicas`, `status.replicas` and a
/// `spec.selector` label selector (Deployments, ReplicaSets, ...).
pub fn replicas_scale(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(crate::meta::selectors::selector_string)
        .unwrap_or_default();
    scale_object(
        obj,
        obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0)),
        obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
        &selector,
    )
}

/// An autoscaling/v1 `Scale` for `obj` with these replica counts and selector.
pub fn scale_object(obj: &Value, spec_replicas: Value, status_replicas: Value, selector: &str) -> Value {
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj.pointer("/metadata/name"),
            "namespace": obj.pointer("/metadata/namespace"),
            "uid": obj.pointer("/metadata/uid"),
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
            "creationTimestamp": obj.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": spec_replicas},
        "status": {"replicas": status_replicas, "selector": selector},
    })
}

/// A served kind: its description and behaviour. Cheap to clone; a request
/// keeps the one it started with even if a CustomResourceDefinition changes.
#[derive(Clone)]
pub enum Kind {
    /// A built-in kind.
    Builtin(&'static dyn Strategy),
    /// A kind served from a CustomResourceDefinition.
    Custom(Arc<dyn Strategy>),
}

impl Kind {
    /// The kind's description.
    pub fn resource(&self) -> &'static Resource {
        (**self).resource()
    }
}

impl std::ops::Deref for Kind {
    type Target = dyn Strategy;
    fn deref(&self) -> &Self::Target {
        match self {
            Kind::Builtin(s) => *s,
            Kind::Custom(s) => &**s,
        }
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.resource();
        write!(f, "Kind({}/{}, {})", r.group, r.version, r.plural)
    }
}
