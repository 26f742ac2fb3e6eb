//! The generic registry: create, read, update, delete of any served
//! resource, with the per-kind strategies (what a status write may change,
//! generation bumps, finalizers and graceful deletion, Service allocation,
//! namespace lifecycle, Event leases).
//!
//! Every mutation is read → compute → one guarded etcd transaction; a lost
//! race either retries (unconditional writes) or is a 409 (writes with a
//! resourceVersion precondition). Nothing is written when any check fails.

pub mod admission;
mod admission_reads;
pub mod allocator;
pub mod apiservices;
pub mod apply;
pub mod binding;
pub mod certificates;
pub mod crds;
pub mod eviction;
pub mod limit_ranger;
pub mod master_endpoints;
pub mod node_graph;
pub mod node_restriction;
pub mod patch;
pub mod pod_security;
pub mod priority;
pub mod quota;
pub mod rbac;
pub mod resolver;
pub mod schema;
pub mod serviceaccount_admission;
pub mod storage_admission;
pub mod unchanged;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::kinds::validation;
use crate::kinds::{self, Catalog, Kind, Resource};
use crate::meta::selectors::{FieldSelector, LabelSelector};
use crate::registry::allocator::Allocator;
use crate::status::{ApiError, ApiResult, FieldError};
use crate::storage::store::{self, Action, Precondition, Store, Stored, Write, WriteFailure};
use crate::storage::watch_cache::{ListAt, View};

/// Shared state of the API server.
pub struct Registry {
    /// etcd storage.
    pub store: Store,
    /// Service IP/port allocator.
    pub allocator: Allocator,
    /// TTL of Event objects.
    pub event_ttl: Duration,
    /// Shared etcd watches fanned out to HTTP watchers.
    pub watch_cache: crate::storage::watch_cache::WatchCache,
    /// What is served: built-in kinds and established custom resources.
    pub catalog: Arc<Catalog>,
    /// Admission webhooks: the configurations in effect and their dispatcher.
    pub admission: admission::Admission,
    /// Roles and bindings held in memory for authorization.
    pub rbac: rbac::Rbac,
    event_lease: Mutex<Option<(i64, Instant)>>,
}

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and warn.
    Warn,
    /// Reject unknown fields.
    Strict,
}

impl FieldValidation {
    /// Parse the query parameter (default Warn, as Kubernetes).
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }
}

/// Options common to writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// `dryRun=All`: validate, do not persist.
    pub dry_run: bool,
    /// Unknown-field handling.
    pub field_validation: FieldValidation,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            field_validation: FieldValidation::Warn,
        }
    }
}

/// What kind of update a write is; decides which parts of the proposed
/// object are taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpdateMode {
    /// The main resource: spec and metadata; status is kept.
    Main,
    /// The status subresource: only status is taken.
    Status,
    /// `namespaces/<name>/finalize`: only spec.finalizers is taken.
    Finalize,
    /// A server-side change built from the current object (scale, binding, deletion marks).
    Internal,
}

/// What one attempt of an update came to.
enum Attempt {
    /// Written (or nothing to write).
    Done(Written),
    /// Try again, on this state of the object if known (else read etcd).
    Again(Option<Stored>),
}

/// The fixed inputs of one update attempt.
#[derive(Clone, Copy)]
struct UpdateStep<'a> {
    k: &'a Kind,
    ns: Option<&'a str>,
    name: &'a str,
    mode: UpdateMode,
    opts: WriteOptions,
    tracking: &'a apply::Tracking,
    key: &'a str,
    /// Whether the object was read from etcd now (false: a watch cache guess).
    current: bool,
    attempt: u32,
}

/// Result of a write: the object and warnings for the `Warning` header.
pub struct Written {
    /// The object as stored (or as it would be, for dry runs).
    pub object: Value,
    /// Warnings (unknown fields with fieldValidation=Warn).
    pub warnings: Vec<String>,
    /// `object` as compact JSON, when the write already wrote it (for the
    /// watch cache, see `WatchCache::written`): a JSON answer sends it as is.
    pub json: Option<Bytes>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Name of an object ("" when missing).
pub fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

fn meta_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let o = v.as_object_mut().expect("object");
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object")
}

fn has_status_subresource(r: &Resource) -> bool {
    r.subresource("status").is_some()
}

/// `obj` as it is stored (custom resources: in the storage version).
/// `obj` as it is stored: borrowed for the kinds that store what they serve.
fn stored<'a>(k: &Kind, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
    if !k.converts_on_read() {
        return std::borrow::Cow::Borrowed(obj);
    }
    let mut s = obj.clone();
    k.to_storage(&mut s);
    std::borrow::Cow::Owned(s)
}

