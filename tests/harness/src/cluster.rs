//! Cluster-level harness: a whole Sluice cluster started the way a user
//! starts one, with `cargo xtask up --nodes N`, beside any other cluster on
//! the machine.
//!
//! [`TestCluster::up`] runs the workspace's `xtask up` with the binaries of
//! this target directory (`--bin-dir`), a temp `--home`, free ports, and its
//! own name prefix and node subnet (`10.251.<k>.0/24`, a `<k>` no interface on
//! this machine uses) and its own registry port, so its bridge, node
//! namespaces, registry, pins and processes are its own. `up` starts the
//! cluster registry on the bridge address and pushes our images (cached
//! archives, so that takes seconds); nodes pull everything through it, so
//! stories write images as users do (`busybox:1.35.0`, `nginx`).
//! [`TestCluster::new`] + [`TestCluster::start`] leave room to write
//! `registries.yaml` into the home first. Dropping it runs `xtask down --purge`, then removes by name and
//! pid whatever that left (namespaces, links, bridge, pins, processes whose
//! pid file names them and whose executable is still ours), even when the
//! test failed. Users' actions go through the real `kubectl`.
//!
//! Traffic: client namespaces ([`TestCluster::client`]) plug into the
//! cluster's bridge, so requests only ever go to addresses of namespaces the
//! test made.

use crate::{run_ok, workspace_bin};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The busybox image pods use (has `httpd`, `wget`, `hostname`), as users write it.
pub const BUSYBOX_IMAGE: &str = "busybox:1.35.0";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cluster started with `xtask up`; `xtask down --purge` on drop.
pub struct TestCluster {
    home: tempfile::TempDir,
    apiserver_port: u16,
    /// The scheduler's secure port on loopback (`/metrics`).
    pub scheduler_port: u16,
    /// The controller-manager's secure port on loopback (`/metrics`).
    pub controller_manager_port: u16,
    etcd_port: u16,
    registry_port: u16,
    /// Prefix of the bridge, node names and namespaces (`<prefix>-n1`, ...).
    pub prefix: String,
    /// Third octet of the node subnet `10.251.<k>.0/24`.
    k: u8,
    nodes: u32,
    clients: std::sync::Mutex<Vec<String>>,
}

/// Ports kept for etcd from [`TestCluster`]'s etcd port on: three members' client and peer ports.
const ETCD_PORTS: u16 = 6;

/// The first of [`ETCD_PORTS`] free consecutive ports between 20000 and
/// the start of the kernel's ephemeral port range, if it leaves room.
fn etcd_ports_below_ephemeral() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u16 = range.split_whitespace().next()?.parse().ok()?;
    const FROM: u16 = 20000;
    let slots = low.checked_sub(FROM)? / ETCD_PORTS;
    if slots < 16 {
        return None;
    }
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(n.wrapping_mul(31))
        .wrapping_add(nanos);
    (0..u32::from(slots)).find_map(|i| {
        let p = FROM + ((seed.wrapping_add(i) % u32::from(slots)) as u16) * ETCD_PORTS;
        (0..ETCD_PORTS)
            .all(|j| TcpListener::bind(("127.0.0.1", p + j)).is_ok())
            .then_some(p)
    })
}

/// One pod as `kubectl get pods -o json` shows it.
#[derive(Clone, Debug)]
pub struct PodView {
    /// metadata.name
    pub name: String,
    /// status.phase
    pub phase: String,
    /// status.podIP
    pub ip: Option<String>,
    /// spec.nodeName
    pub node: Option<String>,
    /// The first container's runtime id (without `containerd://`).
    pub container_id: Option<String>,
    /// Whether the pod is being deleted.
    pub terminating: bool,
    /// The Ready condition is True.
    pub ready: bool,
}

impl TestCluster {
    /// `xtask up --nodes <nodes>` plus `extra` flags (e.g. `--controller-manager-arg=...`).
    /// Panics with xtask's output if it fails (the drop still cleans up).
    pub fn up(nodes: u32, extra: &[&str]) -> TestCluster {
        let cluster = TestCluster::new(nodes);
        cluster.start(extra);
        cluster
    }

