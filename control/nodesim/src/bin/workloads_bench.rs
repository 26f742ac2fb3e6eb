//! `workloads-bench`: the driver of `cargo xtask bench workloads` (a benchmark, not a test):
//! the Job and DaemonSet controllers on simulated nodes.
//!
//! Starts a private control plane from `--bin-dir` (etcd, apiserver, controller-manager,
//! scheduler) and two nodesim instances: `--job-nodes` nodes labelled
//! `sluice.dev/nodesim=job` whose run-to-completion pods succeed `--complete-after` after
//! they start, and `--ds-nodes` nodes labelled `sluice.dev/nodesim=ds`. Then:
//! 1. *Job*: baseline, `--completions` bare pods (restartPolicy Never) created by the driver
//!    with `--parallelism` in flight, each replaced as soon as it succeeded (scheduler and
//!    nodesim as for the Job, no Job controller); then a Job with the same completions and
//!    parallelism, timed from create to its `Complete` condition.
//! 2. *DaemonSet*: baseline, one bare pod pinned (`spec.nodeName`) to each ds node, timed
//!    from the first create until all are Running; then a DaemonSet over the ds nodes, timed
//!    until desiredNumberScheduled = numberReady = nodes, and a template change rolled out
//!    with RollingUpdate `--max-unavailable`, timed until updatedNumberScheduled =
//!    numberAvailable = nodes.
//!
//! Figures and ratios go to stdout and `--out` (markdown). Every process it started is
//! killed by pid at the end and its temp dir removed.

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Benchmark the Job and DaemonSet controllers on simulated nodes.
#[derive(Parser, Debug)]
struct Args {
    /// Directory with the apiserver, controller-manager, scheduler and nodesim binaries.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Results file (markdown).
    #[arg(long, default_value = "bench-results/workloads.md")]
    out: PathBuf,
    /// Simulated nodes for the Job phase.
    #[arg(long, default_value_t = 100)]
    job_nodes: usize,
    /// Job completions (and bare pods of its baseline).
    #[arg(long, default_value_t = 1000)]
    completions: usize,
    /// Job parallelism (and pods in flight in its baseline).
    #[arg(long, default_value_t = 50)]
    parallelism: usize,
    /// How long each Job pod runs (nodesim `--complete-after`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    complete_after: Duration,
    /// Simulated nodes for the DaemonSet phase.
    #[arg(long, default_value_t = 500)]
    ds_nodes: usize,
    /// The DaemonSet's RollingUpdate maxUnavailable.
    #[arg(long, default_value = "10%")]
    max_unavailable: String,
    /// Give up on any one measured phase after this long.
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

/// Poll `f` every `every` until it holds; fail after `timeout` or when a process died.
async fn wait_for<F, Fut>(what: &str, timeout: Duration, every: Duration, procs: &mut Procs, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        procs.check_alive()?;
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// The simulated-node pool a pod runs on (nodesim labels its nodes with their prefix).
fn pool_selector(pool: &str) -> serde_json::Value {
    serde_json::json!({ "sluice.dev/nodesim": pool })
}

fn container() -> serde_json::Value {
    serde_json::json!({
        "name": "work",
        "image": "registry.k8s.io/pause:3.10",
        "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } }
    })
}

/// A bare run-to-completion pod for the Job baseline.
fn bare_job_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "bare-job" } },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": pool_selector("job"),
            "containers": [container()],
        }
    }))
    .expect("valid pod")
}

/// A bare pod pinned to `node` for the DaemonSet baseline.
fn pinned_pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "bare-ds" } },
        "spec": { "nodeName": node, "containers": [container()] }
    }))
    .expect("valid pod")
}

fn job(completions: usize, parallelism: usize) -> Job {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "bench" },
        "spec": {
            "completions": completions,
            "parallelism": parallelism,
            "backoffLimit": 6,
            "template": {
                "metadata": { "labels": { "app": "bench-job" } },
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": pool_selector("job"),
                    "containers": [container()],
                }
            }
        }
    }))
    .expect("valid job")
}

fn daemonset(max_unavailable: &str) -> DaemonSet {
    let max_unavailable: serde_json::Value = match max_unavailable.parse::<i64>() {
        Ok(n) => n.into(),
        Err(_) => max_unavailable.into(),
    };
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "bench" },
        "spec": {
            "selector": { "matchLabels": { "app": "bench-ds" } },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": max_unavailable } },
            "template": {
                "metadata": { "labels": { "app": "bench-ds" } },
                "spec": {
                    "nodeSelector": pool_selector("ds"),
                    "containers": [container()],
                }
            }
        }
    }))
    .expect("valid daemonset")
}

