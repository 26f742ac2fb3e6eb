//! The node agent: register the Node, wait for its podCIDR, keep status and lease fresh.
//!
//! Order matters: the Node is registered first (NotReady, NetworkUnavailable);
//! once node IPAM has set `spec.podCIDR` the CNI config is written, and only
//! when containerd then reports its network ready does the Node turn Ready,
//! so the scheduler never places pods on a node that cannot network them.

use crate::cni_config;
use crate::cri::Cri;
use crate::node_status::{self, Health, Machine, NodeIdentity, Reservations};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use std::path::PathBuf;
use std::time::Duration;

/// Where the node's network config goes.
pub struct NetworkPaths {
    /// containerd's CNI config directory.
    pub cni_conf_dir: PathBuf,
    /// noded's node network socket (for the plugin).
    pub noded_socket: PathBuf,
    /// The plugin's state directory (IPAM).
    pub cni_state_dir: PathBuf,
}

/// Register the node and run status and lease loops forever, both every `heartbeat`
/// (Kubernetes: 10 s; tests with a short node-monitor grace period use less),
/// and whenever the eviction manager's `pressure` changes.
pub async fn run(
    client: kube::Client,
    cri: Cri,
    identity: NodeIdentity,
    reserved: Reservations,
    paths: NetworkPaths,
    heartbeat: Duration,
    mut pressure: tokio::sync::watch::Receiver<crate::eviction::Pressure>,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_status::register(&nodes, &identity).await?;
    tracing::info!(node = identity.name, "node registered");
    tokio::spawn(crate::lease::run(
        Api::<Lease>::namespaced(client.clone(), crate::lease::NAMESPACE),
        node,
        heartbeat,
    ));
    let machine = Machine::measure(110);
    let mut previous = Vec::new();
    let mut network_configured = false;
    loop {
        let node = nodes.get(&identity.name).await;
        if let (false, Ok(node)) = (network_configured, &node) {
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
        let conditions = node_status::conditions(
            Health {
                runtime_ready,
                network_ready,
                pressure: *pressure.borrow_and_update(),
            },
            &previous,
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
        if let Err(err) = node_status::post_status(&nodes, &identity.name, status).await {
            tracing::warn!(%err, "posting node status failed");
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
