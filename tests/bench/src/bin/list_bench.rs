//! `list-bench`: the measuring half of `cargo xtask bench list` (not a
//! test): how long a list of 1,000 and of 10,000 pods takes when the API
//! server serves it from its watch cache, against the same list read from
//! etcd (the baseline, measured in the same run).
//!
//! Starts one real etcd and two release API servers on it: one as it runs by
//! default, one with `--watch-cache=false` (every list reads etcd, as
//! Kubernetes does with that flag). Creates `--small` pods in namespace
//! `small` and `--big` in `big` through the first, then lists each namespace
//! `--rounds` times on both servers, alternating between them so that noise
//! on the machine falls on both. Two kinds of list:
//! - consistent (no `resourceVersion`, what kubectl sends): the cache must
//!   hold etcd's current revision first (KEP-2340);
//! - `resourceVersion=0` (what an informer's first list sends): whatever the
//!   cache holds;
//! - consistent again while another client renews Leases (`--renewals` per
//!   second: what 1,000 nodes' kubelets do at one renewal each per 10 s),
//!   as in a real cluster: etcd's revision then moves past the pods' own.
//!
//! Each list is one HTTPS request with a bearer token, timed from sending it
//! to the last byte of the JSON answer. The cached server's
//! `apiserver_cache_list_total` says how many lists the cache itself served
//! (a consistent list it cannot answer at once goes to etcd). Writes a
//! Markdown report.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sluice_bench::stats::percentile;
use sluice_tests::{ApiServer, Etcd, RawClient};

#[derive(Parser)]
struct Args {
    /// Pods of the small namespace.
    #[arg(long, default_value_t = 1_000)]
    small: usize,
    /// Pods of the big namespace.
    #[arg(long, default_value_t = 10_000)]
    big: usize,
    /// Lists per server, namespace and kind of list.
    #[arg(long, default_value_t = 40)]
    rounds: usize,
    /// Lease renewals per second during the last two series.
    #[arg(long, default_value_t = 100)]
    renewals: u32,
    /// Report path.
    #[arg(long, default_value = "bench-results/list.md")]
    out: PathBuf,
}

/// Lists made and not counted before each series (connection set-up, the
/// cache's first list of the resource).
const WARM_UP: usize = 3;

/// One series: list times in ms and the answer's size.
#[derive(Default)]
struct Series {
    millis: Vec<f64>,
    bytes: usize,
}

impl Series {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.millis, q)
    }
}

/// `apiserver_cache_list_total` for pods on `server`.
async fn cache_lists(server: &RawClient) -> u64 {
    let text = server.get("/metrics").await.text();
    let series = "apiserver_cache_list_total{index=\"\",resource_prefix=\"/pods\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One list; its time in ms and size, after checking it holds `want` pods.
async fn list(server: &RawClient, path: &str, want: usize) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    let resp = server.get(path).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(resp.status == 200, "{path}: {}", resp.status);
    let items = resp.json()["items"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(items == want, "{path}: {items} pods, expected {want}");
    Ok((ms, resp.body.len()))
}

/// Renew `leases` Leases round-robin, `per_second` times a second, until
/// `stop`; returns how many renewals were made.
async fn renew_leases(
    server: RawClient,
    per_second: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u64> {
    const LEASES: usize = 100;
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    for i in 0..LEASES {
        let lease = json!({"metadata": {"name": format!("node-{i}")}, "spec": {"holderIdentity": format!("node-{i}"), "leaseDurationSeconds": 40}});
        let status = server.post(path, &lease).await.status;
        anyhow::ensure!(status == 201, "lease {i}: {status}");
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1) / per_second.max(1));
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        ticker.tick().await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let patch = json!({"spec": {"renewTime": now}});
        let lease = format!("{path}/node-{}", n as usize % LEASES);
        let status = server
            .patch(&lease, "application/merge-patch+json", &patch)
            .await
            .status;
        anyhow::ensure!(status == 200, "renewal {n}: {status}");
        n += 1;
    }
    Ok(n)
}