/// Pods of one namespace: waiters told when a pod named so succeeds or runs.
#[derive(Default)]
struct PodEvents {
    /// Pod name → who waits for it to reach the wanted phase.
    waiters: HashMap<String, oneshot::Sender<()>>,
    /// Pods seen in the wanted phase (a waiter registered later is told at once).
    reached: HashSet<String>,
    /// When each pod was first seen in the wanted phase.
    times: Vec<Instant>,
}

/// Watch namespace `ns` and record pods reaching `phase`.
fn watch_phase(client: Client, ns: &str, phase: &'static str) -> Arc<Mutex<PodEvents>> {
    let events = Arc::new(Mutex::new(PodEvents::default()));
    let e = events.clone();
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
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(phase) {
                continue;
            }
            let name = pod.metadata.name.unwrap_or_default();
            let mut e = e.lock().unwrap();
            if e.reached.insert(name.clone()) {
                e.times.push(Instant::now());
                if let Some(tx) = e.waiters.remove(&name) {
                    let _ = tx.send(());
                }
            }
        }
    });
    events
}

/// Create `pod` and wait until the watch saw it reach its phase.
async fn create_and_wait(api: &Api<Pod>, events: &Mutex<PodEvents>, pod: Pod) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    {
        let mut e = events.lock().unwrap();
        if e.reached.contains(&name) {
            return Ok(());
        }
        e.waiters.insert(name.clone(), tx);
    }
    api.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    rx.await.context("pod watch ended")
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the Job has condition `type_` True.
fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// DaemonSet counts as (desired, ready, updated, available, observed generation current).
fn ds_counts(ds: &DaemonSet) -> (i32, i32, i32, i32, bool) {
    let gen = ds.metadata.generation.unwrap_or(0);
    ds.status
        .as_ref()
        .map(|s| {
            (
                s.desired_number_scheduled,
                s.number_ready,
                s.updated_number_scheduled.unwrap_or(0),
                s.number_available.unwrap_or(0),
                s.observed_generation.unwrap_or(0) >= gen,
            )
        })
        .unwrap_or((0, 0, 0, 0, false))
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for bin in ["apiserver", "controller-manager", "scheduler", "nodesim"] {
        if !args.bin_dir.join(bin).exists() {
            bail!(
                "{} is missing; build it first (cargo build --release)",
                args.bin_dir.join(bin).display()
            );
        }
    }
    let work = std::env::temp_dir().join(format!("sluice-bench-workloads-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&args, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run(args: &Args, work: &Path) -> Result<()> {
    let mut procs = Procs { children: Vec::new() };
    let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
    let setup = Duration::from_secs(120);
    let poll = Duration::from_millis(200);

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
    wait_for("etcd", setup, poll, &mut procs, || async {
        std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
    })
    .await?;

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
    wait_for("the API server", setup, poll, &mut procs, || {
        let c = client.clone();
        async move { c.apiserver_version().await.is_ok() }
    })
    .await?;

    // Two node pools: Job pods finish, DaemonSet pods run until replaced.
    let pools: [(&'static str, &str, usize, &str, Option<Duration>); 2] = [
        (
            "nodesim-job",
            "job",
            args.job_nodes,
            "10.128.0.0/10",
            Some(args.complete_after),
        ),
        ("nodesim-ds", "ds", args.ds_nodes, "10.192.0.0/10", None),
    ];
    for (name, prefix, nodes, range, complete) in pools {
        let mut cmd = Command::new(args.bin_dir.join("nodesim"));
        cmd.arg("--kubeconfig").arg(&kubeconfig).args([
            "--nodes",
            &nodes.to_string(),
            "--name-prefix",
            prefix,
            "--cpu",
            "4",
            "--memory",
            "32Gi",
            "--pods",
            "110",
            "--synthetic-pod-cidr",
            range,
        ]);
        if let Some(d) = complete {
            cmd.arg("--complete-after")
                .arg(humantime::format_duration(d).to_string());
        }
        procs.start(name, &mut cmd, &work.join(format!("{name}.log")))?;
    }
    let started = Instant::now();
    let want_nodes = args.job_nodes + args.ds_nodes;
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    wait_for(
        "simulated nodes",
        Duration::from_secs(600),
        Duration::from_secs(1),
        &mut procs,
        || {
            let api = node_api.clone();
            async move {
                // Count only; the list is small at these scales.
                api.list_metadata(&Default::default())
                    .await
                    .map(|l| l.items.len() >= want_nodes)
                    .unwrap_or(false)
            }
        },
    )
    .await?;
    eprintln!(
        "==> {want_nodes} nodes registered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    procs.start(
        "controller-manager",
        Command::new(args.bin_dir.join("controller-manager"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--cluster-cidr", "10.0.0.0/8", "--leader-elect=false"]),
        &work.join("controller-manager.log"),
    )?;
    procs.start(
        "scheduler",
        Command::new(args.bin_dir.join("scheduler"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--leader-elect=false"),
        &work.join("scheduler.log"),
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    procs.check_alive()?;
    for ns in ["bench-bare-job", "bench-job", "bench-bare-ds", "bench-ds"] {
        ensure_namespace(&client, ns).await?;
    }

    // 1a. Job baseline: bare pods, `parallelism` in flight, each replaced once it succeeded.
    eprintln!(
        "==> Job baseline: {} bare pods, {} in flight",
        args.completions, args.parallelism
    );
    let bare_api: Api<Pod> = Api::namespaced(client.clone(), "bench-bare-job");
    let bare_events = watch_phase(client.clone(), "bench-bare-job", "Succeeded");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..args.completions)
        .map(|i| {
            let (api, events) = (bare_api.clone(), bare_events.clone());
            async move {
                tokio::time::timeout(
                    args.timeout,
                    create_and_wait(&api, &events, bare_job_pod(&format!("bare-{i}"))),
                )
                .await
                .context("bare pod did not succeed in time")?
            }
        })
        .buffer_unordered(args.parallelism.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    let bare_job_secs = t.elapsed().as_secs_f64();
    let bare_job_rate = args.completions as f64 / bare_job_secs;
    eprintln!("==> Job baseline: {bare_job_secs:.1} s, {bare_job_rate:.1} completions/s");

    // 1b. The Job.
    let job_api: Api<Job> = Api::namespaced(client.clone(), "bench-job");
    let job_events = watch_phase(client.clone(), "bench-job", "Succeeded");
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "==> Job: {} completions, parallelism {}",
        args.completions, args.parallelism
    );
    let t = Instant::now();
    job_api
        .create(&PostParams::default(), &job(args.completions, args.parallelism))
        .await?;
    let mut last_report = Instant::now();
    loop {
        let j = job_api.get("bench").await?;
        if job_condition(&j, "Complete") {
            break;
        }
        if job_condition(&j, "Failed") {
            bail!("the Job failed: {:?}", j.status);
        }
        if t.elapsed() > args.timeout {
            bail!("timed out waiting for the Job: {:?}", j.status.map(|s| s.succeeded));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            let s = j.status.unwrap_or_default();
            eprintln!(
                "==> Job, {:.0} s: {} succeeded, {} active",
                t.elapsed().as_secs_f64(),
                s.succeeded.unwrap_or(0),
                s.active.unwrap_or(0)
            );
            last_report = Instant::now();
            procs.check_alive()?;
        }
        tokio::time::sleep(poll).await;
    }
    let job_secs = t.elapsed().as_secs_f64();
    let job_rate = args.completions as f64 / job_secs;
    let job_pods_succeeded = job_events.lock().unwrap().reached.len();
    let last_pod_to_complete = job_events.lock().unwrap().times.iter().max().map(|l| {
        (t + Duration::from_secs_f64(job_secs))
            .saturating_duration_since(*l)
            .as_secs_f64()
    });
    eprintln!("==> Job: Complete in {job_secs:.1} s, {job_rate:.1} completions/s");

    // 2a. DaemonSet baseline: one bare pod pinned to each ds node, until all Running.
    eprintln!("==> DaemonSet baseline: {} pinned bare pods", args.ds_nodes);
    let pinned_api: Api<Pod> = Api::namespaced(client.clone(), "bench-bare-ds");
    let pinned_events = watch_phase(client.clone(), "bench-bare-ds", "Running");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..args.ds_nodes)
        .map(|i| {
            let (api, events) = (pinned_api.clone(), pinned_events.clone());
            async move {
                tokio::time::timeout(
                    args.timeout,
                    create_and_wait(&api, &events, pinned_pod(&format!("pinned-{i}"), &format!("ds-{i}"))),
                )
                .await
                .context("pinned pod did not run in time")?
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    let pinned_secs = t.elapsed().as_secs_f64();
    eprintln!("==> DaemonSet baseline: {pinned_secs:.1} s");

    // 2b. The DaemonSet: creation, then a rolling update of its template.
    let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), "bench-ds");
    let n = args.ds_nodes as i32;
    let t = Instant::now();
    ds_api
        .create(&PostParams::default(), &daemonset(&args.max_unavailable))
        .await?;
    wait_for("the DaemonSet to be ready", args.timeout, poll, &mut procs, || {
        let api = ds_api.clone();
        async move {
            match api.get("bench").await {
                Ok(ds) => {
                    let (desired, ready, _, _, current) = ds_counts(&ds);
                    current && desired == n && ready == n
                }
                Err(_) => false,
            }
        }
    })
    .await?;
    let ds_create_secs = t.elapsed().as_secs_f64();
    eprintln!("==> DaemonSet: {n} ready in {ds_create_secs:.1} s; rolling update");
    let t = Instant::now();
    let patch =
        serde_json::json!({ "spec": { "template": { "metadata": { "annotations": { "bench/revision": "2" } } } } });
    ds_api
        .patch("bench", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let mut last_report = Instant::now();
    loop {
        let ds = ds_api.get("bench").await?;
        let (desired, ready, updated, available, current) = ds_counts(&ds);
        if current && desired == n && updated == n && available == n && ready == n {
            break;
        }
        if t.elapsed() > args.timeout {
            bail!("timed out waiting for the rollout: {:?}", ds.status);
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "==> rollout, {:.0} s: {updated} updated, {available} available of {n}",
                t.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
            procs.check_alive()?;
        }
        tokio::time::sleep(poll).await;
    }
    let rollout_secs = t.elapsed().as_secs_f64();
    eprintln!("==> DaemonSet: rolled out in {rollout_secs:.1} s");

    let mut mem = Vec::new();
    for name in ["apiserver", "controller-manager", "scheduler", "etcd"] {
        if let Some(pid) = procs.pid(name) {
            mem.push((name, vm_hwm_mib(pid)));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(procs);

    // Report.
    let profile = args
        .bin_dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ideal = args.parallelism as f64 / args.complete_after.as_secs_f64().max(1e-3);
    let mut md = String::new();
    writeln!(md, "# Workload controllers benchmark (Job, DaemonSet)\n")?;
    writeln!(
        md,
        "`cargo xtask bench workloads` (driver: `workloads-bench`, `{profile}` binaries): etcd, API server, controller-manager, scheduler and two nodesim pools (4 cpu, 32Gi, 110 pods each): {} `job` nodes whose restartPolicy Never pods succeed {} after they start (`nodesim --complete-after`), {} `ds` nodes.",
        args.job_nodes,
        humantime::format_duration(args.complete_after),
        args.ds_nodes
    )?;
    writeln!(
        md,
        "Measured {}, on this machine ({} cores), shared by every process above and the driver.\n",
        now_utc(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )?;
    writeln!(md, "| figure | value | vs baseline |")?;
    writeln!(md, "| --- | --- | --- |")?;
    writeln!(
        md,
        "| Job baseline: {} bare pods, {} in flight, created by the driver as earlier ones succeed | {bare_job_secs:.1} s, {bare_job_rate:.1} completions/s | 1.00 |",
        args.completions, args.parallelism
    )?;
    writeln!(
        md,
        "| Job: {} completions at parallelism {}, create → `Complete` | {job_secs:.1} s, {job_rate:.1} completions/s | {:.2} × baseline rate; {:.2} × the ideal {ideal:.0}/s (parallelism / pod run time) |",
        args.completions,
        args.parallelism,
        job_rate / bare_job_rate,
        job_rate / ideal
    )?;
    if let Some(lag) = last_pod_to_complete {
        writeln!(
            md,
            "| Job: last pod Succeeded (driver's pod watch; {job_pods_succeeded} pods seen) → Job `Complete` (driver polls every 200 ms; 0.0 = within one poll) | {lag:.1} s | |"
        )?;
    }
    writeln!(
        md,
        "| DaemonSet baseline: {} bare pods pinned (`spec.nodeName`) one per node, first create → all Running | {pinned_secs:.1} s | 1.00 |",
        args.ds_nodes
    )?;
    writeln!(
        md,
        "| DaemonSet over {} nodes: create → desiredNumberScheduled = numberReady = {} | {ds_create_secs:.1} s | {:.2} × baseline |",
        args.ds_nodes,
        args.ds_nodes,
        ds_create_secs / pinned_secs
    )?;
    writeln!(
        md,
        "| DaemonSet RollingUpdate (maxUnavailable {}), template change → updatedNumberScheduled = numberAvailable = {} | {rollout_secs:.1} s | {:.2} × baseline |",
        args.max_unavailable,
        args.ds_nodes,
        rollout_secs / pinned_secs
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
        "\nLoad average at the end of the run (1/5/15 min): {} — anything above ~2 means other work shared the cores.",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
    )?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &md)?;
    println!("{md}");
    eprintln!("==> results written to {}", args.out.display());
    Ok(())
}
