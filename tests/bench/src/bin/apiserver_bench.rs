//! `apiserver-bench`: the measuring half of `cargo xtask bench apiserver`
//! (not a test).
//!
//! Starts a real etcd and API server (release build) on free ports and
//! measures, from concurrent clients: Pod creates, gets and lists (latency
//! p50/p99 and throughput), then write-to-watch-event delay with many
//! watchers under a paced write load. The baseline, measured in the same
//! run, is the same writes/reads done directly against etcd (what the API
//! server adds on top of its store). Then, in the same run, the same
//! create/list/watch measurements for a custom resource (a CRD the bench
//! creates, with a structural schema and a CEL rule) beside ConfigMap, the
//! built-in kind closest in shape, with the ratios. Last, listing and
//! watching all the pods as JSON vs protobuf (`application/vnd.kubernetes.protobuf`),
//! decoded into typed structs as clients do (k8s-openapi, k8s-pb). Writes a Markdown report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::TryStreamExt;
use serde_json::{json, Value};
use sluice_tests::{ControlPlane, RawClient};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Pods to create.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Watchers during the watch phase.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Paced write rate during the watch phase (writes/s).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of the watch phase (s).
    #[arg(long, default_value_t = 10)]
    watch_seconds: u64,
    /// Objects created per kind in the ConfigMap vs custom resource phase.
    #[arg(long, default_value_t = 5_000)]
    kind_objects: usize,
    /// Watchers per kind in that phase.
    #[arg(long, default_value_t = 20)]
    kind_watchers: usize,
    /// Paced write rate per kind in that phase (writes/s).
    #[arg(long, default_value_t = 200)]
    kind_rate: u64,
    /// Duration of each kind's paced watch phase (s).
    #[arg(long, default_value_t = 5)]
    kind_seconds: u64,
    /// Lists and watches of all pods per encoding in the JSON vs protobuf phase.
    #[arg(long, default_value_t = 20)]
    encoding_rounds: usize,
    /// Concurrent clients in that phase.
    #[arg(long, default_value_t = 4)]
    encoding_clients: usize,
    /// Report path.
    #[arg(long, default_value = "bench-results/apiserver.md")]
    out: PathBuf,
}

#[derive(Default, Clone)]
struct Stats {
    samples: Vec<f64>,
    elapsed: f64,
    errors: usize,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        sluice_bench::stats::percentile(&self.samples, p)
    }
    fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed
    }
    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {:.0}/s | {:.1} | {:.1} | {} |",
            self.samples.len(),
            self.throughput(),
            self.pct(50.0),
            self.pct(99.0),
            self.errors
        )
    }
}

