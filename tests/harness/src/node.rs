//! Node-side harness: a private containerd per test, pulling through a registry.
//!
//! [`Containerd::start`] does what `cargo xtask up` does for one node: it
//! starts a [`Registry`] (loopback, free port) holding the busybox and pause
//! images, writes the node's containerd config with `xtask containerd config
//! --registry` (every upstream mirrored through that registry) and starts
//! containerd on it. Nothing is imported: images arrive only by pulls (the
//! kubelet's CRI PullImage; the sandbox image by containerd itself).
//! Dropping it kills containerd by pid and runs `xtask containerd cleanup`,
//! which removes that instance's shims, containers, mounts and network
//! namespaces, and its directory; then the registry.
//! [`Noded`] runs the node daemon against one such containerd (killed by pid
//! on drop, its log tail printed when the test panics).

use crate::registry::Registry;
use crate::{run_ok, workspace_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox image every test pod uses (has `httpd`), as users write it.
pub const BUSYBOX_IMAGE: &str = "busybox:1.35.0";
/// The pause image containerd's config names as `sandbox_image` (our own binary).
pub const PAUSE_IMAGE: &str = concat!("sluice.local/pause:", env!("CARGO_PKG_VERSION"));

/// A running containerd with its own root, state, socket and CNI dirs.
pub struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
    /// The gRPC (CRI) socket.
    pub socket: PathBuf,
    /// Where the node's CNI conflist goes.
    pub cni_conf_dir: PathBuf,
    /// containerd's registry hosts dir (`config_path`).
    pub hosts_dir: PathBuf,
    /// The registry every pull goes through (busybox and pause pushed).
    pub registry: Registry,
}

/// Run the workspace's `xtask` binary, returning stdout; panics with stderr on failure.
fn xtask(args: &[&str]) -> String {
    String::from_utf8_lossy(&run_ok(Command::new(workspace_bin("xtask")).args(args)).stdout).into_owned()
}

impl Containerd {
    /// Start a containerd whose CNI bin dir holds `sluice-cni` (from the target
    /// dir), pulling through a fresh loopback registry holding busybox and pause.
    pub fn start() -> Containerd {
        let registry = Registry::start();
        registry.push_images(&["busybox", "pause"]);
        Containerd::start_with(registry)
    }

    /// Start a containerd that pulls everything through `registry`.
    pub fn start_with(registry: Registry) -> Containerd {
        // Short path: the socket path must fit in a sockaddr_un (108 bytes).
        let dir = PathBuf::from(format!("/tmp/sl-ctrd-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("containerd dir");
        let dir_arg = dir.display().to_string();
        let plugin = workspace_bin("sluice-cni").display().to_string();
        let printed = xtask(&[
            "containerd",
            "config",
            "--dir",
            &dir_arg,
            "--cni-plugin",
            &plugin,
            "--registry",
            &registry.addr,
        ]);
        let value = |key: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("xtask containerd config printed no {key}: {printed}"))
        };
        let (config, socket, cni_conf_dir) = (value("config"), value("socket"), value("cni_conf_dir"));
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Containerd {
            hosts_dir: dir.join("certs.d"),
            dir,
            child: Some(child),
            socket,
            cni_conf_dir,
            registry,
        };
        containerd.wait_ready(Duration::from_secs(30));
        containerd
    }

    /// Pull `image` (as users write it) into the CRI namespace with `ctr`,
    /// through the same registry hosts the CRI plugin uses. For tests of the
    /// runtime itself; pods get their images from the kubelet's pulls.
    pub fn pull(&self, image: &str) {
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args(["-n", "k8s.io", "images", "pull", "--hosts-dir"])
                .arg(&self.hosts_dir)
                .arg(full_reference(image)),
        );
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("containerd exited with {status}: {}", self.log());
                }
            }
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd not ready after {timeout:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(workspace_bin("xtask"))
            .args(["containerd", "cleanup", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
    }
}

/// `busybox:1.35.0` → `docker.io/library/busybox:1.35.0` (what `ctr` needs).
pub fn full_reference(image: &str) -> String {
    let (first, _) = image.split_once('/').unwrap_or(("", image));
    let named = if first.contains('.') || first.contains(':') || first == "localhost" {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    };
    let last = named.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        named
    } else {
        format!("{named}:latest")
    }
}

