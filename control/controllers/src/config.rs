//! Command-line configuration of the controller-manager (flag names follow
//! kube-controller-manager's where one exists).

use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

/// Flags of the `controller-manager` binary; also the settings every
/// controller reads from the [`crate::Context`].
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "controller-manager", about = "Sluice's controller-manager")]
pub struct ControllerManagerConfig {
    /// Kubeconfig of the API server (default: $KUBECONFIG / ~/.kube/config / in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Controllers to run: `*` for all, or a comma-separated list of names
    /// (`replicaset,deployment,...`); `-name` disables one.
    #[arg(long, default_value = "*", value_delimiter = ',')]
    pub controllers: Vec<String>,

    /// Range Node pod CIDRs are carved from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Net,

    /// Addresses LoadBalancer Services get (`status.loadBalancer.ingress`);
    /// unset: they stay pending. Put it on the nodes' L2 network: the node
    /// chosen for an address answers ARP for it.
    #[arg(long)]
    pub load_balancer_ip_pool: Option<Ipv4Net>,

    /// Prefix length of each Node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,

    /// How long a Node's Lease may go unrenewed before it is marked Unknown and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub node_monitor_grace_period: Duration,

    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub node_monitor_period: Duration,

    /// tolerationSeconds for pods that do not tolerate the not-ready/unreachable
    /// NoExecute taints themselves (Kubernetes' DefaultTolerationSeconds).
    #[arg(long, default_value_t = 300)]
    pub default_eviction_toleration_seconds: i64,

    /// Number of terminated (Succeeded/Failed) pods kept before the oldest are deleted.
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,

    /// How often the pod garbage collector runs.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub pod_gc_period: Duration,

    /// Delay over which endpoint changes of one Service are coalesced into one write.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub endpoint_updates_batch_period: Duration,

    /// Maximum endpoints per EndpointSlice.
    #[arg(long, default_value_t = 100)]
    pub max_endpoints_per_slice: usize,

    /// The cluster CA bundle (PEM) published in every namespace as the
    /// ConfigMap `kube-root-ca.crt` (the API server's `<cert-dir>/ca.crt`);
    /// unset: nothing is published.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,

    /// The CA certificate (PEM) the csrsigning controller signs with (the
    /// API server's `<cert-dir>/ca.crt`); unset: nothing is signed.
    #[arg(long)]
    pub cluster_signing_cert_file: Option<PathBuf>,

    /// The key (PEM) of `--cluster-signing-cert-file`.
    #[arg(long)]
    pub cluster_signing_key_file: Option<PathBuf>,

    /// The longest validity of a certificate the csrsigning controller
    /// issues (a request's `expirationSeconds` may ask for less).
    #[arg(long, default_value = "8760h", value_parser = humantime::parse_duration)]
    pub cluster_signing_duration: Duration,

    /// The horizontal-pod-autoscaler controller's flags.
    #[command(flatten)]
    pub hpa: crate::horizontal_pod_autoscaler::HpaArgs,

    /// Leader election: run only while holding the Lease.
    #[command(flatten)]
    pub leader_election: sluice_kube::leader_election::LeaderElectionArgs,

    /// How often every object is reconciled again even without a change.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync_period: Duration,

    /// HTTPS port serving /metrics, /healthz, /livez and /readyz (0: none).
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,

    /// The secure port's address, certificate and delegated authentication and authorization.
    #[command(flatten)]
    pub serving: sluice_kube::secure_serving::SecureServingArgs,
}

impl ControllerManagerConfig {
    /// Whether the controller called `name` is enabled by `--controllers`.
    pub fn is_enabled(&self, name: &str) -> bool {
        let mut enabled = false;
        for item in &self.controllers {
            let item = item.trim();
            if item == "*" {
                enabled = true;
            } else if item == name {
                return true;
            } else if item.strip_prefix('-') == Some(name) {
                return false;
            }
        }
        enabled
    }

    /// Configuration with every default, for tests.
    pub fn defaults() -> Self {
        <Self as clap::Parser>::parse_from(["controller-manager"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_selects_and_disables() {
        let mut c = ControllerManagerConfig::defaults();
        assert!(c.is_enabled("deployment"));
        c.controllers = vec!["*".into(), "-pod-gc".into()];
        assert!(!c.is_enabled("pod-gc"));
        assert!(c.is_enabled("replicaset"));
        c.controllers = vec!["replicaset".into()];
        assert!(c.is_enabled("replicaset"));
        assert!(!c.is_enabled("deployment"));
    }
}
