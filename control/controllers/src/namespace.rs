//! Namespace controller: empties a namespace being deleted, then releases it.
//!
//! For a Namespace with a deletionTimestamp it finds every namespaced
//! resource through discovery, deletes all objects of each in that namespace,
//! and once nothing is left removes the `kubernetes` finalizer through
//! `PUT /api/v1/namespaces/<name>/finalize`, after which the API server
//! deletes the Namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use crate::events::EventType;
use crate::{runner, Context, Error};

/// Finalizer the API server puts on every Namespace.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// Subscribes the Namespace controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let store = ctx.informers.namespaces.store();
    let own = ctx
        .informers
        .namespaces
        .trigger(|n: &Namespace| Some(ObjectRef::from_obj(n)));
    runner::run("namespace", ctx, store, vec![own.boxed()], reconcile)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let remaining = delete_contents(&ctx, &name).await?;
    if remaining > 0 {
        tracing::info!(namespace = %name, remaining, "waiting for namespace contents to go");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if finalizers.iter().any(|f| f == KUBERNETES_FINALIZER) {
        let mut body = (*ns).clone();
        body.spec.get_or_insert_with(Default::default).finalizers =
            Some(finalizers.into_iter().filter(|f| f != KUBERNETES_FINALIZER).collect());
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &body)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(err) => return Err(err.into()),
        }
        ctx.recorder.record(
            &*ns,
            EventType::Normal,
            "NamespaceFinalized",
            format!("Namespace {name} emptied and finalized"),
        );
    }
    Ok(Action::await_change())
}

/// Deletes every namespaced object in `namespace`; returns how many remain.
async fn delete_contents(ctx: &Context, namespace: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
            let list = match api.list_metadata(&ListParams::default()).await {
                Ok(list) => list,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
                Err(err) => return Err(err.into()),
            };
            for obj in list.items {
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api.delete(&obj.name_any(), &DeleteParams::background()).await {
                    Ok(either) => {
                        if either.is_right() {
                            remaining -= 1;
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => remaining -= 1,
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    Ok(remaining)
}
