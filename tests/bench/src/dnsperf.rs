//! Running `dnsperf` (Debian's) against one DNS server and reading its
//! figures: throughput flat out, then per-query latencies at a fixed rate.
//! Optionally from inside another network namespace (`nsenter --net`), which
//! is how the in-pod phase queries the cluster DNS Service from a pod.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where dnsperf runs from and which server it asks.
pub struct Target {
    /// The server's address.
    pub server: SocketAddr,
    /// A network namespace to run dnsperf in (e.g. `/proc/<pid>/ns/net` of a
    /// pod's process); the caller's own when `None`.
    pub netns: Option<PathBuf>,
}

/// One measurement.
pub struct Measure {
    /// Queries answered per second, flat out.
    pub qps: f64,
    /// dnsperf's "Queries lost" line, e.g. `20 (0.00%)`.
    pub lost: String,
    /// Latency percentiles at the fixed rate, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
}

/// dnsperf's output field after `label`.
fn field(out: &str, label: &str) -> Option<String> {
    out.lines()
        .find(|l| l.trim_start().starts_with(label))
        .map(|l| l.trim_start()[label.len()..].trim().to_string())
}

fn run(target: &Target, queries: &Path, seconds: u32, rate: Option<u32>) -> Result<String> {
    let mut cmd = match &target.netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("dnsperf");
            c
        }
        None => Command::new("dnsperf"),
    };
    cmd.args([
        "-s",
        &target.server.ip().to_string(),
        "-p",
        &target.server.port().to_string(),
    ])
    .arg("-d")
    .arg(queries)
    .args(["-l", &seconds.to_string(), "-c", "4", "-T", "1", "-q", "200", "-t", "2"]);
    if let Some(q) = rate {
        cmd.args(["-Q", &q.to_string(), "-v"]);
    }
    let out = cmd.output().context("running dnsperf")?;
    if !out.status.success() {
        bail!("dnsperf failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Throughput flat out, then latencies at `rate` queries/s, `seconds` each.
pub fn measure(target: &Target, queries: &Path, seconds: u32, rate: u32) -> Result<Measure> {
    let out = run(target, queries, seconds, None)?;
    let qps: f64 = field(&out, "Queries per second:")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no QPS in dnsperf output:\n{out}"))?;
    let lost = field(&out, "Queries lost:").unwrap_or_default();
    // Per-query lines of -v end with the latency in seconds.
    let verbose = run(target, queries, seconds, Some(rate))?;
    let mut lat: Vec<f64> = verbose
        .lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] * 1e6
    };
    Ok(Measure {
        qps,
        lost,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    })
}

/// The median of `runs` measurements by QPS (the latency figures come from
/// that same run): single runs on a shared 2-core machine are noisy.
pub fn median_of(runs: u32, mut one: impl FnMut() -> Result<Measure>) -> Result<Measure> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        all.push(one()?);
    }
    all.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    let mid = all.len() / 2;
    Ok(all.swap_remove(mid))
}
