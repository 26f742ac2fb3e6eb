//! `scheduler-bench`: the driver of `cargo xtask bench scheduler` (a benchmark, not a test).
//!
//! Starts a private control plane from `--bin-dir` (etcd, apiserver, controller-manager
//! if built, scheduler, nodesim with `--nodes` simulated nodes), then:
//! 1. *baseline*: binds `--baseline-pods` pods itself, round-robin with no scheduling
//!    logic and the same number of binding requests in flight: the API server's ceiling;
//! 2. *backlog*: creates `--backlog-pods` pods before the scheduler starts, then starts it
//!    and times their bindings: the scheduler's own rate, with nothing else to wait for
//!    (comparable with the baseline);
//! 3. *basic workload*: creates `--pods` pods (from Deployments when the controller-manager
//!    is available, else directly) and records when each is bound and Running;
//! 4. *anti-affinity + spread workload*: then creates `--spread-pods` more pods directly,
//!    `--pods-per-app` per app label, each with a required podAntiAffinity on
//!    `kubernetes.io/hostname` against its own app and a topologySpreadConstraint (maxSkew 1,
//!    DoNotSchedule) over `topology.kubernetes.io/zone` (nodesim spreads the nodes over
//!    `--zones` zones), with the basic workload's pods still in place.
//!
//! It reports bound pods/s of both workloads, time until all pods are Running, and the peak
//! RSS (VmHWM) of each process, with ratios against the baseline and the anchors, to `--out`.
//! Every process it started is killed by pid at the end.

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Benchmark the scheduler with simulated nodes.
#[derive(Parser, Debug)]
struct Args {
    /// Directory with the apiserver, scheduler, nodesim (and controller-manager) binaries.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Results file (markdown).
    #[arg(long, default_value = "bench-results/scheduler.md")]
    out: PathBuf,
    /// Simulated nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods in the measured workload.
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Deployments the workload is split into (when the controller-manager runs).
    #[arg(long, default_value_t = 10)]
    deployments: usize,
    /// Pods of the anti-affinity + topology spread workload (0: skip it).
    #[arg(long, default_value_t = 5000)]
    spread_pods: usize,
    /// Pods per app label in that workload (anti-affinity and spread are per app).
    #[arg(long, default_value_t = 10)]
    pods_per_app: usize,
    /// Zones the simulated nodes are spread over (nodesim `--zones`).
    #[arg(long, default_value_t = 10)]
    zones: usize,
    /// How often every simulated node renews its Lease (nodesim `--lease-renew-interval`):
    /// a kubelet's 10 s by default, so 5,000 nodes write 500 Leases a second throughout.
    /// kube-scheduler's scheduler_perf runs no kubelets; a long interval comes close to it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lease_renew_interval: Duration,
    /// Pods bound directly by the driver for the baseline.
    #[arg(long, default_value_t = 2000)]
    baseline_pods: usize,
    /// Pods created before the scheduler starts, then bound by it: the scheduler's own
    /// rate, comparable with the baseline (0: skip).
    #[arg(long, default_value_t = 2000)]
    backlog_pods: usize,
    /// Create pods directly even if the controller-manager is built.
    #[arg(long)]
    no_controller_manager: bool,
    /// Binding requests in flight (scheduler flag and baseline).
    #[arg(long, default_value_t = 64)]
    max_in_flight_bindings: usize,
    /// Give up after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Processes started by the benchmark, killed by pid on drop.
struct Procs {
    children: Vec<(&'static str, Child)>,
}

impl Procs {
    fn start(&mut self, name: &'static str, cmd: &mut Command, log: &Path) -> Result<u32> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let pid = child.id();
        eprintln!("==> started {name} (pid {pid}), log {}", log.display());
        self.children.push((name, child));
        Ok(pid)
    }

    fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| *n == name).map(|(_, c)| c.id())
    }

    fn check_alive(&mut self) -> Result<()> {
        for (name, c) in &mut self.children {
            if let Some(status) = c.try_wait()? {
                bail!("{name} exited early with {status}");
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Peak resident memory (VmHWM) of a process in MiB.
fn vm_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// List everything in pages of 500 (one unpaginated list of 5,000 nodes is too big for
/// the API server's etcd client).
async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

fn pod_template(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "bench" } },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{
                "name": "pause",
                "image": "registry.k8s.io/pause:3.10",
                "resources": { "requests": { "cpu": "100m", "memory": "500Mi" } }
            }]
        }
    }))
    .expect("valid pod")
}

