//! The nodes of a cluster on this machine: per node, a network namespace
//! (see [`crate::network`]), a private containerd and a `noded`, both started
//! inside the namespace.
//!
//! Node `<prefix>-n<i>` keeps everything under `$SLUICE_HOME/nodes/<node>/`:
//! `containerd/` (the [`ContainerdLayout`]: config, registry hosts, socket,
//! root, state, runc root, CNI dirs with `sluice-cni`), `noded/` (noded's state: IPAM, volumes,
//! the node network socket) and `kubeconfig` (the node's credential, pointing
//! at the API server's address on the bridge: noded writes it when it joins
//! with the bootstrap token `up` makes for it, and renews its certificate). Its pid and log files are
//! `run/<node>-containerd.pid`, `run/<node>-noded.pid` and the same under
//! `logs/`. `noded` pins its eBPF objects under `/sys/fs/bpf/sluice/<node>`.
//!
//! Removal ([`remove`]) stops noded and containerd by pid, lets
//! [`ContainerdLayout::cleanup`] remove the node's pods, sandboxes and mounts,
//! then deletes the pins, the namespace and its links.

use crate::containerd::ContainerdLayout;
use crate::network::NodeNetwork;
use crate::process::{Daemon, Files};
use crate::registry::UserRegistries;
use crate::util::step;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Root of every node's bpffs pins; node `n` pins under `<this>/<n>`.
pub const PIN_ROOT: &str = "/sys/fs/bpf/sluice";

/// Everything `up` needs to start one node.
pub struct NodeSpec<'a> {
    /// The node network (names, addresses).
    pub network: &'a NodeNetwork,
    /// 1-based node number.
    pub index: u32,
    /// Where the cluster's binaries are (`noded`, `sluice-cni`, `apiserver`).
    pub bin_dir: &'a Path,
    /// `$SLUICE_HOME`.
    pub home: &'a Path,
    /// Cluster CA directory (`ca.crt`: what a joining noded trusts).
    pub pki: &'a Path,
    /// The API server URL as the nodes reach it (the bridge address).
    pub apiserver_url: String,
    /// The admin kubeconfig (used to watch the node turn Ready).
    pub admin_kubeconfig: &'a Path,
    /// The cluster's pod range (noded routes it as is and masquerades the rest).
    pub cluster_cidr: crate::network::Cidr,
    /// The `kube-dns` Service address (the 10th of the service CIDR), pods' nameserver.
    pub cluster_dns: std::net::Ipv4Addr,
    /// Extra `noded` flags.
    pub noded_args: &'a [String],
    /// The cluster registry (`ip:port`) containerd pulls every image through.
    pub registry: &'a str,
    /// The user's mirrors and credentials (`$SLUICE_HOME/registries.yaml`).
    pub user_registries: &'a UserRegistries,
}

/// Paths of node `name` under `home`.
pub struct NodeDirs {
    /// `$SLUICE_HOME/nodes/<name>`.
    pub dir: PathBuf,
}

