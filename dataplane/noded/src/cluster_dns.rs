//! The node's cluster DNS server and its place behind the `kube-dns` Service.
//!
//! Every noded runs a [`sluice_dns`] server on its node address, port 53, fed
//! by its own watches and forwarding other names to the resolvers of the
//! node's `resolv.conf`. It makes sure the `kube-system/kube-dns` Service
//! exists (the `--cluster-dns` address, ports `dns` 53/UDP and `dns-tcp`
//! 53/TCP, no selector, `trafficDistribution: PreferSameNode`) and publishes
//! itself as one endpoint of it, in its own EndpointSlice `kube-dns-<node>`
//! (owned by the Node, so a deleted node takes it along). The Service proxy
//! then sends each pod's DNS to its own node's server, and to the other
//! nodes' while this one is not ready: `kubectl get endpointslices -n
//! kube-system` shows where DNS answers.
//!
//! Order matters so that no lookup is lost: the endpoint turns ready only
//! after the first snapshot is built (before that the server would answer
//! SERVFAIL), and on shutdown [`NodeDns::stop`] marks it not ready and waits
//! for the proxies — this node's included — to move DNS elsewhere before the
//! server closes.

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::json;
use sluice_dns::{DnsConfig, Forwarder, ResolvConf, Server, Zone};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Name and namespace of the cluster DNS Service.
pub const SERVICE: (&str, &str) = ("kube-system", "kube-dns");
/// `endpointslice.kubernetes.io/managed-by` of the slices noded publishes.
pub const MANAGED_BY: &str = "sluice-noded";
/// How long a stopping server keeps answering after its endpoint went not
/// ready (the proxies move DNS within their 50 ms debounce; this leaves room).
pub const DRAIN: Duration = Duration::from_millis(1500);

/// systemd-resolved's list of the real upstream resolvers.
const SYSTEMD_RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// noded's DNS flags (the kubelet's names where it has them).
#[derive(clap::Args, Debug, Clone)]
pub struct DnsArgs {
    /// The cluster DNS address pods get as nameserver (the `kube-dns`
    /// Service's ClusterIP, the 10th address of the service CIDR).
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: IpAddr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The node's resolver configuration: upstreams for outside names, the
    /// `Default` dnsPolicy, and the host part of pods' search lists.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Run the node's DNS server: `auto` = with the eBPF data plane (which
    /// steers `kube-dns` to it), `on`, `off` (pods then get the node's resolvers).
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub node_dns: String,
    /// Port of the node's DNS server (on --node-ip).
    #[arg(long, default_value_t = 53)]
    pub node_dns_port: u16,
}

/// What pods' DNS configuration is made from.
#[derive(Clone, Debug)]
pub struct PodDnsSettings {
    /// Cluster nameservers; empty when the node serves no cluster DNS
    /// (ClusterFirst then falls back to Default, as the kubelet does).
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain.
    pub domain: String,
    /// The node's resolv.conf.
    pub host: ResolvConf,
}

/// The running node DNS server.
pub struct NodeDns {
    server: Server,
    client: kube::Client,
    node_name: String,
    node_ip: IpAddr,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl DnsArgs {
    /// The settings pods get, `serving` = whether this node's server runs.
    pub fn pod_settings(&self, serving: bool) -> anyhow::Result<PodDnsSettings> {
        let mut host =
            ResolvConf::read(&self.resolv_conf).with_context(|| format!("reading {}", self.resolv_conf.display()))?;
        // systemd-resolved's stub (127.0.0.53) answers nobody outside the host's
        // own loopback: use the upstreams it was given, as the kubelet's docs advise.
        if !host.nameservers.is_empty() && host.nameservers.iter().all(IpAddr::is_loopback) {
            if let Ok(upstream) = ResolvConf::read(std::path::Path::new(SYSTEMD_RESOLVED_CONF)) {
                if !upstream.nameservers.is_empty() {
                    info!(
                        from = SYSTEMD_RESOLVED_CONF,
                        "the node's resolv.conf names only a loopback stub; using systemd-resolved's upstreams"
                    );
                    host.nameservers = upstream.nameservers;
                }
            }
        }
        Ok(PodDnsSettings {
            cluster_dns: if serving { vec![self.cluster_dns] } else { Vec::new() },
            domain: self.cluster_domain.trim_end_matches('.').to_string(),
            host,
        })
    }

    /// Whether the node runs a DNS server, given whether its data plane is up.
    pub fn enabled(&self, data_plane: bool) -> bool {
        match self.node_dns.as_str() {
            "on" => true,
            "off" => false,
            _ => data_plane,
        }
    }
}

impl NodeDns {
    /// Start the server on `node_ip`, its watches and the endpoint publisher.
    pub async fn start(
        args: &DnsArgs,
        client: kube::Client,
        node_name: &str,
        node_ip: IpAddr,
        host: &ResolvConf,
    ) -> anyhow::Result<Self> {
        let listen = SocketAddr::new(node_ip, args.node_dns_port);
        // Never forward to ourselves or to the Service in front of us.
        let upstreams: Vec<SocketAddr> = host
            .nameservers
            .iter()
            .filter(|ip| **ip != node_ip && **ip != args.cluster_dns)
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        if upstreams.is_empty() {
            warn!(resolv_conf = %args.resolv_conf.display(), "no upstream resolver: names outside the cluster fail (SERVFAIL)");
        }
        let zone = Zone::new(&args.cluster_domain, Forwarder::new(&upstreams));
        let config = DnsConfig {
            domain: args.cluster_domain.clone(),
            listen,
        };
        let server = Server::bind(&config, zone.clone())
            .await
            .with_context(|| format!("starting the node DNS server on {listen}"))?;
        info!(%listen, upstreams = ?upstreams, domain = %args.cluster_domain, "node DNS server up");
        let feed = sluice_dns::watch::feed(client.clone(), zone.clone());
        let publish = publish(client.clone(), args.clone(), node_name.to_string(), node_ip, zone);
        let task = tokio::spawn(async move {
            tokio::select! {
                r = feed => if let Err(e) = r { tracing::error!(error = %e, "cluster DNS watches stopped") },
                _ = publish => {}
            }
        });
        Ok(Self {
            server,
            client,
            node_name: node_name.to_string(),
            node_ip,
            port: args.node_dns_port,
            task,
        })
    }

