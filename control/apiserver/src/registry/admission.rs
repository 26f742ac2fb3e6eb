//! Admission webhooks in the registry: the `sluice-admission` dispatcher
//! called at Kubernetes' points of a write.
//!
//! - create: mutating webhooks after decoding and defaulting (the name may
//!   still be empty when `generateName` is used), validating webhooks after
//!   the object passed validation;
//! - update (PUT, every patch, server-side apply) and the `status` and
//!   `finalize` subresources (`pods/status`, ...): mutating after the
//!   update is prepared and defaulted, validating after validation, both
//!   with the stored object as `oldObject`; a status write only ever takes
//!   the status of what a webhook returns;
//! - delete: mutating then validating, with the stored object as
//!   `oldObject` and the `DeleteOptions`.
//!
//! Writes the server makes from the current object (scale, binding,
//! deletion marks) are not sent. The configurations are read from memory:
//! [`start`] lists them once, then a watch of their etcd prefix re-lists on
//! every change, so a request never reads etcd for them (a new configuration
//! takes effect a moment after it is written, as with Kubernetes' informer).
//! With no configuration at all, admission costs nothing.
//!
//! The requesting user reaches the registry through [`with_user`] (set by
//! the HTTP layer per request, as Kubernetes carries it in the request
//! context); writes the server makes itself are `system:apiserver`.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::authentication::v1::UserInfo;
use serde_json::{json, Value};
use sluice_admission::{
    AdmissionAttributes, AdmissionError, Dispatcher, GroupVersionKind, GroupVersionResource, Labels, Operation,
    ResourceEquivalence,
};
use tracing::Instrument;

use crate::kinds::{self, Catalog, Kind};
use crate::registry::{FieldValidation, Registry, UpdateMode, WriteOptions};
use crate::status::{ApiError, ApiResult};
use crate::storage::store::{self, Store};

tokio::task_local! {
    static USER: UserInfo;
}

/// Runs `f` as a request of `name` (`uid`, `groups`): admission webhooks
/// see this user. `system:authenticated` is added as Kubernetes'
/// authenticators add it.
pub async fn with_user<F: Future>(name: String, uid: String, mut groups: Vec<String>, f: F) -> F::Output {
    if name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    let user = UserInfo {
        username: Some(name),
        uid: Some(uid).filter(|u| !u.is_empty()),
        groups: Some(groups),
        extra: None,
    };
    USER.scope(user, f).await
}

/// [`with_user`] for a request that may be anonymous (`None`: unchanged).
pub async fn with_requester<F: Future>(user: Option<(String, String, Vec<String>)>, f: F) -> F::Output {
    match user {
        Some((name, uid, groups)) => with_user(name, uid, groups, f).await,
        None => f.await,
    }
}

/// The user of the request being served; `None` for the API server's own
/// writes (bootstrap, controllers it runs).
pub(crate) fn requesting_user() -> Option<crate::registry::rbac::User> {
    USER.try_with(|u| crate::registry::rbac::User {
        name: u.username.clone().unwrap_or_default(),
        groups: u.groups.clone().unwrap_or_default(),
    })
    .ok()
}

fn current_user() -> UserInfo {
    USER.try_with(Clone::clone).unwrap_or_else(|_| UserInfo {
        username: Some("system:apiserver".into()),
        uid: None,
        groups: Some(vec!["system:authenticated".into(), "system:masters".into()]),
        extra: None,
    })
}

#[derive(Default)]
struct Configurations {
    mutating: Vec<MutatingWebhookConfiguration>,
    validating: Vec<ValidatingWebhookConfiguration>,
}

/// The webhook configurations in effect and the dispatcher that calls them.
pub struct Admission {
    dispatcher: Dispatcher,
    store: Store,
    configurations: RwLock<Arc<Configurations>>,
    started: Mutex<bool>,
}

/// `matchPolicy: Equivalent`: the other served versions of the same group
/// and resource (custom resources with several versions).
struct CatalogEquivalence(Arc<Catalog>);

impl ResourceEquivalence for CatalogEquivalence {
    fn equivalents(&self, resource: &GroupVersionResource, _sub: &str) -> Vec<GroupVersionResource> {
        self.0
            .kinds()
            .iter()
            .map(|k| k.resource())
            .filter(|r| r.group == resource.group && r.plural == resource.resource)
            .map(|r| GroupVersionResource::new(r.group, r.version, r.plural))
            .collect()
    }

    fn kind_for(&self, resource: &GroupVersionResource, sub: &str) -> Option<GroupVersionKind> {
        let k = self.0.by_path(&resource.group, &resource.version, &resource.resource)?;
        let r = k.resource();
        match r.subresource(sub) {
            Some(s) if !sub.is_empty() => Some(GroupVersionKind::new(s.kind_group, s.kind_version, s.kind)),
            _ => Some(GroupVersionKind::new(r.group, r.version, r.kind)),
        }
    }
}

