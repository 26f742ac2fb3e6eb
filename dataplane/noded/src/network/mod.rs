//! The node's data plane: the eBPF datapath of this node, opened (or adopted
//! after a restart) from its own pin root, with the external interface
//! serving NodePorts, pod interfaces attached as the CNI plugin reports them,
//! the Service proxy ([`sluice_proxy`]) and native routes to the other
//! nodes' podCIDRs ([`node_routes`]).
//!
//! Everything acts in noded's own network namespace (the node's), by
//! interface name/index and netlink, never through sysfs, so several noded
//! can run on one machine, one per node namespace, each with its own pin
//! root (`/sys/fs/bpf/sluice/<node>`).
//!
//! Lifecycle: [`DataPlane::start`] runs before noded reports anything (the
//! node's network is only reported ready once it succeeded; [`DataPlane::is_ready`]),
//! [`DataPlane::adopt`] re-attaches the pods noded already knows (pinned
//! links get this build's programs swapped in atomically, so established
//! connections never notice a restart), then [`spawn`] starts the proxy and
//! the route loop.
//!
//! Looking in: [`metrics`] renders the maps' counters as Prometheus series and
//! [`flows`] keeps the recent flow events; both are served on the kubelet
//! port by [`crate::node_api`] and find this node's data plane through
//! [`observed`].

pub mod flows;
pub mod metrics;
pub mod node_routes;

use anyhow::Context;
use ipnet::Ipv4Net;
use sluice_datapath::{Datapath, DatapathConfig, ExternalHook, Mac, PodEndpoint, RoutingSettings};
use sluice_proto::cni::v1::PodInterface;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::{info, warn};

/// What the node's monitoring endpoints read of its data plane.
#[derive(Default)]
pub struct Observed {
    /// The pin root of this node's maps, once the data plane is up.
    pub pin_root: OnceLock<PathBuf>,
    /// The Service proxy's names of frontends and endpoints.
    pub names: sluice_proxy::names::NamesPublisher,
    /// The recent flow events.
    pub flows: flows::FlowLog,
}

/// The process-wide view of the data plane (one node per noded).
pub fn observed() -> &'static Observed {
    static OBSERVED: OnceLock<Observed> = OnceLock::new();
    OBSERVED.get_or_init(Observed::default)
}

/// noded's data plane flags.
#[derive(clap::Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Run the eBPF data plane: `on`, `off`, or `auto` = on when noded runs in
    /// its own network namespace (a node of `xtask up`) with a non-loopback
    /// --node-ip; off in the machine's initial namespace or with a loopback
    /// node IP (test harnesses), where it would change host-wide sysctls and
    /// leave pinned programs on host interfaces. Pass `on` on a real node.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub data_plane: String,
    /// The cluster's pod CIDR (every node's podCIDR lies inside). Pod traffic
    /// to it is routed as is; pod traffic to anything else leaving the node
    /// is masqueraded to --node-ip.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// bpffs directory of this node's maps and links (default /sys/fs/bpf/sluice/<node-name>).
    #[arg(long)]
    pub bpf_pin_root: Option<PathBuf>,
    /// Interface serving NodePorts (default: the one carrying --node-ip).
    #[arg(long)]
    pub external_interface: Option<String>,
    /// Hook of the NodePort program: `tc` (fastest on veth, works on any device) or `xdp` (physical NICs).
    #[arg(long, default_value = "tc", value_parser = ["tc", "xdp"])]
    pub nodeport_hook: String,
    /// With `--nodeport-hook xdp`: forward translated NodePort frames from
    /// XDP (into a local pod's veth, or out to the next hop after a FIB
    /// lookup) instead of through the kernel's stack. Needs an interface
    /// whose frames sent with XDP_TX reach the wire: any physical NIC; a
    /// veth only when its peer runs an XDP program (the kernel does not
    /// wake a veth for XDP_TX'd frames otherwise). `--xdp-forward=false`
    /// hands every frame to the kernel.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub xdp_forward: bool,
    /// How NodePort, LoadBalancer and external IP flows reach backends on
    /// other nodes (Cilium's `--bpf-lb-mode`): `snat` (source NAT to this
    /// node, whose replies come back through it) or `dsr` (direct server
    /// return: the backend sees the client's address and its node answers
    /// the client itself; the frontend travels to that node in an IPv4
    /// option, which the network between nodes must pass). Every node
    /// reads the option whatever its own mode.
    #[arg(long, default_value = "snat", value_parser = ["snat", "dsr"])]
    pub nodeport_mode: String,
    /// cgroup v2 directory whose processes reach ClusterIPs by socket-level
    /// balancing. Default: the cgroup v2 root when noded runs in the
    /// machine's initial network namespace (a real node with --data-plane=on);
    /// none in a node namespace of a simulated cluster, whose root cgroup
    /// would span every node.
    #[arg(long)]
    pub socket_lb_cgroup: Option<PathBuf>,
    /// Do not masquerade pod traffic leaving the cluster.
    #[arg(long)]
    pub no_masquerade: bool,
    /// Milliseconds a deleted pod that backs a Service keeps running after
    /// this node has taken it out of its maps, before its preStop hooks and
    /// SIGTERM, so that the other nodes see its EndpointSlice turn
    /// terminating too (taken from the first half of the pod's grace
    /// period, which still bounds its termination; 0: no wait).
    #[arg(long, default_value_t = 1000)]
    pub endpoint_drain_delay_ms: u64,
    /// Have the eBPF programs report every new flow, drop and reject (not
    /// packets of established flows) for `ctl dataplane flows`;
    /// `--flow-events=false` switches them off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub flow_events: bool,
}

