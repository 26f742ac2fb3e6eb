//! `scheduler`: the Sluice scheduler binary (flags mirror kube-scheduler's where they exist).

use anyhow::Result;
use clap::Parser;
use sluice_kube::leader_election::LeaderElectionArgs;
use sluice_kube::secure_serving::{self, Check, Endpoints, SecureServingArgs};
use sluice_scheduler::queue::QueueConfig;
use sluice_scheduler::scheduler::{Scheduler, SchedulerConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// Binds pods to nodes that fit, through the API server.
#[derive(Parser, Debug)]
#[command(name = "scheduler", version)]
struct Args {
    /// Kubeconfig to reach the API server (default: $KUBECONFIG or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Percentage of nodes examined per pod in large clusters (0 = adaptive, like kube-scheduler).
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Binding requests in flight at once.
    #[arg(long, default_value_t = 64)]
    max_in_flight_bindings: usize,
    /// Back-off after a pod's first failed attempt.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pod_initial_backoff: Duration,
    /// Longest back-off.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pod_max_backoff: Duration,
    /// Retry an unschedulable pod after this long even if nothing changed.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pod_max_in_unschedulable_pods_duration: Duration,
    /// Leader election (only the leader schedules).
    #[command(flatten)]
    leader_election: LeaderElectionArgs,
    /// HTTPS port serving /metrics, /healthz, /livez and /readyz (0: none).
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// The secure port's address, certificate and delegated authentication and authorization.
    #[command(flatten)]
    serving: SecureServingArgs,
}

/// mimalloc rather than glibc's malloc, as in the API server and the
/// controller-manager: informers decode and drop a stream of small objects.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    sluice_kube::logging::init();
    let args = Args::parse();
    let identity = args.leader_election.identity();
    let kube_config = sluice_kube::client::config(args.kubeconfig.as_deref()).await?;
    let client = sluice_kube::client::from_config(kube_config.clone())?;
    let config = SchedulerConfig {
        scheduler_name: args.scheduler_name.clone(),
        percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
        max_in_flight_bindings: args.max_in_flight_bindings,
        queue: QueueConfig {
            initial_backoff: args.pod_initial_backoff,
            max_backoff: args.pod_max_backoff,
            max_unschedulable: args.pod_max_in_unschedulable_pods_duration,
        },
        identity: identity.clone(),
    };
    let scheduler = Scheduler::new(client.clone(), config);
    // Served from the start, before leadership, as kube-scheduler does;
    // ready once the informers have synced (its `sched-handler-sync`).
    let synced = Arc::new(AtomicBool::new(false));
    let _secure = if args.secure_port == 0 {
        None
    } else {
        let me = scheduler.clone();
        let endpoints = Endpoints {
            component: "kube-scheduler",
            metrics: Arc::new(move || me.encode_metrics()),
            ready: vec![Check {
                name: "sched-handler-sync",
                ok: synced.clone(),
            }],
        };
        Some(secure_serving::start(&args.serving, args.secure_port, &kube_config, endpoints).await?)
    };
    scheduler.start_informers().await;
    synced.store(true, Ordering::Relaxed);

    let Some(mut elector) = args.leader_election.elector(client, "sluice-scheduler") else {
        info!("leader election disabled; scheduling");
        tokio::select! {
            _ = scheduler.run() => {}
            _ = tokio::signal::ctrl_c() => info!("interrupted"),
        }
        return Ok(());
    };
    tokio::select! {
        _ = elector.acquire() => {}
        _ = tokio::signal::ctrl_c() => return Ok(()),
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = scheduler.clone().run() => {}
        lost = elector.hold() => {
            // Like kube-scheduler: a leader that lost its Lease exits and restarts as a candidate.
            error!(error = %lost, "lost leadership; exiting");
            std::process::exit(1);
        }
        _ = tokio::signal::ctrl_c() => elector.release().await,
        _ = term.recv() => elector.release().await,
    }
    Ok(())
}