impl Admission {
    /// Admission resolving Services through `store`, with `catalog` for
    /// equivalent resources.
    pub fn new(store: Store, catalog: Arc<Catalog>) -> Self {
        let dispatcher = Dispatcher::new(Arc::new(crate::registry::resolver::EndpointResolver(store.clone())))
            .with_equivalence(Arc::new(CatalogEquivalence(catalog)));
        Self {
            dispatcher,
            store,
            configurations: RwLock::new(Arc::default()),
            started: Mutex::new(false),
        }
    }

    fn configurations(&self) -> Arc<Configurations> {
        self.configurations.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, c: Configurations) {
        *self.configurations.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
    }

    /// Labels of namespace `ns`; a missing namespace is a 404, as Kubernetes'
    /// NamespaceLifecycle admission (which runs before webhooks) answers.
    async fn namespace_labels(&self, ns: &str) -> ApiResult<Labels> {
        let r = &kinds::namespace::RESOURCE;
        let s = self
            .store
            .get(&store::object_key(r, None, ns))
            .await?
            .ok_or_else(|| ApiError::not_found(r, ns))?;
        Ok(sluice_admission::selector::labels_of(&s.object))
    }
}

/// Lists the configurations now, then follows their changes in the background.
pub async fn start(registry: Arc<Registry>) -> anyhow::Result<()> {
    {
        let mut started = registry.admission.started.lock().unwrap_or_else(|p| p.into_inner());
        if *started {
            return Ok(());
        }
        *started = true;
    }
    let rev = reload(&registry).await?;
    tokio::spawn(follow(registry, rev).instrument(tracing::info_span!("admission-configurations")));
    Ok(())
}

/// Reads every configuration; returns the revision read at.
async fn reload(registry: &Registry) -> anyhow::Result<i64> {
    let q = crate::registry::ListQuery::default();
    let mutating = registry
        .list(
            &Kind::Builtin(&kinds::mutatingwebhookconfiguration::MutatingWebhookConfigurations),
            None,
            &q,
        )
        .await?;
    let validating = registry
        .list(
            &Kind::Builtin(&kinds::validatingwebhookconfiguration::ValidatingWebhookConfigurations),
            None,
            &q,
        )
        .await?;
    let rev = |l: &Value| {
        l.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let items = |l: &Value| l["items"].as_array().cloned().unwrap_or_default();
    let c = Configurations {
        mutating: items(&mutating)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        validating: items(&validating)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
    };
    tracing::debug!(
        mutating = c.mutating.len(),
        validating = c.validating.len(),
        "admission configurations loaded"
    );
    registry.admission.set(c);
    Ok(rev(&mutating).min(rev(&validating)))
}

async fn follow(registry: Arc<Registry>, mut rev: i64) {
    // Both kinds live under the group's prefix.
    let prefix = "/registry/admissionregistration.k8s.io/";
    loop {
        match registry.store.watch(prefix, rev + 1).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(resp)) if resp.events().is_empty() => continue,
                    Ok(Some(_)) => match reload(&registry).await {
                        Ok(r) => rev = rev.max(r),
                        Err(e) => tracing::warn!(error = %e, "reloading webhook configurations"),
                    },
                    Ok(None) | Err(_) => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching webhook configurations"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(r) = reload(&registry).await {
            rev = rev.max(r);
        }
    }
}

/// A Status from the admission crate as an [`ApiError`].
fn api_error(e: &AdmissionError, resource: &GroupVersionResource, name: &str) -> ApiError {
    let s = e.to_status_for(resource, name);
    let code = s.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
    ApiError {
        code,
        reason: static_reason(s.reason.as_deref().unwrap_or_default()),
        message: s.message.unwrap_or_default(),
        details: s.details.and_then(|d| serde_json::to_value(d).ok()),
    }
}

/// A webhook's `status.reason` as the `&'static str` [`ApiError`] keeps:
/// Kubernetes' reasons as they are, others interned (a webhook's reasons
/// are few), or `Forbidden` once too many distinct ones were seen.
fn static_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "",
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "StoreReadError",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    if let Some(k) = KNOWN.iter().find(|k| **k == reason) {
        return k;
    }
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = seen.iter().find(|s| **s == reason) {
        return s;
    }
    if seen.len() >= 256 {
        return "Forbidden";
    }
    let leaked: &'static str = Box::leak(reason.to_string().into_boxed_str());
    seen.push(leaked);
    leaked
}

fn options(kind: &str, opts: WriteOptions) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if opts.dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if kind != "DeleteOptions" {
        let fv = match opts.field_validation {
            FieldValidation::Ignore => "Ignore",
            FieldValidation::Warn => "Warn",
            FieldValidation::Strict => "Strict",
        };
        o["fieldValidation"] = json!(fv);
    }
    o
}

