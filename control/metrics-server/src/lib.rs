//! Sluice's metrics server: Kubernetes' metrics-server for Sluice.
//!
//! Every `--metric-resolution` it scrapes each kubelet's `/metrics/resource`
//! ([`scraper`], parsed by [`prom`]), turns the last two readings into CPU
//! rates and working sets ([`storage`]), and serves them as
//! `metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics ([`api`]) behind the
//! API server's aggregator, where it registers itself at start
//! ([`register`]) with a serving certificate of its own CA ([`certs`]).
//! `kubectl top` and the HorizontalPodAutoscaler read it through the API
//! server.

pub mod api;
pub mod certs;
pub mod prom;
pub mod register;
pub mod scraper;
pub mod selector;
pub mod storage;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use tracing::Instrument;

use crate::api::{NodeMetric, PodMetric, Snapshot};
use crate::scraper::KubeletClient;
use crate::storage::Storage;

/// One scrape cycle: list Nodes, scrape every kubelet at once, store, list
/// Pods for their labels, and publish the new [`Snapshot`].
pub async fn cycle(
    client: &kube::Client,
    kubelets: &KubeletClient,
    storage: &Mutex<Storage>,
    snapshot: &RwLock<Snapshot>,
) -> Result<(), kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let scrapes = futures::future::join_all(nodes.iter().map(|node| {
        let name = node.name_any();
        async move {
            let result = match kubelets.address(node) {
                Ok((host, port)) => kubelets.scrape(&host, port).await,
                Err(e) => Err(e),
            };
            (name, result)
        }
        .instrument(tracing::debug_span!("scrape", node = %node.name_any()))
    }))
    .await;
    let names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    let (node_usage, pod_usage) = {
        let mut s = storage.lock().unwrap_or_else(|p| p.into_inner());
        s.retain(&names);
        for (name, result) in scrapes {
            match result {
                Ok(scrape) => s.store(&name, scrape),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "Failed to scrape node");
                    s.forget(&name);
                }
            }
        }
        (s.node_usage(), s.pod_usage())
    };
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let labels = |m: &BTreeMap<String, String>| m.clone();
    let mut out = Snapshot::default();
    for node in &nodes {
        if let Some(u) = node_usage.get(&node.name_any()) {
            out.nodes.push(NodeMetric {
                name: node.name_any(),
                labels: labels(node.labels()),
                usage: *u,
            });
        }
    }
    let mut seen = HashSet::new();
    for pod in &pods {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        if let Some(u) = pod_usage.get(&key) {
            if seen.insert(key.clone()) {
                out.pods.push(PodMetric {
                    namespace: key.0,
                    name: key.1,
                    labels: labels(pod.labels()),
                    usage: u.clone(),
                });
            }
        }
    }
    out.pods
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    tracing::debug!(nodes = out.nodes.len(), pods = out.pods.len(), "stored metrics");
    *snapshot.write().unwrap_or_else(|p| p.into_inner()) = out;
    Ok(())
}

/// Keep scraping every `resolution`.
pub async fn run_scraper(
    client: kube::Client,
    kubelets: KubeletClient,
    resolution: std::time::Duration,
    snapshot: Arc<RwLock<Snapshot>>,
) {
    let storage = Mutex::new(Storage::default());
    let mut tick = tokio::time::interval(resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let span = tracing::info_span!("scrape-cycle");
        if let Err(e) = cycle(&client, &kubelets, &storage, &snapshot).instrument(span).await {
            tracing::warn!(error = %e, "scrape cycle failed");
        }
    }
}
