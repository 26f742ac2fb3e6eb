//! The node agent: register the Node, wait for its podCIDR, keep status and lease fresh.
//!
//! Order matters: the Node is registered first (NotReady, NetworkUnavailable);
//! once node IPAM has set `spec.podCIDR` the CNI config is written, and only
//! when containerd then reports its network ready does the Node turn Ready,
//! so the scheduler never places pods on a node that cannot network them.
//!
//! The Lease is the heartbeat. The status is worked out every heartbeat but
//! posted only when it differs from what the API server holds (conditions
//! without their heartbeat times, capacity, addresses, images, node info;
//! [`node_status::changed`]) or when the last post is older than the report
//! period: the kubelet's `nodeStatusUpdateFrequency` and
//! `nodeStatusReportFrequency` (5 min). What the server holds comes from a
//! watch of this one Node, so a condition another writer changed (the node
//! lifecycle controller's Ready=Unknown) is seen and posted back at the next
//! heartbeat, and a quiet node costs the API server no request beyond its
//! Lease.

use crate::cni_config;
use crate::cri::Cri;
use crate::node_status::{self, Health, Machine, NodeIdentity, Reservations};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Api;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the node's network config goes.
pub struct NetworkPaths {
    /// containerd's CNI config directory.
    pub cni_conf_dir: PathBuf,
    /// noded's node network socket (for the plugin).
    pub noded_socket: PathBuf,
    /// The plugin's state directory (IPAM).
    pub cni_state_dir: PathBuf,
}

/// How often the node agent works.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    /// Lease renewals and status checks (Kubernetes: 10 s; tests with a
    /// short node-monitor grace period use less).
    pub heartbeat: Duration,
    /// An unchanged status is posted again after this (Kubernetes: 5 min).
    pub status_report: Duration,
}

/// Register the node and run status and lease loops forever: the lease is
/// renewed every heartbeat; the status is checked every heartbeat and
/// whenever the eviction manager's `pressure` changes, and posted when it
/// changed or is due.
pub async fn run(
    client: kube::Client,
    cri: Cri,
    identity: NodeIdentity,
    reserved: Reservations,
    paths: NetworkPaths,
    periods: Periods,
    mut pressure: tokio::sync::watch::Receiver<crate::eviction::Pressure>,
) -> anyhow::Result<()> {
    let heartbeat = periods.heartbeat;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_status::register(&nodes, &identity).await?;
    tracing::info!(node = identity.name, "node registered");
    tokio::spawn(crate::lease::run(
        Api::<Lease>::namespaced(client.clone(), crate::lease::NAMESPACE),
        node,
        heartbeat,
    ));
    let (held, _watch) = crate::watched_store(
        nodes.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", identity.name)),
        format!("node {}", identity.name),
    );
    let machine = Machine::measure(110);
    let mut previous = Vec::new();
    let mut network_configured = false;
    let mut reported: Option<Instant> = None;
    loop {
        // The Node as the API server holds it: from the watch, or read
        // while the watch has not listed it yet.
        let node: Option<Arc<Node>> = match held.get(&ObjectRef::new(&identity.name)) {
            Some(node) => Some(node),
            None => match nodes.get(&identity.name).await {
                Ok(node) => Some(Arc::new(node)),
                Err(err) => {
                    tracing::debug!(%err, "reading the Node failed");
                    None
                }
            },
        };
        if let (false, Some(node)) = (network_configured, &node) {
            if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                match cidr.parse() {
                    Ok(cidr) => {
                        cni_config::write(&paths.cni_conf_dir, cidr, &paths.noded_socket, &paths.cni_state_dir)?;
                        tracing::info!(%cidr, "pod network configured");
                        network_configured = true;
                    }
                    Err(err) => tracing::warn!(cidr, %err, "spec.podCIDR is not an IPv4 CIDR"),
                }
            }
        }
        let runtime_ready = cri
            .status()
            .await
            .map(|cs| cs.iter().any(|c| c.r#type == "RuntimeReady" && c.status))
            .unwrap_or(false);
        let network_ready = network_configured && cri.network_ready().await.unwrap_or(false);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let current = node.as_deref().and_then(|n| n.status.as_ref());
        // Transition times follow what is held, which another writer may
        // have changed; noded's own last conditions when it cannot be read.
        let conditions = node_status::conditions(
            Health {
                runtime_ready,
                network_ready,
                pressure: *pressure.borrow_and_update(),
            },
            current.and_then(|s| s.conditions.as_deref()).unwrap_or(&previous),
            &now,
        );
        previous = conditions.clone();
        let images = match cri.list_images().await {
            Ok(list) => node_status::images(list),
            Err(err) => {
                tracing::warn!(%err, "listing images failed");
                Vec::new()
            }
        };
        let status = node_status::status(&identity, &machine, &reserved, conditions, images);
        let due = reported.is_none_or(|at| at.elapsed() >= periods.status_report);
        if due || node_status::changed(current, &status) {
            match node_status::post_status(&nodes, &identity.name, status).await {
                Ok(_) => reported = Some(Instant::now()),
                Err(err) => tracing::warn!(%err, "posting node status failed"),
            }
        }
        // Until the network is up, look again soon; then at the normal period.
        let wait = if network_ready {
            heartbeat
        } else {
            heartbeat.min(Duration::from_secs(1))
        };
        // A pressure change is posted at once (the scheduler's taints follow it).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Ok(()) = pressure.changed() => {}
        }
    }
}
