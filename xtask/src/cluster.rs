//! `cargo xtask up` / `cargo xtask down`: a Sluice cluster on this machine.
//!
//! `up` installs what is missing, builds the binaries, writes certificates and
//! the admin kubeconfig under `$SLUICE_HOME` (and `scheduler.kubeconfig`,
//! `controller-manager.kubeconfig`, `metrics-server.kubeconfig`: their own
//! `system:kube-scheduler`, `system:kube-controller-manager` and
//! `system:metrics-server` credentials), starts every control-plane entry
//! of [`components`] in order (own session, logs under `$SLUICE_HOME/logs`, pid
//! files under `$SLUICE_HOME/run`), waiting for each to be ready, then brings up
//! `--nodes N` nodes ([`crate::nodes`]): network namespaces on one bridge
//! ([`crate::network`]), the cluster registry on the bridge address
//! ([`crate::registry`], storage under `$SLUICE_HOME/registry`) with the
//! images pushed into it ([`crate::images`]), and per node its own containerd
//! (pulling through the registry) and `noded`.
//! `down` removes the nodes (processes by pid, pods, sandboxes, pins,
//! namespaces, links), stops the registry, removes the bridge, then stops the
//! control plane in reverse order by pid, after checking the pid still runs
//! the binary we started; it keeps the data (registry storage included)
//! unless `--purge`.
//!
//! etcd comes first: `--etcd-members N` (1, 3, 5 or 7, recorded in
//! `$SLUICE_HOME/etcd-members` so later `up`s and `down` use the same
//! number) starts N members on loopback, member i on `--etcd-port` + 2i
//! (peers on the port after), all started before `up` waits for each to be
//! healthy; the API server gets every member in `--etcd-servers`.
//!
//! Adding a control-plane component means adding one [`Component`] to
//! [`components`].

use crate::network::{Cidr, NodeNetwork};
use crate::nodes::{self, NodeSpec};
use crate::pki::EtcdPki;
use crate::process::{process_runs, Daemon, Files};
use crate::util::{ensure_packages, run, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Arguments of `cargo xtask up`.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Build debug binaries instead of release ones (faster to build, slower to run).
    #[arg(long)]
    pub debug: bool,
    /// Use the binaries already in this directory instead of building them.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Number of nodes (network namespaces with their own containerd and noded);
    /// 0 starts the control plane only.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Subnet of the bridge that joins the nodes: the bridge takes the first
    /// address, node i the (i+1)th.
    #[arg(long, default_value = "10.251.0.0/24")]
    pub node_subnet: Cidr,
    /// Range node IPAM carves each node's podCIDR (/24) from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Cidr,
    /// Range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Cidr,
    /// Extra controller-manager flag (repeatable), e.g. `--controller-manager-arg=--node-monitor-grace-period=10s`.
    #[arg(long = "controller-manager-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub controller_manager_args: Vec<String>,
    /// Addresses LoadBalancer Services get; one node answers ARP for each, so
    /// it must lie on the nodes' L2 network [default: the top /28 of
    /// --node-subnet, e.g. 10.251.0.240/28, which no node or client of ours uses].
    #[arg(long)]
    pub load_balancer_ip_pool: Option<Cidr>,
    /// Extra noded flag for every node (repeatable), e.g. `--noded-arg=--heartbeat-seconds=2`.
    #[arg(long = "noded-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub noded_args: Vec<String>,
    /// Port of the cluster registry on the bridge address (started with the first node).
    #[arg(long, default_value_t = crate::registry::DEFAULT_PORT)]
    pub registry_port: u16,
    /// Number of etcd members (odd, 1 to 7): member i serves clients on
    /// --etcd-port + 2i and peers on the port after; the API server spreads
    /// over all of them. Recorded in $SLUICE_HOME, so a later `up` starts the
    /// same cluster [default: the recorded number, else 1].
    #[arg(long, value_name = "N")]
    pub etcd_members: Option<u16>,
}

/// Arguments of `cargo xtask down`.
#[derive(Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Also delete all data under $SLUICE_HOME.
    #[arg(long)]
    pub purge: bool,
}

/// Where the cluster lives and which ports and names it uses (tests run a
/// second one beside the default with another home, ports and prefix).
#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// State directory: certificates, kubeconfig, etcd data, nodes, logs, pid files
    /// [default: $SLUICE_HOME, else /var/lib/sluice].
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// The scheduler's secure port on loopback (`/metrics`, `/healthz`), kube-scheduler's 10259.
    #[arg(long, default_value_t = 10259)]
    pub scheduler_port: u16,
    /// The controller-manager's secure port on loopback, kube-controller-manager's 10257.
    #[arg(long, default_value_t = 10257)]
    pub controller_manager_port: u16,
    /// etcd client port (etcd's peer port is this plus one; with
    /// --etcd-members N, member i uses this plus 2i and plus 2i+1).
    #[arg(long, default_value_t = 2379)]
    pub etcd_port: u16,
    /// Prefix of the bridge (`<prefix>-br`) and of node names and their
    /// network namespaces (`<prefix>-n1`, ...); at most 8 characters.
    #[arg(long, default_value = "sluice")]
    pub prefix: String,
}

