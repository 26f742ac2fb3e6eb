//! `node-bench`: the measuring half of `cargo xtask bench node` (not a test).
//!
//! Starts a real two-node cluster with `xtask up --nodes 2` (the
//! [`TestCluster`] harness: own home, ports, bridge and namespaces) from the
//! binaries next to this one, and measures pod startup latency: from sending
//! the Pod create to seeing the Pod `Running` on a watch, for a burst of pods
//! on one node (nodeSelector) and then a burst spread over both nodes by the
//! scheduler. The baseline, measured in the same run against node 1's own
//! containerd, is what the runtime alone costs: CRI RunPodSandbox (with the
//! same CNI plugin) + CreateContainer + StartContainer of the same image and
//! command, all pods of the burst at once (as noded's pod workers run them).
//! Every image comes from the cluster registry: the bursts above run with the
//! image already on the node (pulled by the warm-up pods), and a last burst
//! starts pods of an image neither node has pulled yet (`redis`), so its
//! latency includes a cold pull through the node's containerd mirror.
//! Writes a Markdown report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use sluice_noded::cri::{api, Cri};
use sluice_tests::cluster::{TestCluster, BUSYBOX_IMAGE};

/// The image of the cold-pull burst: in the cluster registry, on no node yet.
const COLD_IMAGE: &str = "redis:7.0.15";

#[derive(Parser)]
struct Args {
    /// Pods in the one-node burst.
    #[arg(long, default_value_t = 30)]
    pods_one_node: usize,
    /// Pods in the two-node burst.
    #[arg(long, default_value_t = 100)]
    pods_two_nodes: usize,
    /// Pods in the cold-pull burst (an image not yet on node 2).
    #[arg(long, default_value_t = 10)]
    pods_cold: usize,
    /// Pod creates in flight at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Which build the binaries are (for the report).
    #[arg(long, default_value = "release")]
    profile: String,
    /// Report path.
    #[arg(long, default_value = "bench-results/node.md")]
    out: PathBuf,
}

/// Latencies of one burst, in milliseconds, plus the time until the last pod ran.
struct Burst {
    name: String,
    latencies: Vec<f64>,
    total: Duration,
    missing: usize,
    per_node: BTreeMap<String, usize>,
}

impl Burst {
    fn pct(&self, p: f64) -> f64 {
        sluice_bench::stats::percentile(&self.latencies, p)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("==> starting a two-node cluster (xtask up --nodes 2)");
    let cluster = TestCluster::up(2, &[]);
    let (n1, n2) = (cluster.node_name(1), cluster.node_name(2));
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let sockets = [cluster.containerd_socket(&n1), cluster.containerd_socket(&n2)];

    eprintln!("==> warm-up: one pod per node");
    let warm = burst(&pods, "warm", 2, None, BUSYBOX_IMAGE, 2).await?;
    clean(&pods, "warm", &sockets).await?;
    eprintln!("    warm-up pods ran in {:.0} ms p99", warm.pct(99.0));

    eprintln!(
        "==> baseline: {} raw CRI pod starts on {n1}'s containerd",
        args.pods_one_node
    );
    // All at once: once created, noded starts every pod of a burst concurrently too.
    let baseline = cri_baseline(&sockets[0], args.pods_one_node, args.pods_one_node).await?;
    eprintln!("==> {} pods on one node", args.pods_one_node);
    let one = burst(
        &pods,
        "one-node",
        args.pods_one_node,
        Some(&n1),
        BUSYBOX_IMAGE,
        args.concurrency,
    )
    .await?;
    clean(&pods, "one-node", &sockets).await?;
    eprintln!("==> {} pods across two nodes", args.pods_two_nodes);
    let two = burst(
        &pods,
        "two-nodes",
        args.pods_two_nodes,
        None,
        BUSYBOX_IMAGE,
        args.concurrency,
    )
    .await?;
    clean(&pods, "two-nodes", &sockets).await?;
    eprintln!(
        "==> {} pods of {COLD_IMAGE} on {n2}, which has not pulled it (cold pull from the cluster registry)",
        args.pods_cold
    );
    let mut cold = burst(&pods, "cold", args.pods_cold, Some(&n2), COLD_IMAGE, args.concurrency).await?;
    cold.name = format!("{} pods, one node, cold pull of {COLD_IMAGE}", args.pods_cold);
    clean(&pods, "cold", &sockets).await?;

    let report = report(&args, &baseline, &[one, two, cold]);
    println!("{report}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, report)?;
    drop(cluster);
    Ok(())
}

fn pod(run: &str, i: usize, node: Option<&str>, image: &str) -> Pod {
    // busybox sleeps; other images run their default command.
    let container = if image == BUSYBOX_IMAGE {
        json!({"name": "main", "image": image, "command": ["sleep", "3600"]})
    } else {
        json!({"name": "main", "image": image})
    };
    let mut spec = json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [container],
    });
    if let Some(node) = node {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("{run}-{i}"), "labels": {"bench": run}},
        "spec": spec,
    }))
    .expect("pod manifest")
}

