//! `storage-bench`: the measuring half of `cargo xtask bench storage` (not a
//! test).
//!
//! Starts a real two-node cluster with `xtask up --nodes 2` (the
//! [`TestCluster`] harness) from the binaries next to this one and measures:
//!
//! - **Claim → Running**: for each of N pods, a PersistentVolumeClaim of the
//!   default `local-path` class (WaitForFirstConsumer) and a pod using it are
//!   created together; the latency runs from the claim's create request to
//!   the pod `Running` on a watch, so it holds scheduling with VolumeBinding,
//!   provisioning, binding and the kubelet's mount. The baseline, in the same
//!   run, is the same burst of pods without a volume.
//! - **Write throughput**: busybox `dd` of 256 MiB with `conv=fsync`, timed by
//!   busybox `time` (10 ms resolution), inside a pod on
//!   its local-path volume, against `dd` on the node's filesystem directly
//!   (the same file system: the node's storage root), best of three each.
//!
//! Writes a Markdown report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use sluice_tests::cluster::{TestCluster, BUSYBOX_IMAGE};

#[derive(Parser)]
struct Args {
    /// Claims (and pods) in the claim → Running burst, and pods in the baseline.
    #[arg(long, default_value_t = 50)]
    claims: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// MiB written by each `dd`.
    #[arg(long, default_value_t = 256)]
    write_mib: usize,
    /// Which build the binaries are (for the report).
    #[arg(long, default_value = "release")]
    profile: String,
    /// Report path.
    #[arg(long, default_value = "bench-results/storage.md")]
    out: PathBuf,
}

/// Latencies of one burst, in milliseconds.
struct Burst {
    name: String,
    latencies: Vec<f64>,
    missing: usize,
}

impl Burst {
    fn pct(&self, p: f64) -> f64 {
        sluice_bench::stats::percentile(&self.latencies, p)
    }
}

fn pod(run: &str, i: usize, claim: bool) -> Pod {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}],
    });
    if claim {
        spec["containers"][0]["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
        spec["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": format!("{run}-{i}")}}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("{run}-{i}"), "labels": {"bench": run}},
        "spec": spec,
    }))
    .expect("pod manifest")
}

fn claim(run: &str, i: usize) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{run}-{i}"), "labels": {"bench": run}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }))
    .expect("claim manifest")
}

/// Creates `n` pods (each with its own claim, created first, when `claims`);
/// times each from its first create request to the watch showing the pod Running.
async fn burst(client: &kube::Client, run: &str, n: usize, claims: bool, concurrency: usize) -> anyhow::Result<Burst> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let (running, watch) = sluice_bench::running::watch_running(pods.clone(), &format!("bench={run}")).await?;
    let sent: Vec<(String, Instant)> = futures::stream::iter(0..n)
        .map(|i| {
            let (pods, pvcs) = (pods.clone(), pvcs.clone());
            async move {
                let at = Instant::now();
                if claims {
                    pvcs.create(&PostParams::default(), &claim(run, i)).await?;
                }
                pods.create(&PostParams::default(), &pod(run, i, claims)).await?;
                Ok::<_, kube::Error>((format!("{run}-{i}"), at))
            }
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
    let latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(name, at)| {
            running
                .get(name)
                .map(|(seen, _)| seen.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    Ok(Burst {
        name: if claims {
            format!("{n} pods, each with a new local-path claim")
        } else {
            format!("{n} pods without volumes (baseline)")
        },
        missing: n - latencies.len(),
        latencies,
    })
}

/// Deletes the run's pods and claims, and waits until their volumes are gone.
async fn clean(client: &kube::Client, run: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("bench={run}"));
    let _ = pods
        .delete_collection(&DeleteParams::default().grace_period(0), &lp)
        .await?;
    let _ = pvcs.delete_collection(&DeleteParams::default(), &lp).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let left = pods.list(&lp).await?.items.len()
            + pvcs.list(&lp).await?.items.len()
            + pvs.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("the {run} run's pods, claims or volumes are still there after 180 s")
}

/// Seconds busybox's `time` reports (`real\t0m 0.33s`).
fn real_seconds(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.starts_with("real"))?;
    let rest = line.trim_start_matches("real").trim();
    let (min, sec) = rest.split_once('m')?;
    Some(min.trim().parse::<f64>().ok()? * 60.0 + sec.trim().trim_end_matches('s').parse::<f64>().ok()?)
}

/// MiB/s of the best of three timed `dd` runs produced by `run` (its stderr).
fn best_of_three(mib: usize, mut run: impl FnMut() -> anyhow::Result<String>) -> anyhow::Result<f64> {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let out = run()?;
        let secs = real_seconds(&out).ok_or_else(|| anyhow::anyhow!("no timing in the output: {out}"))?;
        best = best.max(mib as f64 / secs.max(0.01));
    }
    Ok(best)
}

/// busybox `time dd ...` (the image's busybox in the pod, the node's
/// busybox-static on the node: the same tool on both sides).
fn dd_args(path: &str, mib: usize) -> Vec<String> {
    vec![
        "time".into(),
        "dd".into(),
        "if=/dev/zero".into(),
        format!("of={path}"),
        "bs=1M".into(),
        format!("count={mib}"),
        "conv=fsync".into(),
    ]
}