/// What a write answers: `obj` as a read would return it. A kind that
/// converts on read (a view of another version, a custom resource with
/// defaults) answers with what is stored, converted back, so that the answer
/// equals the object read afterwards.
fn answer(k: &Kind, obj: Value) -> Value {
    if !k.converts_on_read() {
        return obj;
    }
    let mut read = stored(k, &obj).into_owned();
    k.on_read(&mut read);
    read
}

impl Registry {
    /// Hand a write to the watch cache ([`WatchCache::written`]) when what
    /// is stored is the object itself (a kind converted on read stores
    /// another form).
    ///
    /// [`WatchCache::written`]: crate::storage::watch_cache::WatchCache::written
    fn written(&self, k: &Kind, key: &str, revision: i64, created: bool, obj: &Value) -> Option<Bytes> {
        if k.converts_on_read() {
            return None;
        }
        self.watch_cache
            .written(k.storage_resource(), key, revision, created, obj)
    }
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// What `fieldValidation` makes of the `unknown` fields of a body `obj`:
/// `Strict` refuses them with a 400 naming each, `Warn` drops them and
/// returns a warning for each, `Ignore` drops them.
pub fn field_validation(obj: &mut Value, unknown: &[String], fv: FieldValidation) -> ApiResult<Vec<String>> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    if fv == FieldValidation::Strict {
        let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        )));
    }
    schema::remove_fields(obj, unknown);
    Ok(if fv == FieldValidation::Warn {
        unknown.iter().map(|f| format!("unknown field {f:?}")).collect()
    } else {
        Vec::new()
    })
}

