//! Helpers for controller stories: start the real `controller-manager`,
//! `scheduler` and `nodesim` (simulated nodes whose pods start instantly)
//! against a [`ControlPlane`](crate::ControlPlane), with shortened timeouts.
//! Killing a node simulator plays nodes that die: their Leases stop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Flags that make the controller-manager react within test time.
pub const FAST_FLAGS: &[&str] = &[
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=250ms",
    "--node-monitor-period=500ms",
    "--node-monitor-grace-period=3s",
    "--pod-gc-period=1s",
    "--resync-period=30s",
];

/// A running `controller-manager` process; killed (by pid) on drop.
pub struct ControllerManager {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// The identity it uses in the leader Lease.
    pub identity: String,
    /// Its secure port on loopback (`/metrics`, `/healthz`, ...).
    pub secure_port: u16,
}

impl ControllerManager {
    /// Starts the controller-manager with [`FAST_FLAGS`] plus `extra` flags.
    pub fn start(kubeconfig: &Path, identity: &str, extra: &[&str]) -> ControllerManager {
        let dir = tempfile::Builder::new()
            .prefix("sluice-cm-")
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join("controller-manager.log");
        let file = std::fs::File::create(&log).expect("log file");
        let secure_port = crate::free_port();
        let child = Command::new(crate::workspace_bin("controller-manager"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg(format!("--identity={identity}"))
            .args(FAST_FLAGS)
            .args(secure_port_flags(secure_port))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_CM_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("controller-manager starts");
        ControllerManager {
            child: Some(child),
            _dir: dir,
            log,
            identity: identity.into(),
            secure_port,
        }
    }

    /// Kills the process (SIGKILL, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- controller-manager {} log tail ---\n{}",
                self.identity,
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// Runs the stories of one test binary one at a time: each starts a whole
/// control plane plus nodes, often with the same fixed pod CIDR, and several
/// at once on two cores would only race their timeouts. Hold the guard for the
/// whole test.
///
/// The lock is an exclusive `flock` on a file named after the test binary, so
/// it orders the stories both when one process runs them all on threads
/// (`cargo test`) and when every test is its own process (`cargo nextest`,
/// which `cargo xtask test` uses). Two `open`s of the file are two open file
/// descriptions, and `flock` makes them exclude each other even inside one
/// process. The kernel drops the lock when the process dies.
pub fn serial() -> Serial {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "stories".to_string());
    // Cargo names test binaries `<file>-<hash>`; the hash changes per build,
    // and one build's binary is what runs, so the whole stem is the key.
    let path = std::env::temp_dir().join(format!("sluice-serial-{binary}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open the serial lock {}: {e}", path.display()));
    // Blocking on purpose: the story waits for the one before it.
    loop {
        // SAFETY: flock on a descriptor this function owns for the guard's life.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "flock {}: {err}",
            path.display()
        );
    }
    Serial(file)
}

/// The guard of [`serial`]: the locked file, unlocked when it is closed. It is
/// held across awaits on purpose: every story runs on its own runtime and
/// thread, and the lock only orders whole stories.
pub struct Serial(#[allow(dead_code)] std::fs::File);

pub use crate::eventually;

/// Whether a pod is Ready and not being deleted (what a Service would route to).
pub fn pod_available(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A process started by a test (scheduler, node simulator); killed by pid on drop.
pub struct Process {
    name: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Process {
    /// Starts workspace binary `bin` with `args`, logging to a temp file.
    pub fn start(bin: &str, args: &[String]) -> Process {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sluice-{bin}-"))
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join(format!("{bin}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(crate::workspace_bin(bin))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts: {e}"));
        Process {
            name: bin.into(),
            child: Some(child),
            _dir: dir,
            log,
        }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- {} log tail ---\n{}",
                self.name,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

/// The flags that put a scheduler's or controller-manager's secure port on
/// `port` on loopback (stories run side by side: never the fixed default).
pub fn secure_port_flags(port: u16) -> [String; 2] {
    [format!("--secure-port={port}"), "--bind-address=127.0.0.1".into()]
}

/// Starts the real scheduler (no leader election) against `kubeconfig`.
pub fn start_scheduler(kubeconfig: &Path) -> Process {
    let mut args = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--leader-elect=false".into(),
    ];
    args.extend(secure_port_flags(crate::free_port()));
    Process::start("scheduler", &args)
}

/// Starts the node simulator with `count` nodes named `<prefix>-<i>` and
/// waits until they are registered; killing it stops their heartbeats.
pub async fn start_nodes(client: &Client, kubeconfig: &Path, prefix: &str, count: usize) -> Process {
    let p = Process::start(
        "nodesim",
        &[
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            format!("--nodes={count}"),
            format!("--name-prefix={prefix}"),
            "--lease-renew-interval=500ms".into(),
        ],
    );
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        Duration::from_secs(30),
        &format!("{count} simulated nodes {prefix}-*"),
        || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            (list
                .items
                .iter()
                .filter(|n| n.name_any().starts_with(&format!("{prefix}-")))
                .count()
                == count)
                .then_some(())
        },
    )
    .await;
    p
}

/// A Deployment manifest: `replicas` pods labelled `app=<name>` running `image`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    })
}

/// Pods of a namespace whose labels include `labels`.
pub async fn pods_with(client: &Client, ns: &str, labels: &BTreeMap<&str, &str>) -> Vec<Pod> {
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}