/// A number unique within this process (several containerds per test binary).
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A running `noded` for one node, against a [`Containerd`] and a control plane.
///
/// Logs to a file (level from `SLUICE_TEST_NODED_LOG`, default
/// `info,sluice_noded=debug`); a panicking test prints the log's tail and
/// keeps the file (`SLUICE_TEST_KEEP_LOGS=1` keeps it always). [`Noded::kill`] is a crash (SIGKILL by pid) and
/// [`Noded::start_again`] starts the same node again on the same state.
pub struct Noded {
    args: Vec<String>,
    child: Option<Child>,
    log_dir: Option<tempfile::TempDir>,
    log: PathBuf,
    /// The node's name.
    pub node_name: String,
    /// noded's state directory (CNI addresses, pod volumes and logs).
    pub state_dir: PathBuf,
}

impl Noded {
    /// Start `noded` as node `node_name` with the test-friendly timings
    /// (1 s heartbeat and first crash back-off, an OS-chosen log port) plus `extra` flags.
    pub fn start(node_name: &str, kubeconfig: &Path, containerd: &Containerd, extra: &[String]) -> Noded {
        let state_dir = containerd.dir().join("noded");
        let mut args = vec![
            format!("--node-name={node_name}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--containerd-socket={}", containerd.socket.display()),
            format!("--cni-conf-dir={}", containerd.cni_conf_dir.display()),
            format!("--state-dir={}", state_dir.display()),
            "--node-ip=127.0.0.1".into(),
            "--heartbeat-seconds=1".into(),
            "--crash-backoff-seconds=1".into(),
            // Several nodes share the loopback address: let the OS pick each log port
            // (the API server follows the port the node reports).
            "--log-port=0".into(),
        ];
        // Tests share the machine's disk, often nearly full: no disk-based
        // eviction (as `xtask up` and kind), unless a test sets the signals.
        if !extra.iter().any(|a| a.starts_with("--eviction-hard")) {
            args.push("--eviction-hard=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%".into());
        }
        args.extend_from_slice(extra);
        let log_dir = tempfile::Builder::new()
            .prefix("sluice-noded-")
            .tempdir()
            .expect("temp dir");
        let log = log_dir.path().join("noded.log");
        let mut noded = Noded {
            args,
            child: None,
            log_dir: Some(log_dir),
            log,
            node_name: node_name.into(),
            state_dir,
        };
        noded.start_again();
        noded
    }

    /// Start the process (again) with the same flags; the log is appended to.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "noded is already running");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("noded log");
        let child = Command::new(workspace_bin("noded"))
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_NODED_LOG").unwrap_or_else(|_| "info,sluice_noded=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .expect("start noded");
        self.child = Some(child);
    }

    /// noded's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the process by pid (SIGKILL, like a crash) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Noded {
    fn drop(&mut self) {
        self.kill();
        // noded removes each pod's cgroups; the node's own parent is left to us (only if empty).
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in hierarchies.flatten() {
                let _ = std::fs::remove_dir(hierarchy.path().join("sluice").join(&self.node_name));
            }
        }
        if std::env::var_os("SLUICE_TEST_KEEP_LOGS").is_some() {
            if let Some(dir) = self.log_dir.take() {
                eprintln!("noded {} log kept in {}", self.node_name, dir.keep().display());
            }
        }
        if std::thread::panicking() {
            let kept = self.log_dir.take().map(|d| d.keep());
            eprintln!(
                "--- noded {} log tail (whole log kept in {}) ---\n{}",
                self.node_name,
                kept.map(|d| d.display().to_string()).unwrap_or_default(),
                self.log_tail(120)
            );
        }
    }
}

/// One real node for a story: etcd + API server, controller-manager (node
/// IPAM on `cluster_cidr`), a private containerd and `noded`, started and
/// waited for until the Node is Ready with a podCIDR. Dropping it stops
/// noded, then containerd (removing what is left of its pods), then the
/// control plane.
pub struct SingleNode {
    /// The node daemon.
    pub noded: Noded,
    /// The node's containerd.
    pub containerd: Containerd,
    /// controller-manager (node IPAM, endpoints, GC...).
    pub controller_manager: crate::controllers::ControllerManager,
    /// etcd + API server.
    pub control_plane: crate::ControlPlane,
    /// Admin client.
    pub client: kube::Client,
    /// The podCIDR node IPAM gave the node.
    pub pod_cidr: String,
}

