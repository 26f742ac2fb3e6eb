//! `nodesim`: a kwok-like node simulator for testing and benchmarking the control plane
//! at scale without real nodes.
//!
//! It registers `--nodes` Nodes named `<prefix>-0 … <prefix>-(N-1)` with the given
//! capacity, labels and taints, reports them Ready, renews their Leases in
//! `kube-node-lease` every `--lease-renew-interval`, moves pods bound to them to Running
//! with a pod IP (from the node's `spec.podCIDR`, else a synthetic /24 per node from
//! `--synthetic-pod-cidr`), and finalizes pods marked for deletion. With
//! `--complete-after D`, pods with restartPolicy `Never`/`OnFailure` succeed (containers
//! terminated, exit code 0, reason Completed) D after they started, so Jobs finish;
//! `--zones N` labels node i `topology.kubernetes.io/zone=zone-<i mod N>`. Killing the process
//! stops the heartbeats, as if the nodes died. Several instances with different
//! prefixes (and synthetic ranges) can run side by side.
//!
//! Example: `nodesim --kubeconfig F --nodes 3 --name-prefix node --cpu 4 --memory 8Gi --pods 110`

mod ipam;
mod leases;
mod nodes;
mod pods;

use anyhow::Result;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Api;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Simulate Kubernetes nodes: register them, heartbeat, and run their pods.
#[derive(Parser, Debug)]
#[command(name = "nodesim", version)]
struct Args {
    /// Kubeconfig to reach the API server (default: $KUBECONFIG).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Node names are `<prefix>-<index>`.
    #[arg(long, default_value = "node")]
    name_prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "8Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value = "110")]
    pods: String,
    /// Extra node label `key=value` (repeatable).
    #[arg(long = "label", value_parser = nodes::parse_label)]
    labels: Vec<(String, String)>,
    /// Node taint `key[=value]:Effect` (repeatable).
    #[arg(long = "taint", value_parser = nodes::parse_taint)]
    taints: Vec<Taint>,
    /// How often each node's Lease is renewed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_renew_interval: Duration,
    /// leaseDurationSeconds written in each Lease.
    #[arg(long, default_value_t = 40)]
    lease_duration_seconds: i32,
    /// Register these nodes but never renew their Leases (repeatable).
    #[arg(long = "no-renew")]
    no_renew: Vec<String>,
    /// Pod IP range split into one /24 per node, for nodes without spec.podCIDR.
    #[arg(long, default_value = "10.128.0.0/9")]
    synthetic_pod_cidr: ipnet::Ipv4Net,
    /// Spread the nodes over this many zones (label `topology.kubernetes.io/zone=zone-<i mod N>`; 0: none).
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Report Running pods with restartPolicy Never/OnFailure Succeeded (every container
    /// exited 0) this long after they started; without it they run until deleted.
    #[arg(long, value_parser = humantime::parse_duration)]
    complete_after: Option<Duration>,
    /// API requests in flight at once (registration, leases, pod status).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    sluice_kube::logging::init();
    let args = Args::parse();
    let client = sluice_kube::client::client(args.kubeconfig.as_deref()).await?;
    let names: Vec<String> = (0..args.nodes).map(|i| format!("{}-{i}", args.name_prefix)).collect();
    let template = nodes::NodeTemplate {
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        pods: args.pods.clone(),
        labels: args.labels.iter().cloned().collect(),
        taints: args.taints.clone(),
        prefix: args.name_prefix.clone(),
        zones: args.zones,
    };

    // Run pods from the start: the scheduler may bind to a node as soon as it exists.
    let runner = pods::PodRunner::new(
        client.clone(),
        &names,
        args.synthetic_pod_cidr,
        args.concurrency,
        args.complete_after,
    );
    tokio::spawn(runner.clone().watch_nodes());
    tokio::spawn(runner.clone().run());

    let started = Instant::now();
    leases::ensure_namespace(&client).await?;
    let node_api: Api<Node> = Api::all(client.clone());
    let mut registered = Vec::with_capacity(names.len());
    let mut results = futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (api, t) = (&node_api, &template);
            async move { nodes::register(api, t, name, i).await }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(r) = results.next().await {
        registered.push(r?);
        if registered.len() % 1000 == 0 {
            info!(done = registered.len(), total = names.len(), "registering nodes");
        }
    }
    drop(results);
    info!(
        nodes = names.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "nodes registered and Ready"
    );

    // Leases: one now for every node, then renewed every interval except for --no-renew ones.
    let lease_api = Api::namespaced(client.clone(), leases::NODE_LEASE_NAMESPACE);
    let first_round: Vec<_> = futures::stream::iter(registered.iter())
        .map(|n| leases::renew(&lease_api, n, args.lease_duration_seconds))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    if let Some(Err(e)) = first_round.iter().find(|r| r.is_err()) {
        warn!(error = %e, "some node leases could not be created");
    }
    let renewed: Vec<_> = registered
        .into_iter()
        .filter(|n| !args.no_renew.contains(&n.name))
        .collect();
    tokio::spawn(leases::renew_forever(
        client.clone(),
        renewed,
        args.lease_renew_interval,
        args.lease_duration_seconds,
        args.concurrency,
    ));
    println!("nodesim: {} nodes ready", names.len());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("stopping (nodes stay registered; their Leases expire)");
    Ok(())
}
