//! Serving CustomResourceDefinitions: Kubernetes' naming, establishing and
//! finalizer controllers, run inside the API server (as in Kubernetes'
//! apiextensions-apiserver), because what they decide changes what the
//! server routes.
//!
//! On start, every stored CRD is reconciled before the server listens, so
//! custom resources are served again at once after a restart. Then a watch of
//! the CRD prefix reconciles all CRDs on each change (clusters have tens to
//! hundreds of CRDs; a pass reads them once):
//! - names: the requested names are accepted unless another CRD of the group
//!   holds them (`NamesAccepted`, reasons as Kubernetes), and the CRD becomes
//!   `Established`; `status.storedVersions` records the storage version;
//! - serving: every served version of an established CRD is put in the
//!   [`Catalog`](crate::kinds::Catalog) with its accepted names, so routing,
//!   discovery and OpenAPI follow at once;
//! - deletion: a deleting CRD gets `Terminating=True`; its objects are
//!   deleted (their own finalizers are honoured), and once none is left the
//!   CRD's resource stops being served, then the `customresourcecleanup`
//!   finalizer is removed and the CRD is gone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition,
};
use serde_json::{json, Value};
use sluice_apiextensions::crd;
use sluice_apiextensions::CustomResourceSchema;
use tracing::Instrument;

use crate::kinds::catalog::{intern, CustomDescription};
use crate::kinds::custom::CustomResource;
use crate::kinds::customresourcedefinition::{self as crd_kind, CLEANUP_FINALIZER};
use crate::kinds::Kind;
use crate::registry::{ListQuery, Registry, UpdateMode, WriteOptions};
use crate::status::ApiResult;
use crate::storage::store;

