//! Runs one controller: a kube-runtime work queue over an informer's cache,
//! fed by trigger streams, with a tracing span per reconcile, a periodic
//! resync and client-go's work queue metrics
//! ([`crate::workqueue_metrics`], the queue named as Kubernetes names it).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::{Context, Error};

/// Delay before a failed reconcile is retried.
const ERROR_REQUEUE: Duration = Duration::from_secs(2);

/// Builds the run loop of a controller over objects of type `K`.
///
/// `triggers` emit keys to reconcile (the primary's own changes and mapped
/// changes of related objects). Every key in `store` is also reconciled each
/// resync period.
pub fn run<K, F, Fut>(
    name: &'static str,
    ctx: Arc<Context>,
    store: Store<K>,
    triggers: Vec<BoxStream<'static, ObjectRef<K>>>,
    reconcile: F,
) -> futures::future::BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    run_batched(name, ctx, store, triggers, Duration::ZERO, reconcile)
}

/// Like [`run`], but requests for one key arriving within `batch` of each
/// other are coalesced into one reconcile (trailing edge), so bursts of
/// changes produce one write.
pub fn run_batched<K, F, Fut>(
    name: &'static str,
    ctx: Arc<Context>,
    store: Store<K>,
    triggers: Vec<BoxStream<'static, ObjectRef<K>>>,
    batch: Duration,
    reconcile: F,
) -> futures::future::BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let resync = ctx.config.resync_period;
    let resync_store = store.clone();
    let resync_trigger = tokio_interval(resync)
        .flat_map(move |_| {
            futures::stream::iter(
                resync_store
                    .state()
                    .iter()
                    .map(|o| ObjectRef::from_obj(&**o))
                    .collect::<Vec<_>>(),
            )
        })
        .boxed();
    let mut all = futures::stream::select_all(triggers);
    all.push(resync_trigger);
    let queue = crate::workqueue_metrics::metrics().queue(crate::workqueue_metrics::kubernetes_name(name));
    let adds = queue.clone();
    let all = all.inspect(move |r| adds.added(&queue_key(r.namespace.as_deref(), &r.name)));
    let controller = Controller::for_stream(futures::stream::pending(), store)
        .with_config(controller::Config::default().concurrency(8).debounce(batch))
        .reconcile_on(all);
    let dropped = queue.clone();
    let reconcile = Arc::new(reconcile);
    controller
        .run(
            move |obj: Arc<K>, ctx: Arc<Context>| {
                let span = tracing::info_span!(
                    "reconcile",
                    controller = name,
                    object = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
                );
                let reconcile = reconcile.clone();
                let (queue, key) = (queue.clone(), queue_key(obj.namespace().as_deref(), &obj.name_any()));
                async move {
                    queue.started(&key);
                    let result = reconcile(obj, ctx).await;
                    queue.finished(&key, result.is_err());
                    if let Err(err) = &result {
                        tracing::warn!(error = %err, "reconcile failed");
                    }
                    result
                }
                .instrument(span)
            },
            |_obj, _err, _ctx| Action::requeue(ERROR_REQUEUE),
            ctx,
        )
        .for_each(move |result| {
            if let Err(controller::Error::ObjectNotFound(gone)) = &result {
                dropped.dropped(&queue_key(gone.namespace.as_deref(), &gone.name));
            }
            futures::future::ready(())
        })
        .boxed()
}

/// A work queue key, as client-go's `MetaNamespaceKeyFunc` (`namespace/name`, or `name`).
fn queue_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// A stream that ticks every `period`, starting one period from now.
fn tokio_interval(period: Duration) -> BoxStream<'static, ()> {
    futures::stream::unfold((), move |_| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
    .boxed()
}

/// Runs `tick` every `period` until the process ends (for controllers that
/// are periodic scans rather than per-object queues, like Kubernetes'
/// node-lifecycle monitor and pod GC).
pub async fn every<Fut>(name: &'static str, period: Duration, mut tick: impl FnMut() -> Fut)
where
    Fut: Future<Output = Result<(), Error>>,
{
    loop {
        tokio::time::sleep(period).await;
        let span = tracing::info_span!("reconcile", controller = name);
        if let Err(err) = tick().instrument(span).await {
            tracing::warn!(controller = name, error = %err, "periodic pass failed");
        }
    }
}