/// Create `n` pods (label `bench=<run>`) `concurrency` at a time; time each from
/// its create request to the watch event showing it Running.
async fn burst(
    pods: &Api<Pod>,
    run: &str,
    n: usize,
    node: Option<&str>,
    image: &str,
    concurrency: usize,
) -> anyhow::Result<Burst> {
    let (running, watch) = sluice_bench::running::watch_running(pods.clone(), &format!("bench={run}")).await?;
    let started = Instant::now();
    let sent: Vec<(String, Instant)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let p = pod(run, i, node, image);
            let at = Instant::now();
            pods.create(&PostParams::default(), &p)
                .await
                .map(|_| (format!("{run}-{i}"), at))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while running.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let running = running.lock().unwrap();
    let mut latencies = Vec::new();
    let mut per_node = BTreeMap::new();
    let mut last = started;
    for (name, at) in &sent {
        if let Some((seen, node)) = running.get(name) {
            latencies.push(seen.duration_since(*at).as_secs_f64() * 1000.0);
            *per_node.entry(node.clone()).or_insert(0) += 1;
            last = last.max(*seen);
        }
    }
    Ok(Burst {
        name: match node {
            Some(_) => format!("{n} pods, one node"),
            None => format!("{n} pods, two nodes"),
        },
        missing: n - latencies.len(),
        latencies,
        total: last.duration_since(started),
        per_node,
    })
}

/// Delete the run's pods at once and wait until neither node's containerd has a sandbox left.
async fn clean(pods: &Api<Pod>, run: &str, sockets: &[PathBuf]) -> anyhow::Result<()> {
    let list = pods
        .list(&ListParams::default().labels(&format!("bench={run}")))
        .await?;
    for p in list {
        let _ = pods
            .delete(
                &p.metadata.name.unwrap_or_default(),
                &DeleteParams::default().grace_period(0),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for socket in sockets {
        let cri = Cri::connect(socket).await?;
        while !cri.list_pod_sandboxes(&[]).await?.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    while !pods
        .list(&ListParams::default().labels(&format!("bench={run}")))
        .await?
        .items
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// RunPodSandbox + CreateContainer + StartContainer straight against containerd, `n` times.
async fn cri_baseline(socket: &std::path::Path, n: usize, concurrency: usize) -> anyhow::Result<Burst> {
    let cri = Cri::connect(socket).await?;
    let started = Instant::now();
    let results: Vec<(String, f64)> = futures::stream::iter(0..n)
        .map(|i| {
            let cri = cri.clone();
            async move {
                let sandbox = api::PodSandboxConfig {
                    metadata: Some(api::PodSandboxMetadata {
                        name: format!("baseline-{i}"),
                        uid: format!("baseline-{}-{i}", std::process::id()),
                        namespace: "bench-baseline".into(),
                        attempt: 0,
                    }),
                    hostname: format!("baseline-{i}"),
                    linux: Some(api::LinuxPodSandboxConfig::default()),
                    ..Default::default()
                };
                let container = api::ContainerConfig {
                    metadata: Some(api::ContainerMetadata {
                        name: "main".into(),
                        attempt: 0,
                    }),
                    image: Some(api::ImageSpec {
                        image: BUSYBOX_IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sleep".into(), "3600".into()],
                    linux: Some(api::LinuxContainerConfig::default()),
                    ..Default::default()
                };
                let at = Instant::now();
                let id = cri.run_pod_sandbox(sandbox.clone()).await?;
                let cid = cri.create_container(&id, container, sandbox).await?;
                cri.start_container(&cid).await?;
                anyhow::Ok((id, at.elapsed().as_secs_f64() * 1000.0))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let total = started.elapsed();
    for (id, _) in &results {
        let _ = cri.stop_pod_sandbox(id).await;
        let _ = cri.remove_pod_sandbox(id).await;
    }
    Ok(Burst {
        name: format!("{n} pods, raw CRI (baseline)"),
        latencies: results.iter().map(|(_, ms)| *ms).collect(),
        total,
        missing: 0,
        per_node: BTreeMap::new(),
    })
}

fn report(args: &Args, baseline: &Burst, bursts: &[Burst]) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let mut out = String::new();
    out.push_str("# Pod startup latency (`cargo xtask bench node`)\n\n");
    out.push_str(
        "Create request sent → Pod `Running` seen on a watch, on a real cluster from `xtask up --nodes 2` \
         (etcd, API server, controller-manager, scheduler; per node a network namespace with its own containerd 1.6 + runc \
         and noded; images come from the cluster registry through each node's containerd mirror). Pods: busybox `sleep 3600` \
         with the image already on the node (pulled by one warm-up pod per node), and, in the last row, redis with a cold \
         pull from the cluster registry (no node had it). Created with ",
    );
    out.push_str(&format!(
        "{} creates in flight at a time (a burst: every pod of a run is created within a fraction of a second, so \
         latency includes queueing on the node). Baseline, same run, node 1's containerd: CRI RunPodSandbox (same CNI \
         plugin) + CreateContainer + StartContainer for all {} pods at once, timed per pod. Goal: p99 ≤ 1 s \
         (Kubernetes SLO: p99 ≤ 5 s).\n\n",
        args.concurrency, args.pods_one_node
    ));
    out.push_str(&format!(
        "Binaries: {} build. Machine: {} cores, load average {} at the end of the run.\n\n",
        args.profile,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.join(" ")
    ));
    out.push_str("| run | p50 ms | p99 ms | max ms | p50 / baseline | p99 / baseline | all running after | pods per node | not running |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
    let (b50, b99) = (baseline.pct(50.0), baseline.pct(99.0));
    for b in std::iter::once(baseline).chain(bursts) {
        let per_node = b
            .per_node
            .iter()
            .map(|(n, c)| format!("{n}: {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1}× | {:.1}× | {:.2} s | {} | {} |\n",
            b.name,
            b.pct(50.0),
            b.pct(99.0),
            b.pct(100.0),
            b.pct(50.0) / b50,
            b.pct(99.0) / b99,
            b.total.as_secs_f64(),
            if per_node.is_empty() { "-".into() } else { per_node },
            b.missing
        ));
    }
    out
}