impl NodeDirs {
    /// The directories of node `name`.
    pub fn new(home: &Path, name: &str) -> NodeDirs {
        NodeDirs {
            dir: nodes_dir(home).join(name),
        }
    }
    /// The node's containerd layout.
    pub fn containerd(&self) -> ContainerdLayout {
        ContainerdLayout::new(self.dir.join("containerd"))
    }
    /// noded's state directory.
    pub fn noded_state(&self) -> PathBuf {
        self.dir.join("noded")
    }
    /// The node's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

/// `$SLUICE_HOME/nodes`.
pub fn nodes_dir(home: &Path) -> PathBuf {
    home.join("nodes")
}

/// Names of the nodes that have a directory under `home` (what `down` removes).
pub fn existing(home: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(nodes_dir(home))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Pid/log name of a node's containerd.
pub fn containerd_name(node: &str) -> String {
    format!("{node}-containerd")
}

/// Pid/log name of a node's noded.
pub fn noded_name(node: &str) -> String {
    format!("{node}-noded")
}

/// Bring node `spec.index` up: namespace, containerd pulling through the
/// registry, kubeconfig, noded; wait until Ready.
pub fn up(spec: &NodeSpec, files: &Files) -> Result<()> {
    let net = spec.network;
    let node = net.node_name(spec.index);
    let node_ip = net.node_ip(spec.index)?;
    net.ensure_node(spec.index)?;
    let dirs = NodeDirs::new(spec.home, &node);
    fs::create_dir_all(&dirs.dir).with_context(|| format!("creating {}", dirs.dir.display()))?;

    // containerd, inside the node's namespace (CNI runs there, so pod veths land in it).
    let layout = dirs.containerd();
    let ctr_name = containerd_name(&node);
    // Rewritten every time: a running containerd reads hosts.toml on each pull
    // (credentials in config.toml need a restart: `down`, then `up`).
    let config = layout.prepare(
        Some(&spec.bin_dir.join("sluice-cni")),
        Some(spec.registry),
        spec.user_registries,
    )?;
    let ctr_pid = match files.running_pid(&ctr_name, "containerd") {
        Some(pid) => {
            step(&format!("{ctr_name} is already running (pid {pid})"));
            pid
        }
        None => {
            let mut d = Daemon::new(
                &ctr_name,
                "/usr/bin/containerd",
                vec!["--config".into(), config.display().to_string()],
            );
            if !d.program.exists() {
                d.program = PathBuf::from("containerd");
            }
            d.netns = Some(node.clone());
            let pid = files.start(&d)?;
            step(&format!(
                "started {ctr_name} (pid {pid}) in namespace {node}, waiting until it answers"
            ));
            pid
        }
    };
    let socket = layout.socket();
    files.wait_until(&ctr_name, ctr_pid, "containerd", Duration::from_secs(60), || {
        ctr_answers(&socket)
    })?;

    // The node's credential: noded joins as a user's machine does (`ctl node
    // join-command`), with a bootstrap token bound to this node; the
    // controller-manager approves and signs its client certificate request,
    // and noded writes the kubeconfig (kept for later starts).
    let kubeconfig = dirs.kubeconfig();
    let join = if kubeconfig.exists() {
        None
    } else {
        step(&format!("making a bootstrap token for {node} to join with"));
        Some(bootstrap_token(spec.admin_kubeconfig, &node)?)
    };

    let noded = noded_name(&node);
    // A Node object from an earlier run may still say Ready: wait for a heartbeat from this noded.
    let since = utc_now()?;
    let pid = match files.running_pid(&noded, "noded") {
        Some(pid) => {
            step(&format!("{noded} is already running (pid {pid})"));
            pid
        }
        None => {
            let mut args = vec![
                format!("--node-name={node}"),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--containerd-socket={}", socket.display()),
                format!("--cni-conf-dir={}", layout.cni_conf_dir().display()),
                format!("--state-dir={}", dirs.noded_state().display()),
                format!("--node-ip={node_ip}"),
                format!("--cluster-cidr={}", spec.cluster_cidr),
                format!("--cluster-dns={}", spec.cluster_dns),
            ];
            if let Some((_, token)) = &join {
                args.push(format!("--bootstrap-token={token}"));
                args.push(format!("--apiserver={}", spec.apiserver_url));
                args.push(format!("--ca-file={}", spec.pki.join("ca.crt").display()));
            }
            args.extend(noded_args(spec.noded_args));
            let mut d = Daemon::new(&noded, spec.bin_dir.join("noded"), args);
            d.netns = Some(node.clone());
            let pid = files.start(&d)?;
            step(&format!(
                "started {noded} (pid {pid}) in namespace {node}, waiting until node {node} is Ready"
            ));
            pid
        }
    };
    files.wait_until(&noded, pid, "noded", Duration::from_secs(120), || {
        node_ready(spec.admin_kubeconfig, &node, &since)
    })?;
    if let Some((secret, _)) = join {
        // Used once: noded has its certificate now and renews it itself.
        let _ = kubectl(spec.admin_kubeconfig)
            .args(["-n", "kube-system", "delete", "secret", &secret, "--ignore-not-found"])
            .stdout(Stdio::null())
            .status();
    }
    Ok(())
}

fn kubectl(kubeconfig: &Path) -> Command {
    let mut c = Command::new("kubectl");
    c.arg("--kubeconfig").arg(kubeconfig);
    c
}

/// Store a bootstrap token bound to `node` (valid an hour) the way `ctl
/// node token create` does; returns (its Secret's name, `<id>.<secret>`).
fn bootstrap_token(admin_kubeconfig: &Path, node: &str) -> Result<(String, String)> {
    let mut bytes = [0u8; 22];
    {
        use std::io::Read;
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("reading /dev/urandom")?;
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let (id, secret) = text.split_at(6);
    let expiration = utc_at("+1 hour")?;
    let name = format!("bootstrap-token-{id}");
    // JSON is YAML; every value here is plain ASCII without quotes.
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Secret",
 "metadata": {{"name": "{name}", "namespace": "kube-system",
   "annotations": {{"bootstrap.sluice.dev/node-name": "{node}"}}}},
 "type": "bootstrap.kubernetes.io/token",
 "stringData": {{"description": "made by cargo xtask up for node {node}",
   "token-id": "{id}", "token-secret": "{secret}", "expiration": "{expiration}",
   "usage-bootstrap-authentication": "true"}}}}"#
    );
    let mut child = kubectl(admin_kubeconfig)
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("running kubectl")?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(manifest.as_bytes())?;
    }
    let status = child.wait()?;
    anyhow::ensure!(
        status.success(),
        "kubectl create of the bootstrap token for {node} failed"
    );
    Ok((name, format!("{id}.{secret}")))
}

