//! Native routing between nodes: watch the Nodes and keep one kernel route
//! per other node, `<its spec.podCIDR> via <its InternalIP>`, in this node's
//! network namespace ([`sluice_datapath::routes`]), and the datapath's set of
//! node addresses (pod traffic to a node is never masqueraded). A route goes
//! when its Node goes; a restarted noded takes over the routes it made (they
//! carry route protocol 201) once its Node cache is filled, never before.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use sluice_datapath::routes::{self, NodeRoute};
use sluice_datapath::Datapath;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info_span, warn, Instrument};

/// Re-check the routes at least this often (repairs routes removed behind noded's back).
const RESYNC: Duration = Duration::from_secs(30);

fn internal_ip(n: &Node) -> Option<Ipv4Addr> {
    n.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}

/// Every node's InternalIP (this node's included), sorted.
pub fn node_addresses<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = nodes.into_iter().filter_map(internal_ip).collect();
    out.sort();
    out.dedup();
    out
}

/// The routes this node needs: every other node with a podCIDR and an InternalIP.
pub fn desired_routes<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str) -> Vec<NodeRoute> {
    let mut out: Vec<NodeRoute> = nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| {
            let cidr: ipnet::Ipv4Net = n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            Some(NodeRoute {
                pod_cidr: (cidr.network(), cidr.prefix_len()),
                via: internal_ip(n)?,
            })
        })
        .collect();
    out.sort();
    out.dedup_by_key(|r| r.pod_cidr);
    out
}

/// Keep the node routes and the datapath's node addresses in sync with the Nodes until the watch ends.
pub async fn run(client: Client, node_name: String, datapath: Arc<Mutex<Datapath>>) -> anyhow::Result<()> {
    let (store, writer) = reflector::store::<Node>();
    let wake = Arc::new(Notify::new());
    let watch = {
        let wake = wake.clone();
        reflector::reflector(
            writer,
            watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff(),
        )
        .for_each(move |event| {
            match event {
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(_) => wake.notify_one(),
                Err(e) => warn!(error = %e, "node watch failed; retrying with back-off"),
            }
            std::future::ready(())
        })
    };
    let sync = async {
        store
            .wait_until_ready()
            .await
            .map_err(|_| anyhow::anyhow!("the node watch ended"))?;
        loop {
            let nodes = store.state();
            let desired = desired_routes(nodes.iter().map(|n| n.as_ref()), &node_name);
            let addresses = node_addresses(nodes.iter().map(|n| n.as_ref()));
            let programmed = datapath
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_cluster_nodes(&addresses);
            if let Err(e) = programmed {
                warn!(error = %e, "node addresses not programmed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if let Err(e) = routes::sync_node_routes(&desired)
                .instrument(info_span!("node_routes", routes = desired.len()))
                .await
            {
                warn!(error = %e, "node routes not in sync; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let _ = tokio::time::timeout(RESYNC, wake.notified()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = watch => anyhow::bail!("the node watch ended"),
        r = sync => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": ip.map(|ip| vec![
                serde_json::json!({"type": "Hostname", "address": name}),
                serde_json::json!({"type": "InternalIP", "address": ip}),
            ])},
        }))
        .unwrap()
    }

    #[test]
    fn one_route_per_other_node_with_a_pod_cidr_and_an_internal_ip() {
        let nodes = [
            node("n1", Some("10.244.1.0/24"), Some("10.251.0.2")),
            node("n3", Some("10.244.3.0/24"), Some("10.251.0.4")),
            node("n2", Some("10.244.2.0/24"), Some("10.251.0.3")),
            node("no-cidr", None, Some("10.251.0.9")),
            node("no-ip", Some("10.244.9.0/24"), None),
            node("bad-cidr", Some("nonsense"), Some("10.251.0.8")),
        ];
        let routes = desired_routes(nodes.iter(), "n1");
        let shown: Vec<String> = routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["10.244.2.0/24 via 10.251.0.3", "10.244.3.0/24 via 10.251.0.4"]);
        let addresses: Vec<String> = node_addresses(nodes.iter()).iter().map(|a| a.to_string()).collect();
        assert_eq!(
            addresses,
            ["10.251.0.2", "10.251.0.3", "10.251.0.4", "10.251.0.8", "10.251.0.9"]
        );
    }
}