fn pod(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.35.0", "ports": [{"containerPort": 8080}],
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

/// Run `n` operations from `clients` concurrent workers; `op(i)` returns whether it succeeded.
async fn run_concurrent<F, Fut>(n: usize, clients: usize, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = Stats::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                if op(w, i).await {
                    st.samples.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    st.errors += 1;
                }
            }
            st
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let st = t.await.unwrap();
        all.samples.extend(st.samples);
        all.errors += st.errors;
    }
    all.elapsed = started.elapsed().as_secs_f64();
    all
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("==> starting etcd and the API server");
    let cp = ControlPlane::start_with(&["--event-ttl", "1h"]).await;
    let mut raws: Vec<RawClient> = Vec::new();
    for _ in 0..args.clients {
        raws.push(cp.raw().await);
    }
    let raws = Arc::new(raws);

    // Baseline: the same objects written to and read from etcd directly.
    eprintln!(
        "==> baseline: {} direct etcd puts/gets from {} clients",
        args.pods, args.clients
    );
    // The harness's etcd speaks TLS with client certificates of its own CA.
    let tls = cp.etcd.tls();
    let etcd_tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&tls.ca)?))
        .identity(etcd_client::Identity::from_pem(
            std::fs::read(&tls.cert)?,
            std::fs::read(&tls.key)?,
        ));
    let etcd = etcd_client::Client::connect(
        [cp.etcd.url()],
        Some(etcd_client::ConnectOptions::new().with_tls(etcd_tls)),
    )
    .await?;
    let body = Arc::new(serde_json::to_vec(&pod(0))?);
    let e = etcd.clone();
    let b = body.clone();
    let base_put = run_concurrent(args.pods, args.clients, move |_, i| {
        let (mut e, b) = (e.clone(), b.clone());
        async move {
            let key = format!("/bench-baseline/{i:05}");
            let txn = etcd_client::Txn::new()
                .when([etcd_client::Compare::version(
                    key.as_str(),
                    etcd_client::CompareOp::Equal,
                    0,
                )])
                .and_then([etcd_client::TxnOp::put(key.as_str(), b.as_slice(), None)]);
            e.txn(txn).await.is_ok()
        }
    })
    .await;
    let e = etcd.clone();
    let base_get = run_concurrent(args.pods, args.clients, move |_, i| {
        let mut e = e.clone();
        async move { e.get(format!("/bench-baseline/{i:05}"), None).await.is_ok() }
    })
    .await;
    etcd.clone()
        .delete(
            "/bench-baseline/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await?;

    eprintln!("==> creating {} pods from {} clients", args.pods, args.clients);
    let r = raws.clone();
    let create = run_concurrent(args.pods, args.clients, move |w, i| {
        let raw = r[w].clone();
        async move { raw.post("/api/v1/namespaces/default/pods", &pod(i)).await.status == 201 }
    })
    .await;
    eprintln!("==> getting {} pods", args.pods);
    let r = raws.clone();
    let get = run_concurrent(args.pods, args.clients, move |w, i| {
        let raw = r[w].clone();
        async move {
            raw.get(&format!("/api/v1/namespaces/default/pods/bench-{i:05}"))
                .await
                .status
                == 200
        }
    })
    .await;
    eprintln!("==> listing");
    let r = raws.clone();
    let list_all = run_concurrent(20, 4, move |w, _| {
        let raw = r[w].clone();
        async move { raw.get("/api/v1/namespaces/default/pods").await.status == 200 }
    })
    .await;
    let r = raws.clone();
    let list_sel = run_concurrent(200, 8, move |w, i| {
        let raw = r[w].clone();
        async move {
            raw.get(&format!(
                "/api/v1/namespaces/default/pods?labelSelector=shard%3D{}&limit=100",
                i % 10
            ))
            .await
            .status
                == 200
        }
    })
    .await;
    let r = raws.clone();
    let list_page = run_concurrent(200, 8, move |w, _| {
        let raw = r[w].clone();
        async move { raw.get("/api/v1/namespaces/default/pods?limit=500").await.status == 200 }
    })
    .await;

    // Watch phase: watchers on a namespace, a paced writer creating ConfigMaps stamped with the send time.
    eprintln!(
        "==> watch: {} watchers, {} writes/s for {}s",
        args.watchers, args.rate, args.watch_seconds
    );
    raws[0]
        .post("/api/v1/namespaces", &json!({"metadata": {"name": "bench-watch"}}))
        .await;
    let rv = raws[0].get("/api/v1/namespaces/bench-watch/configmaps").await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let delays = Arc::new(Mutex::new(Vec::<f64>::new()));
    let expected = (args.rate * args.watch_seconds) as usize;
    let mut watch_tasks = Vec::new();
    let client = cp.client().await;
    for _ in 0..args.watchers {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client.clone(), "bench-watch");
        let delays = delays.clone();
        let rv = rv.clone();
        let secs = args.watch_seconds;
        watch_tasks.push(tokio::spawn(async move {
            let mut wp = kube::api::WatchParams::default().timeout((secs + 30) as u32);
            wp.bookmarks = false;
            let stream = api.watch(&wp, &rv).await.expect("watch");
            let mut stream = std::pin::pin!(stream);
            let mut local = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs + 20);
            while local.len() < expected {
                match tokio::time::timeout_at(deadline, stream.try_next()).await {
                    Ok(Ok(Some(kube::api::WatchEvent::Added(cm)))) => {
                        let now = now_nanos();
                        if let Some(sent) = cm
                            .data
                            .as_ref()
                            .and_then(|d| d.get("sent"))
                            .and_then(|s| s.parse::<u128>().ok())
                        {
                            local.push(now.saturating_sub(sent) as f64 / 1e6);
                        }
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            delays.lock().await.extend(local);
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interval = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let (tx, rx) = async_channel(expected);
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0..expected {
            tick.tick().await;
            if tx.send(i).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..args.clients {
        let raw = raws[w].clone();
        let rx = rx.clone();
        writers.push(tokio::spawn(async move {
            let mut st = Stats::default();
            while let Ok(i) = rx.recv().await {
                let body =
                    json!({"metadata": {"name": format!("w-{i:06}")}, "data": {"sent": now_nanos().to_string()}});
                let t = Instant::now();
                if raw
                    .post("/api/v1/namespaces/bench-watch/configmaps", &body)
                    .await
                    .status
                    == 201
                {
                    st.samples.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    st.errors += 1;
                }
            }
            st
        }));
    }
    producer.await?;
    let mut paced = Stats::default();
    for w in writers {
        let st = w.await?;
        paced.samples.extend(st.samples);
        paced.errors += st.errors;
    }
    paced.elapsed = started.elapsed().as_secs_f64();
    for t in watch_tasks {
        let _ = t.await;
    }
    let delays = Stats {
        samples: delays.lock().await.clone(),
        elapsed: paced.elapsed,
        errors: 0,
    };
    let delivered = delays.samples.len();

    let report = format!(
        "# API server benchmark\n\n\
Command: `cargo xtask bench apiserver` ({} pods, {} concurrent clients, {} watchers, paced writes {}/s for {} s).\n\
Machine: 2 cores shared by etcd {}, the API server (release build) and the clients; HTTPS with bearer tokens, etcd over TLS with client certificates (the baseline too).\n\
Not a test: figures vary with load on the machine.\n\n\
## Throughput and latency (ms)\n\n\
| operation | count | throughput | p50 | p99 | errors |\n|---|---|---|---|---|---|\n\
{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n\n\
## Against the baseline (same run)\n\n\
| | API server | etcd directly | ratio |\n|---|---|---|---|\n\
| create p99 (ms) | {:.1} | {:.1} | {:.1}x |\n\
| create throughput (/s) | {:.0} | {:.0} | {:.2}x |\n\
| get p99 (ms) | {:.1} | {:.1} | {:.1}x |\n\
| get throughput (/s) | {:.0} | {:.0} | {:.2}x |\n\n\
## Watch delay at {}/s paced writes\n\n\
Write-to-event delay over {} watchers: p50 {:.1} ms, p99 {:.1} ms ({} of {} expected events delivered).\n\
Mutating latency during the paced phase: p50 {:.1} ms, p99 {:.1} ms, achieved {:.0} writes/s.\n\n\
Goals (issue 2): p99 mutating latency <= 50 ms and p99 watch delay <= 50 ms at 1,000 writes/s: \
mutating {}, watch delay {}.\n",
        args.pods,
        args.clients,
        args.watchers,
        args.rate,
        args.watch_seconds,
        String::from_utf8_lossy(&std::process::Command::new("etcd").arg("--version").output()?.stdout)
            .lines()
            .next()
            .unwrap_or(""),
        base_put.row("etcd txn put (baseline)"),
        base_get.row("etcd get (baseline)"),
        create.row("create pod"),
        get.row("get pod"),
        list_all.row(&format!("list all {} pods", args.pods)),
        list_sel.row("list labelSelector (1/10), limit 100"),
        list_page.row("list first page, limit 500"),
        paced.row("paced create configmap (watch phase)"),
        create.pct(99.0),
        base_put.pct(99.0),
        create.pct(99.0) / base_put.pct(99.0),
        create.throughput(),
        base_put.throughput(),
        create.throughput() / base_put.throughput(),
        get.pct(99.0),
        base_get.pct(99.0),
        get.pct(99.0) / base_get.pct(99.0),
        get.throughput(),
        base_get.throughput(),
        get.throughput() / base_get.throughput(),
        args.rate,
        args.watchers,
        delays.pct(50.0),
        delays.pct(99.0),
        delivered,
        expected * args.watchers,
        paced.pct(50.0),
        paced.pct(99.0),
        paced.throughput(),
        if paced.pct(99.0) <= 50.0 { "met" } else { "NOT met" },
        if delays.pct(99.0) <= 50.0 && delivered == expected * args.watchers {
            "met"
        } else {
            "NOT met"
        },
    );
    let report = report + &kinds::run(&cp, raws.clone(), &args).await;
    let report = report + &encodings::run(&cp, &args).await;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &report)?;
    println!("{report}");
    Ok(())
}

/// A tiny multi-consumer channel on tokio primitives.
fn async_channel(cap: usize) -> (tokio::sync::mpsc::Sender<usize>, SharedReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap.max(1));
    (tx, SharedReceiver(Arc::new(Mutex::new(rx))))
}

#[derive(Clone)]
struct SharedReceiver(Arc<Mutex<tokio::sync::mpsc::Receiver<usize>>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<usize, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

/// Custom resource beside ConfigMap: the same creates, lists and paced
/// watched writes for both kinds, in one run, on one API server.
mod kinds {
    use super::{now_nanos, run_concurrent, Args, Stats};
    use futures::TryStreamExt;
    use serde_json::{json, Value};
    use sluice_tests::{ControlPlane, RawClient};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::sync::Mutex;

    const NS: &str = "bench-kinds";
    const CRD: &str = "benchobjects.bench.sluice.dev";

    /// One kind under test.
    struct Kind {
        label: &'static str,
        collection: String,
        resource: kube::api::ApiResource,
        /// The object number `i`, stamped with the send time.
        body: fn(usize, u128) -> Value,
        /// Where the send time is in a watched object (JSON pointer).
        sent_at: &'static str,
    }

    /// What one kind measured.
    struct Measured {
        create: Stats,
        list: Stats,
        list_selector: Stats,
        paced: Stats,
        delays: Stats,
        delivered: usize,
        expected: usize,
    }

    fn configmap(i: usize, sent: u128) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": format!("k-{i:06}"), "labels": {"shard": (i % 10).to_string()}},
               "data": {"sent": sent.to_string(), "mode": "blue", "level": "info"}})
    }

    fn custom(i: usize, sent: u128) -> Value {
        json!({"apiVersion": "bench.sluice.dev/v1", "kind": "BenchObject",
               "metadata": {"name": format!("k-{i:06}"), "labels": {"shard": (i % 10).to_string()}},
               "spec": {"sent": sent.to_string(), "shard": i % 10, "data": {"mode": "blue", "level": "info"}}})
    }

    /// A CRD shaped like the objects operators install: structural schema,
    /// defaults, a CEL rule, printer columns, status subresource.
    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD},
            "spec": {
                "group": "bench.sluice.dev",
                "scope": "Namespaced",
                "names": {"plural": "benchobjects", "singular": "benchobject", "kind": "BenchObject", "listKind": "BenchObjectList"},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Shard", "type": "integer", "jsonPath": ".spec.shard"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object",
                                 "properties": {
                                     "sent": {"type": "string"},
                                     "shard": {"type": "integer", "minimum": 0},
                                     "replicas": {"type": "integer", "default": 1},
                                     "data": {"type": "object", "additionalProperties": {"type": "string"}}},
                                 "x-kubernetes-validations": [{"rule": "self.shard < 10", "message": "shard must be below 10"}]},
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}
                }]
            }
        })
    }

    /// Create the CRD and wait until its collection is served; an error
    /// (e.g. CRDs not served by this build) is reported, not fatal.
    async fn install(raw: &RawClient, collection: &str) -> Result<(), String> {
        let r = raw
            .post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd())
            .await;
        if r.status != 201 {
            return Err(format!("creating the CRD: HTTP {} {}", r.status, r.text()));
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if raw.get(collection).await.status == 200 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the CRD's collection was not served within 30 s".into())
    }

    async fn measure(kind: Arc<Kind>, raws: Arc<Vec<RawClient>>, client: kube::Client, args: &Args) -> Measured {
        let clients = raws.len();
        eprintln!(
            "==> {}: creating {} from {} clients",
            kind.label, args.kind_objects, clients
        );
        let (r, k) = (raws.clone(), kind.clone());
        let create = run_concurrent(args.kind_objects, clients, move |w, i| {
            let (raw, k) = (r[w].clone(), k.clone());
            async move { raw.post(&k.collection, &(k.body)(i, now_nanos())).await.status == 201 }
        })
        .await;
        eprintln!("==> {}: listing", kind.label);
        let (r, k) = (raws.clone(), kind.clone());
        let list = run_concurrent(20, 4.min(clients), move |w, _| {
            let (raw, k) = (r[w].clone(), k.clone());
            async move { raw.get(&k.collection).await.status == 200 }
        })
        .await;
        let (r, k) = (raws.clone(), kind.clone());
        let list_selector = run_concurrent(200, 8.min(clients), move |w, i| {
            let (raw, k) = (r[w].clone(), k.clone());
            async move {
                raw.get(&format!("{}?labelSelector=shard%3D{}&limit=100", k.collection, i % 10))
                    .await
                    .status
                    == 200
            }
        })
        .await;

        eprintln!(
            "==> {}: watch, {} watchers, {} writes/s for {} s",
            kind.label, args.kind_watchers, args.kind_rate, args.kind_seconds
        );
        let rv = raws[0].get(&kind.collection).await.json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let expected = (args.kind_rate * args.kind_seconds) as usize;
        let delays = Arc::new(Mutex::new(Vec::<f64>::new()));
        let mut watchers = Vec::new();
        for _ in 0..args.kind_watchers {
            let api: kube::Api<kube::api::DynamicObject> =
                kube::Api::namespaced_with(client.clone(), NS, &kind.resource);
            let (delays, rv, k) = (delays.clone(), rv.clone(), kind.clone());
            let secs = args.kind_seconds;
            watchers.push(tokio::spawn(async move {
                let mut wp = kube::api::WatchParams::default().timeout((secs + 30) as u32);
                wp.bookmarks = false;
                let Ok(stream) = api.watch(&wp, &rv).await else { return };
                let mut stream = std::pin::pin!(stream);
                let mut local = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(secs + 20);
                while local.len() < expected {
                    match tokio::time::timeout_at(deadline, stream.try_next()).await {
                        Ok(Ok(Some(kube::api::WatchEvent::Added(obj)))) => {
                            let now = now_nanos();
                            if let Some(sent) = obj
                                .data
                                .pointer(k.sent_at)
                                .and_then(Value::as_str)
                                .and_then(|s| s.parse::<u128>().ok())
                            {
                                local.push(now.saturating_sub(sent) as f64 / 1e6);
                            }
                        }
                        Ok(Ok(Some(_))) => {}
                        _ => break,
                    }
                }
                delays.lock().await.extend(local);
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Paced writes: one tick per object, spread over the clients.
        let interval = Duration::from_nanos(1_000_000_000 / args.kind_rate.max(1));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut writers = Vec::new();
        let (tick_tx, tick_rx) = tokio::sync::mpsc::channel::<()>(expected.max(1));
        let tick_rx = Arc::new(Mutex::new(tick_rx));
        let producer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..expected {
                tick.tick().await;
                if tick_tx.send(()).await.is_err() {
                    break;
                }
            }
        });
        for w in 0..clients {
            let (raw, k, next, rx) = (raws[w].clone(), kind.clone(), next.clone(), tick_rx.clone());
            let base = args.kind_objects;
            writers.push(tokio::spawn(async move {
                let mut st = Stats::default();
                while rx.lock().await.recv().await.is_some() {
                    let i = base + next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let t = Instant::now();
                    if raw.post(&k.collection, &(k.body)(i, now_nanos())).await.status == 201 {
                        st.samples.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        st.errors += 1;
                    }
                }
                st
            }));
        }
        let _ = producer.await;
        let mut paced = Stats::default();
        for w in writers {
            if let Ok(st) = w.await {
                paced.samples.extend(st.samples);
                paced.errors += st.errors;
            }
        }
        paced.elapsed = started.elapsed().as_secs_f64();
        for t in watchers {
            let _ = t.await;
        }
        let samples = delays.lock().await.clone();
        let delivered = samples.len();
        Measured {
            create,
            list,
            list_selector,
            paced,
            delays: Stats {
                samples,
                elapsed: 0.0,
                errors: 0,
            },
            delivered,
            expected: expected * args.kind_watchers,
        }
    }

    /// Measure both kinds and return the report section.
    pub async fn run(cp: &ControlPlane, raws: Arc<Vec<RawClient>>, args: &Args) -> String {
        let client = cp.client().await;
        raws[0]
            .post("/api/v1/namespaces", &json!({"metadata": {"name": NS}}))
            .await;
        let cm = Arc::new(Kind {
            label: "ConfigMap",
            collection: format!("/api/v1/namespaces/{NS}/configmaps"),
            resource: kube::api::ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            body: configmap,
            sent_at: "/data/sent",
        });
        let cr = Arc::new(Kind {
            label: "custom resource",
            collection: format!("/apis/bench.sluice.dev/v1/namespaces/{NS}/benchobjects"),
            resource: kube::api::ApiResource {
                group: "bench.sluice.dev".into(),
                version: "v1".into(),
                api_version: "bench.sluice.dev/v1".into(),
                kind: "BenchObject".into(),
                plural: "benchobjects".into(),
            },
            body: custom,
            sent_at: "/spec/sent",
        });
        let header = format!(
            "\n## Custom resource beside ConfigMap (same run)\n\n\
{} objects of each kind created from {} clients, 20 full lists and 200 labelSelector lists (limit 100), \
then {} watchers while {} writes/s are paced for {} s. The custom resource is a CRD created by the bench \
(`{CRD}`: structural schema, a default, a CEL rule, a printer column, status subresource).\n\n",
            args.kind_objects,
            raws.len(),
            args.kind_watchers,
            args.kind_rate,
            args.kind_seconds
        );
        if let Err(e) = install(&raws[0], &cr.collection).await {
            eprintln!("==> custom resources not measured: {e}");
            return format!("{header}Not measured: {e}\n");
        }
        let a = measure(cm, raws.clone(), client.clone(), args).await;
        let b = measure(cr, raws, client, args).await;
        let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
        format!(
            "{header}| | ConfigMap | custom resource | ratio (CR / ConfigMap) |\n|---|---|---|---|\n\
| create throughput (/s) | {:.0} | {:.0} | {:.2}x |\n\
| create p50 / p99 (ms) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}x (p99) |\n\
| full list p50 / p99 (ms) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}x (p99) |\n\
| full list throughput (/s) | {:.1} | {:.1} | {:.2}x |\n\
| labelSelector list p99 (ms) | {:.1} | {:.1} | {:.2}x |\n\
| paced write p99 (ms) | {:.1} | {:.1} | {:.2}x |\n\
| watch delay p50 / p99 (ms) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}x (p99) |\n\
| watch events delivered | {} of {} | {} of {} | |\n\
| errors (create, list, paced) | {}, {}, {} | {}, {}, {} | |\n",
            a.create.throughput(),
            b.create.throughput(),
            ratio(b.create.throughput(), a.create.throughput()),
            a.create.pct(50.0),
            a.create.pct(99.0),
            b.create.pct(50.0),
            b.create.pct(99.0),
            ratio(b.create.pct(99.0), a.create.pct(99.0)),
            a.list.pct(50.0),
            a.list.pct(99.0),
            b.list.pct(50.0),
            b.list.pct(99.0),
            ratio(b.list.pct(99.0), a.list.pct(99.0)),
            a.list.throughput(),
            b.list.throughput(),
            ratio(b.list.throughput(), a.list.throughput()),
            a.list_selector.pct(99.0),
            b.list_selector.pct(99.0),
            ratio(b.list_selector.pct(99.0), a.list_selector.pct(99.0)),
            a.paced.pct(99.0),
            b.paced.pct(99.0),
            ratio(b.paced.pct(99.0), a.paced.pct(99.0)),
            a.delays.pct(50.0),
            a.delays.pct(99.0),
            b.delays.pct(50.0),
            b.delays.pct(99.0),
            ratio(b.delays.pct(99.0), a.delays.pct(99.0)),
            a.delivered,
            a.expected,
            b.delivered,
            b.expected,
            a.create.errors,
            a.list.errors,
            a.paced.errors,
            b.create.errors,
            b.list.errors,
            b.paced.errors,
        )
    }
}

/// JSON vs protobuf in the same run: listing all the pods created above and
/// watching them from the start (every pod an ADDED event), each body or
/// event decoded into typed structs as clients do.
mod encodings {
    use super::*;
    use http_body_util::BodyExt;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_pb::api::core::v1::{Pod as PbPod, PodList};
    use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
    use k8s_pb::apimachinery::pkg::runtime::Unknown;
    use prost::Message;

    const ENCODINGS: &[(&str, &str)] = &[("JSON", "application/json"), ("protobuf", sluice_protobuf::MEDIA_TYPE)];
    const PODS: &str = "/api/v1/namespaces/default/pods";

    fn request(path: &str, accept: &str) -> http::Request<kube::client::Body> {
        http::Request::builder()
            .uri(path)
            .header(http::header::ACCEPT, accept)
            .body(kube::client::Body::from(Vec::new()))
            .expect("request")
    }

    /// One list of every pod, decoded into typed structs as clients do
    /// (k8s-openapi for JSON, k8s-pb for protobuf); the item count and body size.
    async fn list(c: &kube::Client, accept: &str) -> Option<(usize, usize)> {
        let resp = c.send(request(PODS, accept)).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let n = if accept == "application/json" {
            serde_json::from_slice::<k8s_openapi::List<Pod>>(&body)
                .ok()?
                .items
                .len()
        } else {
            PodList::decode(unknown_raw(&body)?.as_slice()).ok()?.items.len()
        };
        Some((n, body.len()))
    }

    /// The object bytes of a protobuf body (`k8s\0` + runtime.Unknown).
    fn unknown_raw(body: &[u8]) -> Option<Vec<u8>> {
        Unknown::decode(body.strip_prefix(sluice_protobuf::MAGIC.as_slice())?)
            .ok()?
            .raw
    }

    /// One protobuf watch frame as a typed Pod.
    fn pod_event(frame: &[u8]) -> Option<PbPod> {
        let raw = WatchEvent::decode(frame).ok()?.object?.raw?;
        PbPod::decode(unknown_raw(&raw)?.as_slice()).ok()
    }

    /// A watch from the start, read until `pods` events arrived.
    async fn watch(c: &kube::Client, accept: &str, pods: usize) -> bool {
        let path = format!("{PODS}?watch=1&timeoutSeconds=300");
        let Ok(resp) = c.send(request(&path, accept)).await else {
            return false;
        };
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = 0;
        while seen < pods {
            let Some(Ok(frame)) = body.frame().await else {
                return false;
            };
            let Ok(data) = frame.into_data() else { continue };
            buf.extend_from_slice(&data);
            if accept == "application/json" {
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    if serde_json::from_slice::<k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent<Pod>>(&line)
                        .is_ok()
                    {
                        seen += 1;
                    }
                }
            } else {
                while let Some(frame) = sluice_protobuf::next_frame(&mut buf) {
                    if pod_event(&frame).is_some() {
                        seen += 1;
                    }
                }
            }
        }
        true
    }

    pub async fn run(cp: &ControlPlane, args: &Args) -> String {
        let client = cp.client().await;
        let mut rows = Vec::new();
        let mut summary = Vec::new();
        for (name, accept) in ENCODINGS {
            eprintln!(
                "==> {name}: {} lists and watches of {} pods",
                args.encoding_rounds, args.pods
            );
            let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
            let (c, s, pods) = (client.clone(), sizes.clone(), args.pods);
            let lists = run_concurrent(args.encoding_rounds, args.encoding_clients, move |_, _| {
                let (c, s) = (c.clone(), s.clone());
                async move {
                    match list(&c, accept).await {
                        Some((n, bytes)) if n >= pods => {
                            s.lock().expect("sizes").push(bytes);
                            true
                        }
                        _ => false,
                    }
                }
            })
            .await;
            let c = client.clone();
            let watches = run_concurrent(args.encoding_rounds, args.encoding_clients, move |_, _| {
                let c = c.clone();
                async move { watch(&c, accept, pods).await }
            })
            .await;
            let bytes = sizes.lock().expect("sizes").first().copied().unwrap_or(0);
            rows.push(lists.row(&format!(
                "list all {pods} pods, {name} ({:.1} MiB)",
                bytes as f64 / 1048576.0
            )));
            rows.push(watches.row(&format!("watch from the start until {pods} ADDED events, {name}")));
            summary.push((lists, watches, bytes));
        }
        let ratio = |f: &dyn Fn(&(Stats, Stats, usize)) -> f64| f(&summary[0]) / f(&summary[1]);
        format!(
            "\n## JSON vs protobuf (same run, {} pods, {} concurrent clients, bodies decoded into typed structs: k8s-openapi for JSON, k8s-pb for protobuf)\n\n\
| operation | count | throughput | p50 | p99 | errors |\n|---|---|---|---|---|---|\n{}\n\n\
JSON / protobuf: list p99 {:.2}x, list throughput {:.2}x, watch p99 {:.2}x, body size {:.2}x.\n",
            args.pods,
            args.encoding_clients,
            rows.join("\n"),
            ratio(&|s| s.0.pct(99.0)),
            ratio(&|s| s.0.throughput()),
            ratio(&|s| s.1.pct(99.0)),
            ratio(&|s| s.2 as f64),
        )
    }
}