/// Disk-based eviction signals switched off on these nodes: they share the
/// machine's (often nearly full) disk with everything else on it, so
/// Kubernetes' defaults (`nodefs.available<10%`, `imagefs.available<15%`,
/// `nodefs.inodesFree<5%`) would evict every pod of a development cluster.
/// kind switches them off for the same reason. Memory and PID signals keep
/// their defaults.
const DISK_SIGNALS_OFF: [&str; 3] = ["nodefs.available<0%", "nodefs.inodesFree<0%", "imagefs.available<0%"];

/// The user's `--noded-arg`s, with one `--eviction-hard`: theirs, plus
/// [`DISK_SIGNALS_OFF`] for the disk signals they did not set.
fn noded_args(user: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut given: Vec<String> = Vec::new();
    for a in user {
        match a.strip_prefix("--eviction-hard=") {
            Some(v) => given.extend(v.split(',').filter(|s| !s.is_empty()).map(String::from)),
            None => out.push(a.clone()),
        }
    }
    let signal = |t: &str| t.split(['<', '>', '=']).next().unwrap_or_default().trim().to_string();
    let set: Vec<String> = given.iter().map(|t| signal(t)).collect();
    given.extend(
        DISK_SIGNALS_OFF
            .iter()
            .filter(|t| !set.contains(&signal(t)))
            .map(|t| t.to_string()),
    );
    out.push(format!("--eviction-hard={}", given.join(",")));
    out
}

/// Stop node `node` and remove its pods, sandboxes, pins, namespace and links.
/// Keeps `nodes/<node>/` (noded state, kubeconfig) unless `purge`.
pub fn remove(home: &Path, files: &Files, node: &str, purge: bool) -> Result<()> {
    files.stop(&noded_name(node), "noded")?;
    files.stop(&containerd_name(node), "containerd")?;
    let dirs = NodeDirs::new(home, node);
    // Kills leftover shims and containers of this node, unmounts, deletes containerd's directory.
    dirs.containerd().cleanup()?;
    // What noded mounted for its pods (emptyDir `medium: Memory` tmpfs) goes with them.
    crate::containerd::unmount_below(&dirs.dir);
    let pins = Path::new(PIN_ROOT).join(node);
    if pins.exists() {
        step(&format!("deleting the eBPF pins under {}", pins.display()));
        fs::remove_dir_all(&pins).with_context(|| format!("deleting {}", pins.display()))?;
    }
    // The shared root goes once no node pins under it any more.
    let _ = fs::remove_dir(PIN_ROOT);
    NodeNetwork::remove_node(node)?;
    remove_cgroups(node);
    if purge && dirs.dir.exists() {
        fs::remove_dir_all(&dirs.dir).with_context(|| format!("deleting {}", dirs.dir.display()))?;
    }
    Ok(())
}

