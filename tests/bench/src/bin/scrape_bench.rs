//! `scrape-bench`: the measuring half of `cargo xtask bench scrape` (not a
//! test): how long a Prometheus scrape of each control-plane component's
//! `/metrics` takes at 1,000 pods, against the same scrape of the same
//! processes before the pods exist (the baseline, measured in the same run).
//!
//! Starts a real etcd and API server, the controller-manager, the scheduler
//! and `--nodes` simulated nodes (nodesim), all release builds. Scrapes each
//! component `--scrapes` times, one after another (as one Prometheus would),
//! on an empty cluster; then creates a Deployment of `--pods` replicas, waits
//! until all are Running, and scrapes again. Each scrape is a new HTTPS
//! request with the admin's bearer token (authenticated and authorized as
//! Kubernetes' components do: the API server itself, the others by
//! TokenReview and SubjectAccessReview). Reports p50/p99 latency, the size
//! of the answer and its number of samples, and the ratios 1,000 pods ÷
//! empty. Writes a Markdown report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sluice_bench::stats::percentile;
use sluice_tests::controllers::{secure_port_flags, start_nodes, ControllerManager, Process};
use sluice_tests::{free_port, raw_at, ControlPlane, RawClient, ADMIN_TOKEN};

#[derive(Parser)]
struct Args {
    /// Pods of the measured cluster (a Deployment's replicas).
    #[arg(long, default_value_t = 1_000)]
    pods: usize,
    /// Simulated nodes they run on.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Scrapes per component and phase.
    #[arg(long, default_value_t = 50)]
    scrapes: usize,
    /// Report path.
    #[arg(long, default_value = "bench-results/scrape.md")]
    out: PathBuf,
}

/// What the scrapes of one component in one phase saw.
struct Scrapes {
    millis: Vec<f64>,
    bytes: usize,
    samples: usize,
}

impl Scrapes {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.millis, q)
    }
}

/// Scrapes made and not counted before each measured series: the first
/// requests of a connection and a cold process are slower than the steady
/// state a Prometheus sees every interval.
const WARM_UP: usize = 10;

/// `n` scrapes of `/metrics`, one after another (after [`WARM_UP`] uncounted ones).
async fn scrape(client: &RawClient, n: usize) -> anyhow::Result<Scrapes> {
    for _ in 0..WARM_UP {
        client.get("/metrics").await;
    }
    let mut out = Scrapes {
        millis: Vec::with_capacity(n),
        bytes: 0,
        samples: 0,
    };
    for _ in 0..n {
        let t = Instant::now();
        let resp = client.get("/metrics").await;
        out.millis.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(resp.status == 200, "/metrics answered {}", resp.status);
        out.bytes = resp.body.len();
        let text = String::from_utf8_lossy(&resp.body);
        out.samples = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    }
    Ok(out)
}

