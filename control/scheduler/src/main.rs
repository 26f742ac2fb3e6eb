//! `scheduler`: the Sluice scheduler binary (flags mirror kube-scheduler's where they exist).

use anyhow::Result;
use clap::Parser;
use sluice_scheduler::leader_election::{LeaderElector, LeaseTiming};
use sluice_scheduler::queue::QueueConfig;
use sluice_scheduler::scheduler::{Scheduler, SchedulerConfig};
use std::path::PathBuf;
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
    /// Take part in leader election (only the leader schedules).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "sluice-scheduler")]
    leader_elect_resource_name: String,
    /// How long a non-renewed Lease blocks other candidates.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// Pause between Lease attempts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    leader_elect_retry_period: Duration,
    /// This instance's identity (default: hostname_pid).
    #[arg(long)]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}_{}", host.trim(), std::process::id())
    });
    let client = sluice_scheduler::client::client(args.kubeconfig.as_deref()).await?;
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
    scheduler.start_informers().await;

    if !args.leader_elect {
        info!("leader election disabled; scheduling");
        tokio::select! {
            _ = scheduler.run() => {}
            _ = tokio::signal::ctrl_c() => info!("interrupted"),
        }
        return Ok(());
    }
    let timing = LeaseTiming {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    let mut elector = LeaderElector::new(
        client,
        &args.leader_elect_resource_namespace,
        &args.leader_elect_resource_name,
        &identity,
        timing,
    );
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
