//! ServiceAccount controller (Kubernetes' `serviceaccount-controller`): every
//! active Namespace has a ServiceAccount `default`.
//!
//! Keyed by Namespace: a Namespace that is added or changes, or whose
//! `default` ServiceAccount changes or is deleted (its own informer, on
//! `metadata.name=default` only), is reconciled. A Namespace that is not
//! `Active` (being deleted) is left alone, as Kubernetes does; otherwise a
//! missing `default` ServiceAccount is created (an `AlreadyExists` answer
//! means someone else did it first). Nothing else of the account is
//! managed: users may edit it freely.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The controller's name (`--controllers`); Kubernetes calls it `serviceaccount-controller`.
pub const NAME: &str = "serviceaccount";

/// The ServiceAccounts every namespace gets.
pub const ENSURED: &[&str] = &["default"];

/// Subscribes the controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let accounts = Arc::new(Informer::<ServiceAccount>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default().fields("metadata.name=default"),
    ));
    let store = ctx.informers.namespaces.store();
    let own = ctx
        .informers
        .namespaces
        .trigger(|n: &Namespace| Some(ObjectRef::from_obj(n)));
    let from_accounts =
        accounts.trigger(|sa: &ServiceAccount| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)));
    let accounts_store = accounts.store();
    async move {
        accounts.start();
        accounts.wait_synced().await;
        runner::run(
            NAME,
            ctx,
            store,
            vec![own.boxed(), from_accounts.boxed()],
            move |ns, ctx| reconcile(ns, ctx, accounts_store.clone()),
        )
        .await
    }
    .boxed()
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>, accounts: Store<ServiceAccount>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let namespace = ns.name_any();
    for name in missing(&namespace, &accounts) {
        let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.create(&PostParams::default(), &account(name)).await {
            Ok(_) => tracing::info!(namespace = %namespace, account = name, "created ServiceAccount"),
            // Already there (our cache is behind), or the namespace is going away.
            Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 403 && terminating(&s)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Action::await_change())
}

/// Whether a 403 is the NamespaceLifecycle refusal of a terminating namespace.
pub(crate) fn terminating(status: &kube::core::Status) -> bool {
    let cause = status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    cause || status.message.contains("because it is being terminated")
}

/// Whether the namespace is `Active` (a missing phase counts as active: the API server defaults it).
fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

/// The ensured accounts `namespace` lacks in the cache.
fn missing<'a>(namespace: &str, accounts: &Store<ServiceAccount>) -> Vec<&'a str> {
    ENSURED
        .iter()
        .copied()
        .filter(|name| accounts.get(&ObjectRef::new(name).within(namespace)).is_none())
        .collect()
}

/// The ServiceAccount created: only its name.
fn account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn ns(phase: Option<&str>, deleting: bool) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team", "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z")},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn only_active_namespaces_get_accounts() {
        assert!(is_active(&ns(Some("Active"), false)));
        assert!(is_active(&ns(None, false)));
        assert!(!is_active(&ns(Some("Terminating"), false)));
        assert!(!is_active(&ns(Some("Active"), true)));
    }

    #[test]
    fn a_missing_default_account_is_created_and_a_present_one_is_left_alone() {
        let (store, mut writer) = kube::runtime::reflector::store::<ServiceAccount>();
        assert_eq!(missing("team", &store), vec!["default"]);
        let mut sa = account("default");
        sa.metadata.namespace = Some("team".into());
        writer.apply_watcher_event(&Event::Apply(sa.clone()));
        assert!(missing("team", &store).is_empty());
        assert_eq!(missing("other", &store), vec!["default"]);
        writer.apply_watcher_event(&Event::Delete(sa));
        assert_eq!(missing("team", &store), vec!["default"], "deleted: recreated");
        assert_eq!(account("default").metadata.name.as_deref(), Some("default"));
    }
}
