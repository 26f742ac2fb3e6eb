//! The Service proxy of the node daemon: watches Services and EndpointSlices
//! through the API server and programs the eBPF datapath so that ClusterIPs
//! and NodePorts reach the Services' ready endpoints. It installs no
//! iptables rule: every frontend is an entry in the datapath's pinned maps.
//!
//! Shape: two kube reflectors (Services, EndpointSlices) keep local caches and
//! wake the reconcile loop; bursts of events are coalesced (debounce), then
//! one reconcile translates every Service ([`desired_frontends`]) and applies
//! the difference to the datapath ([`reconcile::apply`]). A periodic resync
//! retries failures and repairs frontends changed behind the proxy's back.
//! The first reconcile waits until both caches are filled, so a restarted
//! node daemon never deletes a frontend it merely has not heard of yet.
//!
//! ```ignore
//! let datapath = Arc::new(Mutex::new(Datapath::open_or_adopt(DatapathConfig::default())?));
//! sluice_proxy::run(client, datapath, ProxyConfig::new(node_name), shutdown_signal).await?;
//! ```

mod error;
pub mod reconcile;
pub mod translate;

pub use error::ProxyError;
pub use translate::desired_frontends;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use sluice_datapath::{Datapath, Frontend, ServiceSpec};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{info, info_span, warn, Instrument};

/// How the proxy runs on one node.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node's name (endpoints with this `nodeName` are node-local).
    pub node_name: String,
    /// How long to wait after an event for more before reconciling (coalesces bursts).
    pub debounce: Duration,
    /// Reconcile at least this often even without events (retries, repairs drift).
    pub resync: Duration,
}

impl ProxyConfig {
    /// Defaults for `node_name`: 50 ms debounce, 30 s resync.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(30),
        }
    }
}

/// Run the proxy until `shutdown` completes (returns `Ok`) or the datapath
/// becomes unusable (returns the error). Frontends stay programmed when it
/// returns: a restarted node daemon adopts them, and connections keep going.
pub async fn run(
    client: Client,
    datapath: Arc<Mutex<Datapath>>,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let wake = Arc::new(Notify::new());
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let services_watch = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    let slices_watch = reflector::reflector(
        slices_writer,
        watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff(),
    );
    let watches = futures::future::join(
        drive("services", services_watch, wake.clone()),
        drive("endpointslices", slices_watch, wake.clone()),
    );
    let ready = async {
        services
            .wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("services"))?;
        slices
            .wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("endpointslices"))
    };
    let loop_ = async {
        ready.await?;
        info!(node = %config.node_name, "service proxy caches filled; reconciling");
        reconcile_loop(&services, &slices, &datapath, &config, &wake).await
    };
    tokio::select! {
        _ = shutdown => {
            info!("service proxy stopping; frontends stay programmed");
            Ok(())
        }
        r = loop_ => r,
        _ = watches => Err(ProxyError::WatchEnded("services/endpointslices")),
    }
}

/// Drive a reflector stream, waking the reconcile loop on every event.
async fn drive<K>(
    what: &'static str,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    wake: Arc<Notify>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitApply(_)) => {} // the InitDone that follows wakes
            Ok(_) => wake.notify_one(),
            Err(e) => warn!(what, error = %e, "watch failed; retrying with back-off"),
        }
    }
}

async fn reconcile_loop(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    datapath: &Mutex<Datapath>,
    config: &ProxyConfig,
    wake: &Notify,
) -> Result<(), ProxyError> {
    let mut applied: HashMap<Frontend, ServiceSpec> = HashMap::new();
    let mut generation = 0u64;
    loop {
        generation += 1;
        let span = info_span!("reconcile", generation, node = %config.node_name);
        let result = async {
            let started = Instant::now();
            let desired = desired_state(services, slices, &config.node_name);
            let mut dp = datapath.lock().map_err(|_| ProxyError::DatapathPoisoned)?;
            let outcome = reconcile::apply(&mut dp, &desired, &mut applied);
            drop(dp);
            match &outcome {
                Ok(o) if o.upserted + o.deleted > 0 => info!(
                    frontends = desired.len(),
                    upserted = o.upserted,
                    deleted = o.deleted,
                    took_us = started.elapsed().as_micros() as u64,
                    "datapath updated"
                ),
                Ok(_) => tracing::debug!(frontends = desired.len(), "datapath up to date"),
                Err(e) => warn!(error = %e, "reconcile incomplete; retrying"),
            }
            Ok::<bool, ProxyError>(outcome.is_err())
        }
        .instrument(span)
        .await?;
        let retry_soon = result;
        let wait = if retry_soon {
            Duration::from_secs(1).min(config.resync)
        } else {
            config.resync
        };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
        tokio::time::sleep(config.debounce).await;
    }
}

/// Every frontend this node should serve, from the caches.
fn desired_state(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    node_name: &str,
) -> HashMap<Frontend, ServiceSpec> {
    let all_slices = slices.state();
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for s in &all_slices {
        let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(translate::SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        by_service.entry((ns, name.clone())).or_default().push(s.as_ref());
    }
    let mut desired = HashMap::new();
    for svc in services.state() {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let own = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        for spec in desired_frontends(&svc, own, node_name) {
            if let Some(other) = desired.insert(spec.frontend, spec) {
                warn!(frontend = %other.frontend, service = %format!("{}/{}", key.0, key.1), "two Services claim one frontend; the later one wins");
            }
        }
    }
    desired
}
