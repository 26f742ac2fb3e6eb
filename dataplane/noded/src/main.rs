//! `noded`: Sluice's node daemon.
//!
//! Starts the node network service for the CNI plugin, connects to
//! containerd over CRI, registers the Node with the API server and runs the
//! node agent (status, lease) and the pod loop until killed.

use anyhow::Context;
use clap::Parser;
use sluice_noded::cri::Cri;
use sluice_noded::network_service::{self, Endpoints};
use sluice_noded::node_agent::{self, NetworkPaths};
use sluice_noded::node_status::{NodeIdentity, Reservations};
use sluice_noded::pod_worker::{EndpointDrain, NodeContext, PodWorkers};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Sluice node daemon.
#[derive(Parser, Debug)]
#[command(name = "noded", version)]
struct Args {
    /// This node's name.
    #[arg(long)]
    node_name: String,
    /// kubeconfig with the API server URL, CA and this node's credential.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// containerd's CRI socket.
    #[arg(long)]
    containerd_socket: PathBuf,
    /// containerd's CNI config directory (noded writes the node's conflist there).
    #[arg(long)]
    cni_conf_dir: PathBuf,
    /// noded's state directory (CNI IPAM state, pod volumes and logs, the node network socket).
    #[arg(long)]
    state_dir: PathBuf,
    /// The node's InternalIP (also the pods' hostIP).
    #[arg(long)]
    node_ip: Option<String>,
    /// First CrashLoopBackOff wait, in seconds (Kubernetes: 10).
    #[arg(long, default_value_t = 10)]
    crash_backoff_seconds: u64,
    /// Seconds between Lease renewals and node status checks (Kubernetes:
    /// 10); the status is posted when it changed.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Seconds after which an unchanged node status is posted again (the
    /// kubelet's `nodeStatusReportFrequency`: 5 min).
    #[arg(long, default_value_t = 300)]
    node_status_report_seconds: u64,
    /// CPU kept for the system, in millicores.
    #[arg(long, default_value_t = 100)]
    reserved_cpu_millis: u64,
    /// Memory kept for the system, in MiB.
    #[arg(long, default_value_t = 256)]
    reserved_memory_mib: u64,
    /// The data plane (eBPF datapath, Service proxy, node routes).
    #[command(flatten)]
    network: sluice_noded::network::NetworkArgs,
    /// Joining with a bootstrap token.
    #[command(flatten)]
    join: sluice_noded::bootstrap::JoinArgs,
    /// The log endpoint.
    #[command(flatten)]
    logs: sluice_noded::log_server::LogArgs,
    /// Cluster DNS and pods' resolver configuration.
    #[command(flatten)]
    dns: sluice_noded::cluster_dns::DnsArgs,
    /// Node-pressure eviction.
    #[command(flatten)]
    eviction: sluice_noded::eviction::EvictionArgs,
    /// The storage root of `local-path` volumes.
    #[command(flatten)]
    local_path: sluice_noded::local_path::LocalPathArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sluice_kube::logging::init();
    let args = Args::parse();
    let eviction = args
        .eviction
        .config()
        .context("invalid --eviction-hard, --eviction-pressure-transition-period or --housekeeping-interval")?;
    let (eviction, pressure) = sluice_noded::eviction::Manager::new(eviction);
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    let local_path_root = args
        .local_path
        .prepare(&args.state_dir)
        .context("creating the local storage root (--local-path-root)")?;
    let noded_socket = args.state_dir.join("noded.sock");
    let cni_state_dir = args.state_dir.join("cni");

    let cri = Cri::connect(&args.containerd_socket).await?;
    let version = cri.version().await?;
    tracing::info!(runtime = %version.runtime_name, version = %version.runtime_version, "connected to the container runtime");

    // Endpoints survive restarts through the plugin's address store; addresses
    // of sandboxes that no longer exist are freed (a crash mid-ADD/DEL leaks nothing).
    let store = sluice_cni::ipam::IpamStore::new(&cni_state_dir);
    let sandboxes: std::collections::HashSet<String> =
        cri.list_pod_sandboxes(&[]).await?.into_iter().map(|s| s.id).collect();
    if std::fs::metadata(cni_state_dir.join("ipam")).is_ok() {
        for freed in store.retain(|id| sandboxes.contains(id))? {
            tracing::info!(ip = %freed.ip, container = freed.container_id, "freed the address of a sandbox that no longer exists");
        }
    }
    let endpoints = if std::fs::metadata(cni_state_dir.join("ipam")).is_ok() {
        Endpoints::recover(&store)?
    } else {
        Endpoints::default()
    };
    // The data plane comes up before the node reports anything: its network is ready only then.
    let node_ip: Option<std::net::Ipv4Addr> = args
        .node_ip
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--node-ip")?;
    let dataplane = sluice_noded::network::DataPlane::start(&args.network, &args.node_name, node_ip)?;
    dataplane.adopt(&endpoints.all());
    let _network = network_service::serve_with_data_plane(&noded_socket, endpoints, dataplane.clone())
        .with_context(|| format!("serving the node network service on {}", noded_socket.display()))?;

