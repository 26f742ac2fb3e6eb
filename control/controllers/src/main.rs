//! `controller-manager`: runs Sluice's controllers against the API server,
//! acting only while it holds the leader Lease.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sluice_controllers::leader_election::{LeaderElectionConfig, LeaderElector};
use sluice_controllers::{Context, ControllerManagerConfig, CONTROLLERS};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let config = ControllerManagerConfig::parse();
    let client = client(&config).await?;

    let mut elector = if config.leader_elect {
        let identity = config.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("{host}_{}", std::process::id())
        });
        let mut elector = LeaderElector::new(
            client.clone(),
            LeaderElectionConfig {
                namespace: config.leader_elect_resource_namespace.clone(),
                name: config.leader_elect_resource_name.clone(),
                identity: identity.clone(),
                lease_duration: config.leader_elect_lease_duration,
                renew_deadline: config.leader_elect_renew_deadline,
                retry_period: config.leader_elect_retry_period,
            },
        );
        tracing::info!(%identity, "waiting to become leader");
        elector.acquire().await;
        Some(elector)
    } else {
        None
    };

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

async fn client(config: &ControllerManagerConfig) -> anyhow::Result<kube::Client> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .context("loading kubeconfig")?
        }
        None => kube::Config::infer().await.context("finding a kubeconfig")?,
    };
    kube::Client::try_from(kube_config).context("building the API client")
}
