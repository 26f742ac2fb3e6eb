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
//! command, all pods of the burst at once (as noded's pod workers run them);
//! each burst has its own baseline of as many pods on as many nodes (both
//! nodes share this machine's CPUs, so 100 pods cost what 100 pods cost).
//! Where the time goes: noded's `kubelet_runtime_operations_*` and
//! `kubelet_pod_start_duration_seconds` (scraped through `nodes/proxy`
//! before and after each burst) and the CPU seconds of each process
//! ([`sluice_bench::cpu`]).
//! Every image comes from the cluster registry: the bursts above run with the
//! image already on the node (pulled by the warm-up pods), and a last burst
//! starts pods of an image neither node has pulled yet (`redis`), so its
//! latency includes a cold pull through the node's containerd mirror.
//! Between the two-node burst and its cleanup, its pods are watched just
//! running for a few seconds: the CPU and CRI calls the nodes keep spending
//! on pods that do not change.
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
use sluice_bench::cpu;
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
    /// CPU seconds spent from the first create until every pod ran.
    cpu: cpu::Usage,
    /// Mean ms per pod of each CRI call on the way (baseline: timed here;
    /// bursts: noded's `kubelet_runtime_operations_*`), with calls per pod.
    calls: BTreeMap<String, (f64, f64)>,
    /// Mean ms from noded first seeing a pod to its status Running (bursts only).
    noded_start_ms: Option<f64>,
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
    let base_one = cri_baseline(&sockets[..1], args.pods_one_node, false).await?;
    eprintln!("==> the same without the pod network (host-network sandboxes: no CNI)");
    let no_cni = cri_baseline(&sockets[..1], args.pods_one_node, true).await?;
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
    eprintln!(
        "==> baseline: {} raw CRI pod starts, half on each node's containerd",
        args.pods_two_nodes
    );
    let base_two = cri_baseline(&sockets, args.pods_two_nodes, false).await?;
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
    eprintln!(
        "==> the {} pods running: what the nodes keep spending over {} s",
        args.pods_two_nodes,
        SETTLED_WINDOW.as_secs()
    );
    let running = settled(&pods, args.pods_two_nodes).await;
    clean(&pods, "two-nodes", &sockets).await?;
    eprintln!(
        "==> {} pods of {COLD_IMAGE} on {n2}, which has not pulled it (cold pull from the cluster registry)",
        args.pods_cold
    );
    let mut cold = burst(&pods, "cold", args.pods_cold, Some(&n2), COLD_IMAGE, args.concurrency).await?;
    cold.name = format!("{} pods, one node, cold pull of {COLD_IMAGE}", args.pods_cold);
    clean(&pods, "cold", &sockets).await?;

    let report = report(&args, &[(base_one, one), (base_two, two)], &no_cni, &cold, &running);
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
    let metrics_before = node_metrics(pods).await;
    let requests_before = api_requests(pods).await;
    let cpu_before = cpu::Snapshot::take();
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
    let cpu = cpu::Snapshot::take().since(&cpu_before);
    watch.abort();
    // The window the CRI calls are counted in ends 1.5 s after the last pod
    // ran: each pod's resync right after its start (ready, first probes) and
    // one once-a-second pass over the node's pods are in it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = node_metrics(pods).await.since(&metrics_before);
    let calls = metrics.calls(n.max(1));
    let breakdown: Vec<String> = calls
        .iter()
        .map(|(op, (ms, per_pod))| format!("{op} {per_pod:.1}/pod {ms:.1} ms"))
        .collect();
    eprintln!("    CRI calls through noded: {}", breakdown.join(", "));
    eprintln!(
        "    API requests per pod: {}",
        per_unit(&api_requests(pods).await, &requests_before, n.max(1) as f64)
    );
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
        calls: metrics.calls(latencies.len()),
        noded_start_ms: metrics.mean_ms("kubelet_pod_start_duration_seconds"),
        latencies,
        total: last.duration_since(started),
        per_node,
        cpu,
    })
}

/// How long the pods of the two-node burst are watched running.
const SETTLED_WINDOW: Duration = Duration::from_secs(10);

/// What the nodes spend while the pods of a burst just run (nothing changes).
struct Settled {
    pods: usize,
    /// CPU over the window.
    cpu: cpu::Usage,
    /// CRI calls through noded over the window, per operation.
    calls: BTreeMap<String, f64>,
}