/// Running pods of the Deployment.
async fn running(admin: &RawClient) -> usize {
    let resp = admin
        .get("/api/v1/namespaces/default/pods?labelSelector=app%3Dscrape&fieldSelector=status.phase%3DRunning")
        .await;
    serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!(
        "==> starting etcd, the API server, the controller-manager, the scheduler and {} nodes",
        args.nodes
    );
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let admin = cp.raw().await;
    let _nodes = start_nodes(&client, cp.kubeconfig_path(), "scrape", args.nodes).await;
    let cm = ControllerManager::start(cp.kubeconfig_path(), "scrape-cm", &[]);
    let scheduler_port = free_port();
    let mut scheduler_args = vec![
        "--kubeconfig".to_string(),
        cp.kubeconfig_path().display().to_string(),
        "--leader-elect=false".into(),
    ];
    scheduler_args.extend(secure_port_flags(scheduler_port));
    let _scheduler = Process::start("scheduler", &scheduler_args);
    let components: Vec<(&str, RawClient)> = vec![
        ("API server", cp.raw().await),
        (
            "controller-manager",
            raw_at(
                &format!("https://127.0.0.1:{}", cm.secure_port),
                None,
                Some(ADMIN_TOKEN),
            )
            .await,
        ),
        (
            "scheduler",
            raw_at(&format!("https://127.0.0.1:{scheduler_port}"), None, Some(ADMIN_TOKEN)).await,
        ),
    ];
    // Every component answers before the baseline starts.
    let ready = Instant::now();
    for (name, c) in &components {
        while !matches!(c.try_request("GET", "/metrics", None, Vec::new()).await, Ok(r) if r.status == 200) {
            anyhow::ensure!(
                ready.elapsed() < Duration::from_secs(60),
                "{name} never served /metrics"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    eprintln!("==> baseline: {} scrapes of each component, no pods", args.scrapes);
    let mut empty = Vec::new();
    for (name, c) in &components {
        empty.push(
            scrape(c, args.scrapes)
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
        );
    }

    eprintln!("==> creating a Deployment of {} pods", args.pods);
    let status = admin
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "scrape"},
                "spec": {
                    "replicas": args.pods,
                    "selector": {"matchLabels": {"app": "scrape"}},
                    "template": {"metadata": {"labels": {"app": "scrape"}},
                                 "spec": {"containers": [{"name": "app", "image": "busybox"}]}},
                },
            }),
        )
        .await
        .status;
    anyhow::ensure!(status == 201, "deployment: {status}");
    let started = Instant::now();
    loop {
        let n = running(&admin).await;
        if n >= args.pods {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {n} of {} pods Running after 10 minutes",
            args.pods
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "==> {} pods Running in {:.1} s",
        args.pods,
        started.elapsed().as_secs_f64()
    );

    eprintln!("==> {} scrapes of each component at {} pods", args.scrapes, args.pods);
    let mut full = Vec::new();
    for (name, c) in &components {
        full.push(
            scrape(c, args.scrapes)
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
        );
    }

    let mut md = String::from("# Metrics scrape time\n\n");
    md.push_str(&format!(
        "`cargo xtask bench scrape` on this machine (2 CPUs), release builds. A real etcd, API server, \
         controller-manager and scheduler with {nodes} simulated nodes (nodesim). Each component's `/metrics` \
         is scraped {scrapes} times in a row over HTTPS with a bearer token (after {WARM_UP} uncounted ones), first with no pods (the \
         baseline, same processes, same run), then with a Deployment of {pods} Running pods. Latency is the \
         whole request, from sending it to the last byte of the answer.\n\n",
        nodes = args.nodes,
        scrapes = args.scrapes,
        pods = args.pods,
    ));
    md.push_str("| component | pods | p50 (ms) | p99 (ms) | size (KiB) | samples |\n|---|---:|---:|---:|---:|---:|\n");
    for (i, (name, _)) in components.iter().enumerate() {
        for (pods, s) in [(0, &empty[i]), (args.pods, &full[i])] {
            md.push_str(&format!(
                "| {name} | {pods} | {:.2} | {:.2} | {:.1} | {} |\n",
                s.p(50.0),
                s.p(99.0),
                s.bytes as f64 / 1024.0,
                s.samples
            ));
        }
    }
    md.push_str(&format!("\n## Ratios ({} pods ÷ no pods)\n\n", args.pods));
    md.push_str("| component | p50 | p99 | size |\n|---|---:|---:|---:|\n");
    for (i, (name, _)) in components.iter().enumerate() {
        let (e, f) = (&empty[i], &full[i]);
        md.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} |\n",
            f.p(50.0) / e.p(50.0).max(f64::EPSILON),
            f.p(99.0) / e.p(99.0).max(f64::EPSILON),
            f.bytes as f64 / (e.bytes as f64).max(1.0)
        ));
    }
    md.push_str(
        "\nNot measured here: a node daemon's own `/metrics` and `/metrics/resource` at 1,000 pods. One \
         node here runs at most 110 pods (a real containerd on 2 CPUs), and nodesim serves no kubelet \
         endpoints; the node daemon's series grow with the pods and Service backends of its own node only.\n",
    );
    print!("{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, md)?;
    eprintln!("==> wrote {}", args.out.display());
    Ok(())
}