/// Paths, ports and settings of one cluster, derived from the arguments.
pub struct Cluster {
    home: PathBuf,
    apiserver_port: u16,
    scheduler_port: u16,
    controller_manager_port: u16,
    etcd_port: u16,
    /// Number of etcd members (see [`EtcdMember`]).
    etcd_members: u16,
    /// Directory holding the workspace binaries (`apiserver`, ...).
    bin_dir: PathBuf,
    network: NodeNetwork,
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    controller_manager_args: Vec<String>,
}

/// The file under `$SLUICE_HOME` recording how many etcd members `up` made.
const ETCD_MEMBERS_FILE: &str = "etcd-members";

/// The file under `$SLUICE_HOME` recording the node network `up` made, so
/// `down` removes the right bridge whatever flags it is given.
const NETWORK_FILE: &str = "network.conf";

/// Pid/log name of the cluster registry.
const REGISTRY: &str = "registry";
/// The registry's executable (Debian's `docker-registry`).
const REGISTRY_EXE: &str = "docker-registry";

/// `--home`, else `$SLUICE_HOME`, else `/var/lib/sluice`.
pub fn home_dir(home: Option<&Path>) -> PathBuf {
    home.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SLUICE_HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/sluice"))
}

impl Cluster {
    fn home_of(args: &ClusterArgs) -> PathBuf {
        home_dir(args.home.as_deref())
    }
    fn pki(&self) -> PathBuf {
        self.home.join("pki")
    }
    /// The EncryptionConfiguration the API server encrypts Secrets with (see [`ensure_encryption_config`]).
    fn encryption_config(&self) -> PathBuf {
        self.pki().join("encryption-config.yaml")
    }
    /// The audit policy `up` writes once (edit it and restart the API server to change it).
    fn audit_policy(&self) -> PathBuf {
        self.home.join("audit-policy.yaml")
    }
    fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }
    fn files(&self) -> Files {
        Files {
            run_dir: self.run_dir(),
            log_dir: self.logs(),
        }
    }
    fn kubeconfig(&self) -> PathBuf {
        self.home.join("admin.kubeconfig")
    }
    /// The scheduler's own credential (user `system:kube-scheduler`).
    fn scheduler_kubeconfig(&self) -> PathBuf {
        self.home.join("scheduler.kubeconfig")
    }
    /// The controller-manager's own credential (user `system:kube-controller-manager`).
    fn controller_manager_kubeconfig(&self) -> PathBuf {
        self.home.join("controller-manager.kubeconfig")
    }
    /// The metrics server's own credential (user `system:metrics-server`).
    fn metrics_server_kubeconfig(&self) -> PathBuf {
        self.home.join("metrics-server.kubeconfig")
    }
    /// etcd's certificates (see [`crate::pki`]).
    fn etcd_pki(&self) -> EtcdPki {
        EtcdPki::new(&self.pki())
    }
    /// The etcd members, in start order.
    fn etcd(&self) -> Vec<EtcdMember> {
        (0..self.etcd_members)
            .map(|index| EtcdMember {
                index,
                members: self.etcd_members,
                client_port: self.etcd_port + 2 * index,
            })
            .collect()
    }
    /// Every member's client URL, comma-separated (`--etcd-servers`).
    fn etcd_servers(&self) -> String {
        self.etcd()
            .iter()
            .map(EtcdMember::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }
    fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }
    /// The API server as nodes reach it: the bridge address.
    fn apiserver_node_url(&self) -> String {
        format!("https://{}:{}", self.network.gateway(), self.apiserver_port)
    }
    /// etcd's arguments for `member`.
    fn etcd_args(&self, member: &EtcdMember) -> Vec<String> {
        let initial_cluster = self
            .etcd()
            .iter()
            .map(|m| format!("{}={}", m.etcd_name(), m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = vec![
            format!("--name={}", member.etcd_name()),
            format!("--data-dir={}", self.home.join(member.data_dir()).display()),
            format!("--listen-client-urls={}", member.client_url()),
            format!("--advertise-client-urls={}", member.client_url()),
            format!("--listen-peer-urls={}", member.peer_url()),
            format!("--initial-advertise-peer-urls={}", member.peer_url()),
            format!("--initial-cluster={initial_cluster}"),
            "--log-level=warn".into(),
            // Periodic progress notifications let the API server serve consistent
            // lists from its watch cache (see its storage/watch_cache.rs).
            "--experimental-watch-progress-notify-interval=100ms".into(),
        ];
        if self.etcd_members > 1 {
            args.push("--initial-cluster-token=sluice".into());
        }
        // TLS with client certificates of the etcd CA only, towards clients and
        // peers (one peer certificate for 127.0.0.1 serves every member).
        let (pki, server, peer) = (self.etcd_pki(), self.etcd_pki().server(), self.etcd_pki().peer());
        args.extend([
            format!("--cert-file={}", server.cert.display()),
            format!("--key-file={}", server.key.display()),
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", pki.ca_cert().display()),
            format!("--peer-cert-file={}", peer.cert.display()),
            format!("--peer-key-file={}", peer.key.display()),
            "--peer-client-cert-auth".into(),
            format!("--peer-trusted-ca-file={}", pki.ca_cert().display()),
        ]);
        args
    }
    fn program(&self, c: &Component) -> PathBuf {
        match c.binary {
            Binary::Workspace(name) => self.bin_dir.join(name),
        }
    }
}

/// One etcd member. A single member keeps the names of a one-etcd cluster
/// (pid/log `etcd`, data dir `etcd/`, member name `sluice`) so clusters made
/// before `--etcd-members` keep working; members of a larger cluster are
/// `etcd-0`, `etcd-1`, ... (pid/log name, member name and data dir alike).
struct EtcdMember {
    index: u16,
    members: u16,
    client_port: u16,
}

impl EtcdMember {
    /// Pid file, log file and data directory name.
    fn name(&self) -> String {
        if self.members == 1 {
            "etcd".into()
        } else {
            format!("etcd-{}", self.index)
        }
    }
    /// `--name` (and its key in `--initial-cluster`).
    fn etcd_name(&self) -> String {
        if self.members == 1 {
            "sluice".into()
        } else {
            self.name()
        }
    }
    fn data_dir(&self) -> String {
        self.name()
    }
    fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port + 1)
    }
}