/// Preconditions a write names (a delete's `preconditions`, a binding's
/// `uid` and `resourceVersion`) checked against the stored `object` at
/// `revision`: a 409 in Kubernetes' words when one does not hold. The UID
/// is checked first, as Kubernetes' `Preconditions.Check` does, so a write
/// naming both a stale UID and a stale resourceVersion is told about the UID.
pub fn check_preconditions(
    r: &Resource,
    name: &str,
    object: &Value,
    revision: &str,
    uid: Option<&str>,
    resource_version: Option<&str>,
) -> ApiResult<()> {
    let have = object.pointer("/metadata/uid").and_then(Value::as_str);
    if let Some(uid) = uid.filter(|uid| Some(*uid) != have) {
        return Err(ApiError::conflict(
            r,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                have.unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = resource_version.filter(|rv| *rv != revision) {
        return Err(ApiError::conflict(
            r,
            name,
            &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"),
        ));
    }
    Ok(())
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Whether a deleting object has no finalizers left and must now be removed.
fn ready_to_remove(k: &Kind, v: &Value) -> bool {
    is_deleting(v) && finalizers(v).is_empty() && k.ready_to_remove(v)
}

/// Generate `generateName` + 5 random characters as Kubernetes does.
fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}{suffix}", truncate_prefix(prefix))
}

/// `generateName` cut to 58 bytes (63 minus the 5 random characters), as
/// `names.SimpleNameGenerator` does, but on a character boundary: Go cuts
/// the bytes and produces invalid UTF-8, which validation then refuses; a
/// name with any non-ASCII character is refused by validation all the same.
pub fn truncate_prefix(prefix: &str) -> &str {
    const MAX: usize = 63 - 5;
    if prefix.len() <= MAX {
        return prefix;
    }
    let mut end = MAX;
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    &prefix[..end]
}

impl Registry {
    /// Build the registry.
    pub fn new(store: Store, allocator: Allocator, event_ttl: Duration) -> Self {
        let catalog = Arc::new(Catalog::new());
        Self {
            admission: admission::Admission::new(store.clone(), catalog.clone()),
            rbac: rbac::Rbac::default(),
            store,
            allocator,
            event_ttl,
            watch_cache: Default::default(),
            catalog,
            event_lease: Mutex::new(None),
        }
    }

    /// A lease for Event objects; reused for a short window to limit lease count.
    async fn event_lease(&self) -> ApiResult<i64> {
        let ttl = self.event_ttl.as_secs().max(1) as i64;
        let reuse = Duration::from_secs((ttl as u64 / 10).min(60));
        if let Some((id, at)) = *self.event_lease.lock().expect("lease lock") {
            if at.elapsed() < reuse {
                return Ok(id);
            }
        }
        let id = self.store.grant_lease(ttl + reuse.as_secs() as i64).await?;
        *self.event_lease.lock().expect("lease lock") = Some((id, Instant::now()));
        Ok(id)
    }

    /// Read one object.
    pub async fn get(&self, k: &Kind, ns: Option<&str>, name: &str) -> ApiResult<Stored> {
        let r = k.resource();
        if let Some(c) = k.computed() {
            let object = c
                .list(&self.store)
                .await?
                .into_iter()
                .find(|o| name_of(o) == name)
                .ok_or_else(|| ApiError::not_found(r, name))?;
            return Ok(Stored { object, revision: 0 });
        }
        let mut s = self
            .store
            .get(&store::object_key(k.storage_resource(), ns, name))
            .await?
            .ok_or_else(|| ApiError::not_found(r, name))?;
        k.on_read(&mut s.object);
        Ok(s)
    }

    /// Decode-and-prune: check the body against the typed schema.
    fn check_schema(&self, k: &Kind, obj: &mut Value, fv: FieldValidation) -> ApiResult<Vec<String>> {
        let Some(unknown) = k.unknown_fields(obj)? else {
            return Ok(Vec::new());
        };
        field_validation(obj, &unknown, fv)
    }

    fn check_type_meta(&self, r: &Resource, obj: &mut Value) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let api_version = r.api_version();
        let o = obj.as_object_mut().expect("object");
        match o.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                o.insert("apiVersion".into(), json!(api_version));
            }
            Some(v) if v == api_version => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )))
            }
        }
        match o.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                o.insert("kind".into(), json!(r.kind));
            }
            Some(k) if k == r.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    r.kind
                )))
            }
        }
        Ok(())
    }

    /// The namespace must exist and not be terminating.
    async fn check_namespace(&self, r: &Resource, ns: &str, name: &str) -> ApiResult<()> {
        let nsr = &kinds::namespace::RESOURCE;
        match self.admission_get(nsr, &store::object_key(nsr, None, ns)).await? {
            None => Err(ApiError::not_found(nsr, ns)),
            Some(s) if is_deleting(&s.object) => Err(ApiError::forbidden(
                r,
                name,
                format!("unable to create new content in namespace {ns} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Create an object (server-internal: `managedFields` are not kept).
    pub async fn create(&self, k: &Kind, ns: Option<&str>, obj: Value, opts: WriteOptions) -> ApiResult<Written> {
        self.create_tracked(k, ns, obj, opts, &apply::Tracking::Untracked).await
    }

    /// Create an object, recording its manager in `managedFields` as `tracking` says.
    pub async fn create_tracked(
        &self,
        k: &Kind,
        ns: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
        tracking: &apply::Tracking,
    ) -> ApiResult<Written> {
        let r = k.resource();
        k.check_create()?;
        self.check_type_meta(r, &mut obj)?;
        let ns = if r.namespaced {
            let body_ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            match (ns, body_ns) {
                (Some(p), Some(b)) if p != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                (Some(p), _) => Some(p.to_string()),
                (None, _) => return Err(ApiError::bad_request("a namespace is required to create this resource")),
            }
        } else {
            None
        };
        let mut warnings = self.check_schema(k, &mut obj, opts.field_validation)?;
        k.default(&mut obj);
        let proposed_fields = obj.pointer("/metadata/managedFields").cloned();
        apply::track(
            k,
            None,
            &mut obj,
            proposed_fields,
            tracking,
            apply::ignored_fields(k, ""),
        );
        self.admit_limit_ranger_create(r, ns.as_deref(), &mut obj).await?;
        self.admit_service_account_create(r, ns.as_deref(), &mut obj).await?;
        self.admit_priority_create(r, &mut obj).await?;
        self.admit_storage_create(r, &mut obj).await?;
        self.admit_rbac(r, ns.as_deref(), None, &obj)?;
        self.admit_node_create(r, ns.as_deref(), &obj).await?;
        certificates::stamp_requester(r, &mut obj);
        warnings.extend(self.admit_create(k, ns.as_deref(), &mut obj, opts).await?);
        // Server-set metadata.
        let generate = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        {
            let m = meta_mut(&mut obj);
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "uid",
                "creationTimestamp",
                "generation",
            ] {
                m.remove(k);
            }
            if let Some(ns) = &ns {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if obj.get("spec").is_some() && k.generation_tracks_spec() {
                meta_mut(&mut obj).insert("generation".into(), json!(1));
            }
        }
        if has_status_subresource(r) && !k.keeps_status_on_create() {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        k.prepare_for_create(&mut obj);
        k.empty_status(&mut obj);
        let mut name = name_of(&obj).to_string();
        if name.is_empty() && !generate.is_empty() {
            name = generate_name(&generate);
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        let errs = validation::validate_object(&**k, &obj, k.validate(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(r, &name, errs));
        }
        if let Some(ns) = &ns {
            self.check_namespace(r, ns, &name).await?;
        }
        warnings.extend(self.admit_pod_security_create(r, ns.as_deref(), &obj).await?);
        warnings.extend(self.validate_create(k, ns.as_deref(), &obj, opts).await?);
        self.admit_quota_create(r, ns.as_deref(), &obj, opts.dry_run).await?;
        let hooks = k.storage();
        let lease = if hooks.expires && !opts.dry_run {
            Some(self.event_lease().await?)
        } else {
            None
        };
        let mut taken_ports: Vec<i64> = Vec::new();
        for attempt in 0..24 {
            // Only an allocation changes the candidate before the write, so
            // other kinds write the object itself (and take it back to try
            // again).
            let mut candidate = if hooks.allocates_service_addresses {
                obj.clone()
            } else {
                std::mem::take(&mut obj)
            };
            let plan = if hooks.allocates_service_addresses {
                let owner = format!("{}/{}", ns.as_deref().unwrap_or_default(), name);
                self.allocator
                    .plan(None, &mut candidate, &owner, &taken_ports)
                    .map_err(|errs| ApiError::invalid(r, &name, errs))?
            } else {
                Default::default()
            };
            if opts.dry_run {
                return Ok(Written {
                    object: answer(k, candidate),
                    warnings,
                    json: None,
                });
            }
            let key = store::object_key(k.storage_resource(), ns.as_deref(), &name);
            let w = Write {
                action: Action::put(&key, &stored(k, &candidate), lease)?,
                key: key.clone(),
                precondition: Precondition::Absent,
                claim: plan.claims.clone(),
                release: Vec::new(),
            };
            match self.store.write(w).await? {
                Ok(rev) => {
                    store::set_resource_version(&mut candidate, rev);
                    let json = self.written(k, &key, rev, true, &candidate);
                    return Ok(Written {
                        object: answer(k, candidate),
                        warnings,
                        json,
                    });
                }
                Err(failure) => {
                    if !hooks.allocates_service_addresses {
                        obj = candidate;
                    }
                    match failure {
                        WriteFailure::ObjectChanged(_) => {
                            if !generate.is_empty() && attempt < 8 {
                                name = generate_name(&generate);
                                meta_mut(&mut obj).insert("name".into(), json!(name));
                                continue;
                            }
                            return Err(ApiError::already_exists(r, &name));
                        }
                        WriteFailure::ClaimTaken => {
                            self.report_requested_claims(r, &name, &plan.requested).await?;
                            if attempt >= 2 {
                                taken_ports = self.taken_ports().await?;
                            }
                        }
                    }
                }
            }
        }
        Err(ApiError::internal(
            "could not allocate a Service IP/port after many attempts",
        ))
    }

    /// The write that removes `cur` from storage, releasing its Service
    /// addresses in the same transaction when the kind allocates them.
    fn removal(&self, k: &Kind, key: &str, cur: &Stored) -> Write {
        let release = if k.storage().allocates_service_addresses {
            self.allocator.release_all(&cur.object)
        } else {
            Vec::new()
        };
        Write {
            key: key.to_string(),
            precondition: Precondition::Revision(cur.revision),
            action: Action::Delete,
            claim: Vec::new(),
            release,
        }
    }

    async fn taken_ports(&self) -> ApiResult<Vec<i64>> {
        Ok(self
            .store
            .keys(crate::registry::allocator::PORT_PREFIX)
            .await?
            .iter()
            .filter_map(|k| k.rsplit('/').next()?.parse().ok())
            .collect())
    }

    /// After a lost allocation race: a 422 if a value the user asked for is taken.
    async fn report_requested_claims(
        &self,
        r: &Resource,
        name: &str,
        requested: &[(String, FieldError)],
    ) -> ApiResult<()> {
        let mut errs = Vec::new();
        for (key, err) in requested {
            if !self.store.keys(key).await?.iter().all(|k| k != key) {
                errs.push(err.clone());
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(r, name, errs))
        }
    }

    /// Combine the current object and a proposed one according to `mode`.
    fn prepare_update(&self, k: &Kind, mode: UpdateMode, old: &Value, proposed: Value) -> Value {
        let r = k.resource();
        let mut new = match mode {
            UpdateMode::Main | UpdateMode::Internal => proposed,
            UpdateMode::Status => {
                let mut n = old.clone();
                match proposed.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(o) = n.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                n
            }
            UpdateMode::Finalize => {
                let mut n = old.clone();
                let fins = proposed.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                n["spec"]["finalizers"] = fins;
                n
            }
        };
        if mode == UpdateMode::Main {
            // Server-owned metadata comes from the stored object.
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let m = meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.remove("selfLink");
            if has_status_subresource(r) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            k.prepare_for_update(old, &mut new);
        }
        // Generation follows spec changes.
        if old.get("spec") != new.get("spec") && k.generation_tracks_spec() {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        new
    }

    /// Update an object: `mutate` proposes the new object from the current one.
    /// `precondition` is a resourceVersion the current object must have.
    /// Server-internal: the stored `managedFields` are kept as they are.
    pub async fn update<F>(
        &self,
        k: &Kind,
        ns: Option<&str>,
        name: &str,
        mode: UpdateMode,
        opts: WriteOptions,
        mutate: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        self.update_tracked(k, ns, name, mode, opts, &apply::Tracking::Untracked, mutate)
            .await
    }

    /// [`Registry::update`], recording the write in `managedFields` as `tracking` says.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_tracked<F>(
        &self,
        k: &Kind,
        ns: Option<&str>,
        name: &str,
        mode: UpdateMode,
        opts: WriteOptions,
        tracking: &apply::Tracking,
        mut mutate: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let r = k.resource();
        let key = store::object_key(k.storage_resource(), ns, name);
        let mut taken_ports: Vec<i64> = Vec::new();
        // The first guess at the current object is the watch cache's, as
        // Kubernetes' cacher hands it to GuaranteedUpdate: when it is current
        // the write costs one etcd transaction instead of a read and a
        // transaction. Whatever a guess leads to other than a write (an
        // error, a conflict, no change at all) is tried again on etcd's
        // current state. A dry run reads etcd, as Kubernetes' does.
        let mut next = (!opts.dry_run)
            .then(|| self.watch_cache.cached(k.storage_resource(), &key))
            .flatten()
            .map(|guess| (guess, false));
        for attempt in 0..32 {
            let (cur, current) = match next.take() {
                Some(state) => state,
                None => (
                    self.store
                        .get(&key)
                        .await?
                        .ok_or_else(|| ApiError::not_found(r, name))?,
                    true,
                ),
            };
            let step = UpdateStep {
                k,
                ns,
                name,
                mode,
                opts,
                tracking,
                key: &key,
                current,
                attempt,
            };
            match self.try_update(step, cur, &mut mutate, &mut taken_ports).await {
                Ok(Attempt::Done(written)) => return Ok(written),
                Ok(Attempt::Again(state)) => next = state.map(|s| (s, true)),
                Err(_) if !current => {}
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(r, name, "too many concurrent writes; please retry"))
    }

    /// One attempt of [`Registry::update_tracked`] on `cur`, the object as
    /// etcd has it now or (when `step.current` is false) as the watch cache has it.
    async fn try_update<F>(
        &self,
        step: UpdateStep<'_>,
        mut cur: Stored,
        mutate: &mut F,
        taken_ports: &mut Vec<i64>,
    ) -> ApiResult<Attempt>
    where
        F: FnMut(&Value) -> ApiResult<Value>,
    {
        let UpdateStep {
            k,
            ns,
            name,
            mode,
            opts,
            tracking,
            key,
            current,
            attempt,
        } = step;
        let r = k.resource();
        let hooks = k.storage();
        let key = key.to_string();
        k.on_read(&mut cur.object);
        let mut proposed = mutate(&cur.object)?;
        self.check_type_meta(r, &mut proposed)?;
        // A resourceVersion in the proposal is a precondition.
        let proposed_rv = proposed
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let precondition = !proposed_rv.is_empty();
        if precondition && proposed_rv != cur.revision.to_string() {
            return Err(ApiError::stale(r, name));
        }
        let body_name = name_of(&proposed);
        if mode != UpdateMode::Internal && !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(ns), Some(bns)) = (ns, proposed.pointer("/metadata/namespace").and_then(Value::as_str)) {
            if !bns.is_empty() && bns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let mut warnings = if mode == UpdateMode::Internal {
            Vec::new()
        } else {
            self.check_schema(k, &mut proposed, opts.field_validation)?
        };
        let proposed_fields = proposed.pointer("/metadata/managedFields").cloned();
        let mut new = self.prepare_update(k, mode, &cur.object, proposed);
        k.default(&mut new);
        k.empty_status(&mut new);
        let ignored = match mode {
            UpdateMode::Main => apply::ignored_fields(k, ""),
            UpdateMode::Status => apply::ignored_fields(k, "status"),
            UpdateMode::Finalize | UpdateMode::Internal => apply::ignored_fields(k, "finalize"),
        };
        apply::track(k, Some(&cur.object), &mut new, proposed_fields, tracking, ignored);
        if mode == UpdateMode::Main {
            self.admit_priority_update(r, &cur.object, &mut new).await?;
            self.admit_storage_update(r, &cur.object, &new).await?;
            self.admit_rbac(r, ns, Some(&cur.object), &new)?;
        }
        self.admit_node_update(r, mode, name, &cur.object, &new)?;
        warnings.extend(
            self.admit_update(k, mode, ns, name, &cur.object, &mut new, opts)
                .await?,
        );
        let kind_errors = if mode == UpdateMode::Main {
            k.validate_update(&cur.object, &new)
        } else {
            k.validate_status_update(&cur.object, &new)
        };
        let errs = validation::validate_object(&**k, &new, kind_errors);
        // Finalizers may only be removed, never added, once deletion started.
        if is_deleting(&cur.object) && !is_deleting(&new) {
            meta_mut(&mut new).insert(
                "deletionTimestamp".into(),
                cur.object
                    .pointer("/metadata/deletionTimestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(r, name, errs));
        }
        if mode == UpdateMode::Main {
            warnings.extend(self.admit_pod_security_update(r, ns, &cur.object, &new).await?);
        }
        warnings.extend(self.validate_update(k, mode, ns, name, &cur.object, &new, opts).await?);
        if mode == UpdateMode::Main {
            self.admit_quota_update(r, ns, &cur.object, &new, opts.dry_run).await?;
        }
        if ready_to_remove(k, &new) {
            if opts.dry_run {
                return Ok(Attempt::Done(Written {
                    object: new,
                    warnings,
                    json: None,
                }));
            }
            match self.store.write(self.removal(k, &key, &cur)).await? {
                Ok(rev) => {
                    store::set_resource_version(&mut new, rev);
                    return Ok(Attempt::Done(Written {
                        object: new,
                        warnings,
                        json: None,
                    }));
                }
                Err(_) if !precondition => return Ok(Attempt::Again(None)),
                Err(_) => return Err(ApiError::stale(r, name)),
            }
        }
        let plan = if hooks.allocates_service_addresses {
            let owner = format!("{}/{}", ns.unwrap_or_default(), name);
            self.allocator
                .plan(Some(&cur.object), &mut new, &owner, taken_ports)
                .map_err(|errs| ApiError::invalid(r, name, errs))?
        } else {
            Default::default()
        };
        // Nothing changed: no write, the object keeps its resourceVersion
        // (unless it is stored stale: an old encryption key, see `Store::is_stale`).
        if plan.claims.is_empty()
            && plan.releases.is_empty()
            && unchanged::is_unchanged(&stored(k, &cur.object), &stored(k, &new))
            && !self.store.is_stale(&key).await?
        {
            // A guess from the watch cache may be behind: only etcd's
            // current state says that nothing would change.
            if !current {
                return Ok(Attempt::Again(None));
            }
            return Ok(Attempt::Done(Written {
                object: cur.object,
                warnings,
                json: None,
            }));
        }
        if opts.dry_run {
            // As it would be stored, still at the current resourceVersion.
            store::set_resource_version(&mut new, cur.revision);
            return Ok(Attempt::Done(Written {
                object: answer(k, new),
                warnings,
                json: None,
            }));
        }
        let lease = if hooks.expires {
            Some(self.event_lease().await?)
        } else {
            None
        };
        let w = Write {
            key: key.clone(),
            precondition: Precondition::Revision(cur.revision),
            action: Action::put(&key, &stored(k, &new), lease)?,
            claim: plan.claims.clone(),
            release: plan.releases.clone(),
        };
        match self.store.write(w).await? {
            Ok(rev) => {
                store::set_resource_version(&mut new, rev);
                let json = self.written(k, &key, rev, false, &new);
                Ok(Attempt::Done(Written {
                    object: answer(k, new),
                    warnings,
                    json,
                }))
            }
            Err(WriteFailure::ObjectChanged(None)) => Err(ApiError::not_found(r, name)),
            // Another write came first: the failed transaction read
            // etcd's current state, the next attempt's.
            Err(WriteFailure::ObjectChanged(Some(now))) if !precondition || !current => Ok(Attempt::Again(Some(now))),
            Err(WriteFailure::ObjectChanged(Some(_))) => Err(ApiError::stale(r, name)),
            Err(WriteFailure::ClaimTaken) => {
                self.report_requested_claims(r, name, &plan.requested).await?;
                if attempt >= 2 {
                    *taken_ports = self.taken_ports().await?;
                }
                Ok(Attempt::Again(None))
            }
        }
    }

    /// Delete an object. Returns the object and whether it is gone (false:
    /// deletion is pending on finalizers or graceful termination).
    pub async fn delete(
        &self,
        k: &Kind,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        let r = k.resource();
        let key = store::object_key(k.storage_resource(), ns, name);
        let want_rv = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        let want_uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        let grace_opt = options.get("gracePeriodSeconds").and_then(Value::as_i64);
        let policy = options
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| match options.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some("Orphan".into()),
                Some(false) => Some("Background".into()),
                None => None,
            });
        if let Some(p) = &policy {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy must be one of Orphan, Background or Foreground, got {p:?}"
                )));
            }
        }
        for _ in 0..32 {
            let mut cur = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| ApiError::not_found(r, name))?;
            k.on_read(&mut cur.object);
            check_preconditions(
                r,
                name,
                &cur.object,
                &cur.revision.to_string(),
                want_uid.as_deref(),
                want_rv.as_deref(),
            )?;
            self.admit_node_delete(r, name, &cur.object)?;
            self.admit_delete(k, ns, name, &cur.object, options, opts).await?;
            let mut new = cur.object.clone();
            let mut fins = finalizers(&new);
            let stated = fins.iter().any(|f| f == "orphan" || f == "foregroundDeletion");
            let policy = policy
                .as_deref()
                .or_else(|| (!stated).then(|| k.default_propagation_policy()).flatten());
            match policy {
                Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                    fins.push("foregroundDeletion".into())
                }
                Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
                _ => {}
            }
            let pending = !fins.is_empty();
            if !fins.is_empty() {
                meta_mut(&mut new).insert("finalizers".into(), json!(fins));
            }
            let pending = k.begin_delete(&mut new, grace_opt, pending);
            if pending {
                if !is_deleting(&new) {
                    let m = meta_mut(&mut new);
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                if new == cur.object {
                    return Ok((cur.object, false));
                }
                if opts.dry_run {
                    return Ok((new, false));
                }
                let w = Write {
                    key: key.clone(),
                    precondition: Precondition::Revision(cur.revision),
                    action: Action::put(&key, &stored(k, &new), None)?,
                    claim: Vec::new(),
                    release: Vec::new(),
                };
                match self.store.write(w).await? {
                    Ok(rev) => {
                        store::set_resource_version(&mut new, rev);
                        return Ok((new, false));
                    }
                    Err(_) => continue,
                }
            }
            if opts.dry_run {
                return Ok((cur.object, true));
            }
            match self.store.write(self.removal(k, &key, &cur)).await? {
                Ok(_) => return Ok((cur.object, true)),
                Err(WriteFailure::ObjectChanged(None)) => return Err(ApiError::not_found(r, name)),
                Err(_) => continue,
            }
        }
        Err(ApiError::conflict(r, name, "too many concurrent writes; please retry"))
    }

    /// List a collection at one revision, with selectors and paging.
    pub async fn list(&self, k: &Kind, ns: Option<&str>, q: &ListQuery) -> ApiResult<Value> {
        match self.list_body(k, ns, q, false).await? {
            ListBody::Value(list) => Ok(list),
            ListBody::Json(json) => serde_json::from_slice(&json).map_err(|e| ApiError::internal(e.to_string())),
        }
    }

    /// [`Registry::list`], answered as compact JSON (as
    /// [`to_vec`](crate::meta::json::to_vec) writes it) when `json`
    /// is asked for and the watch cache serves the list: the objects it
    /// holds encoded are copied into the answer as they are, neither
    /// decoded nor encoded again.
    pub async fn list_body(&self, k: &Kind, ns: Option<&str>, q: &ListQuery, json: bool) -> ApiResult<ListBody> {
        let r = k.resource();
        if let Some(c) = k.computed() {
            let items: Vec<Value> = c
                .list(&self.store)
                .await?
                .into_iter()
                .filter(|o| q.label.matches(o) && q.field.matches(o))
                .collect();
            return Ok(ListBody::Value(
                json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": {}, "items": items}),
            ));
        }
        let prefix = store::collection_prefix(k.storage_resource(), ns);
        let end = store::prefix_end(&prefix);
        let (mut rev, mut start) = match &q.continue_token {
            Some(t) => decode_continue(t, &prefix)?,
            None => (q.exact_revision.unwrap_or(0), prefix.as_bytes().to_vec()),
        };
        let at = if rev > 0 {
            ListAt::Exact(rev)
        } else {
            match q.min_revision {
                None => ListAt::Latest,
                Some(0) => ListAt::Any,
                Some(n) => ListAt::NotOlderThan(n),
            }
        };
        let from = String::from_utf8_lossy(&start).into_owned();
        if let Some(view) = self
            .watch_cache
            .view(&self.store, k.storage_resource(), &prefix, &from, at)
            .await
        {
            if rev > 0 {
                // A revision etcd compacted away is 410 Expired even when the
                // cache still holds a snapshot of it (a one-key read at it).
                self.store.range(&start, &end, rev, 1).await?;
            }
            if let Some(list) = self.list_from_view(k, &prefix, q, view, json) {
                return Ok(list);
            }
        }
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        let chunk = if q.limit > 0 { q.limit.max(100) } else { 0 };
        'outer: loop {
            let page = self.store.range(&start, &end, rev, chunk).await?;
            rev = page.revision;
            let mut last: Option<String> = None;
            for (key, mut s) in page.items {
                k.on_read(&mut s.object);
                if q.limit > 0 && items.len() as i64 == q.limit {
                    next = Some(key);
                    break 'outer;
                }
                if q.label.matches(&s.object) && q.field.matches(&s.object) {
                    items.push(s.object);
                }
                last = Some(key);
            }
            match (page.more, last) {
                (true, Some(l)) => {
                    start = l.into_bytes();
                    start.push(0);
                }
                _ => break,
            }
        }
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if let Some(k) = next {
            meta["continue"] = json!(encode_continue(rev, &k));
        }
        Ok(ListBody::Value(json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": meta,
            "items": items,
        })))
    }

    /// A list page from the watch cache: the same filtering, paging and
    /// `continue` tokens as a list from etcd, as JSON when `json` is asked
    /// for (None if a cached object no longer decodes, which the server's
    /// own encoding never gives: the caller then lists from etcd).
    fn list_from_view(&self, k: &Kind, prefix: &str, q: &ListQuery, view: View, json: bool) -> Option<ListBody> {
        let r = k.resource();
        let converts = k.converts_on_read();
        let mut items = if json {
            Items::Written(Vec::new())
        } else {
            Items::Values(Vec::new())
        };
        let mut next: Option<&str> = None;
        let mut fetched = 0;
        for (key, held) in view.items.iter().skip(view.offset) {
            if q.limit > 0 && items.len() as i64 == q.limit {
                next = Some(key);
                break;
            }
            fetched += 1;
            // An object is decoded only if it is listed as a `Value` (or
            // if the selectors need more than what is kept beside it).
            let decided = if converts {
                None
            } else {
                held.matches(&q.label, &q.field)
            };
            match (decided, &mut items) {
                (Some(false), _) => continue,
                (Some(true), Items::Written(written)) => {
                    let Some(json) = held.json() else {
                        tracing::error!(key = %key, "a cached object no longer inflates; listing from etcd");
                        return None;
                    };
                    written.push(json);
                    continue;
                }
                _ => {}
            }
            let Some(mut o) = held.decode() else {
                tracing::error!(key = %key, "a cached object no longer decodes; listing from etcd");
                return None;
            };
            if converts {
                k.on_read(&mut o);
            }
            if decided == Some(true) || (q.label.matches(&o) && q.field.matches(&o)) {
                items.push(o);
            }
        }
        crate::metrics::cache_list(prefix, fetched, items.len());
        let mut meta = json!({"resourceVersion": view.revision.to_string()});
        if let Some(key) = next {
            meta["continue"] = json!(encode_continue(view.revision, key));
            self.watch_cache.keep(prefix, &view);
        }
        let list = json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": meta,
        });
        Some(match items {
            Items::Written(written) => ListBody::Json(crate::meta::json::list_with_items(&list, &written)),
            Items::Values(values) => {
                let mut list = list;
                list["items"] = Value::Array(values);
                ListBody::Value(list)
            }
        })
    }
}

