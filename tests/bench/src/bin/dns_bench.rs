//! `dns-bench`: the cluster DNS server against dnsmasq serving the
//! same names from a hosts file, both on loopback, measured with dnsperf at
//! 1,000 and 10,000 Services. Run by `cargo xtask bench dns`; prints a
//! Markdown report on stdout. Not a test.
//!
//! Each size: N ClusterIP Services (`svc-<i>.ns-<i mod 10>`) go through the
//! same `Snapshot::build` the watches feed (not through an API server), the
//! server answers on 127.0.0.1; dnsmasq gets the same N names in an
//! `--addn-hosts` file (no upstream, no cache limit on hosts data). dnsperf
//! runs twice per server: flat out for throughput (QPS), then at a fixed
//! 5,000 queries/s with per-query output for the latency percentiles; each
//! figure is the median of 3 such runs, the two servers alternating.

use anyhow::{Context, Result};
use serde_json::json;
use sluice_bench::dnsperf::{self, Measure, Target};
use sluice_dns::{DnsConfig, Forwarder, Server, Snapshot, Zone};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Measurements per figure (the median is reported).
const RUNS: u32 = 3;
use std::time::Duration;

fn names(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
            (format!("svc-{i}.ns-{}.svc.cluster.local", i % 10), ip)
        })
        .collect()
}

fn snapshot(n: usize) -> Snapshot {
    let services: Vec<k8s_openapi::api::core::v1::Service> = names(n)
        .iter()
        .enumerate()
        .map(|(i, (_, ip))| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 10)},
                "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}]}
            }))
            .expect("service json")
        })
        .collect();
    Snapshot::build(&services, &[], &[])
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn dnsmasq(dir: &Path, n: usize) -> Result<(std::process::Child, SocketAddr)> {
    let hosts = dir.join(format!("hosts-{n}"));
    let mut text = String::new();
    for (name, ip) in names(n) {
        writeln!(text, "{ip} {name}")?;
    }
    std::fs::write(&hosts, text)?;
    let port = free_port()?;
    let child = Command::new("dnsmasq")
        .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces"])
        .args([
            "--listen-address=127.0.0.1",
            "--local-ttl=5",
            "--user=root",
            "--pid-file=",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dnsmasq")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 3 } else { 10 };
    let dir = tempfile_dir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut report = format!(
        "# Cluster DNS benchmark\n\n\
         dnsperf on loopback (4 clients, 200 outstanding queries; latency at a fixed 5,000 q/s; \
         median of {RUNS} runs, the servers alternating), \
         random A queries for existing Service names. Sluice: the `sluice-dns` server fed by \
         `Snapshot::build` of N Service objects. Baseline: dnsmasq with the same names in an \
         `--addn-hosts` file. Build: {build}; {cpus} CPUs shared by server and dnsperf.\n\n\
         | Services | server | QPS | vs dnsmasq | p50 µs | p99 µs | lost |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for n in [1_000usize, 10_000] {
        let queries = dir.join(format!("queries-{n}"));
        let mut text = String::new();
        let all = names(n);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            writeln!(text, "{} A", all[(x % n as u64) as usize].0)?;
        }
        std::fs::write(&queries, text)?;

        let zone = Zone::new("cluster.local", Forwarder::new(&[]));
        zone.set_snapshot(snapshot(n));
        let server = rt.block_on(Server::bind(
            &DnsConfig {
                domain: "cluster.local".into(),
                listen: "127.0.0.1:0".parse()?,
            },
            zone,
        ))?;
        let (mut child, addr) = dnsmasq(&dir, n)?;
        let ours = Target {
            server: server.local_addr(),
            netns: None,
        };
        let theirs = Target {
            server: addr,
            netns: None,
        };
        let (mut sluice, mut base): (Vec<Measure>, Vec<Measure>) = (Vec::new(), Vec::new());
        let mut failed = None;
        for _ in 0..RUNS {
            match (
                dnsperf::measure(&ours, &queries, seconds, 5_000),
                dnsperf::measure(&theirs, &queries, seconds, 5_000),
            ) {
                (Ok(a), Ok(b)) => {
                    sluice.push(a);
                    base.push(b);
                }
                (Err(e), _) | (_, Err(e)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        rt.block_on(async { server.shutdown() });
        if let Some(e) = failed {
            return Err(e);
        }
        let mut sluice = sluice.into_iter();
        let sluice = dnsperf::median_of(RUNS, || sluice.next().context("a run"))?;
        let mut base = base.into_iter();
        let base = dnsperf::median_of(RUNS, || base.next().context("a run"))?;
        for (name, m) in [("sluice-dns", &sluice), ("dnsmasq (file)", &base)] {
            writeln!(
                report,
                "| {n} | {name} | {:.0} | {:.2}x | {:.0} | {:.0} | {} |",
                m.qps,
                m.qps / base.qps,
                m.p50_us,
                m.p99_us,
                m.lost
            )?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print!("{report}");
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-dns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