/// Watches `pods` running pods for [`SETTLED_WINDOW`], after a few seconds
/// for their first resyncs and probes to pass.
async fn settled(api: &Api<Pod>, pods: usize) -> Settled {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics_before = node_metrics(api).await;
    let requests_before = api_requests(api).await;
    let cpu_before = cpu::Snapshot::take();
    tokio::time::sleep(SETTLED_WINDOW).await;
    eprintln!(
        "    API requests per s: {}",
        per_unit(&api_requests(api).await, &requests_before, SETTLED_WINDOW.as_secs_f64())
    );
    let cpu = cpu::Snapshot::take().since(&cpu_before);
    let calls = node_metrics(api)
        .await
        .since(&metrics_before)
        .calls(1)
        .into_iter()
        .map(|(op, (_, count))| (op, count))
        .collect();
    Settled { pods, cpu, calls }
}

/// Series of every node's `/metrics` (through `nodes/proxy`), summed over the nodes.
#[derive(Default)]
struct NodeMetrics(BTreeMap<String, f64>);

/// The CRI calls of a pod start, in the order they happen.
const START_CALLS: [&str; 3] = ["run_podsandbox", "create_container", "start_container"];

impl NodeMetrics {
    fn since(self, before: &NodeMetrics) -> NodeMetrics {
        NodeMetrics(
            self.0
                .into_iter()
                .map(|(k, v)| {
                    let old = before.0.get(&k).copied().unwrap_or(0.0);
                    (k, v - old)
                })
                .collect(),
        )
    }

    /// Mean milliseconds of the histogram `series` (a name, with its labels if it has any).
    fn mean_ms(&self, series: &str) -> Option<f64> {
        let sum = self.0.get(&format!("{series}_sum"))?;
        let count = self.0.get(&format!("{series}_count")).filter(|c| **c > 0.0)?;
        Some(sum / count * 1000.0)
    }

    /// Per CRI operation: (mean ms per call, calls per pod), for `pods` pods.
    fn calls(&self, pods: usize) -> BTreeMap<String, (f64, f64)> {
        let prefix = "kubelet_runtime_operations_duration_seconds{operation_type=\"";
        self.0
            .iter()
            .filter_map(|(k, count)| {
                let op = k.strip_prefix(prefix)?.strip_suffix("\"}_count")?;
                let mean = self.mean_ms(&format!(
                    "kubelet_runtime_operations_duration_seconds{{operation_type=\"{op}\"}}"
                ))?;
                Some((op.to_string(), (mean, count / pods.max(1) as f64)))
            })
            .filter(|(_, (_, per_pod))| *per_pod > 0.0)
            .collect()
    }
}

/// Scrape every node's kubelet metrics, summed over the nodes; a
/// histogram's `<name>_sum{labels}` is keyed `<name>{labels}_sum` (and so
/// `_count`), which [`NodeMetrics::mean_ms`] looks up.
async fn node_metrics(pods: &Api<Pod>) -> NodeMetrics {
    let client: kube::Client = pods.clone().into_client();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let mut out = NodeMetrics::default();
    let Ok(list) = nodes.list(&ListParams::default()).await else {
        return out;
    };
    for node in list {
        let name = node.metadata.name.unwrap_or_default();
        let request = http::Request::get(format!("/api/v1/nodes/{name}/proxy/metrics"))
            .body(Vec::new())
            .expect("request");
        let Ok(text) = client.request_text(request).await else {
            eprintln!("    (no metrics from {name})");
            continue;
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            *out.0.entry(fold_suffix(series)).or_default() += value;
        }
    }
    out
}

/// The API server's `apiserver_request_total`, summed by verb, resource
/// and subresource (codes, groups and scopes folded).
async fn api_requests(pods: &Api<Pod>) -> BTreeMap<String, f64> {
    let client: kube::Client = pods.clone().into_client();
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let mut out = BTreeMap::new();
    let Ok(text) = client.request_text(request).await else {
        eprintln!("    (no metrics from the API server)");
        return out;
    };
    let label = |series: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        series
            .find(&key)
            .map(|i| &series[i + key.len()..])
            .and_then(|rest| rest.split_once('"'))
            .map(|(value, _)| value.to_string())
            .unwrap_or_default()
    };
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (resource, sub) = (label(series, "resource"), label(series, "subresource"));
        let what = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        *out.entry(format!("{} {what}", label(series, "verb"))).or_default() += value;
    }
    out
}