    /// A cluster not started yet: home, ports, prefix and subnet chosen (so a
    /// story can write `registries.yaml` into [`TestCluster::home`] first).
    pub fn new(nodes: u32) -> TestCluster {
        // etcd's client port and the ports after it: its peer port, and room
        // for `--etcd-members 3` (member i on etcd_port + 2i and the port
        // after). They lie below the kernel's ephemeral range when it
        // leaves room (as 2379/2380 do): a member killed and restarted
        // beside the others must find its ports free, and inside the range
        // an outgoing connection (the other members keep dialling it) can
        // hold one, even connect to itself on it.
        let etcd_port = etcd_ports_below_ephemeral().unwrap_or_else(|| loop {
            let p = crate::free_port();
            if p < u16::MAX - ETCD_PORTS && (1..ETCD_PORTS).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
                break p;
            }
        });
        let port_beside_etcd = || loop {
            let p = crate::free_port();
            if !(etcd_port..etcd_port + ETCD_PORTS).contains(&p) {
                break p;
            }
        };
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let seed = std::process::id().wrapping_mul(31).wrapping_add(n * 7919);
        let used = subnets_in_use();
        let k = (0..250u32)
            .map(|i| 1 + ((seed + i) % 250) as u8)
            .find(|k| !used.contains(k))
            .expect("a free 10.251.k.0/24");
        let cluster = TestCluster {
            home: tempfile::Builder::new()
                .prefix("sluice-cl-")
                .tempdir()
                .expect("temp dir"),
            apiserver_port: port_beside_etcd(),
            scheduler_port: port_beside_etcd(),
            controller_manager_port: port_beside_etcd(),
            etcd_port,
            registry_port: port_beside_etcd(),
            prefix: format!("t{:x}", seed & 0xfffff),
            k,
            nodes,
            clients: Default::default(),
        };
        cluster
    }

    /// Run `xtask up` for this cluster (again: `up` is idempotent).
    pub fn start(&self, extra: &[&str]) {
        let cluster = self;
        let (nodes, k) = (self.nodes, self.k);
        let bins = workspace_bin("noded").parent().expect("bin dir").to_path_buf();
        let mut up = cluster.xtask("up");
        up.arg("--bin-dir")
            .arg(bins)
            .args(["--nodes", &nodes.to_string()])
            .args(["--node-subnet", &format!("10.251.{k}.0/24")])
            .args(["--cluster-cidr", "10.252.0.0/16"])
            .args(["--service-cidr", &format!("10.250.{k}.0/24")])
            .args(["--registry-port", &self.registry_port.to_string()])
            .arg("--noded-arg=--heartbeat-seconds=2")
            .args(extra);
        let started = Instant::now();
        run_ok(&mut up);
        eprintln!(
            "cluster {} up with {nodes} node(s) in {:?}",
            cluster.prefix,
            started.elapsed()
        );
    }

    /// `xtask down` (data kept; the drop still purges); its output.
    pub fn down(&self) -> Output {
        run_ok(&mut self.xtask("down"))
    }

    /// The bridge address (API server, registry and gateway of the nodes).
    pub fn gateway(&self) -> String {
        format!("10.251.{}.1", self.k)
    }

    /// The cluster registry, `ip:port` on the bridge.
    pub fn registry_addr(&self) -> String {
        format!("{}:{}", self.gateway(), self.registry_port)
    }

    /// Push `source` (OCI/docker archive, OCI layout dir) into the cluster
    /// registry as `name` (as pods write it), the documented way:
    /// `cargo xtask images push SOURCE NAME`.
    pub fn push_image(&self, source: &Path, name: &str) {
        run_ok(
            Command::new(workspace_bin("xtask"))
                .args(["images", "push"])
                .arg(source)
                .arg(name)
                .arg("--home")
                .arg(self.home()),
        );
    }

    fn xtask(&self, task: &str) -> Command {
        let mut c = Command::new(workspace_bin("xtask"));
        c.arg(task)
            .arg("--home")
            .arg(self.home())
            .args(["--apiserver-port", &self.apiserver_port.to_string()])
            .args(["--scheduler-port", &self.scheduler_port.to_string()])
            .args(["--controller-manager-port", &self.controller_manager_port.to_string()])
            .args(["--etcd-port", &self.etcd_port.to_string()])
            .args(["--prefix", &self.prefix]);
        c
    }

    /// etcd's client URL (`up` serves it over TLS with client certificates only).
    pub fn etcd_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.etcd_port)
    }

    /// Client URL of etcd member `i` of a cluster started with
    /// `--etcd-members 3` (0-based; member 0's is [`TestCluster::etcd_url`]).
    pub fn etcd_member_url(&self, i: u16) -> String {
        format!("https://127.0.0.1:{}", self.etcd_port + 2 * i)
    }

    /// `$SLUICE_HOME` of this cluster.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The API server's URL on loopback.
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.home().join("admin.kubeconfig")
    }

    /// Name of node `i` (1-based).
    pub fn node_name(&self, i: u32) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Address of node `i` on the bridge.
    pub fn node_ip(&self, i: u32) -> String {
        format!("10.251.{}.{}", self.k, i + 1)
    }

    /// The bridge joining the nodes.
    pub fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// The pid in `run/<name>.pid` (e.g. `<node>-noded`).
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.home().join("run").join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The containerd socket of node `node`.
    pub fn containerd_socket(&self, node: &str) -> PathBuf {
        self.home()
            .join("nodes")
            .join(node)
            .join("containerd")
            .join("containerd.sock")
    }

    /// Run kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// Run kubectl and panic with its output unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let mut kubectl = Command::new("kubectl");
        kubectl.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        String::from_utf8_lossy(&run_ok(&mut kubectl).stdout).into_owned()
    }

    /// `kubectl apply -f` of a manifest given as text.
    pub fn apply(&self, manifest: &str) -> String {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let file = self.home().join(format!("manifest-{n}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        self.kubectl_ok(&["apply", "-f", &file.display().to_string()])
    }

    /// Pods in `default` matching `selector`.
    pub fn pods(&self, selector: &str) -> Vec<PodView> {
        let out = self.kubectl(&["get", "pods", "-l", selector, "-o", "json"]);
        if !out.status.success() {
            return Vec::new();
        }
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PodView {
                name: p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                phase: p["status"]["phase"].as_str().unwrap_or_default().to_string(),
                ip: p["status"]["podIP"].as_str().map(str::to_owned),
                node: p["spec"]["nodeName"].as_str().map(str::to_owned),
                container_id: p["status"]["containerStatuses"][0]["containerID"]
                    .as_str()
                    .map(|id| id.trim_start_matches("containerd://").to_string()),
                terminating: !p["metadata"]["deletionTimestamp"].is_null(),
                ready: p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
            })
            .collect()
    }

    /// Wait until exactly `n` pods match `selector`, none terminating, all
    /// Running and Ready with an IP; returns them.
    pub fn wait_running(&self, selector: &str, n: usize, timeout: Duration) -> Vec<PodView> {
        let mut last = Vec::new();
        let found = wait_for(timeout, || {
            last = self.pods(selector);
            let ok = last.len() == n
                && last
                    .iter()
                    .all(|p| !p.terminating && p.phase == "Running" && p.ready && p.ip.is_some());
            ok.then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {n} Running Ready pods {selector}; last seen: {last:#?}\n{}",
                self.logs_tail()
            )
        })
    }

    /// Run `cmd` inside the first container of `pod` (CRI exec through the node's containerd).
    pub fn exec_in_pod(&self, pod: &PodView, cmd: &[&str]) -> Output {
        let node = pod.node.as_deref().expect("pod bound to a node");
        let id = pod.container_id.as_deref().expect("pod has a container");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_socket(node))
            .args([
                "-n",
                "k8s.io",
                "tasks",
                "exec",
                "--exec-id",
                &format!("test-{}-{n}", std::process::id()),
                id,
            ])
            .args(cmd)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run ctr tasks exec")
    }

    /// `GET /` to `ip:port` from inside `pod` (busybox `nc` with a 2 s
    /// timeout: this busybox's `wget -T` segfaults, and plain `wget` has no
    /// timeout); the response body, trimmed, if it answered.
    pub fn http_from_pod(&self, pod: &PodView, ip: &str, port: u16) -> Option<String> {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port}");
        let out = self.exec_in_pod(pod, &["sh", "-c", &script]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        (out.status.success() && head.starts_with("HTTP/1.") && head.contains(" 200 ")).then(|| body.trim().to_string())
    }

    /// A client network namespace plugged into the cluster's bridge
    /// (address `10.251.<k>.<200 + j>`); removed when the cluster drops.
    pub fn client(&self) -> Client {
        let mut clients = self.clients.lock().unwrap();
        let j = clients.len() as u32 + 1;
        let name = format!("{}-c{j}", self.prefix);
        let host = format!("{name}h");
        let ip = format!("10.251.{}.{}", self.k, 200 + j);
        sh_ok(&format!(
            "ip netns add {name} && ip link add {host} type veth peer name eth0 netns {name} && \
             ip link set {host} master {br} up && ip -n {name} link set lo up && \
             ip -n {name} addr add {ip}/24 dev eth0 && ip -n {name} link set eth0 up",
            br = self.bridge()
        ));
        clients.push(name.clone());
        Client { netns: name, ip }
    }

    /// The ends of every component's log (printed when a test fails).
    pub fn logs_tail(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.home().join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            text.push_str(&format!(
                "--- {} ---\n{}\n",
                entry.path().display(),
                lines[lines.len().saturating_sub(15)..].join("\n")
            ));
        }
        text
    }

    /// Number of nodes `up` was asked for.
    pub fn nodes(&self) -> u32 {
        self.nodes
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail());
            // SLUICE_KEEP_LOGS=<dir>: a failed story's component logs are kept there.
            if let Some(dir) = std::env::var_os("SLUICE_KEEP_LOGS") {
                let to = PathBuf::from(dir).join(&self.prefix);
                let _ = Command::new("cp")
                    .arg("-r")
                    .arg(self.home().join("logs"))
                    .arg(&to)
                    .status();
                eprintln!("component logs kept in {}", to.display());
            }
        }
        for client in self.clients.lock().map(|c| c.clone()).unwrap_or_default() {
            let _ = Command::new("ip").args(["netns", "del", &client]).status();
            let _ = Command::new("ip").args(["link", "del", &format!("{client}h")]).output();
        }
        let down = self.xtask("down").arg("--purge").output();
        if let Ok(out) = &down {
            if !out.status.success() {
                eprintln!(
                    "xtask down failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // Belt and braces, in case `down` failed half-way: processes named by
        // pid files that still run our binaries, then namespaces, links, pins.
        for entry in std::fs::read_dir(self.home().join("run"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(pid) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let name = exe
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            if [
                "etcd",
                "apiserver",
                "controller-manager",
                "scheduler",
                "containerd",
                "noded",
                "docker-registry",
            ]
            .contains(&name.trim_end_matches(" (deleted)"))
            {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        for i in 1..=self.nodes {
            let node = self.node_name(i);
            let _ = Command::new("ip").args(["netns", "del", &node]).output();
            let _ = Command::new("ip").args(["link", "del", &format!("{node}h")]).output();
            let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/sluice/{node}"));
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

/// A network namespace on the cluster's bridge, acting as a machine outside the cluster.
pub struct Client {
    /// The namespace's name.
    pub netns: String,
    /// Its address on the bridge.
    pub ip: String,
}

impl Client {
    /// GET `url` `n` times, each on a new connection; counts the answers
    /// (trimmed bodies; failures count under `""`).
    pub fn tally(&self, url: &str, n: usize) -> BTreeMap<String, usize> {
        let mut tally = BTreeMap::new();
        // One curl for many URLs; `Connection: close` makes each its own connection.
        for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
            // A lost SYN is retransmitted after 1 s, so 3 s tells "slow" from
            // "lost"; `timeout` bounds the whole chunk.
            let out = Command::new("timeout")
                .args([
                    "120",
                    "ip",
                    "netns",
                    "exec",
                    &self.netns,
                    "curl",
                    "-s",
                    "--connect-timeout",
                    "3",
                    "--max-time",
                    "3",
                ])
                .args(["-H", "Connection: close", "-w", "\n--\n"])
                .args(chunk.iter().map(|i| format!("{url}?{i}")))
                .output()
                .expect("run curl");
            let text = String::from_utf8_lossy(&out.stdout);
            let mut answers: Vec<&str> = text.split("\n--\n").collect();
            answers.pop();
            for a in &answers {
                *tally.entry(a.trim().to_string()).or_insert(0) += 1;
            }
            *tally.entry(String::new()).or_insert(0) += chunk.len().saturating_sub(answers.len());
        }
        tally.retain(|_, v| *v > 0);
        tally
    }

    /// Start continuous load on `url` from this namespace: `hey` with
    /// `workers` concurrent workers, each request on a new connection (a
    /// request lost to an endpoint change cannot hide behind keep-alive),
    /// `timeout_s` per request. Stop it with [`Load::finish`].
    pub fn load(&self, url: &str, workers: u32, timeout_s: u32) -> Load {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "hey", "-z", "10m", "-disable-keepalive"])
            .args(["-c", &workers.to_string(), "-t", &timeout_s.to_string(), url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run hey");
        Load {
            child: Some(child),
            started: Instant::now(),
        }
    }

    /// One GET; the trimmed body if it answered.
    pub fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "curl", "-sf", "--max-time", "2", url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Continuous load from a client namespace (`hey`), stopped by pid on drop.
pub struct Load {
    child: Option<std::process::Child>,
    started: Instant,
}

/// What a load run saw: answers by HTTP status and failed requests by error.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Responses by status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Failed requests (no response: refused, reset, timed out) by error text.
    pub errors: BTreeMap<String, usize>,
    /// How long the load ran.
    pub duration: Duration,
}

impl LoadReport {
    /// Requests answered with 200.
    pub fn ok(&self) -> usize {
        self.statuses.get(&200).copied().unwrap_or(0)
    }
    /// Requests that failed or were answered with anything but 200.
    pub fn failed(&self) -> usize {
        self.errors.values().sum::<usize>()
            + self
                .statuses
                .iter()
                .filter(|(s, _)| **s != 200)
                .map(|(_, n)| n)
                .sum::<usize>()
    }
}

impl Load {
    /// Stop the load (SIGINT: `hey` then prints its summary) and read the summary.
    pub fn finish(mut self) -> LoadReport {
        let child = self.child.take().expect("load running");
        let duration = self.started.elapsed();
        let _ = Command::new("/bin/kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("hey ends");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut report = parse_hey(&text);
        report.duration = duration;
        assert!(
            report.ok() + report.failed() > 0,
            "hey reported nothing: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The status and error distributions of `hey`'s summary.
fn parse_hey(text: &str) -> LoadReport {
    let mut report = LoadReport::default();
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        if t.ends_with("distribution:") {
            section = if t.starts_with("Status") {
                "status"
            } else if t.starts_with("Error") {
                "error"
            } else {
                ""
            };
            continue;
        }
        // `[200]\t1234 responses` / `[3]\tGet "...": dial tcp ...: connection refused`
        let Some(rest) = t.strip_prefix('[') else {
            if !t.is_empty() && !t.starts_with('[') && section == "status" {
                section = "";
            }
            continue;
        };
        let Some((head, tail)) = rest.split_once(']') else {
            continue;
        };
        let Ok(n) = head.trim().parse::<usize>() else { continue };
        match section {
            "status" => {
                let count = tail.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(0);
                if let Ok(code) = u16::try_from(n) {
                    *report.statuses.entry(code).or_insert(0) += count;
                }
            }
            "error" => *report.errors.entry(tail.trim().to_string()).or_insert(0) += n,
            _ => {}
        }
    }
    report
}

/// Poll `check` every 250 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Run a shell command, panicking with its stderr on failure; returns stdout.
pub fn sh_ok(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Third octets `k` of `10.251.k.0/24` networks some interface already uses.
fn subnets_in_use() -> Vec<u8> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .filter_map(|w| w.strip_prefix("10.251."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hey_summaries_are_read() {
        let text = "Summary:\n  Total:\t5.0 secs\n\nResponse time histogram:\n  0.001 [1]\t|\n\nStatus code distribution:\n  [200]\t1200 responses\n  [503]\t2 responses\n\nError distribution:\n  [3]\tGet \"http://10.0.0.1:30004\": dial tcp 10.0.0.1:30004: connect: connection refused\n  [1]\tGet \"http://10.0.0.1:30004\": context deadline exceeded\n";
        let r = super::parse_hey(text);
        assert_eq!(r.ok(), 1200);
        assert_eq!(r.statuses.get(&503), Some(&2));
        assert_eq!(r.errors.values().sum::<usize>(), 4);
        assert_eq!(r.failed(), 6);
    }
}