/// The etcd executable (pid checks).
const ETCD_EXE: &str = "etcd";

/// Check `--etcd-members`: odd (an even count tolerates no more failed
/// members than the odd count below it) and at most 7, with every member's
/// two ports below 65536.
fn check_etcd_members(members: u16, etcd_port: u16) -> Result<()> {
    if !(1..=7).contains(&members) || members.is_multiple_of(2) {
        bail!(
            "--etcd-members must be 1, 3, 5 or 7 (got {members}): etcd needs a majority of its members, \
             and an even count survives no more failures than the odd count below it"
        );
    }
    if u32::from(etcd_port) + 2 * u32::from(members) - 1 > u32::from(u16::MAX) {
        bail!("--etcd-port {etcd_port} leaves no room for {members} members (each takes two ports)");
    }
    Ok(())
}

/// The number of etcd members `up` recorded under `home` (none before the first `up`).
fn recorded_etcd_members(home: &Path) -> Result<Option<u16>> {
    let path = home.join(ETCD_MEMBERS_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{} does not hold a number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The number of members this `up` runs: `--etcd-members`, else the recorded
/// one, else 1. A cluster keeps the number it was made with (etcd's
/// membership is fixed in its data directories): another is refused.
fn etcd_members_for(home: &Path, asked: Option<u16>) -> Result<u16> {
    let recorded = recorded_etcd_members(home)?.or_else(|| home.join("etcd").exists().then_some(1));
    match (asked, recorded) {
        (Some(asked), Some(recorded)) if asked != recorded => bail!(
            "this cluster was made with --etcd-members {recorded}; etcd's membership cannot change \
             across `up` (run `cargo xtask down --purge` to start a new cluster)"
        ),
        (asked, recorded) => Ok(asked.or(recorded).unwrap_or(1)),
    }
}

/// Where a component's executable comes from.
#[derive(Clone, Copy)]
enum Binary {
    /// A binary of this workspace, built by `up`.
    Workspace(&'static str),
}

impl Binary {
    /// The executable's file name, used to check a pid still runs it.
    fn file_name(self) -> &'static str {
        match self {
            Binary::Workspace(n) => n,
        }
    }
}

/// How `up` knows a component is ready.
#[derive(Clone, Copy)]
enum Ready {
    /// HTTPS GET answering 2xx, verified with the cluster CA.
    Https(fn(&Cluster) -> String),
    /// No endpoint to ask (controllers that only talk to the API server):
    /// ready once the process has stayed up for [`ALIVE_GRACE`].
    Alive,
}

/// How long a [`Ready::Alive`] component must stay up to count as started.
const ALIVE_GRACE: Duration = Duration::from_secs(2);

/// One control-plane process `up` manages.
struct Component {
    /// Name used for its pid file and log file.
    name: &'static str,
    binary: Binary,
    /// Command-line arguments.
    args: fn(&Cluster) -> Vec<String>,
    ready: Ready,
    /// With `--bin-dir`, a missing binary is skipped with a note instead of failing `up`.
    optional: bool,
}

/// Every control-plane process but etcd ([`Cluster::etcd`], started first),
/// in start order (`down` stops them in reverse, then etcd).
fn components() -> Vec<Component> {
    vec![
        Component {
            name: "apiserver",
            binary: Binary::Workspace("apiserver"),
            args: |c| {
                vec![
                    "serve".into(),
                    format!("--etcd-servers={}", c.etcd_servers()),
                    format!("--etcd-cafile={}", c.etcd_pki().ca_cert().display()),
                    format!("--etcd-certfile={}", c.etcd_pki().apiserver_client().cert.display()),
                    format!("--etcd-keyfile={}", c.etcd_pki().apiserver_client().key.display()),
                    // Loopback for the admin, the bridge address for the nodes.
                    "--bind-address=0.0.0.0".into(),
                    format!("--tls-san={}", c.network.gateway()),
                    // The kubernetes Service's endpoint: pods reach the bridge address.
                    format!("--advertise-address={}", c.network.gateway()),
                    format!("--secure-port={}", c.apiserver_port),
                    format!("--cert-dir={}", c.pki().display()),
                    format!("--service-cluster-ip-range={}", c.service_cidr),
                    format!("--encryption-provider-config={}", c.encryption_config().display()),
                    format!("--audit-policy-file={}", c.audit_policy().display()),
                    format!("--audit-log-path={}", c.logs().join("audit.log").display()),
                    format!("--dashboard-dir={}", crate::dashboard::dist_dir().display()),
                ]
            },
            ready: Ready::Https(|c| format!("{}/readyz", c.apiserver_url())),
            optional: false,
        },
        Component {
            name: "controller-manager",
            binary: Binary::Workspace("controller-manager"),
            args: |c| {
                let mut args = vec![
                    format!("--kubeconfig={}", c.controller_manager_kubeconfig().display()),
                    format!("--cluster-cidr={}", c.cluster_cidr),
                    format!("--root-ca-file={}", c.pki().join("ca.crt").display()),
                    // The csrsigning controller signs with the cluster CA.
                    format!("--cluster-signing-cert-file={}", c.pki().join("ca.crt").display()),
                    format!("--cluster-signing-key-file={}", c.pki().join("ca.key").display()),
                    // Its secure port (/metrics) on loopback, as kubeadm binds it.
                    format!("--secure-port={}", c.controller_manager_port),
                    "--bind-address=127.0.0.1".into(),
                ];
                args.extend(c.controller_manager_args.iter().cloned());
                args
            },
            ready: Ready::Alive,
            optional: false,
        },
        Component {
            name: "scheduler",
            binary: Binary::Workspace("scheduler"),
            args: |c| {
                vec![
                    format!("--kubeconfig={}", c.scheduler_kubeconfig().display()),
                    // Its secure port (/metrics) on loopback, as kubeadm binds it.
                    format!("--secure-port={}", c.scheduler_port),
                    "--bind-address=127.0.0.1".into(),
                ]
            },
            ready: Ready::Alive,
            optional: false,
        },
        // metrics.k8s.io for `kubectl top` and autoscaling: on loopback, any
        // free port (it registers the one it took as its EndpointSlice), its
        // serving CA kept under pki/metrics-server.
        Component {
            name: "metrics-server",
            binary: Binary::Workspace("metrics-server"),
            args: |c| {
                vec![
                    format!("--kubeconfig={}", c.metrics_server_kubeconfig().display()),
                    "--bind-address=127.0.0.1".into(),
                    "--secure-port=0".into(),
                    format!("--cert-dir={}", c.pki().join("metrics-server").display()),
                    format!("--requestheader-client-ca-file={}", c.pki().join("ca.crt").display()),
                ]
            },
            ready: Ready::Alive,
            optional: true,
        },
    ]
}

/// Debian packages `up` needs: (command, package).
const PACKAGES: &[(&str, &str)] = &[("etcd", "etcd-server"), ("curl", "curl"), ("ip", "iproute2")];

/// Debian packages nodes need on top: (command, package).
const NODE_PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("mmdebstrap", "mmdebstrap"),
    ("busybox", "busybox-static"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("bpftool", "bpftool"),
];

/// Directory cargo puts binaries of `profile` in.
fn target_bin_dir(profile: &str) -> PathBuf {
    crate::util::target_dir().join(profile)
}

/// Start a cluster.
pub fn up(args: UpArgs) -> Result<()> {
    ensure_packages(PACKAGES)?;
    if args.nodes > 0 {
        ensure_packages(NODE_PACKAGES)?;
    }
    let network = NodeNetwork::new(&args.cluster.prefix, args.node_subnet)?;
    for i in 1..=args.nodes {
        network.node_ip(i)?;
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => fs::canonicalize(dir).with_context(|| format!("--bin-dir {}", dir.display()))?,
        None => {
            let profile = if args.debug { "debug" } else { "release" };
            step(&format!(
                "building the Sluice binaries ({profile}); this takes minutes the first time"
            ));
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.current_dir(workspace_root()).args(["build", "--bins"]);
            if !args.debug {
                cargo.arg("--release");
            }
            run(&mut cargo)?;
            target_bin_dir(profile)
        }
    };
    let mut controller_manager_args = args.controller_manager_args.clone();
    if let Some(pool) = args
        .load_balancer_ip_pool
        .or_else(|| network.default_load_balancer_pool())
    {
        controller_manager_args.push(format!("--load-balancer-ip-pool={pool}"));
    }
    let home = Cluster::home_of(&args.cluster);
    let etcd_members = etcd_members_for(&home, args.etcd_members)?;
    check_etcd_members(etcd_members, args.cluster.etcd_port)?;
    let cluster = Cluster {
        home,
        apiserver_port: args.cluster.apiserver_port,
        scheduler_port: args.cluster.scheduler_port,
        controller_manager_port: args.cluster.controller_manager_port,
        etcd_port: args.cluster.etcd_port,
        etcd_members,
        bin_dir,
        network,
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        controller_manager_args,
    };
    for dir in [cluster.home.clone(), cluster.pki(), cluster.logs(), cluster.run_dir()] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(cluster.home.join(ETCD_MEMBERS_FILE), format!("{etcd_members}\n"))
        .context("recording the number of etcd members")?;
    ensure_encryption_config(&cluster.encryption_config())?;
    cluster.etcd_pki().ensure().context("making etcd's certificates")?;
    if !cluster.audit_policy().exists() {
        fs::write(cluster.audit_policy(), AUDIT_POLICY).context("writing the audit policy")?;
    }
    let registry_addr = format!("{}:{}", cluster.network.gateway(), args.registry_port);
    if args.nodes > 0 {
        record_network(&cluster.home, &cluster.network, &registry_addr)?;
    }
    // Read early: a mistake in the user's file should stop `up` before anything starts.
    let user_registries = crate::registry::UserRegistries::load(&cluster.home)?;

    crate::dashboard::ensure_built()?;
    let images = if args.nodes > 0 {
        step(&format!("building the images ({})", crate::images::ALL.join(", ")));
        crate::images::build(&crate::images::default_out_dir(), false, crate::images::ALL)?
    } else {
        Vec::new()
    };

    if cluster.kubeconfig().exists() {
        step(&format!("admin kubeconfig exists: {}", cluster.kubeconfig().display()));
    } else {
        step("generating the cluster CA and the admin kubeconfig");
        let apiserver = cluster.bin_dir.join("apiserver");
        run(Command::new(&apiserver)
            .arg("kubeconfig")
            .arg("--cert-dir")
            .arg(cluster.pki())
            .arg("--server")
            .arg(cluster.apiserver_url())
            .args(["--user", "admin", "--group", "system:masters"])
            .arg("--out")
            .arg(cluster.kubeconfig())
            .stdout(Stdio::null()))?;
    }

    // The scheduler and the controller-manager run under their own
    // identities, as kube-scheduler and kube-controller-manager do.
    for (user, path) in [
        ("system:kube-scheduler", cluster.scheduler_kubeconfig()),
        (
            "system:kube-controller-manager",
            cluster.controller_manager_kubeconfig(),
        ),
        ("system:metrics-server", cluster.metrics_server_kubeconfig()),
    ] {
        if !path.exists() {
            step(&format!("issuing the credential of {user}"));
            run(Command::new(cluster.bin_dir.join("apiserver"))
                .arg("kubeconfig")
                .arg("--cert-dir")
                .arg(cluster.pki())
                .arg("--server")
                .arg(cluster.apiserver_url())
                .args(["--user", user])
                .arg("--out")
                .arg(&path)
                .stdout(Stdio::null()))?;
        }
    }

    let files = cluster.files();
    start_etcd(&cluster, &files)?;
    for c in components() {
        if let Some(pid) = files.running_pid(c.name, c.binary.file_name()) {
            step(&format!("{} is already running (pid {pid})", c.name));
            continue;
        }
        if c.optional && !cluster.program(&c).exists() {
            step(&format!(
                "{} is not in {}: not started (build it to have it)",
                c.name,
                cluster.bin_dir.display()
            ));
            continue;
        }
        let daemon = Daemon::new(c.name, cluster.program(&c), (c.args)(&cluster));
        let pid = files.start(&daemon)?;
        step(&format!("started {} (pid {pid}), waiting until it is ready", c.name));
        let started = std::time::Instant::now();
        files.wait_until(c.name, pid, c.binary.file_name(), Duration::from_secs(90), || {
            match c.ready {
                Ready::Alive => started.elapsed() >= ALIVE_GRACE,
                Ready::Https(url) => is_ready(&cluster, &url(&cluster)),
            }
        })?;
    }

    if args.nodes > 0 {
        ensure_bpffs()?;
        cluster.network.ensure_bridge()?;
        start_registry(&cluster.home, &files, &registry_addr)?;
        crate::images::push_all(&registry_addr, &images, None)?;
        let (pki, kubeconfig) = (cluster.pki(), cluster.kubeconfig());
        for index in 1..=args.nodes {
            step(&format!(
                "node {index}/{}: {}",
                args.nodes,
                cluster.network.node_name(index)
            ));
            let spec = NodeSpec {
                network: &cluster.network,
                index,
                bin_dir: &cluster.bin_dir,
                home: &cluster.home,
                pki: &pki,
                apiserver_url: cluster.apiserver_node_url(),
                admin_kubeconfig: &kubeconfig,
                cluster_cidr: cluster.cluster_cidr,
                cluster_dns: cluster
                    .service_cidr
                    .host(10)
                    .context("the service CIDR has no 10th address for kube-dns")?,
                noded_args: &args.noded_args,
                registry: &registry_addr,
                user_registries: &user_registries,
            };
            nodes::up(&spec, &files)?;
        }
    }
    println!("Sluice is up. Logs: {}", cluster.logs().display());
    println!(
        "metrics (group system:monitoring may read them): API server {}/metrics, scheduler https://127.0.0.1:{}/metrics, controller-manager https://127.0.0.1:{}/metrics",
        cluster.apiserver_url(),
        cluster.scheduler_port,
        cluster.controller_manager_port
    );
    if args.nodes > 0 {
        println!(
            "registry at http://{registry_addr} (push your images with `cargo xtask images push SOURCE NAME[:TAG]`)"
        );
    }
    for index in 1..=args.nodes {
        println!(
            "node {} at {}",
            cluster.network.node_name(index),
            cluster.network.node_ip(index)?
        );
    }
    println!(
        "dashboard at {}/dashboard/ (sign in with a token, e.g. `kubectl -n kube-system create token <service account>`; the cluster CA is {})",
        cluster.apiserver_url(),
        cluster.pki().join("ca.crt").display()
    );
    println!("export KUBECONFIG={}", cluster.kubeconfig().display());
    Ok(())
}

/// Stop the cluster.
pub fn down(args: DownArgs) -> Result<()> {
    let home = Cluster::home_of(&args.cluster);
    let files = Files {
        run_dir: home.join("run"),
        log_dir: home.join("logs"),
    };
    // Nodes first: their noded talks to the API server until stopped.
    let mut failures = Vec::new();
    for node in nodes::existing(&home) {
        step(&format!("removing node {node}"));
        if let Err(e) = nodes::remove(&home, &files, &node, args.purge) {
            failures.push(format!("node {node}: {e:#}"));
        }
    }
    // The registry is no use without nodes; its storage stays under $SLUICE_HOME/registry.
    files.stop(REGISTRY, REGISTRY_EXE)?;
    match recorded_network(&home) {
        Ok(Some(network)) => {
            if let Err(e) = network.remove_bridge() {
                failures.push(format!("bridge: {e:#}"));
            }
        }
        Ok(None) => {}
        Err(e) => failures.push(format!("{e:#}")),
    }
    for c in components().iter().rev() {
        files.stop(c.name, c.binary.file_name())?;
    }
    let members = recorded_etcd_members(&home)?.unwrap_or(1);
    for index in (0..members).rev() {
        let member = EtcdMember {
            index,
            members,
            client_port: 0,
        };
        files.stop(&member.name(), ETCD_EXE)?;
    }
    if !failures.is_empty() {
        bail!("down left things behind:\n{}", failures.join("\n"));
    }
    if args.purge {
        if home.parent().is_none() || home.as_os_str().is_empty() {
            bail!("refusing to purge {}", home.display());
        }
        if home.exists() {
            step(&format!("deleting {}", home.display()));
            fs::remove_dir_all(&home).with_context(|| format!("deleting {}", home.display()))?;
        }
    } else {
        println!("Data kept under {} (use --purge to delete it).", home.display());
    }
    Ok(())
}

/// Start every etcd member not running, then wait until each is healthy
/// (all are started first: a member of a larger cluster is healthy only
/// once a majority runs and has elected a leader).
fn start_etcd(cluster: &Cluster, files: &Files) -> Result<()> {
    let mut started = Vec::new();
    for member in cluster.etcd() {
        let name = member.name();
        let (pid, ours) = match files.running_pid(&name, ETCD_EXE) {
            Some(pid) => {
                step(&format!("{name} is already running (pid {pid})"));
                (pid, false)
            }
            None => (start_etcd_member(cluster, files, &member)?, true),
        };
        started.push((member, pid, ours));
    }
    for (member, mut pid, ours) in started {
        let name = member.name();
        step(&format!("waiting until {name} is healthy"));
        let url = format!("{}/health", member.client_url());
        let mut attempt = 1;
        loop {
            let waited = files.wait_until(&name, pid, ETCD_EXE, Duration::from_secs(90), || {
                etcd_healthy(cluster, &url)
            });
            match waited {
                Ok(()) => break,
                // A member restarted beside running ones can find its port
                // held for a moment by an outgoing connection (its peers
                // keep dialling it from ephemeral ports): start it again.
                Err(e) if ours && attempt < ETCD_START_ATTEMPTS && !process_runs(pid, ETCD_EXE) => {
                    step(&format!("{name} exited during startup (attempt {attempt}): {e:#}"));
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                    pid = start_etcd_member(cluster, files, &member)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// How many times `up` starts an etcd member that exits during startup.
const ETCD_START_ATTEMPTS: u32 = 3;

/// Start etcd `member`; its pid.
fn start_etcd_member(cluster: &Cluster, files: &Files, member: &EtcdMember) -> Result<u32> {
    let name = member.name();
    let daemon = Daemon::new(name.clone(), ETCD_EXE, cluster.etcd_args(member));
    let pid = files.start(&daemon)?;
    step(&format!("started {name} on {} (pid {pid})", member.client_url()));
    Ok(pid)
}

/// Start the cluster registry on `addr` (the bridge address) unless it runs.
fn start_registry(home: &Path, files: &Files, addr: &str) -> Result<()> {
    if let Some(pid) = files.running_pid(REGISTRY, REGISTRY_EXE) {
        step(&format!("the registry is already running (pid {pid})"));
        return Ok(());
    }
    let config = crate::registry::write_config(home, addr)?;
    let daemon = Daemon::new(
        REGISTRY,
        format!("/usr/bin/{REGISTRY_EXE}"),
        vec!["serve".into(), config.display().to_string()],
    );
    let pid = files.start(&daemon)?;
    step(&format!(
        "started the registry on {addr} (pid {pid}), waiting until it answers"
    ));
    let url = format!("http://{addr}/v2/");
    files.wait_until(REGISTRY, pid, REGISTRY_EXE, Duration::from_secs(30), || {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", &url])
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Write the node network's prefix and subnet and the registry address under `home`.
fn record_network(home: &Path, network: &NodeNetwork, registry: &str) -> Result<()> {
    let text = format!(
        "prefix={}\nsubnet={}\nregistry={registry}\n",
        network.prefix, network.subnet
    );
    fs::write(home.join(NETWORK_FILE), text).context("recording the node network")
}

/// The registry address (`ip:port`) `up` recorded under `home`, if it made nodes.
pub fn recorded_registry(home: &Path) -> Option<String> {
    let text = fs::read_to_string(home.join(NETWORK_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("registry="))
        .map(str::to_owned)
}

/// The node network `up` recorded under `home` (none if `up` made no nodes).
fn recorded_network(home: &Path) -> Result<Option<NodeNetwork>> {
    let Ok(text) = fs::read_to_string(home.join(NETWORK_FILE)) else {
        return Ok(None);
    };
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    let (Some(prefix), Some(subnet)) = (value("prefix"), value("subnet")) else {
        bail!("{} is incomplete", home.join(NETWORK_FILE).display());
    };
    NodeNetwork::new(&prefix, subnet.parse()?).map(Some)
}

/// Mount bpffs at /sys/fs/bpf unless it is (a fresh machine has none).
fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.split(' ').nth(2) == Some("bpf"))
    {
        return Ok(());
    }
    step("mounting bpffs at /sys/fs/bpf");
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// The audit policy of `up` clusters: every request at `Metadata` (who did
/// what to which object, with the response code), except the control
/// plane's and the nodes' own reads, lease renewals and health probes.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-scheduler", "system:kube-controller-manager"]
    verbs: [get, list, watch]
  - level: None
    userGroups: ["system:nodes"]
    verbs: [get, list, watch]
  - level: None
    resources: [{group: coordination.k8s.io, resources: [leases]}]
    verbs: [get, update]
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version"]
  - level: Metadata
"#;

/// Write an `EncryptionConfiguration` with a fresh random secretbox key
/// (XSalsa20-Poly1305, the provider Kubernetes' documentation rates
/// strongest of the local ones; aescbc is not recommended) for Secrets,
/// once: the file is kept across `up`s (a new key would make every
/// stored Secret unreadable). `identity` comes second so Secrets written
/// before encryption was switched on stay readable.
fn ensure_encryption_config(path: &Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    step(&format!("generating the Secret encryption key in {}", path.display()));
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom")?;
    let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         \x20 - resources:\n\
         \x20     - secrets\n\
         \x20   providers:\n\
         \x20     - secretbox:\n\
         \x20         keys:\n\
         \x20           - name: key1\n\
         \x20             secret: {secret}\n\
         \x20     - identity: {{}}\n"
    );
    let tmp = path.with_extension("yaml.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// HTTPS GET of `url` answers 2xx, verified with the cluster CA.
fn is_ready(cluster: &Cluster, url: &str) -> bool {
    let mut curl = Command::new("curl");
    curl.args(["-sf", "-o", "/dev/null", "--max-time", "2"]);
    curl.arg("--cacert").arg(cluster.pki().join("ca.crt")).arg(url);
    succeeds(curl)
}

/// HTTPS GET of etcd's `url` answers 2xx, verified with the etcd CA, with
/// the health-check client certificate.
fn etcd_healthy(cluster: &Cluster, url: &str) -> bool {
    let (pki, client) = (cluster.etcd_pki(), cluster.etcd_pki().healthcheck_client());
    let mut curl = Command::new("curl");
    curl.args(["-sf", "-o", "/dev/null", "--max-time", "2"])
        .arg("--cacert")
        .arg(pki.ca_cert())
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .arg(url);
    succeeds(curl)
}

fn succeeds(mut curl: Command) -> bool {
    curl.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod etcd_members_tests {
    use super::*;

    #[test]
    fn only_odd_member_counts_up_to_seven_are_accepted() {
        for ok in [1, 3, 5, 7] {
            assert!(check_etcd_members(ok, 2379).is_ok(), "{ok}");
        }
        for bad in [0, 2, 4, 8, 9] {
            let e = check_etcd_members(bad, 2379).expect_err("refused").to_string();
            assert!(e.contains("--etcd-members must be 1, 3, 5 or 7"), "{e}");
        }
        assert!(check_etcd_members(3, u16::MAX - 5).is_ok());
        assert!(check_etcd_members(3, u16::MAX - 4).is_err());
    }

    /// A directory removed on drop.
    struct TempHome(PathBuf);
    impl TempHome {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempHome {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_recorded_member_count_is_kept_and_a_single_etcd_counts_as_one() {
        let dir = std::env::temp_dir().join(format!("xtask-etcd-members-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let home = TempHome(dir);
        assert_eq!(etcd_members_for(home.path(), None).expect("fresh"), 1);
        assert_eq!(etcd_members_for(home.path(), Some(3)).expect("fresh"), 3);
        fs::create_dir(home.path().join("etcd")).expect("mkdir");
        let e = etcd_members_for(home.path(), Some(3)).expect_err("refused").to_string();
        assert!(e.contains("made with --etcd-members 1"), "{e}");
        fs::write(home.path().join(ETCD_MEMBERS_FILE), "3\n").expect("write");
        assert_eq!(etcd_members_for(home.path(), None).expect("recorded"), 3);
        assert!(etcd_members_for(home.path(), Some(5)).is_err());
    }

    #[test]
    fn members_take_two_ports_each_and_a_single_member_keeps_its_names() {
        let one = EtcdMember {
            index: 0,
            members: 1,
            client_port: 2379,
        };
        assert_eq!(
            (one.name(), one.etcd_name(), one.peer_url()),
            ("etcd".into(), "sluice".into(), "https://127.0.0.1:2380".into())
        );
        let second = EtcdMember {
            index: 1,
            members: 3,
            client_port: 2381,
        };
        assert_eq!((second.name(), second.etcd_name()), ("etcd-1".into(), "etcd-1".into()));
    }
}