async fn create_pods(server: &RawClient, namespace: &str, n: usize) -> anyhow::Result<()> {
    let status = server
        .post("/api/v1/namespaces", &json!({"metadata": {"name": namespace}}))
        .await
        .status;
    anyhow::ensure!(status == 201, "namespace {namespace}: {status}");
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    futures::stream::iter(0..n)
        .map(|i| {
            let path = path.clone();
            async move {
                let pod = json!({
                    "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "list", "shard": (i % 10).to_string()}},
                    "spec": {"nodeName": format!("node-{}", i % 50),
                             "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}]},
                });
                let status = server.post(&path, &pod).await.status;
                anyhow::ensure!(status == 201, "pod {i}: {status}");
                Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("==> starting etcd and two API servers on it (watch cache on, and --watch-cache=false)");
    let etcd = Etcd::start().await;
    // No controller-manager makes the namespaces' `default` ServiceAccounts,
    // so ServiceAccount admission is off on both (as `ControlPlane` does).
    const NO_SA: &str = "--disable-admission-plugins=ServiceAccount";
    let cached_server = ApiServer::start(&etcd, &[NO_SA]).await;
    let etcd_server = ApiServer::start_sharing(&etcd, &cached_server, &[NO_SA, "--watch-cache=false"]).await;
    let cached = cached_server.raw().await;
    let direct = etcd_server.raw().await;
    let etcd_version = etcd.etcdctl(&["version"]);
    let etcd_version = etcd_version.lines().next().unwrap_or("etcd").trim().to_string();

    let created = Instant::now();
    eprintln!("==> creating {} + {} pods", args.small, args.big);
    create_pods(&cached, "small", args.small).await?;
    create_pods(&cached, "big", args.big).await?;
    let create_s = created.elapsed().as_secs_f64();
    eprintln!("==> created in {create_s:.1} s");

    // (namespace, pods, kind of list, query, while Leases are renewed)
    let renewing = format!("consistent, {} Lease renewals/s", args.renewals);
    let cases = [
        ("small", args.small, "consistent", "", false),
        ("small", args.small, "resourceVersion=0", "?resourceVersion=0", false),
        ("big", args.big, "consistent", "", false),
        ("big", args.big, "resourceVersion=0", "?resourceVersion=0", false),
        ("small", args.small, renewing.as_str(), "", true),
        ("big", args.big, renewing.as_str(), "", true),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut renewer = None;
    let mut renewing_since = Instant::now();
    let servers = [("watch cache", &cached), ("etcd", &direct)];
    let mut results: Vec<[Series; 2]> = Vec::new();
    let mut served_by_cache = Vec::new();
    for (ns, pods, kind, query, renew) in cases.iter().copied() {
        if renew && renewer.is_none() {
            eprintln!("==> renewing Leases, {} a second, from now on", args.renewals);
            renewer = Some(tokio::spawn(renew_leases(cached.clone(), args.renewals, stop.clone())));
            renewing_since = Instant::now();
        }
        let path = format!("/api/v1/namespaces/{ns}/pods{query}");
        eprintln!("==> {} lists of {pods} pods ({kind}) on each server", args.rounds);
        for (_, server) in servers {
            for _ in 0..WARM_UP {
                list(server, &path, pods).await?;
            }
        }
        let before = cache_lists(&cached).await;
        let mut pair: [Series; 2] = Default::default();
        for round in 0..args.rounds {
            // Alternate which server goes first.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let (ms, bytes) = list(servers[i].1, &path, pods).await?;
                pair[i].millis.push(ms);
                pair[i].bytes = bytes;
            }
        }
        served_by_cache.push(cache_lists(&cached).await - before);
        results.push(pair);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let renewal_rate = match renewer {
        Some(r) => r.await?? as f64 / renewing_since.elapsed().as_secs_f64(),
        None => 0.0,
    };
    let mut md = String::from("# Lists: watch cache vs etcd\n\n");
    md.push_str(&format!(
        "`cargo xtask bench list` on this machine (2 CPUs), release builds. One real etcd ({etcd_version}) and two \
         API servers on it: one as it runs by default (lists from its watch cache), one with `--watch-cache=false` \
         (every list reads etcd: the baseline, same run). {small} pods in namespace `small` and {big} in `big` \
         (created in {create_s:.1} s); each namespace listed {rounds} times on each server after {WARM_UP} \
         uncounted lists, alternating between the servers. Each list is one HTTPS request (bearer token, JSON), \
         timed to the last byte of the answer; the client and both servers share the 2 CPUs.\n\n",
        small = args.small,
        big = args.big,
        rounds = args.rounds,
    ));
    md.push_str(
        "| pods | list | watch cache p50 / p99 (ms) | etcd p50 / p99 (ms) | p50 ratio (cache ÷ etcd) | p99 ratio | \
         size (MiB) | served by the cache |\n|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (((_, pods, kind, _, _), [c, e]), served) in cases.iter().zip(&results).zip(&served_by_cache) {
        md.push_str(&format!(
            "| {pods} | {kind} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}× | {:.2}× | {:.1} | {served} of {} |\n",
            c.p(50.0),
            c.p(99.0),
            e.p(50.0),
            e.p(99.0),
            c.p(50.0) / e.p(50.0).max(f64::EPSILON),
            c.p(99.0) / e.p(99.0).max(f64::EPSILON),
            c.bytes as f64 / (1024.0 * 1024.0),
            args.rounds,
        ));
    }
    md.push_str(&format!(
        "\nThe last two series run while another client renews 100 Leases round-robin ({renewal_rate:.0} renewals/s \
         measured; 1,000 nodes' kubelets renew about 100/s), so etcd's revision moves past the pods' own, as in \
         any real cluster; the series before run on a quiet etcd.\n\n"
    ));
    md.push_str(
        "\"Served by the cache\" is the cached server's `apiserver_cache_list_total` over the measured lists. \
         A consistent list (no `resourceVersion`) is served from the cache once it holds etcd's current \
         revision. It asks etcd for a progress notification to get there only where etcd sends it in order \
         with the events (3.4.25, 3.5.8 and later). With an older etcd (this one) the cache moves only with \
         events and etcd's periodic progress notifications (every 100 ms as Sluice starts etcd, for \
         collections of 1,000 objects or more): a consistent list the cache is not already current for waits \
         for the next one where that is cheaper than reading etcd (from about 2,000 objects: half the \
         interval on average, against about 25 µs per object from etcd) and is read from etcd otherwise, as \
         Kubernetes does without consistent reads from cache.\n\n\
         What limits both: a list is put together on one core. From etcd, every value is read, decoded \
         and encoded into the answer. The cache holds every object as the JSON a list item is written in, \
         deflated once the change that wrote it is 4,096 changes old (most of these pods), and inflates \
         and copies those bytes into the answer (about 1 µs per object), so it saves the read, the decoding and the encoding; what is left \
         (the inflating, the copy, TLS, sending 11 MiB) has not been profiled. Both servers and the \
         client share the 2 CPUs, which makes the p99 noisy.\n",
    );
    print!("{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, md)?;
    eprintln!("==> wrote {}", args.out.display());
    drop((cached_server, etcd_server, etcd));
    Ok(())
}
