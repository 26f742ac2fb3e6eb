//! `controller-manager`: runs Sluice's controllers against the API server,
//! acting only while it holds the leader Lease, with its secure port
//! (`/metrics`: the work queues' metrics) open from the start.

use std::sync::Arc;

use clap::Parser;
use sluice_controllers::{Context, ControllerManagerConfig, CONTROLLERS};
use sluice_kube::secure_serving::{self, Endpoints};

/// mimalloc rather than glibc's malloc, as in the API server: informers
/// decode and drop a stream of small objects, and glibc's malloc took about
/// a sixth of the controller-manager's time in a 5,000-node scheduler bench
/// (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_kube::logging::init();
    let config = ControllerManagerConfig::parse();
    let kube_config = sluice_kube::client::config(config.kubeconfig.as_deref()).await?;
    let client = sluice_kube::client::from_config(kube_config.clone())?;

    // Served from the start, before leadership, as kube-controller-manager does.
    let _secure = if config.secure_port == 0 {
        None
    } else {
        let endpoints = Endpoints {
            component: "kube-controller-manager",
            metrics: Arc::new(|| sluice_controllers::workqueue_metrics::metrics().encode()),
            ready: Vec::new(),
        };
        Some(secure_serving::start(&config.serving, config.secure_port, &kube_config, endpoints).await?)
    };

    let mut elector = config
        .leader_election
        .elector(client.clone(), "sluice-controller-manager");
    if let Some(elector) = elector.as_mut() {
        elector.acquire().await;
    }

    let ctx = Arc::new(Context::new(client, config.clone()));
    let mut running = Vec::new();
    for descriptor in CONTROLLERS {
        if !config.is_enabled(descriptor.name) {
            tracing::info!(controller = descriptor.name, "disabled");
            continue;
        }
        running.push((descriptor.name, (descriptor.init)(ctx.clone())));
    }
    ctx.informers.start_and_sync().await;
    tracing::info!("caches synced; starting controllers");
    let mut tasks = tokio::task::JoinSet::new();
    for (name, fut) in running {
        tracing::info!(controller = name, "started");
        tasks.spawn(fut);
    }

    let lost = async {
        match elector.as_mut() {
            Some(e) => e.hold().await.to_string(),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        reason = lost => anyhow::bail!("leader election lost: {reason}"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; exiting");
            Ok(())
        }
        _ = tasks.join_next() => anyhow::bail!("a controller stopped unexpectedly"),
    }
}