    sluice_noded::bootstrap::ensure_kubeconfig(&args.kubeconfig, &args.node_name, args.join.config().as_ref()).await?;
    let (client, identity) = sluice_noded::client_cert::client(&args.kubeconfig).await?;
    let _rotation = identity.map(|(identity, current)| {
        tokio::spawn(sluice_noded::client_cert::keep_rotated(
            client.clone(),
            identity,
            args.kubeconfig.clone(),
            args.node_name.clone(),
            current,
        ))
    });
    let _logs = sluice_noded::log_server::start_or_warn(
        &args.kubeconfig,
        client.clone(),
        &args.node_name,
        args.node_ip.as_deref(),
        &args.state_dir,
        args.logs.log_port,
        Some(cri.clone()),
    )
    .await;
    let data_plane_up = dataplane.is_ready();
    let (drain_publisher, drains) = sluice_proxy::drain::channel();
    let endpoint_drain = dataplane.datapath().is_some().then(|| EndpointDrain {
        drains,
        delay: Duration::from_millis(args.network.endpoint_drain_delay_ms),
    });
    let _dataplane_loops = sluice_noded::network::spawn(client.clone(), dataplane, drain_publisher);
    // The node's DNS server, behind kube-dns (needs the data plane to be steered to).
    let dns_server = match node_ip.filter(|_| args.dns.enabled(data_plane_up)) {
        Some(ip) => {
            let host = args.dns.pod_settings(false)?.host;
            match sluice_noded::cluster_dns::NodeDns::start(
                &args.dns,
                client.clone(),
                &args.node_name,
                ip.into(),
                &host,
            )
            .await
            {
                Ok(dns) => Some(dns),
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "no node DNS server: ClusterFirst pods get the node's resolvers"
                    );
                    None
                }
            }
        }
        None => {
            tracing::info!(
                "no node DNS server (data plane off or no --node-ip): ClusterFirst pods get the node's resolvers"
            );
            None
        }
    };
    let pod_dns = args.dns.pod_settings(dns_server.is_some())?;

    let identity = NodeIdentity {
        name: args.node_name.clone(),
        internal_ips: args.node_ip.iter().cloned().collect(),
        runtime_version: format!(
            "{}://{}",
            version.runtime_name,
            version.runtime_version.trim_start_matches('v')
        ),
    };
    let reserved = Reservations {
        cpu_millis: args.reserved_cpu_millis,
        memory_bytes: args.reserved_memory_mib << 20,
    };
    let paths = NetworkPaths {
        cni_conf_dir: args.cni_conf_dir.clone(),
        noded_socket,
        cni_state_dir,
    };
    let _local_path = tokio::spawn(sluice_noded::local_path::run(
        client.clone(),
        args.node_name.clone(),
        local_path_root,
    ));
    let _csi = tokio::spawn(sluice_noded::csi::registration::run(
        client.clone(),
        args.node_name.clone(),
        args.state_dir.clone(),
    ));
    let agent = tokio::spawn(node_agent::run(
        client.clone(),
        cri.clone(),
        identity,
        reserved,
        paths,
        node_agent::Periods {
            heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
            status_report: Duration::from_secs(args.node_status_report_seconds.max(1)),
        },
        pressure,
    ));

    let workers = Arc::new(PodWorkers::new(
        NodeContext {
            services: sluice_noded::service_env::Services::watch(client.clone()),
            client,
            cri,
            node_name: args.node_name.clone(),
            host_ip: args.node_ip.clone(),
            state_dir: args.state_dir.clone(),
            cgroup_root: sluice_noded::stats::cgroup_root(&args.node_name),
            dns: pod_dns,
            endpoint_drain,
        },
        Duration::from_secs(args.crash_backoff_seconds),
    ));
    let pods = tokio::spawn(sluice_noded::kubelet::run(workers, Some(eviction)));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        result = agent => result.context("node agent task").and_then(|r| r.context("node agent")),
        _ = pods => Err(anyhow::anyhow!("the pod loop stopped")),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
    };
    // Hand DNS to the other nodes before going away (no lookup is lost).
    if let Some(dns) = dns_server {
        dns.stop().await;
    }
    result
}