    /// Leave the Service without losing a lookup: endpoint not ready, wait
    /// for the proxies to move DNS away, then close the server.
    pub async fn stop(self) {
        self.task.abort();
        let slice = endpoint_slice(&self.node_name, self.node_ip, self.port, false, None);
        match upsert_slice(&self.client, slice).await {
            Ok(()) => {
                info!("node DNS endpoint not ready; draining");
                tokio::time::sleep(DRAIN).await;
            }
            Err(e) => warn!(error = %e, "could not mark the node DNS endpoint not ready"),
        }
        self.server.shutdown();
    }
}

/// Keep the `kube-dns` Service and this node's endpoint in place; ready once
/// the zone answers.
async fn publish(client: kube::Client, args: DnsArgs, node: String, node_ip: IpAddr, zone: Arc<Zone>) {
    while !zone.is_ready() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        if let Err(e) = ensure_service(&client, &args).await {
            warn!(error = %e, "could not ensure the kube-dns Service");
        }
        let owner = Api::<Node>::all(client.clone())
            .get_opt(&node)
            .await
            .ok()
            .flatten()
            .and_then(|n| n.metadata.uid);
        let slice = endpoint_slice(&node, node_ip, args.node_dns_port, true, owner.as_deref());
        if let Err(e) = upsert_slice(&client, slice).await {
            warn!(error = %e, "could not publish the node DNS endpoint");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The `kube-dns` Service as noded creates it.
pub fn kube_dns_service(cluster_dns: IpAddr) -> Service {
    let ip = cluster_dns.to_string();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": SERVICE.1, "namespace": SERVICE.0,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "SluiceDNS"}
        },
        "spec": {
            "clusterIP": ip, "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}
            ],
            "trafficDistribution": sluice_proxy::translate::PREFER_SAME_NODE
        }
    }))
    .expect("static Service")
}

async fn ensure_service(client: &kube::Client, args: &DnsArgs) -> anyhow::Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), SERVICE.0);
    if api.get_opt(SERVICE.1).await?.is_some() {
        return Ok(());
    }
    match api
        .create(&PostParams::default(), &kube_dns_service(args.cluster_dns))
        .await
    {
        Ok(_) => {
            info!(ip = %args.cluster_dns, "created Service kube-system/kube-dns");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This node's EndpointSlice of `kube-dns`.
pub fn endpoint_slice(node: &str, node_ip: IpAddr, port: u16, ready: bool, node_uid: Option<&str>) -> EndpointSlice {
    let owner = node_uid.map(|uid| json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]));
    let family = if node_ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let mut slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-{node}", SERVICE.1), "namespace": SERVICE.0,
            "labels": {
                "kubernetes.io/service-name": SERVICE.1,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY
            }
        },
        "addressType": family,
        "endpoints": [{
            "addresses": [node_ip.to_string()],
            "conditions": {"ready": ready, "serving": ready, "terminating": !ready},
            "nodeName": node
        }],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"}
        ]
    });
    if let Some(owner) = owner {
        slice["metadata"]["ownerReferences"] = owner;
    }
    serde_json::from_value(slice).expect("static EndpointSlice")
}

async fn upsert_slice(client: &kube::Client, mut slice: EndpointSlice) -> anyhow::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), SERVICE.0);
    let name = slice.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), &slice).await?;
        }
        Some(current) => {
            if current.endpoints == slice.endpoints
                && current.ports == slice.ports
                && (slice.metadata.owner_references.is_none()
                    || current.metadata.owner_references == slice.metadata.owner_references)
            {
                return Ok(());
            }
            if slice.metadata.owner_references.is_none() {
                slice.metadata.owner_references = current.metadata.owner_references.clone();
            }
            slice.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &slice).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_is_the_service_users_expect() {
        let svc = kube_dns_service("10.96.0.10".parse().unwrap());
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(spec.selector, None, "endpoints come from the nodes, not from pods");
        assert_eq!(spec.traffic_distribution.as_deref(), Some("PreferSameNode"));
        let ports: Vec<(Option<String>, i32, Option<String>)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.port, p.protocol))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("dns".into()), 53, Some("UDP".into())),
                (Some("dns-tcp".into()), 53, Some("TCP".into()))
            ]
        );
    }

    #[test]
    fn each_node_publishes_its_own_endpoint() {
        let s = endpoint_slice("n1", "10.0.0.2".parse().unwrap(), 53, true, Some("uid-1"));
        assert_eq!(s.metadata.name.as_deref(), Some("kube-dns-n1"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels["kubernetes.io/service-name"], "kube-dns");
        assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], MANAGED_BY);
        assert_eq!(s.metadata.owner_references.as_ref().unwrap()[0].name, "n1");
        let ep = &s.endpoints.as_ref().unwrap()[0];
        assert_eq!(ep.addresses, ["10.0.0.2"]);
        assert_eq!(ep.node_name.as_deref(), Some("n1"));
        assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(true));
        let draining = endpoint_slice("n1", "10.0.0.2".parse().unwrap(), 53, false, None);
        let c = draining.endpoints.as_ref().unwrap()[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(false), Some(true))
        );
    }
}
