//! Helpers for scheduler stories: start `scheduler` and `nodesim` processes against a
//! [`ControlPlane`](crate::ControlPlane), and build the pods users would submit.
//!
//! [`SchedulerProcess::start`] runs the real scheduler with short leader-election and
//! back-off timings; [`NodeSim::start`] runs the node simulator and returns once its
//! nodes are registered and Ready. Both are killed by pid on drop, and print their log
//! tail when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// Scheduler flags that make it react within test time.
pub const FAST_SCHEDULER_FLAGS: &[&str] = &[
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=250ms",
    "--pod-initial-backoff=200ms",
    "--pod-max-backoff=1s",
];

/// A child process with its log file, killed on drop.
struct Logged {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    fn spawn(name: &str, bin: &str, args: &[String], rust_log: &str) -> Logged {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sluice-{bin}-"))
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join(format!("{bin}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(crate::workspace_bin(bin))
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts: {e}"));
        Logged {
            name: name.into(),
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- {} log tail ---\n{}",
                self.name,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// A running `scheduler` process.
pub struct SchedulerProcess {
    proc: Logged,
    /// Its identity in the leader Lease.
    pub identity: String,
    /// Its secure port on loopback (`/metrics`, `/healthz`, ...).
    pub secure_port: u16,
}

impl SchedulerProcess {
    /// Start a scheduler with [`FAST_SCHEDULER_FLAGS`] plus `extra`; it logs each binding.
    pub fn start(kubeconfig: &Path, identity: &str, extra: &[&str]) -> SchedulerProcess {
        let mut args = vec![
            "--kubeconfig".to_string(),
            kubeconfig.display().to_string(),
            format!("--identity={identity}"),
        ];
        args.extend(FAST_SCHEDULER_FLAGS.iter().map(|s| s.to_string()));
        let secure_port = crate::free_port();
        args.extend(crate::controllers::secure_port_flags(secure_port));
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Logged::spawn(
            &format!("scheduler {identity}"),
            "scheduler",
            &args,
            "info,sluice_scheduler::scheduler=debug",
        );
        SchedulerProcess {
            proc,
            identity: identity.into(),
            secure_port,
        }
    }

    /// Kill it (SIGKILL, like a crash).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// How many pods it logged as bound.
    pub fn bound_count(&self) -> usize {
        self.log().lines().filter(|l| l.contains("pod bound to node")).count()
    }
}

/// A running `nodesim` process.
pub struct NodeSim {
    proc: Logged,
}

impl NodeSim {
    /// Start `nodesim --kubeconfig K <args>` and wait until it reports its nodes Ready.
    pub async fn start(kubeconfig: &Path, args: &[&str]) -> NodeSim {
        let mut all = vec!["--kubeconfig".to_string(), kubeconfig.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let mut proc = Logged::spawn(&format!("nodesim {}", args.join(" ")), "nodesim", &all, "info");
        let start = Instant::now();
        loop {
            if proc.log().contains("nodes ready") {
                return NodeSim { proc };
            }
            if let Some(Ok(Some(status))) = proc.child.as_mut().map(|c| c.try_wait()) {
                panic!("nodesim exited with {status}:\n{}", proc.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nodesim did not get ready:\n{}",
                proc.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kill it: its nodes stop heartbeating, as if they died.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// Poll until `Some` (the harness-wide [`crate::eventually`]).
pub use crate::eventually as wait_for;

/// A pod with one container requesting `cpu` and `memory`, plus `spec` fields merged in.
pub fn pod(name: &str, cpu: &str, memory: &str, spec: Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "busybox:1.35.0",
                "resources": { "requests": { "cpu": cpu, "memory": memory } }
            }]
        }
    });
    if let (Some(dst), Some(src)) = (v["spec"].as_object_mut(), spec.as_object()) {
        for (k, val) in src {
            dst.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("valid pod")
}

/// Create pods in `ns`.
pub async fn create_pods(client: &Client, ns: &str, pods: &[Pod]) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for p in pods {
        api.create(&PostParams::default(), p).await.expect("pod created");
    }
}

/// The node a pod is bound to, if any.
pub async fn node_of(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.get(name).await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
}

/// Wait until the pod is bound and return its node.
pub async fn wait_bound(client: &Client, ns: &str, name: &str, timeout: Duration) -> String {
    wait_for(timeout, &format!("pod {ns}/{name} bound"), || node_of(client, ns, name)).await
}

/// FailedScheduling events of a pod.
pub async fn failed_scheduling_events(client: &Client, ns: &str, pod: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling") && e.involved_object.name.as_deref() == Some(pod))
        .collect()
}