fn crd_kind() -> Kind {
    Kind::Builtin(&crd_kind::CustomResourceDefinitions)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reconcile every CRD once (before serving), then keep following changes.
pub async fn start(registry: Arc<Registry>) -> anyhow::Result<()> {
    let rev = reconcile_all(&registry).await?;
    tokio::spawn(
        async move {
            follow(registry, rev).await;
        }
        .instrument(tracing::info_span!("crd-controller")),
    );
    Ok(())
}

async fn follow(registry: Arc<Registry>, mut rev: i64) {
    let prefix = store::collection_prefix(&crd_kind::RESOURCE, None);
    loop {
        match registry.store.watch(&prefix, rev + 1).await {
            Ok(mut stream) => loop {
                match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                    // Periodic pass: deletions wait for custom resources' finalizers.
                    Err(_) => {}
                    Ok(Ok(Some(resp))) if resp.events().is_empty() => continue,
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
                match reconcile_all(&registry).await {
                    Ok(r) => rev = rev.max(r),
                    Err(e) => tracing::warn!(error = %e, "reconciling CustomResourceDefinitions"),
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching CustomResourceDefinitions"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(r) = reconcile_all(&registry).await {
            rev = rev.max(r);
        }
    }
}

/// One pass over all CRDs; returns the revision it read at.
async fn reconcile_all(registry: &Arc<Registry>) -> anyhow::Result<i64> {
    let list = registry.list(&crd_kind(), None, &ListQuery::default()).await?;
    let rev: i64 = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let crds: Vec<CustomResourceDefinition> = items
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    let mut present = BTreeSet::new();
    for c in &crds {
        let name = c.metadata.name.clone().unwrap_or_default();
        present.insert(name.clone());
        let span = tracing::info_span!("reconcile", crd = %name);
        if let Err(e) = reconcile(registry, c, &crds).instrument(span).await {
            tracing::warn!(crd = %name, error = %e, "reconcile failed");
        }
    }
    for name in registry.catalog.custom_names() {
        if !present.contains(&name) && registry.catalog.remove_custom(&name) {
            tracing::info!(crd = %name, "no longer served");
        }
    }
    Ok(rev)
}

fn condition_of<'a>(c: &'a CustomResourceDefinition, ty: &str) -> Option<&'a CustomResourceDefinitionCondition> {
    c.status.as_ref()?.conditions.as_ref()?.iter().find(|x| x.type_ == ty)
}

/// A condition as JSON, keeping the last transition time when the status
/// did not change.
fn condition_json(c: &CustomResourceDefinition, new: &CustomResourceDefinitionCondition) -> Value {
    let ltt = match condition_of(c, &new.type_) {
        Some(old) if old.status == new.status => old
            .last_transition_time
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_else(|| json!(now())),
        _ => json!(now()),
    };
    json!({
        "type": new.type_,
        "status": new.status,
        "reason": new.reason,
        "message": new.message,
        "lastTransitionTime": ltt,
    })
}

async fn reconcile(
    registry: &Arc<Registry>,
    c: &CustomResourceDefinition,
    all: &[CustomResourceDefinition],
) -> anyhow::Result<()> {
    let name = c.metadata.name.clone().unwrap_or_default();
    let deleting = c.metadata.deletion_timestamp.is_some();
    let decided = crd::names_status(c, all);
    let mut conditions = vec![
        condition_json(c, &decided.names_accepted),
        condition_json(c, &decided.established),
    ];
    if let Some(approval) = approval_condition(c) {
        conditions.push(condition_json(c, &approval));
    }
    if deleting {
        conditions.push(condition_json(
            c,
            &CustomResourceDefinitionCondition {
                type_: "Terminating".into(),
                status: "True".into(),
                reason: Some("InstanceDeletionInProgress".into()),
                message: Some("CustomResource deletion is in progress".into()),
                ..Default::default()
            },
        ));
    }
    let mut stored_versions: Vec<String> = c
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if let Some(v) = crd::storage_version(c) {
        if !stored_versions.iter().any(|s| s == v) {
            stored_versions.push(v.to_string());
        }
    }
    let status = json!({
        "acceptedNames": decided.accepted_names,
        "conditions": conditions,
        "storedVersions": stored_versions,
    });
    // Serve first: once the status says Established (or Terminating),
    // requests must already see it.
    let established = decided.established.status == "True";
    // What the served kinds are built from: the spec (its generation), the
    // accepted names and whether the CRD is deleting. Status writes (the
    // conditions below) change none of them, so they rebuild nothing.
    let key = format!(
        "{}/{}/{}",
        c.metadata.generation.unwrap_or_default(),
        deleting,
        serde_json::to_string(&decided.accepted_names).unwrap_or_default()
    );
    if established && registry.catalog.custom_key(&name).as_deref() != Some(key.as_str()) {
        let kinds = served_kinds(c, &decided.accepted_names);
        tracing::info!(crd = %name, versions = kinds.len(), "serving");
        registry.catalog.set_custom(&name, &key, kinds);
    }
    let current = serde_json::to_value(&c.status).unwrap_or(Value::Null);
    if current != status {
        let write = registry
            .update(
                &crd_kind(),
                None,
                &name,
                UpdateMode::Status,
                WriteOptions::default(),
                |cur| {
                    let mut new = cur.clone();
                    new["status"] = status.clone();
                    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove("resourceVersion");
                    }
                    Ok(new)
                },
            )
            .await;
        if let Err(e) = write {
            if e.code != 404 {
                anyhow::bail!("updating status: {}", e.message);
            }
            return Ok(());
        }
    }
    if deleting {
        cleanup(registry, c, &name).await?;
    }
    Ok(())
}

/// `KubernetesAPIApprovalPolicyConformant` for CRDs in the protected
/// groups (`k8s.io`, `kubernetes.io` and their subdomains), from the
/// `api-approved.kubernetes.io` annotation, as Kubernetes reports it.
fn approval_condition(c: &CustomResourceDefinition) -> Option<CustomResourceDefinitionCondition> {
    let g = c.spec.group.as_str();
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|p| g == *p || g.ends_with(&format!(".{p}")));
    if !protected {
        return None;
    }
    let annotation = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crd_kind::APPROVAL_ANNOTATION));
    let (status, reason, message) = match annotation {
        None => ("False", "MissingAnnotation", format!("protected groups must have approval annotation {:?}, see https://github.com/kubernetes/enhancements/pull/1111", crd_kind::APPROVAL_ANNOTATION)),
        Some(v) if v.starts_with("unapproved") => ("False", "UnapprovedAnnotation", format!("not approved: {v:?}")),
        Some(v) => ("True", "ApprovedAnnotation", format!("approved in {v}")),
    };
    Some(CustomResourceDefinitionCondition {
        type_: "KubernetesAPIApprovalPolicyConformant".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        ..Default::default()
    })
}