/// A pod of app `app` that must not share a node with another pod of its app and must
/// keep its app's pods spread evenly over zones (maxSkew 1), like kube-scheduler
/// scheduler_perf's `SchedulingPodAntiAffinity` and `TopologySpreading` templates.
fn spread_pod_template(name: &str, app: &str) -> Pod {
    let mut pod = pod_template(name, "default-scheduler");
    let selector = serde_json::json!({ "matchLabels": { "app": app } });
    pod.metadata.labels = Some([("app".to_string(), app.to_string())].into());
    let spec = pod.spec.as_mut().expect("template has a spec");
    spec.affinity = Some(
        serde_json::from_value(serde_json::json!({
            "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "labelSelector": selector, "topologyKey": "kubernetes.io/hostname" }
            ] }
        }))
        .expect("valid affinity"),
    );
    spec.topology_spread_constraints = Some(
        serde_json::from_value(serde_json::json!([{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector,
        }]))
        .expect("valid constraint"),
    );
    pod
}

/// Placements that break the spread workload's constraints: a pod on a node that holds an
/// earlier pod of its app, plus every app whose zone counts differ by more than 1 (nodesim
/// names node `sim-<i>` and puts it in `zone-<i mod zones>`).
fn spread_violations(pods: &[Pod], zones: usize) -> usize {
    let zones = zones.max(1);
    let mut nodes: HashMap<(String, String), usize> = HashMap::new();
    let mut per_zone: HashMap<String, Vec<usize>> = HashMap::new();
    for p in pods {
        let app = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .cloned()
            .unwrap_or_default();
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let zone = node
            .rsplit_once('-')
            .and_then(|(_, i)| i.parse::<usize>().ok())
            .map(|i| i % zones)
            .unwrap_or(0);
        *nodes.entry((app.clone(), node)).or_default() += 1;
        per_zone.entry(app).or_insert_with(|| vec![0; zones])[zone] += 1;
    }
    let shared: usize = nodes.values().map(|n| n - 1).sum();
    let skewed = per_zone
        .values()
        .filter(|c| c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) > 1)
        .count();
    shared + skewed
}

/// Figures of one measured workload.
struct Figures {
    /// Pods bound per second, first to last binding.
    rate_window: f64,
    /// Pods bound per second, first create to last binding.
    rate_from_create: f64,
    /// Most pods bound within one second.
    peak: usize,
    /// Pods that appeared per second (first to last one seen on the watch).
    rate_created: f64,
    /// Seconds from the first create until every pod ran.
    to_running: f64,
}

/// Wait until `pods` pods of `timeline` run (failing after `timeout` from `t0` or if a
/// process died), then compute the figures.
async fn measure(
    what: &str,
    timeline: &Mutex<Timeline>,
    t0: Instant,
    pods: usize,
    timeout: Duration,
    procs: &mut Procs,
) -> Result<Figures> {
    let deadline = t0 + timeout;
    let mut last_report = Instant::now();
    loop {
        let (bound, running) = {
            let t = timeline.lock().unwrap();
            (t.bound.len(), t.running.len())
        };
        if running >= pods {
            break;
        }
        if Instant::now() > deadline {
            bail!("{what}: timed out: {bound} bound, {running} running of {pods}");
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "==> {what}, {:.0} s: {bound} bound, {running} running",
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
            procs.check_alive()?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = timeline.lock().unwrap();
    let bound_times: Vec<Instant> = t.bound.values().copied().collect();
    let first_bound = bound_times.iter().min().copied().unwrap_or(t0);
    let last_bound = bound_times.iter().max().copied().unwrap_or(t0);
    let all_running = t.running.values().max().copied().unwrap_or(t0);
    let bind_window = last_bound.duration_since(first_bound).as_secs_f64().max(1e-3);
    let seen = || t.seen.values().copied();
    let seen_window = match (seen().min(), seen().max()) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64().max(1e-3),
        _ => 1e-3,
    };
    Ok(Figures {
        rate_created: t.seen.len() as f64 / seen_window,
        rate_window: pods as f64 / bind_window,
        rate_from_create: pods as f64 / last_bound.duration_since(t0).as_secs_f64().max(1e-3),
        peak: peak_per_second(&bound_times),
        to_running: all_running.duration_since(t0).as_secs_f64(),
    })
}

/// Create `obj`; one that already exists (409) is kept as it is.
async fn create_unless_present<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Create `n` pods, `make(i)` each, `in_flight` requests at a time; the first error stops it.
async fn create_pods(api: &Api<Pod>, n: usize, in_flight: usize, make: impl Fn(usize) -> Pod) -> Result<()> {
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, pod) = (api.clone(), make(i));
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}