/// One admission request's fixed parts.
struct Call<'a> {
    k: &'a Kind,
    operation: Operation,
    subresource: &'static str,
    namespace: Option<&'a str>,
    name: &'a str,
    options: Value,
    dry_run: bool,
}

impl Call<'_> {
    fn resource(&self) -> GroupVersionResource {
        let r = self.k.resource();
        GroupVersionResource::new(r.group, r.version, r.plural)
    }

    fn attributes(&self, object: Option<Value>, old_object: Option<Value>) -> AdmissionAttributes {
        let r = self.k.resource();
        let kind = match r.subresource(self.subresource) {
            Some(s) if !self.subresource.is_empty() => GroupVersionKind::new(s.kind_group, s.kind_version, s.kind),
            _ => GroupVersionKind::new(r.group, r.version, r.kind),
        };
        // Kubernetes puts a Namespace's own name in `namespace`.
        let namespace = match self.namespace {
            Some(ns) => ns.to_string(),
            None if r.group.is_empty() && r.plural == "namespaces" => self.name.to_string(),
            None => String::new(),
        };
        AdmissionAttributes {
            operation: self.operation,
            kind,
            resource: self.resource(),
            sub_resource: self.subresource.to_string(),
            name: self.name.to_string(),
            namespace,
            user_info: current_user(),
            object,
            old_object,
            options: Some(self.options.clone()),
            dry_run: self.dry_run,
        }
    }
}

/// What the mutating webhooks did.
struct Mutated {
    object: Option<Value>,
    warnings: Vec<String>,
}

impl Registry {
    fn admission_applies(&self) -> Option<Arc<Configurations>> {
        let c = self.admission.configurations();
        (!c.mutating.is_empty() || !c.validating.is_empty()).then_some(c)
    }

    async fn labels_for(&self, call: &Call<'_>) -> ApiResult<Option<Labels>> {
        let r = call.k.resource();
        match call.namespace {
            Some(ns) if r.namespaced => self.admission.namespace_labels(ns).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn run_mutating(
        &self,
        configs: &Configurations,
        call: &Call<'_>,
        object: Option<Value>,
        old: Option<&Value>,
    ) -> ApiResult<Mutated> {
        if configs.mutating.is_empty() {
            return Ok(Mutated {
                object: None,
                warnings: Vec::new(),
            });
        }
        let labels = self.labels_for(call).await?;
        let mut attrs = call.attributes(object, old.cloned());
        let outcome = self
            .admission
            .dispatcher
            .mutate(&configs.mutating, &mut attrs, labels.as_ref())
            .await
            .map_err(|e| api_error(&e, &call.resource(), call.name))?;
        Ok(Mutated {
            object: attrs.object.filter(|_| outcome.changed),
            warnings: outcome.warnings,
        })
    }

    async fn run_validating(
        &self,
        configs: &Configurations,
        call: &Call<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        if configs.validating.is_empty() {
            return Ok(Vec::new());
        }
        let labels = self.labels_for(call).await?;
        let attrs = call.attributes(object.cloned(), old.cloned());
        let outcome = self
            .admission
            .dispatcher
            .validate(&configs.validating, &attrs, labels.as_ref())
            .await
            .map_err(|e| api_error(&e, &call.resource(), call.name))?;
        Ok(outcome.warnings)
    }

    /// Mutating admission of a create; `obj` is decoded and defaulted.
    /// Returns the webhooks' warnings.
    pub(super) async fn admit_create(
        &self,
        k: &Kind,
        ns: Option<&str>,
        obj: &mut Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let Some(configs) = self.admission_applies() else {
            return Ok(Vec::new());
        };
        if let (Some(ns), Some(m)) = (ns, obj.get_mut("metadata").and_then(Value::as_object_mut)) {
            m.insert("namespace".into(), json!(ns));
        }
        let name = super::name_of(obj).to_string();
        let call = Call {
            k,
            operation: Operation::Create,
            subresource: "",
            namespace: ns,
            name: &name,
            options: options("CreateOptions", opts),
            dry_run: opts.dry_run,
        };
        let m = self.run_mutating(&configs, &call, Some(obj.clone()), None).await?;
        if let Some(mut changed) = m.object {
            // What a webhook added is decoded and defaulted like a request body.
            self.check_schema(k, &mut changed, FieldValidation::Ignore)?;
            k.default(&mut changed);
            *obj = changed;
        }
        Ok(m.warnings)
    }

    /// Validating admission of a create (the object is valid and complete).
    pub(super) async fn validate_create(
        &self,
        k: &Kind,
        ns: Option<&str>,
        obj: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let Some(configs) = self.admission_applies() else {
            return Ok(Vec::new());
        };
        let name = super::name_of(obj).to_string();
        let call = Call {
            k,
            operation: Operation::Create,
            subresource: "",
            namespace: ns,
            name: &name,
            options: options("CreateOptions", opts),
            dry_run: opts.dry_run,
        };
        self.run_validating(&configs, &call, Some(obj), None).await
    }

    fn update_call<'a>(
        k: &'a Kind,
        mode: UpdateMode,
        ns: Option<&'a str>,
        name: &'a str,
        opts: WriteOptions,
    ) -> Option<Call<'a>> {
        let subresource = match mode {
            UpdateMode::Main => "",
            UpdateMode::Status => "status",
            UpdateMode::Finalize => "finalize",
            UpdateMode::Internal => return None,
        };
        Some(Call {
            k,
            operation: Operation::Update,
            subresource,
            namespace: ns,
            name,
            options: options("UpdateOptions", opts),
            dry_run: opts.dry_run,
        })
    }

