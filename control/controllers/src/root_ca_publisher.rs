//! Root CA publisher (Kubernetes' `root-ca-certificate-publisher-controller`):
//! every Namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the
//! cluster CA bundle (`--root-ca-file`), so that pods can verify the API
//! server (the ServiceAccount admission's `kube-api-access-*` volume
//! projects it).
//!
//! Keyed by Namespace: a Namespace that is added or changes, or whose
//! `kube-root-ca.crt` changes or is deleted (own informer, on that name
//! only), is reconciled. A Namespace being deleted is skipped. A missing
//! ConfigMap is created with the `kubernetes.io/description` annotation
//! (Kubernetes' text); one whose `data` is not exactly `{ca.crt: <bundle>}`
//! or whose description annotation is empty is put back (other annotations
//! and labels are kept, a description someone changed is kept as long as
//! it is not empty, as Kubernetes does). Without `--root-ca-file` the
//! controller publishes nothing and says so once in the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::informer::Informer;
use crate::{runner, Context, Error};

/// The controller's name (`--controllers`); Kubernetes calls it `root-ca-certificate-publisher-controller`.
pub const NAME: &str = "root-ca-certificate-publisher";

/// The ConfigMap published in every namespace.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";

/// Its one key.
pub const KEY: &str = "ca.crt";

/// The annotation describing it.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// Kubernetes' description of the ConfigMap.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal \
                               endpoints such as the internal service IP or kubernetes.default.svc. No other usage is \
                               guaranteed across distributions of Kubernetes clusters.";

/// Subscribes the controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let bundle = match &ctx.config.root_ca_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => Some(Arc::new(pem)),
            Err(err) => {
                tracing::error!(path = %path.display(), %err, "cannot read --root-ca-file; publishing no root CA");
                None
            }
        },
        None => {
            tracing::warn!("no --root-ca-file: the kube-root-ca.crt ConfigMaps are not published");
            None
        }
    };
    let Some(bundle) = bundle else {
        return futures::future::pending().boxed();
    };
    let maps = Arc::new(Informer::<ConfigMap>::new(
        Api::all(ctx.client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}")),
    ));
    let store = ctx.informers.namespaces.store();
    let own = ctx
        .informers
        .namespaces
        .trigger(|n: &Namespace| Some(ObjectRef::from_obj(n)));
    let from_maps = maps.trigger(|cm: &ConfigMap| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)));
    let maps_store = maps.store();
    async move {
        maps.start();
        maps.wait_synced().await;
        runner::run(
            NAME,
            ctx,
            store,
            vec![own.boxed(), from_maps.boxed()],
            move |ns, ctx| reconcile(ns, ctx, maps_store.clone(), bundle.clone()),
        )
        .await
    }
    .boxed()
}

async fn reconcile(
    ns: Arc<Namespace>,
    ctx: Arc<Context>,
    maps: Store<ConfigMap>,
    bundle: Arc<String>,
) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = maps.get(&ObjectRef::new(CONFIG_MAP).within(&namespace));
    match desired(current.as_deref(), &bundle) {
        Wanted::Nothing => {}
        Wanted::Create(cm) => match api.create(&PostParams::default(), &cm).await {
            Ok(_) => tracing::info!(namespace = %namespace, "published kube-root-ca.crt"),
            Err(kube::Error::Api(s))
                if s.code == 409 || s.code == 404 || (s.code == 403 && crate::serviceaccount::terminating(&s)) => {}
            Err(err) => return Err(err.into()),
        },
        Wanted::Update(cm) => match api.replace(CONFIG_MAP, &PostParams::default(), &cm).await {
            Ok(_) => tracing::info!(namespace = %namespace, "restored kube-root-ca.crt"),
            // Changed or deleted meanwhile: the informer brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(err) => return Err(err.into()),
        },
    }
    Ok(Action::await_change())
}

/// What the namespace's ConfigMap needs.
#[derive(Debug)]
enum Wanted {
    Nothing,
    Create(ConfigMap),
    Update(ConfigMap),
}

fn desired(current: Option<&ConfigMap>, bundle: &str) -> Wanted {
    let data = BTreeMap::from([(KEY.to_string(), bundle.to_string())]);
    let Some(current) = current else {
        return Wanted::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        });
    };
    let described = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if current.data.as_ref() == Some(&data) && described {
        return Wanted::Nothing;
    }
    let mut cm = current.clone();
    cm.data = Some(data);
    let annotations = cm.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if !described {
        annotations.insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    }
    Wanted::Update(cm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_missing_config_map_is_created_with_the_bundle_and_the_description() {
        let Wanted::Create(cm) = desired(None, PEM) else {
            panic!("expected a create")
        };
        assert_eq!(cm.metadata.name.as_deref(), Some("kube-root-ca.crt"));
        assert_eq!(cm.data.unwrap()["ca.crt"], PEM);
        let annotations = cm.metadata.annotations.unwrap();
        assert!(annotations["kubernetes.io/description"].starts_with("Contains a CA bundle"));
    }

    #[test]
    fn an_edited_config_map_is_restored_keeping_what_is_not_ours() {
        let Wanted::Create(good) = desired(None, PEM) else {
            panic!("expected a create")
        };
        assert!(matches!(desired(Some(&good), PEM), Wanted::Nothing));

        let mut edited = good.clone();
        edited.data.as_mut().unwrap().insert("extra".into(), "x".into());
        edited.data.as_mut().unwrap().insert("ca.crt".into(), "forged".into());
        edited
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("team".into(), "a".into());
        edited.metadata.annotations = None;
        let Wanted::Update(fixed) = desired(Some(&edited), PEM) else {
            panic!("expected an update")
        };
        assert_eq!(fixed.data, good.data, "exactly ca.crt again");
        assert_eq!(fixed.metadata.labels.unwrap()["team"], "a");
        assert_eq!(
            fixed.metadata.annotations.unwrap()["kubernetes.io/description"],
            DESCRIPTION
        );

        let mut redescribed = good.clone();
        redescribed
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DESCRIPTION_ANNOTATION.into(), "ours".into());
        assert!(matches!(desired(Some(&redescribed), PEM), Wanted::Nothing));
    }
}