/// The node's data plane, shared by the node network service, the proxy and
/// the route loop. When it is off (see [`NetworkArgs::data_plane`]) every
/// operation is a no-op and pods are reached by the CNI plugin's kernel routes.
#[derive(Clone)]
pub struct DataPlane {
    datapath: Option<Arc<Mutex<Datapath>>>,
    node_name: String,
    ready: Arc<AtomicBool>,
}

/// Write a sysctl of the calling thread's network namespace.
fn sysctl(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))
}

/// Whether this process runs in the machine's initial network namespace
/// (false when that cannot be told: pid 1's namespace may be unreadable).
fn in_initial_netns() -> bool {
    let ino = |p: &str| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    matches!((ino("/proc/self/ns/net"), ino("/proc/1/ns/net")), (Some(a), Some(b)) if a == b)
}

/// The machine's cgroup v2 root, if any.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
    })
}

impl DataPlane {
    /// Open or adopt the node's datapath and set it up: routing settings,
    /// NodePorts on the external interface, socket-level ClusterIP for node
    /// processes (see [`NetworkArgs::socket_lb_cgroup`]), IP forwarding.
    pub fn start(args: &NetworkArgs, node_name: &str, node_ip: Option<Ipv4Addr>) -> anyhow::Result<Self> {
        let on = match args.data_plane.as_str() {
            "on" => true,
            "off" => false,
            _ => node_ip.is_some_and(|ip| !ip.is_loopback()) && !in_initial_netns(),
        };
        if !on {
            warn!(
                mode = args.data_plane,
                "eBPF data plane off: no Services, pods reached by kernel routes (--data-plane=on to enable)"
            );
            return Ok(Self {
                datapath: None,
                node_name: node_name.to_owned(),
                ready: Arc::new(AtomicBool::new(false)),
            });
        }
        let pin_root = args
            .bpf_pin_root
            .clone()
            .unwrap_or_else(|| Path::new("/sys/fs/bpf/sluice").join(node_name));
        let hook = if args.nodeport_hook == "xdp" {
            ExternalHook::Xdp
        } else {
            ExternalHook::Tc
        };
        let config = DatapathConfig {
            pin_root: pin_root.clone(),
            external_hook: hook,
            flow_events: args.flow_events,
            xdp_forward: args.xdp_forward,
            dsr: args.nodeport_mode == "dsr",
            ..DatapathConfig::default()
        };
        let mut dp = Datapath::open_or_adopt(config)
            .with_context(|| format!("opening the datapath at {}", pin_root.display()))?;
        // The node forwards its pods' traffic; masqueraded packets carry the
        // node's own address when they enter from a pod veth (strict reverse-path
        // filtering would drop them).
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "0")?;
        let masquerade = if args.no_masquerade { None } else { node_ip };
        dp.set_routing(&RoutingSettings {
            cluster_cidr: (args.cluster_cidr.network(), args.cluster_cidr.prefix_len()),
            masquerade,
        })?;
        match node_ip {
            Some(ip) => {
                let ifname = match &args.external_interface {
                    Some(name) => name.clone(),
                    None => sluice_datapath::interface_with_address(ip)?
                        .with_context(|| format!("no interface in this network namespace carries --node-ip {ip}"))?,
                };
                dp.attach_external_interface(&ifname, ip)
                    .with_context(|| format!("attaching NodePort programs to {ifname}"))?;
                info!(ifname, %ip, hook = args.nodeport_hook, mode = args.nodeport_mode, "external interface serves NodePorts");
            }
            None => warn!("no --node-ip: NodePorts and masquerade are off"),
        }
        let cgroup = args
            .socket_lb_cgroup
            .clone()
            .or_else(|| in_initial_netns().then(cgroup2_root).flatten());
        match cgroup {
            Some(cg) => {
                dp.attach_cgroup(&cg)
                    .with_context(|| format!("attaching socket-level ClusterIP to {}", cg.display()))?;
                info!(cgroup = %cg.display(), "node processes reach ClusterIPs by socket-level balancing");
            }
            None => {
                info!("no socket-level ClusterIP for node processes (node network namespace; see --socket-lb-cgroup)")
            }
        }
        let _ = observed().pin_root.set(pin_root.clone());
        flows::start_reader(pin_root.clone(), node_name.to_owned());
        info!(pin_root = %pin_root.display(), flow_events = args.flow_events, "data plane up");
        Ok(Self {
            datapath: Some(Arc::new(Mutex::new(dp))),
            node_name: node_name.to_owned(),
            ready: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Whether the eBPF data plane is up (false when it is off).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The datapath (for the proxy and diagnostics), when the data plane is on.
    pub fn datapath(&self) -> Option<Arc<Mutex<Datapath>>> {
        self.datapath.clone()
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Datapath>> {
        self.datapath
            .as_ref()
            .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A pod interface the CNI plugin created: attach the pod programs to its
    /// host veth and deliver its packets veth-to-veth. Without a usable pod
    /// MAC the pod is still served, through the kernel's `/32` route.
    pub fn attach_pod(&self, pod: &PodInterface) -> anyhow::Result<()> {
        let ip: Ipv4Addr = pod.pod_ip.parse().with_context(|| format!("pod IP {:?}", pod.pod_ip))?;
        let Some(mut dp) = self.lock() else { return Ok(()) };
        sysctl(&format!("/proc/sys/net/ipv4/conf/{}/rp_filter", pod.host_veth), "0")?;
        dp.attach_pod_interface(&pod.host_veth)
            .with_context(|| format!("attaching to {}", pod.host_veth))?;
        match pod.pod_mac.parse::<Mac>() {
            Ok(mac) => dp.upsert_endpoint(&PodEndpoint::on_interface(ip, &pod.host_veth, mac)?)?,
            Err(e) => warn!(ip = %ip, error = %e, "no pod MAC: the pod is reached by kernel routing"),
        }
        Ok(())
    }

    /// A pod interface is going away: forget its endpoint, detach its programs.
    pub fn detach_pod(&self, pod_ip: Option<Ipv4Addr>, host_veth: Option<&str>) -> anyhow::Result<()> {
        let Some(mut dp) = self.lock() else { return Ok(()) };
        if let Some(ip) = pod_ip {
            dp.delete_endpoint(ip)?;
        }
        if let Some(veth) = host_veth.filter(|v| !v.is_empty()) {
            dp.detach_pod_interface(veth)?;
        }
        Ok(())
    }

    /// After a restart: re-attach every known pod (the adopted links get this
    /// build's programs, atomically), keep their pinned endpoints (fixing the
    /// ifindex when a veth was recreated), and drop endpoints of pods that
    /// are gone.
    pub fn adopt(&self, pods: &[PodInterface]) {
        let Some(mut dp) = self.lock() else { return };
        let pinned = dp.endpoints().unwrap_or_default();
        let mut known = std::collections::HashSet::new();
        for pod in pods {
            let Ok(ip) = pod.pod_ip.parse::<Ipv4Addr>() else {
                continue;
            };
            known.insert(ip);
            if let Err(e) = dp.attach_pod_interface(&pod.host_veth) {
                warn!(veth = pod.host_veth, error = %e, "could not re-attach a known pod interface");
                continue;
            }
            if let Some(old) = pinned.iter().find(|e| e.ip == ip) {
                match PodEndpoint::on_interface(ip, &pod.host_veth, old.pod_mac) {
                    Ok(now) if now != *old => {
                        let _ = dp.upsert_endpoint(&now);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(%ip, error = %e, "pod endpoint not refreshed"),
                }
            }
        }
        for stale in pinned.iter().filter(|e| !known.contains(&e.ip)) {
            let _ = dp.delete_endpoint(stale.ip);
        }
        info!(pods = pods.len(), "pod interfaces adopted");
    }
}

/// Start the Service proxy and the node route loop in the background; errors
/// are logged. The proxy publishes this node's drained pods to `drains`.
pub fn spawn(
    client: kube::Client,
    dataplane: DataPlane,
    drains: sluice_proxy::drain::DrainPublisher,
) -> tokio::task::JoinHandle<()> {
    let node = dataplane.node_name.clone();
    let Some(datapath) = dataplane.datapath() else {
        return tokio::spawn(async {});
    };
    let mut config = sluice_proxy::ProxyConfig::new(node.clone());
    config.drains = Some(drains);
    config.names = Some(observed().names.clone());
    let proxy = sluice_proxy::run(client.clone(), datapath.clone(), config, std::future::pending());
    let routes = node_routes::run(client, node, datapath);
    tokio::spawn(async move {
        tokio::select! {
            r = proxy => if let Err(e) = r { tracing::error!(error = %e, "the service proxy stopped") },
            r = routes => if let Err(e) = r { tracing::error!(error = %e, "the node route loop stopped") },
        }
    })
}