impl SingleNode {
    /// Start everything for node `node`, pods from `cluster_cidr` (a range no
    /// other test uses: pod routes land in the root network namespace).
    pub async fn start(node: &str, cluster_cidr: &str) -> SingleNode {
        let control_plane = crate::ControlPlane::start().await;
        let client = control_plane.client().await;
        let containerd = Containerd::start();
        let controller_manager = crate::controllers::ControllerManager::start(
            control_plane.kubeconfig_path(),
            &format!("cm-{node}"),
            &["--cluster-cidr", cluster_cidr],
        );
        let noded = Noded::start(node, control_plane.kubeconfig_path(), &containerd, &[]);
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        let pod_cidr = crate::eventually(
            Duration::from_secs(60),
            "the node to be Ready with a podCIDR",
            || async {
                let node = nodes.get_opt(node).await.ok().flatten()?;
                let ready = node
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then(|| node.spec.as_ref()?.pod_cidr.clone()).flatten()
            },
        )
        .await;
        SingleNode {
            noded,
            containerd,
            controller_manager,
            control_plane,
            client,
            pod_cidr,
        }
    }

    /// Pods of the `default` namespace.
    pub fn pods(&self) -> kube::Api<k8s_openapi::api::core::v1::Pod> {
        kube::Api::namespaced(self.client.clone(), "default")
    }

    /// Create a Pod from JSON, bound to this node (`spec.nodeName` set).
    pub async fn create_pod(&self, mut manifest: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        manifest["spec"]["nodeName"] = self.noded.node_name.clone().into();
        let pod = serde_json::from_value(manifest).expect("a Pod manifest");
        self.pods()
            .create(&kube::api::PostParams::default(), &pod)
            .await
            .expect("create the pod")
    }

    /// Wait until pod `name` is Running and Ready with an IP; returns it.
    pub async fn wait_running_ready(&self, name: &str, timeout: Duration) -> k8s_openapi::api::core::v1::Pod {
        let pods = self.pods();
        crate::eventually(timeout, &format!("pod {name} Running and Ready with an IP"), || async {
            let pod = pods.get(name).await.ok()?;
            let status = pod.status.as_ref()?;
            (status.phase.as_deref() == Some("Running") && status.pod_ip.is_some() && pod_ready(&pod)).then_some(pod)
        })
        .await
    }

    /// Run `ctr -n k8s.io ARGS` against this node's containerd; stdout, panics on failure.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.containerd.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Container ids containerd holds (sandboxes included).
    pub fn containers(&self) -> Vec<String> {
        self.ctr(&["containers", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The host pid of a running container's process, from containerd's task list.
    pub fn task_pid(&self, container_id: &str) -> u32 {
        let id = container_id.trim_start_matches("containerd://");
        let tasks = self.ctr(&["tasks", "ls"]);
        tasks
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id))
                    .then(|| fields.next()?.parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no task {id} in containerd: {tasks}"))
    }

    /// Run `cmd` inside a running container (`ctr tasks exec`); stdout.
    pub fn exec(&self, container_id: &str, cmd: &[&str]) -> String {
        let id = container_id.trim_start_matches("containerd://");
        let exec_id = format!("test-{}", unique());
        let mut args = vec!["tasks", "exec", "--exec-id", &exec_id, id];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }
}

/// Whether the Pod's Ready condition is True.
pub fn pod_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `GET http://ip:port/path` with curl (2 s timeout): the body on a 2xx, else None.
pub fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "2", &format!("http://{ip}:{port}{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether IPv4 `ip` lies in `cidr`.
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(ip), Ok(bits)) = (
        net.parse::<std::net::Ipv4Addr>(),
        ip.parse::<std::net::Ipv4Addr>(),
        bits.parse::<u32>(),
    ) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
    u32::from(net) & mask == u32::from(ip) & mask
}