/// Write throughput in a pod on its claim, and directly on the node's
/// storage root, in MiB/s.
async fn throughput(cluster: &TestCluster, client: &kube::Client, mib: usize) -> anyhow::Result<(f64, f64, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.create(&PostParams::default(), &claim("dd", 0)).await?;
    pods.create(&PostParams::default(), &pod("dd", 0, true)).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let node = loop {
        let p = pods.get("dd-0").await?;
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            break p.spec.and_then(|s| s.node_name).unwrap_or_default();
        }
        anyhow::ensure!(Instant::now() < deadline, "the dd pod never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let in_pod = best_of_three(mib, || {
        let mut args = vec!["exec", "dd-0", "--", "busybox"];
        let dd = dd_args("/data/bench", mib);
        args.extend(dd.iter().map(String::as_str));
        let out = cluster.kubectl(&args);
        anyhow::ensure!(
            out.status.success(),
            "dd in the pod: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    })?;
    let nodes: Api<Node> = Api::all(client.clone());
    let root = nodes
        .get(&node)
        .await?
        .metadata
        .annotations
        .and_then(|a| a.get("storage.sluice.dev/local-path-root").cloned())
        .ok_or_else(|| anyhow::anyhow!("node {node} publishes no storage root"))?;
    let direct_file = Path::new(&root).join("bench-direct");
    let direct = best_of_three(mib, || {
        let dd = dd_args(&direct_file.display().to_string(), mib);
        let out = std::process::Command::new("busybox").args(&dd).output()?;
        anyhow::ensure!(
            out.status.success(),
            "dd on the node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    })?;
    let _ = std::fs::remove_file(&direct_file);
    clean(client, "dd").await?;
    Ok((in_pod, direct, root))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("==> starting a two-node cluster (xtask up --nodes 2)");
    let cluster = TestCluster::up(2, &[]);
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;

    eprintln!("==> warm-up: two pods (the image on both nodes)");
    let warm = burst(&client, "warm", 4, false, 4).await?;
    clean(&client, "warm").await?;
    eprintln!("    warm-up pods ran in {:.0} ms p99", warm.pct(99.0));

    eprintln!("==> baseline: {} pods without volumes", args.claims);
    let baseline = burst(&client, "plain", args.claims, false, args.concurrency).await?;
    clean(&client, "plain").await?;
    eprintln!("==> {} pods, each with a new local-path claim", args.claims);
    let claimed = burst(&client, "claimed", args.claims, true, args.concurrency).await?;
    clean(&client, "claimed").await?;
    eprintln!(
        "==> write throughput: dd {} MiB with conv=fsync, pod volume vs the node's file system",
        args.write_mib
    );
    let (in_pod, direct, root) = throughput(&cluster, &client, args.write_mib).await?;

    let report = report(&args, &baseline, &claimed, in_pod, direct, &root);
    println!("{report}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, report)?;
    drop(cluster);
    Ok(())
}

fn report(args: &Args, baseline: &Burst, claimed: &Burst, in_pod: f64, direct: f64, root: &str) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", root])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str("# Storage (`cargo xtask bench storage`)\n\n");
    out.push_str(&format!(
        "A real two-node cluster from `xtask up --nodes 2`. **Claim → Running:** for each pod, a 64Mi claim of the \
         default `local-path` class (WaitForFirstConsumer) and a busybox pod using it are created together, {} creates \
         in flight; the latency runs from the claim's create request to the pod `Running` on a watch (scheduling with \
         VolumeBinding, provisioning, binding, mount). The baseline, same run, is the same burst of pods without a \
         volume. **Write throughput:** busybox `time dd if=/dev/zero bs=1M count={} conv=fsync`, best of three, inside a pod on \
         its local-path volume against `dd` on the node's storage root directly (same file system, {fs}).\n\n",
        args.concurrency, args.write_mib
    ));
    out.push_str(&format!(
        "Binaries: {} build. Machine: {} cores, load average {} at the end of the run.\n\n",
        args.profile,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.join(" ")
    ));
    out.push_str("| run | p50 ms | p99 ms | max ms | p50 / baseline | p99 / baseline | not running |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let (b50, b99) = (baseline.pct(50.0), baseline.pct(99.0));
    for b in [baseline, claimed] {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× | {} |\n",
            b.name,
            b.pct(50.0),
            b.pct(99.0),
            b.pct(100.0),
            b.pct(50.0) / b50,
            b.pct(99.0) / b99,
            b.missing
        ));
    }
    out.push_str("\n| write | MiB/s | ratio |\n| --- | ---: | ---: |\n");
    out.push_str(&format!(
        "| node file system directly (baseline) | {direct:.0} | 1.00× |\n"
    ));
    out.push_str(&format!(
        "| pod on its local-path volume | {in_pod:.0} | {:.2}× |\n",
        in_pod / direct
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::real_seconds;

    #[test]
    fn busybox_time_gives_its_seconds() {
        assert_eq!(
            real_seconds("16+0 records out\nreal\t0m 0.33s\nuser\t0m 0.00s\n"),
            Some(0.33)
        );
        assert_eq!(real_seconds("real\t1m 2.50s\n"), Some(62.5));
        assert_eq!(real_seconds("no timing"), None);
    }
}
