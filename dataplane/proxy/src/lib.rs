//! The Service proxy of the node daemon: watches Services, EndpointSlices,
//! Nodes and this node's Pods through the API server and programs the eBPF
//! datapath so that ClusterIPs, NodePorts, LoadBalancer and external IPs and
//! hostPorts reach their endpoints; answers ARP for the LoadBalancer IPs this
//! node announces ([`announce`]) and serves `healthCheckNodePort`s
//! ([`health_check`]); takes this node's deleted pods out of the maps before
//! they are signalled ([`drain`]). It installs no iptables rule: every frontend is an
//! entry in the datapath's pinned maps.
//!
//! Shape: four kube reflectors (Services, EndpointSlices, Nodes, own Pods) keep local caches and
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

pub mod announce;
pub mod drain;
mod error;
pub mod health_check;
pub mod names;
pub mod reconcile;
pub mod translate;

pub use error::ProxyError;
pub use translate::desired_frontends;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
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
    /// Where to publish the pods of this node whose endpoints were drained
    /// (see [`drain`]); `None`: this node's deleting pods are left to the
    /// EndpointSlice alone.
    pub drains: Option<drain::DrainPublisher>,
    /// Where to publish the names of frontends and endpoint addresses (see
    /// [`names`]), for the node daemon's metrics and flow events.
    pub names: Option<names::NamesPublisher>,
}

impl ProxyConfig {
    /// Defaults for `node_name`: 50 ms debounce, 30 s resync.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            debounce: Duration::from_millis(50),
            resync: Duration::from_secs(30),
            drains: None,
            names: None,
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
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let services_watch = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    let slices_watch = reflector::reflector(
        slices_writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    let nodes_watch = reflector::reflector(
        nodes_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    // This node's pods, for their hostPorts and to drain the deleted ones.
    let own_pods = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name));
    let pods_watch = reflector::reflector(
        pods_writer,
        watcher(Api::<Pod>::all(client), own_pods).default_backoff(),
    );
    let watches = futures::future::join4(
        drive("services", services_watch, wake.clone()),
        drive("endpointslices", slices_watch, wake.clone()),
        drive("nodes", nodes_watch, wake.clone()),
        drive("pods", pods_watch, wake.clone()),
    );
    let ready = async {
        services
            .wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("services"))?;
        slices
            .wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("endpointslices"))?;
        nodes
            .wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("nodes"))?;
        pods.wait_until_ready()
            .await
            .map_err(|_| ProxyError::WatchEnded("pods"))
    };
    let caches = Caches {
        services: services.clone(),
        slices: slices.clone(),
        nodes: nodes.clone(),
        pods: pods.clone(),
    };
    let loop_ = async {
        ready.await?;
        info!(node = %config.node_name, "service proxy caches filled; reconciling");
        reconcile_loop(&caches, &datapath, &config, &wake).await
    };
    tokio::select! {
        _ = shutdown => {
            info!("service proxy stopping; frontends stay programmed");
            Ok(())
        }
        r = loop_ => r,
        _ = watches => Err(ProxyError::WatchEnded("services/endpointslices/nodes/pods")),
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

/// The proxy's caches of the objects it translates.
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pods: Store<Pod>,
}

async fn reconcile_loop(
    caches: &Caches,
    datapath: &Mutex<Datapath>,
    config: &ProxyConfig,
    wake: &Notify,
) -> Result<(), ProxyError> {
    let mut applied: HashMap<Frontend, ServiceSpec> = HashMap::new();
    let mut health = health_check::HealthServers::default();
    let mut generation = 0u64;
    loop {
        generation += 1;
        let span = info_span!("reconcile", generation, node = %config.node_name);
        let result = async {
            let started = Instant::now();
            let services = caches.services.state();
            let slices = caches.slices.state();
            let services: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
            let slices: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
            let mut desired = desired_state(&services, &slices, &config.node_name);
            if let Some(names) = &config.names {
                names.publish(names::ServiceNames::build(&services, &slices));
            }
            let pods = caches.pods.state();
            let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
            for spec in translate::host_port_frontends(&pods, &config.node_name) {
                if let Some(other) = desired.insert(spec.frontend, spec) {
                    warn!(frontend = %other.frontend, "a hostPort and a NodePort share a port; the hostPort wins");
                }
            }
            let drained = drain::apply(&mut desired, &drain::draining_addresses(&pods));
            let nodes = caches.nodes.state();
            let nodes: Vec<&Node> = nodes.iter().map(AsRef::as_ref).collect();
            let announced = announce::announced_by(&services, &slices, &nodes, &config.node_name);
            let checks = health_check::desired(&services, &slices, &config.node_name);
            let (outcome, announce_result) = {
                let mut dp = datapath.lock().map_err(|_| ProxyError::DatapathPoisoned)?;
                let outcome = reconcile::apply(&mut dp, &desired, &mut applied);
                let announce_result = if dp.announced() != announced {
                    info!(ips = ?announced, "LoadBalancer IPs announced by this node");
                    dp.set_announced(&announced)
                } else {
                    Ok(())
                };
                (outcome, announce_result)
            };
            if let (Ok(_), Some(drains)) = (&outcome, &config.drains) {
                drains.publish(drained);
            }
            health.sync(&checks).await;
            if let Err(e) = &announce_result {
                warn!(error = %e, "could not announce LoadBalancer IPs; retrying");
            }
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
            Ok::<bool, ProxyError>(outcome.is_err() || announce_result.is_err())
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

/// Every Service frontend this node should serve.
fn desired_state(services: &[&Service], slices: &[&EndpointSlice], node_name: &str) -> HashMap<Frontend, ServiceSpec> {
    let mut by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
    for s in slices {
        let Some(name) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(translate::SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        by_service.entry((ns, name.clone())).or_default().push(s);
    }
    let mut desired = HashMap::new();
    for svc in services {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let own = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        for spec in desired_frontends(svc, own, node_name) {
            if let Some(other) = desired.insert(spec.frontend, spec) {
                warn!(frontend = %other.frontend, service = %format!("{}/{}", key.0, key.1), "two Services claim one frontend; the later one wins");
            }
        }
    }
    desired
}