/// A list's answer: the list, or (from the watch cache, when asked for)
/// the list already written as compact JSON.
pub enum ListBody {
    /// The list object.
    Value(Value),
    /// The list as [`to_vec`](crate::meta::json::to_vec) writes it, compact.
    Json(Vec<u8>),
}

/// The items of a list from the watch cache: decoded, or written as list
/// items (an object held encoded is copied as it is).
enum Items {
    Values(Vec<Value>),
    Written(Vec<Bytes>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Values(v) => v.len(),
            Items::Written(w) => w.len(),
        }
    }

    /// Add a decoded object.
    fn push(&mut self, object: Value) {
        match self {
            Items::Values(v) => v.push(object),
            Items::Written(w) => w.push(Bytes::from(crate::meta::json::object_json(&object))),
        }
    }
}

/// Parsed list/watch parameters.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    /// labelSelector
    pub label: LabelSelector,
    /// fieldSelector
    pub field: FieldSelector,
    /// limit (0 = unlimited)
    pub limit: i64,
    /// continue
    pub continue_token: Option<String>,
    /// resourceVersion with resourceVersionMatch=Exact
    pub exact_revision: Option<i64>,
    /// Any other resourceVersion: None (unset) reads the latest state
    /// consistently, `Some(0)` any cached state, `Some(n)` at least n.
    pub min_revision: Option<i64>,
}

fn encode_continue(rev: i64, key: &str) -> String {
    use base64::Engine;
    let raw = json!({"v": "sluice/v1", "rv": rev, "start": key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, Vec<u8>)> {
    use base64::Engine;
    let bad = || ApiError::bad_request("continue key is not valid: please restart the list");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((rev, start.as_bytes().to_vec()))
}