/// Pod timeline collected from a watch: when each pod was first seen bound and Running.
#[derive(Default)]
struct Timeline {
    seen: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn watch_timeline(client: Client, ns: &str) -> Arc<Mutex<Timeline>> {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let t = timeline.clone();
    let api: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut s = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = s.next().await {
            let pod = match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
                _ => continue,
            };
            let now = Instant::now();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut t = t.lock().unwrap();
            t.seen.entry(name.clone()).or_insert(now);
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
            {
                t.bound.entry(name.clone()).or_insert(now);
            }
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                t.running.entry(name).or_insert(now);
            }
        }
    });
    timeline
}

/// Largest number of pods bound within any one-second window.
fn peak_per_second(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut j = 0;
    for i in 0..sorted.len() {
        while sorted[i].duration_since(sorted[j]) > Duration::from_secs(1) {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for bin in ["apiserver", "scheduler", "nodesim"] {
        if !args.bin_dir.join(bin).exists() {
            bail!(
                "{} is missing; build it first (cargo build --release)",
                args.bin_dir.join(bin).display()
            );
        }
    }
    let cm_bin = args.bin_dir.join("controller-manager");
    let use_cm = !args.no_controller_manager && cm_bin.exists();
    let work = std::env::temp_dir().join(format!("sluice-bench-scheduler-{}", std::process::id()));
    // A run that was killed leaves its directory behind, and a later run
    // can get the same pid: it must not start from that run's etcd data.
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut procs = Procs { children: Vec::new() };
    let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);

    // etcd
    procs.start(
        "etcd",
        Command::new("etcd").args([
            "--name=bench".to_string(),
            format!("--data-dir={}", work.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=bench=http://127.0.0.1:{peer_port}"),
            "--log-level=warn".into(),
            // As `cargo xtask up` starts etcd.
            "--experimental-watch-progress-notify-interval=100ms".into(),
        ]),
        &work.join("etcd.log"),
    )?;
    wait_for("etcd", Duration::from_secs(30), || async {
        std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
    })
    .await?;

    // apiserver + admin kubeconfig
    let pki = work.join("pki");
    let kubeconfig = work.join("admin.kubeconfig");
    let status = Command::new(args.bin_dir.join("apiserver"))
        .arg("kubeconfig")
        .arg("--cert-dir")
        .arg(&pki)
        .arg("--server")
        .arg(format!("https://127.0.0.1:{api_port}"))
        .args(["--user", "admin", "--group", "system:masters", "--out"])
        .arg(&kubeconfig)
        .status()?;
    if !status.success() {
        bail!("apiserver kubeconfig failed: {status}");
    }
    procs.start(
        "apiserver",
        Command::new(args.bin_dir.join("apiserver")).args([
            "serve".to_string(),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--etcd-allow-insecure".to_string(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", pki.display()),
        ]),
        &work.join("apiserver.log"),
    )?;
    let client = sluice_kube::client::client(Some(&kubeconfig)).await?;
    wait_for("the API server", Duration::from_secs(60), || {
        let c = client.clone();
        async move { c.apiserver_version().await.is_ok() }
    })
    .await?;

    // Nodes first (registration is not what we measure), then the control-plane components.
    let started = Instant::now();
    procs.start(
        "nodesim",
        Command::new(args.bin_dir.join("nodesim"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--nodes",
                &args.nodes.to_string(),
                "--name-prefix",
                "sim",
                "--cpu",
                "4",
                "--memory",
                "32Gi",
                "--pods",
                "110",
                "--zones",
                &args.zones.to_string(),
                "--lease-renew-interval",
                &humantime::format_duration(args.lease_renew_interval).to_string(),
            ]),
        &work.join("nodesim.log"),
    )?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let want_nodes = args.nodes;
    wait_for("simulated nodes", Duration::from_secs(900), || {
        let api = nodes_api.clone();
        async move { list_all(&api).await.map(|l| l.len() >= want_nodes).unwrap_or(false) }
    })
    .await?;
    let nodes_secs = started.elapsed().as_secs_f64();
    eprintln!("==> {} nodes registered in {nodes_secs:.1} s", args.nodes);

    if use_cm {
        procs.start(
            "controller-manager",
            Command::new(&cm_bin).arg("--kubeconfig").arg(&kubeconfig).args([
                "--cluster-cidr",
                "10.0.0.0/8",
                "--leader-elect=false",
            ]),
            &work.join("controller-manager.log"),
        )?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    procs.check_alive()?;

    // 1. Baseline: the driver binds pods itself (no filtering/scoring), same concurrency.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in ["bench-baseline", "bench-backlog", "bench", "bench-spread"] {
        let n = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        create_unless_present(&ns_api, &n).await?;
        // ServiceAccount admission requires the namespace's `default`
        // ServiceAccount of every pod. Without a controller-manager nobody
        // makes it; with one, its ServiceAccount controller may not have yet
        // (a slow start, e.g. under a heap profiler), so the driver makes it
        // either way (a 409 when the controller was first).
        let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        create_unless_present(&sa_api, &sa).await?;
    }
    let node_names: Vec<String> = list_all(&nodes_api)
        .await?
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let base_api: Api<Pod> = Api::namespaced(client.clone(), "bench-baseline");
    eprintln!("==> baseline: creating {} pods for direct binding", args.baseline_pods);
    create_pods(&base_api, args.baseline_pods, 32, |i| {
        pod_template(&format!("base-{i}"), "bench-none")
    })
    .await?;
    let t = Instant::now();
    let binds: Vec<_> = futures::stream::iter(0..args.baseline_pods)
        .map(|i| {
            let c = client.clone();
            let node = node_names[i % node_names.len()].clone();
            async move { sluice_scheduler::binder::bind(&c, "bench-baseline", &format!("base-{i}"), "", &node).await }
        })
        .buffer_unordered(args.max_in_flight_bindings)
        .collect()
        .await;
    let baseline_secs = t.elapsed().as_secs_f64();
    let baseline_errors = binds.iter().filter(|r| r.is_err()).count();
    let baseline_rate = (args.baseline_pods - baseline_errors) as f64 / baseline_secs;
    eprintln!("==> baseline: {baseline_rate:.0} bindings/s ({baseline_errors} errors)");

    // Let nodesim finish running the baseline pods so they do not load the measured phase.
    let want = args.baseline_pods - baseline_errors;
    wait_for("baseline pods Running", Duration::from_secs(300), || {
        let api = base_api.clone();
        async move {
            list_all(&api)
                .await
                .map(|l| {
                    l.iter()
                        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                        .count()
                        >= want
                })
                .unwrap_or(false)
        }
    })
    .await?;

    // 2. Backlog: pods created while no scheduler runs, then bound by the scheduler as it
    // starts. Only binding and the scheduler's own work remain, as in the baseline.
    let backlog_timeline = watch_timeline(client.clone(), "bench-backlog");
    let backlog_api: Api<Pod> = Api::namespaced(client.clone(), "bench-backlog");
    if args.backlog_pods > 0 {
        eprintln!(
            "==> backlog: creating {} pods before the scheduler starts",
            args.backlog_pods
        );
    }
    create_pods(&backlog_api, args.backlog_pods, 32, |i| {
        pod_template(&format!("backlog-{i}"), "default-scheduler")
    })
    .await?;
    let t_sched = Instant::now();
    procs.start(
        "scheduler",
        Command::new(args.bin_dir.join("scheduler"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--leader-elect=false",
                "--max-in-flight-bindings",
                &args.max_in_flight_bindings.to_string(),
            ]),
        &work.join("scheduler.log"),
    )?;
    let backlog = if args.backlog_pods > 0 {
        Some(
            measure(
                "backlog",
                &backlog_timeline,
                t_sched,
                args.backlog_pods,
                args.timeout,
                &mut procs,
            )
            .await?,
        )
    } else {
        None
    };

    // 3. Workload.
    let timeline = watch_timeline(client.clone(), "bench");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    let mut created_secs = 0.0;
    if use_cm {
        let per = args.pods / args.deployments.max(1);
        let dep_api: Api<Deployment> = Api::namespaced(client.clone(), "bench");
        for d in 0..args.deployments {
            let replicas = if d + 1 == args.deployments {
                args.pods - per * d
            } else {
                per
            };
            let tmpl = pod_template("x", "default-scheduler");
            let dep: Deployment = serde_json::from_value(serde_json::json!({
                "metadata": { "name": format!("bench-{d}") },
                "spec": {
                    "replicas": replicas,
                    "selector": { "matchLabels": { "app": "bench", "deployment": format!("bench-{d}") } },
                    "template": {
                        "metadata": { "labels": { "app": "bench", "deployment": format!("bench-{d}") } },
                        "spec": tmpl.spec,
                    }
                }
            }))?;
            dep_api.create(&PostParams::default(), &dep).await?;
        }
    } else {
        let api: Api<Pod> = Api::namespaced(client.clone(), "bench");
        create_pods(&api, args.pods, 64, |i| {
            pod_template(&format!("pod-{i}"), "default-scheduler")
        })
        .await?;
        created_secs = t0.elapsed().as_secs_f64();
    }
    let basic = measure("basic workload", &timeline, t0, args.pods, args.timeout, &mut procs).await?;

    // 4. Anti-affinity + topology spread workload, beside the basic workload's pods.
    let spread = if args.spread_pods > 0 {
        let timeline = watch_timeline(client.clone(), "bench-spread");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), "bench-spread");
        let per_app = args.pods_per_app.max(1);
        eprintln!(
            "==> anti-affinity + spread workload: {} pods, {per_app} per app, {} zones",
            args.spread_pods, args.zones
        );
        let t0 = Instant::now();
        create_pods(&api, args.spread_pods, 64, |i| {
            spread_pod_template(&format!("pod-{i}"), &format!("app-{}", i / per_app))
        })
        .await?;
        let created = t0.elapsed().as_secs_f64();
        let f = measure(
            "anti-affinity + spread",
            &timeline,
            t0,
            args.spread_pods,
            args.timeout,
            &mut procs,
        )
        .await?;
        let violations = spread_violations(&list_all(&api).await?, args.zones);
        eprintln!("==> anti-affinity + spread: {violations} placements break a constraint");
        Some((f, created, violations))
    } else {
        None
    };

    let mut mem = Vec::new();
    for name in ["apiserver", "controller-manager", "scheduler", "nodesim", "etcd"] {
        if let Some(pid) = procs.pid(name) {
            mem.push((name, vm_hwm_mib(pid)));
        }
    }
    let control_plane: f64 = mem
        .iter()
        .filter(|(n, _)| matches!(*n, "apiserver" | "controller-manager" | "scheduler"))
        .filter_map(|(_, m)| *m)
        .sum();

    let mut md = String::new();
    writeln!(md, "# Scheduler benchmark\n")?;
    let profile = args
        .bin_dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    writeln!(md, "`cargo xtask bench scheduler` (driver: `scheduler-bench`, `{profile}` binaries), {} simulated nodes (nodesim: 4 cpu, 32Gi, 110 pods each), {} pods requesting 100m cpu / 500Mi (kube-scheduler scheduler_perf SchedulingBasic templates).", args.nodes, args.pods)?;
    writeln!(md, "Measured {}, on this machine ({} cores). etcd, API server, controller-manager, scheduler, nodesim and the driver all share those cores.\n",
        std::process::Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0))?;
    writeln!(
        md,
        "Pods created: {}.\n",
        if use_cm {
            format!("from {} Deployments by the controller-manager", args.deployments)
        } else {
            format!("directly by the driver in {created_secs:.1} s (controller-manager not used)")
        }
    )?;
    writeln!(md, "| figure | value | vs baseline / anchor |")?;
    writeln!(md, "| --- | --- | --- |")?;
    writeln!(md, "| baseline: direct bindings/s (driver binds round-robin, {} in flight, no scheduling) | {baseline_rate:.0} | 1.00 |", args.max_in_flight_bindings)?;
    if let Some(b) = &backlog {
        writeln!(md, "| scheduler alone: a backlog of {} pods created before it started, bound/s (first to last binding) | {:.0} | {:.2} × baseline (goal ≥ 0.8: {}) |",
            args.backlog_pods, b.rate_window, b.rate_window / baseline_rate,
            if b.rate_window >= 0.8 * baseline_rate { "met" } else { "not met" })?;
    }
    let Figures {
        rate_window,
        rate_from_create,
        peak,
        rate_created,
        to_running,
    } = basic;
    writeln!(md, "| basic: pods bound/s (first to last binding) | {rate_window:.0} | {:.2} × baseline (goal ≥ 0.8: {}); {:.1} × kube-scheduler threshold 270; goal 2,000: {} |",
        rate_window / baseline_rate, if rate_window >= 0.8 * baseline_rate { "met" } else { "not met" },
        rate_window / 270.0, if rate_window >= 2000.0 { "met" } else { "not met" })?;
    writeln!(
        md,
        "| basic: pods bound/s (from first create to last binding) | {rate_from_create:.0} | {:.2} × baseline |",
        rate_from_create / baseline_rate
    )?;
    writeln!(md, "| basic: peak pods bound in one second | {peak} | |")?;
    writeln!(
        md,
        "| basic: pods created/s (first to last seen on a watch; bindings cannot outpace it) | {rate_created:.0} | {:.2} × baseline |",
        rate_created / baseline_rate
    )?;
    writeln!(
        md,
        "| basic: time from first create until all {} pods Running | {to_running:.1} s | |",
        args.pods
    )?;
    if let Some((f, created, violations)) = &spread {
        writeln!(md, "| anti-affinity + spread: pods bound/s (first to last binding) | {:.0} | {:.2} × baseline; {:.2} × basic |",
            f.rate_window, f.rate_window / baseline_rate, f.rate_window / rate_window)?;
        writeln!(
            md,
            "| anti-affinity + spread: pods bound/s (from first create to last binding) | {:.0} | {:.2} × baseline |",
            f.rate_from_create,
            f.rate_from_create / baseline_rate
        )?;
        writeln!(
            md,
            "| anti-affinity + spread: peak pods bound in one second | {} | |",
            f.peak
        )?;
        writeln!(md, "| anti-affinity + spread: pods sharing a node with their app, plus apps with zone skew > 1 (checked after the run) | {violations} | |")?;
        writeln!(
            md,
            "| anti-affinity + spread: time from first create until all {} pods Running (created in {created:.1} s) | {:.1} s | |",
            args.spread_pods, f.to_running
        )?;
    }
    writeln!(
        md,
        "| node registration ({} nodes, nodesim) | {nodes_secs:.1} s | |",
        args.nodes
    )?;
    writeln!(
        md,
        "| node heartbeats during every phase: Lease renewals/s ({} nodes, one each per {}) | {:.0} | |",
        args.nodes,
        humantime::format_duration(args.lease_renew_interval),
        args.nodes as f64 / args.lease_renew_interval.as_secs_f64().max(0.001)
    )?;
    for (name, m) in &mem {
        writeln!(
            md,
            "| peak memory (VmHWM) {name} | {} | |",
            m.map(|m| format!("{m:.0} MiB")).unwrap_or_else(|| "n/a".into())
        )?;
    }
    writeln!(
        md,
        "| API server + controller-manager + scheduler | {control_plane:.0} MiB | goal < 400 MB: {} |",
        if control_plane * 1.048576 < 400.0 {
            "met"
        } else {
            "not met"
        }
    )?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(
        md,
        "\nLoad average at the end of the run (1/5/15 min): {} — anything above ~2 means other work shared the cores.",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
    )?;
    if spread.is_some() {
        writeln!(md, "\nAnti-affinity + spread workload: {} pods created directly by the driver after the basic workload ran (its pods stay), app label `app-<i / {}>` ({} pods per app), each with a required podAntiAffinity on `kubernetes.io/hostname` against its own app and a topologySpreadConstraint maxSkew 1, `whenUnsatisfiable: DoNotSchedule` on `topology.kubernetes.io/zone` ({} zones, nodesim `--zones`).",
            args.spread_pods, args.pods_per_app.max(1), args.pods_per_app.max(1), args.zones)?;
    }
    writeln!(md, "\nAnchors: kube-scheduler scheduler_perf `SchedulingBasic/5000Nodes_10000Pods` threshold 270 pods/s; goal ≥ 2,000 pods/s and ≥ 0.8 × the direct bindings on 2 cores (issue 16); API server + controller-manager + scheduler < 400 MB.")?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &md)?;
    println!("{md}");
    eprintln!("==> results written to {}", args.out.display());
    drop(procs);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