/// What grew from `before` to `after`, divided by `unit`, as `key n.n` items.
fn per_unit(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, unit: f64) -> String {
    after
        .iter()
        .map(|(k, v)| (k, (v - before.get(k).copied().unwrap_or(0.0)) / unit))
        .filter(|(_, d)| *d >= 0.05)
        .map(|(k, d)| format!("{k} {d:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name_sum{labels}` → `name{labels}_sum` (and `_count`), so a histogram's
/// series share their labelled name.
fn fold_suffix(series: &str) -> String {
    let (name, labels) = match series.find('{') {
        Some(i) => series.split_at(i),
        None => (series, ""),
    };
    for suffix in ["_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return format!("{base}{labels}{suffix}");
        }
    }
    series.to_string()
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

/// RunPodSandbox + CreateContainer + StartContainer straight against
/// containerd, `n` pods at once, spread round-robin over `sockets` (nodes);
/// each call timed. `host_network` sandboxes skip the CNI plugin (what the
/// pod network costs is the difference).
async fn cri_baseline(sockets: &[PathBuf], n: usize, host_network: bool) -> anyhow::Result<Burst> {
    let mut cris = Vec::new();
    for socket in sockets {
        cris.push(Cri::connect(socket).await?);
    }
    let cpu_before = cpu::Snapshot::take();
    let started = Instant::now();
    let results: Vec<(Cri, String, [f64; 3])> = futures::stream::iter(0..n)
        .map(|i| {
            let cri = cris[i % cris.len()].clone();
            async move {
                let sandbox = api::PodSandboxConfig {
                    metadata: Some(api::PodSandboxMetadata {
                        name: format!("baseline-{i}"),
                        uid: format!("baseline-{}-{i}", std::process::id()),
                        namespace: "bench-baseline".into(),
                        attempt: 0,
                    }),
                    // A host-network sandbox shares the node's UTS namespace: no hostname of its own.
                    hostname: if host_network {
                        String::new()
                    } else {
                        format!("baseline-{i}")
                    },
                    linux: Some(api::LinuxPodSandboxConfig {
                        security_context: Some(api::LinuxSandboxSecurityContext {
                            namespace_options: Some(api::NamespaceOption {
                                network: if host_network {
                                    api::NamespaceMode::Node as i32
                                } else {
                                    api::NamespaceMode::Pod as i32
                                },
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
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
                let sandboxed = at.elapsed();
                let cid = cri.create_container(&id, container, sandbox).await?;
                let created = at.elapsed();
                cri.start_container(&cid).await?;
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let done = at.elapsed();
                anyhow::Ok((cri, id, [ms(sandboxed), ms(created - sandboxed), ms(done - created)]))
            }
        })
        .buffer_unordered(n.max(1))
        .try_collect()
        .await?;
    let total = started.elapsed();
    let cpu = cpu::Snapshot::take().since(&cpu_before);
    for (cri, id, _) in &results {
        let _ = cri.stop_pod_sandbox(id).await;
        let _ = cri.remove_pod_sandbox(id).await;
    }
    let mean = |k: usize| results.iter().map(|r| r.2[k]).sum::<f64>() / results.len().max(1) as f64;
    let calls = START_CALLS
        .iter()
        .enumerate()
        .map(|(k, op)| (op.to_string(), (mean(k), 1.0)))
        .collect();
    Ok(Burst {
        name: format!(
            "{n} pods, raw CRI ({}{})",
            if sockets.len() == 1 { "one node" } else { "two nodes" },
            if host_network {
                ", host network: no CNI"
            } else {
                ", baseline"
            }
        ),
        latencies: results.iter().map(|r| r.2.iter().sum()).collect(),
        total,
        missing: 0,
        per_node: BTreeMap::new(),
        cpu,
        calls,
        noded_start_ms: None,
    })
}

fn report(args: &Args, runs: &[(Burst, Burst)], no_cni: &Burst, cold: &Burst, running: &Settled) -> String {
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
         latency includes queueing on the node). Each burst has its baseline, measured just before it in the same run: \
         as many pods straight against the same containerd(s) (CRI RunPodSandbox with the same CNI plugin + \
         CreateContainer + StartContainer, all at once, timed per pod). Both nodes share this machine's CPUs, so the \
         two-node burst's baseline starts as many pods on both containerds at once. Goal: p99 ≤ 1 s and ≤ 1.1× raw CRI \
         (Kubernetes SLO: p99 ≤ 5 s).\n\n",
        args.concurrency
    ));
    out.push_str(&format!(
        "Binaries: {} build. Machine: {} cores, load average {} at the end of the run.\n\n",
        args.profile,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.join(" ")
    ));
    out.push_str("| run | p50 ms | p99 ms | max ms | p50 / baseline | p99 / baseline | all running after | pods per node | not running |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
    let row = |out: &mut String, b: &Burst, base: Option<&Burst>| {
        let per_node = b
            .per_node
            .iter()
            .map(|(n, c)| format!("{n}: {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = |p: f64| match base {
            Some(base) => format!("{:.2}×", b.pct(p) / base.pct(p)),
            None => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} s | {} | {} |\n",
            b.name,
            b.pct(50.0),
            b.pct(99.0),
            b.pct(100.0),
            ratio(50.0),
            ratio(99.0),
            b.total.as_secs_f64(),
            if per_node.is_empty() { "-".into() } else { per_node },
            b.missing
        ));
    };
    for (base, burst) in runs {
        row(&mut out, base, Some(base));
        row(&mut out, burst, Some(base));
    }
    row(&mut out, cold, None);
    out.push_str("\n## Where the time goes\n\n");
    out.push_str(
        "Per pod, mean milliseconds of each CRI call of a start (baseline: timed by this driver; through noded: \
         noded's `kubelet_runtime_operations_duration_seconds`, scraped from every node through `nodes/proxy` before \
         and after the burst), noded's own clock (`kubelet_pod_start_duration_seconds`: its pod loop first seeing the \
         pod → noded posting it Running), and CPU seconds per pod over the burst (all CPUs; by process, for processes alive \
         at the end; \"exited\" is what short-lived processes such as runc and the CNI plugin used).\n\n",
    );
    out.push_str("| run | create → Running mean ms | noded sees → Running mean ms | RunPodSandbox ms | CreateContainer ms | StartContainer ms | other CRI calls per pod | CPU s per pod | CPU s per pod by process |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for b in std::iter::once(no_cni)
        .chain(runs.iter().flat_map(|(base, burst)| [base, burst]))
        .chain([cold])
    {
        let pods = b.latencies.len().max(1) as f64;
        let call = |op: &str| {
            b.calls
                .get(op)
                .map(|(ms, _)| format!("{ms:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        let others: f64 = b
            .calls
            .iter()
            .filter(|(op, _)| !START_CALLS.contains(&op.as_str()))
            .map(|(_, (_, per_pod))| per_pod)
            .sum();
        let mut by: Vec<(&String, &f64)> = b.cpu.by_command.iter().filter(|(_, s)| **s / pods >= 0.001).collect();
        by.sort_by(|a, b| b.1.total_cmp(a.1));
        let mut by: Vec<String> = by
            .iter()
            .take(6)
            .map(|(c, s)| format!("{c} {:.3}", **s / pods))
            .collect();
        by.push(format!("exited {:.3}", b.cpu.exited / pods));
        let mean = b.latencies.iter().sum::<f64>() / pods;
        out.push_str(&format!(
            "| {} | {mean:.0} | {} | {} | {} | {} | {} | {:.3} | {} |\n",
            b.name,
            b.noded_start_ms
                .map(|ms| format!("{ms:.0}"))
                .unwrap_or_else(|| "-".into()),
            call("run_podsandbox"),
            call("create_container"),
            call("start_container"),
            if b.noded_start_ms.is_some() {
                format!("{others:.1}")
            } else {
                "-".into()
            },
            b.cpu.busy / pods,
            by.join(", ")
        ));
    }
    let secs = SETTLED_WINDOW.as_secs_f64();
    out.push_str(&format!(
        "\n## With the pods running\n\nThe {} pods of the two-node burst, all running and nothing changing, watched for \
         {secs:.0} s (from 3 s after the last one ran): CPU per second by process (both nodes, all processes), and the CRI \
         calls noded made per second (both nodes).\n\n",
        running.pods
    ));
    let mut by: Vec<(&String, &f64)> = running.cpu.by_command.iter().collect();
    by.sort_by(|a, b| b.1.total_cmp(a.1));
    let by: Vec<String> = by
        .iter()
        .take(6)
        .map(|(c, s)| format!("{c} {:.3}", **s / secs))
        .collect();
    let calls: Vec<String> = running
        .calls
        .iter()
        .map(|(op, n)| format!("{op} {:.1}", n / secs))
        .collect();
    out.push_str("| CPU s per s | by process | CRI calls per s |\n| ---: | --- | --- |\n");
    out.push_str(&format!(
        "| {:.3} | {} | {} |\n",
        running.cpu.busy / secs,
        by.join(", "),
        calls.join(", ")
    ));
    out
}