/// The served versions of `c` as kinds, under its accepted names. A version
/// whose schema cannot be built is left out (and logged); validation of the
/// CRD refuses such schemas, so this only happens for CRDs stored before.
fn served_kinds(
    c: &CustomResourceDefinition,
    names: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionNames,
) -> Vec<Kind> {
    let name = c.metadata.name.clone().unwrap_or_default();
    let storage = crd::storage_version(c).unwrap_or_default().to_string();
    let mut kinds = Vec::new();
    for v in crd::served_versions(c) {
        let schema = match CustomResourceSchema::for_version(c, v) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(crd = %name, version = v, error = %e, "version not served");
                continue;
            }
        };
        let desc = CustomDescription {
            group: c.spec.group.clone(),
            version: v.to_string(),
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: names.singular.clone().unwrap_or_default(),
            namespaced: c.spec.scope == "Namespaced",
            short_names: names.short_names.clone().unwrap_or_default(),
            categories: names.categories.clone().unwrap_or_default(),
            status: crd::has_status_subresource(c, v),
            scale: crd::scale_paths(c, v).is_some(),
        };
        let resource = intern(&desc);
        kinds.push(Kind::Custom(Arc::new(CustomResource {
            resource,
            crd: name.clone(),
            storage_api_version: format!("{}/{}", c.spec.group, storage),
            schema,
            openapi_schema: crd::version_schema(c, v).unwrap_or_else(|| json!({"type": "object"})),
            columns: crd::printer_columns(c, v),
            scale: crd::scale_paths(c, v),
            terminating: c.metadata.deletion_timestamp.is_some(),
            deprecation: crd::version(c, v)
                .filter(|ver| ver.deprecated == Some(true))
                .map(|ver| {
                    ver.deprecation_warning
                        .clone()
                        .unwrap_or_else(|| format!("{}/{} {} is deprecated", c.spec.group, v, names.kind))
                }),
        })));
    }
    kinds
}

/// Delete the objects of a deleting CRD; remove its cleanup finalizer once
/// none is left.
async fn cleanup(registry: &Arc<Registry>, c: &CustomResourceDefinition, name: &str) -> ApiResult<()> {
    let Some(kind) = registry.catalog.custom_kinds(name).into_iter().next() else {
        return remove_finalizer(registry, name).await;
    };
    let list = registry.list(&kind, None, &ListQuery::default()).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    for item in &items {
        let obj_name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
        if item.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        match registry
            .delete(&kind, ns, obj_name, &json!({}), WriteOptions::default())
            .await
        {
            Ok(_) => {
                tracing::info!(crd = %c.metadata.name.as_deref().unwrap_or_default(), object = obj_name, "deleted custom resource")
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    if items.is_empty() {
        // Stop serving before the finalizer goes: once a client sees the CRD
        // gone, its resource is gone too (the watch's next pass would
        // otherwise remove it a moment after the CRD).
        if registry.catalog.remove_custom(name) {
            tracing::info!(crd = name, "no longer served");
        }
        remove_finalizer(registry, name).await?;
    }
    Ok(())
}

async fn remove_finalizer(registry: &Arc<Registry>, name: &str) -> ApiResult<()> {
    let res = registry
        .update(
            &crd_kind(),
            None,
            name,
            UpdateMode::Internal,
            WriteOptions::default(),
            |cur| {
                let mut new = cur.clone();
                if let Some(fins) = new.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                    fins.retain(|f| f != CLEANUP_FINALIZER);
                }
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(new)
            },
        )
        .await;
    match res {
        Ok(_) => {
            tracing::info!(crd = name, "custom resources deleted; finalizer removed");
            Ok(())
        }
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