    /// Mutating admission of an update: `new` is prepared and defaulted,
    /// `old` is the stored object. Returns the webhooks' warnings.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit_update(
        &self,
        k: &Kind,
        mode: UpdateMode,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        new: &mut Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let Some(configs) = self.admission_applies() else {
            return Ok(Vec::new());
        };
        let Some(call) = Self::update_call(k, mode, ns, name, opts) else {
            return Ok(Vec::new());
        };
        let m = self.run_mutating(&configs, &call, Some(new.clone()), Some(old)).await?;
        if let Some(mut changed) = m.object {
            self.check_schema(k, &mut changed, FieldValidation::Ignore)?;
            // The update's rules apply to what the webhooks returned (a
            // status write keeps only the status, server-owned metadata stays).
            let mut prepared = self.prepare_update(k, mode, old, changed);
            k.default(&mut prepared);
            k.empty_status(&mut prepared);
            *new = prepared;
        }
        Ok(m.warnings)
    }

    /// Validating admission of an update (the new object passed validation).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn validate_update(
        &self,
        k: &Kind,
        mode: UpdateMode,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        new: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let Some(configs) = self.admission_applies() else {
            return Ok(Vec::new());
        };
        let Some(call) = Self::update_call(k, mode, ns, name, opts) else {
            return Ok(Vec::new());
        };
        self.run_validating(&configs, &call, Some(new), Some(old)).await
    }

    /// Mutating and validating admission of a delete of `old`.
    pub(super) async fn admit_delete(
        &self,
        k: &Kind,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        delete_options: &Value,
        opts: WriteOptions,
    ) -> ApiResult<()> {
        let Some(configs) = self.admission_applies() else {
            return Ok(());
        };
        let mut o = options("DeleteOptions", opts);
        if let (Some(o), Some(given)) = (o.as_object_mut(), delete_options.as_object()) {
            for (key, v) in given {
                if key != "kind" && key != "apiVersion" {
                    o.insert(key.clone(), v.clone());
                }
            }
        }
        let call = Call {
            k,
            operation: Operation::Delete,
            subresource: "",
            namespace: ns,
            name,
            options: o,
            dry_run: opts.dry_run,
        };
        self.run_mutating(&configs, &call, None, Some(old)).await?;
        self.run_validating(&configs, &call, None, Some(old)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_kept() {
        assert_eq!(static_reason("Forbidden"), "Forbidden");
        let a = static_reason("PolicyViolation");
        assert_eq!(a, "PolicyViolation");
        assert!(std::ptr::eq(a, static_reason("PolicyViolation")));
    }

    #[test]
    fn denial_as_api_error() {
        let e = sluice_admission::denied(
            "deny.example.com",
            Some(&sluice_admission::review::ResponseStatus {
                code: Some(403),
                message: Some("nope".into()),
                ..Default::default()
            }),
        );
        let a = api_error(&e, &GroupVersionResource::new("", "v1", "configmaps"), "cm");
        assert_eq!(a.code, 403);
        assert_eq!(a.reason, "Forbidden");
        assert_eq!(
            a.message,
            "configmaps \"cm\" is forbidden: admission webhook \"deny.example.com\" denied the request: nope"
        );
        let s = a.to_status();
        assert_eq!(s["details"], json!({"name": "cm", "kind": "configmaps"}));
    }

    #[tokio::test]
    async fn the_request_user_is_authenticated() {
        let u = with_user("admin".into(), String::new(), vec!["system:masters".into()], async {
            current_user()
        })
        .await;
        assert_eq!(u.username.as_deref(), Some("admin"));
        assert_eq!(
            u.groups,
            Some(vec!["system:masters".to_string(), "system:authenticated".to_string()])
        );
        assert_eq!(current_user().username.as_deref(), Some("system:apiserver"));
    }
}
