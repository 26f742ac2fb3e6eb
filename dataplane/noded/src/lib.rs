//! Sluice's node daemon (`noded`): the kubelet part and the node's pod network endpoints.
//!
//! Node side, one module per concept:
//! - [`node_agent`]: registration, podCIDR -> CNI config, status loop ([`node_status`]) and heartbeat ([`lease`]);
//!   [`eviction`]: pressure signals measured on the node, the pressure conditions and evicting pods under them;
//! - [`kubelet`]: the pod loop — a reflector of this node's Pods, a once-a-second runtime relist
//!   ([`pleg`]) and one [`pod_worker`] per pod, which uses [`pod_spec`] (Pod -> CRI configs),
//!   [`images`] (pull policy, pull secrets, pulls with back-off), [`env`], [`volumes`],
//!   [`probes`], [`lifecycle`] (postStart/preStop hooks), [`init_containers`] (which init
//!   container runs next, sidecars), [`backoff`], [`pod_status`] (runtime -> Pod status), [`container_setup`] (the
//!   node's part of a container config: [`security_context`], [`etc_hosts`],
//!   [`termination_message`])
//!   and [`cgroups`] (a removed pod's leftover cgroups); [`events`] are what `kubectl describe` lists,
//!   worded as the kubelet's ([`format`]: Go durations, pod names);
//! - [`cri`]: the CRI v1 client over containerd's unix socket; [`labels`] map runtime objects to Pods;
//! - [`log_server`]: the HTTPS endpoint the API server reads container logs from, with the
//!   cluster CA's [`serving_cert`];
//!   [`bootstrap`]: joining with a bootstrap token (node client certificate -> kubeconfig),
//!   [`client_cert`]: the API client presenting that certificate, rotated before it expires;
//!   [`node_api`]: the kubelet's monitoring endpoints on the same port ([`stats`]: cgroup usage of
//!   the node, pods and containers; [`resource_metrics`], [`kubelet_metrics`]);
//! - [`network`]: the node's data plane (eBPF datapath, Service proxy, node routes);
//! - [`cluster_dns`]: the node's cluster DNS server behind the `kube-dns` Service; pods get
//!   their resolver configuration from [`pod_dns`] and Service variables from [`service_env`];
//! - [`network_service`]: the `sluice.cni.v1.NodeNetwork` service the CNI plugin calls;
//!   [`cni_config`]: the node's CNI conflist.

pub mod backoff;
pub mod bootstrap;
pub mod cgroups;
pub mod client_cert;
pub mod cluster_dns;
pub mod cni_config;
pub mod container_setup;
pub mod cri;
pub mod csi;
pub mod env;
pub mod etc_hosts;
pub mod events;
pub mod eviction;
pub mod format;
pub mod images;
pub mod init_containers;
pub mod kubelet;
pub mod kubelet_metrics;
pub mod labels;
pub mod lease;
pub mod lifecycle;
pub mod local_path;
pub mod log_server;
pub mod network;
pub mod network_service;
pub mod node_agent;
pub mod node_api;
pub mod node_status;
pub mod pleg;
pub mod pod_dns;
pub mod pod_spec;
pub mod pod_status;
pub mod pod_worker;
pub mod probes;
pub mod resource_metrics;
pub mod security_context;
pub mod service_env;
pub mod serving_cert;
pub mod stats;
pub mod streaming;
pub mod termination_message;
pub mod volumes;

/// Locks `mutex`; a lock poisoned by a holder that panicked is taken with
/// the data as it was left (the one lock helper of every noded module).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cache of what `api` lists and watches under `config`, kept by a task
/// of its own (with back-off; errors are logged with `what` and retried);
/// aborting the task ends the watch.
pub(crate) fn watched_store<K>(
    api: kube::Api<K>,
    config: kube::runtime::watcher::Config,
    what: String,
) -> (kube::runtime::reflector::Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let (store, writer) = kube::runtime::reflector::store();
    let events = kube::runtime::reflector(writer, kube::runtime::watcher(api, config)).default_backoff();
    let task = tokio::spawn(events.for_each(move |event| {
        if let Err(err) = event {
            tracing::warn!(%err, watch = %what, "watch error (retrying)");
        }
        async {}
    }));
    (store, task)
}