/// Remove the (now empty) cgroups noded made for the node's pods (`/sluice/<node>` in every hierarchy).
fn remove_cgroups(node: &str) {
    for hierarchy in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let root = hierarchy.path().join("sluice").join(node);
        if root.is_dir() {
            let mut dirs = Vec::new();
            collect_dirs(&root, &mut dirs);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
}

/// Whether the containerd at `socket` answers.
fn ctr_answers(socket: &Path) -> bool {
    socket.exists()
        && Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Whether Node `node` reports Ready=True and has sent a heartbeat at or
/// after `since` (RFC 3339, UTC, seconds): its Lease in `kube-node-lease`
/// renewed since. The Node's own `lastHeartbeatTime` moves only when noded
/// posts its status, which it does when the status changed or every 5 min,
/// as the kubelet does. Asked with kubectl and the admin kubeconfig.
fn node_ready(kubeconfig: &Path, node: &str, since: &str) -> bool {
    let get = |args: &[&str]| {
        kubectl(kubeconfig)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let ready = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
    if get(&["get", "node", node, "-o", ready]).as_deref() != Some("True") {
        return false;
    }
    let renewed = get(&[
        "-n",
        "kube-node-lease",
        "get",
        "lease",
        node,
        "-o",
        "jsonpath={.spec.renewTime}",
    ]);
    renewed.is_some_and(|t| renewed_since(&t, since))
}

/// Whether a Lease's `renewTime` (RFC 3339 UTC with microseconds) is at or
/// after `since` (RFC 3339 UTC with seconds), to the second. Timestamps of
/// one format compare correctly as strings; both are cut to their seconds.
fn renewed_since(renew_time: &str, since: &str) -> bool {
    let seconds = |t: &str| t.get(..19).map(str::to_string);
    match (seconds(renew_time), seconds(since)) {
        (Some(renewed), Some(since)) => renewed >= since,
        _ => false,
    }
}

/// The current time as RFC 3339 UTC with seconds (`2026-11-23T20:17:06Z`).
fn utc_now() -> Result<String> {
    utc_at("now")
}

/// The time `when` (a `date -d` string such as `+1 hour`) as RFC 3339 UTC with seconds.
fn utc_at(when: &str) -> Result<String> {
    let out = Command::new("date")
        .args(["-u", "-d", when, "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .context("running date")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod eviction_tests {
    use super::noded_args;

    #[test]
    fn disk_signals_are_off_unless_the_user_sets_them() {
        assert_eq!(
            noded_args(&["--heartbeat-seconds=2".into()]),
            [
                "--heartbeat-seconds=2",
                "--eviction-hard=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%"
            ]
        );
        assert_eq!(
            noded_args(&["--eviction-hard=memory.available<1Gi,nodefs.available<20%".into()]),
            ["--eviction-hard=memory.available<1Gi,nodefs.available<20%,nodefs.inodesFree<0%,imagefs.available<0%"]
        );
    }
}

#[cfg(test)]
mod heartbeat_tests {
    use super::renewed_since;

    #[test]
    fn a_lease_renewed_in_the_same_second_or_later_is_a_heartbeat_since() {
        let since = "2026-12-07T00:24:00Z";
        assert!(renewed_since("2026-12-07T00:24:00.123456Z", since));
        assert!(renewed_since("2026-12-07T00:24:01.000001Z", since));
        assert!(!renewed_since("2026-12-07T00:23:59.999999Z", since));
        assert!(!renewed_since("", since));
    }
}
