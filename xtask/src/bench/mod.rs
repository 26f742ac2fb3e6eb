//! `cargo xtask bench <name>`: benchmarks (not tests).
//!
//! Each benchmark is one module; it measures its baseline in the same run,
//! prints ratios against it and writes results under `bench-results/`,
//! which the README links.

mod apiserver;
mod dataplane;
mod dns;
mod list;
mod node;
mod rbac;
mod scheduler;
mod scrape;
mod storage;
mod workloads;

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::process::Command;

/// Arguments of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    pub which: Which,
}

/// The available benchmarks.
#[derive(Clone, Copy, ValueEnum)]
pub enum Which {
    /// API server create/get/list/watch latency and throughput.
    Apiserver,
    /// Lists of 1,000 and 10,000 pods from the watch cache vs from etcd.
    List,
    /// eBPF Service load balancing against iptables and IPVS.
    Dataplane,
    /// The cost of flow events: connections/s, p99 and UDP pps with them on vs off.
    FlowEvents,
    /// Failed requests when pods are removed under load: Sluice vs kube-proxy-style iptables.
    ScaleDown,
    /// Pod-to-pod routing only: eBPF routing vs the kernel's, throughput and round trips.
    DataplaneRouting,
    /// NodePort to a backend on another node: source NAT vs direct server return.
    DataplaneDsr,
    /// Scheduler throughput with simulated nodes.
    Scheduler,
    /// Pod startup latency on real nodes.
    Node,
    /// Cluster DNS against dnsmasq with dnsperf at 1,000 and 10,000 Services.
    Dns,
    /// Job completions/s and DaemonSet rollout time with simulated nodes.
    Workloads,
    /// Claim → Running latency and local-volume write throughput on real nodes.
    Storage,
    /// API request latency with RBAC on vs off, with 1,000 Roles and bindings.
    Rbac,
    /// Scrape time of each control-plane component's /metrics at 1,000 pods vs none.
    Scrape,
}

/// Debian packages each benchmark runs, as (command, package); `up` installs
/// the node bench's cluster packages itself.
fn packages(which: Which) -> &'static [(&'static str, &'static str)] {
    match which {
        Which::Apiserver | Which::List | Which::Scheduler | Which::Workloads | Which::Rbac | Which::Scrape => {
            // The test harness's etcd is checked ready with `etcdctl endpoint health`.
            &[("etcd", "etcd-server"), ("etcdctl", "etcd-client")]
        }
        Which::Dataplane | Which::FlowEvents | Which::ScaleDown | Which::DataplaneRouting | Which::DataplaneDsr => &[
            ("ip", "iproute2"),
            ("iperf3", "iperf3"),
            ("iptables-restore", "iptables"),
            ("ipvsadm", "ipvsadm"),
            ("sysctl", "procps"),
            ("trafgen", "netsniff-ng"),
        ],
        Which::Node | Which::Storage => &[],
        Which::Dns => &[("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq-base")],
    }
}

/// Run one benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    crate::util::ensure_packages(packages(args.which))?;
    match args.which {
        Which::Dataplane => dataplane::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::FlowEvents => dataplane::flow_events(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::ScaleDown => dataplane::scale_down(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::DataplaneRouting => dataplane::routing(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::DataplaneDsr => dataplane::dsr(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Scheduler => scheduler::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Apiserver => apiserver::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::List => list::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Node => node::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Dns => dns::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Workloads => workloads::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Storage => storage::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Rbac => rbac::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Scrape => scrape::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
    }
}

/// Builds the API server and the `sluice-bench` driver `bin` in release
/// mode, then runs the driver, which starts its own etcd and API server and
/// writes `bench-results/<report>.md`; `quick_args` are passed with
/// `SLUICE_BENCH_QUICK=1`. `what` says what is measured, for the log.
fn on_an_apiserver(bin: &str, report: &str, what: &str, quick: bool, quick_args: &[&str]) -> Result<()> {
    let root = workspace_root();
    step(&format!("building apiserver and {bin} (release)"));
    util::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sluice-apiserver",
        "--bin",
        "apiserver",
        "-p",
        "sluice-bench",
        "--bin",
        bin,
    ]))?;
    let path = util::target_dir().join("release").join(bin);
    step(&format!("measuring ({what})"));
    let mut cmd = Command::new(&path);
    cmd.current_dir(&root)
        .arg("--out")
        .arg(root.join(format!("bench-results/{report}.md")));
    if quick {
        cmd.args(quick_args);
    }
    util::run(&mut cmd).with_context(|| format!("running {}", path.display()))?;
    step(&format!("wrote bench-results/{report}.md"));
    Ok(())
}

/// Builds every binary a cluster needs plus `sluice-bench` (release, or
/// debug with `SLUICE_BENCH_DEBUG=1`); returns the directory of the built
/// binaries and the profile's name. `what` names the drivers for the log.
fn build_cluster_bins(what: &str) -> Result<(std::path::PathBuf, &'static str)> {
    let root = workspace_root();
    let debug = std::env::var_os("SLUICE_BENCH_DEBUG").is_some();
    let profile = if debug { "debug" } else { "release" };
    step(&format!("building the cluster's binaries and {what} ({profile})"));
    let mut cargo = Command::new("cargo");
    cargo.current_dir(&root).args(["build", "--bins"]);
    for p in [
        "sluice-apiserver",
        "sluice-controllers",
        "sluice-scheduler",
        "sluice-noded",
        "sluice-cni",
        "xtask",
        "sluice-bench",
    ] {
        cargo.args(["-p", p]);
    }
    if !debug {
        cargo.arg("--release");
    }
    util::run(&mut cargo)?;
    Ok((util::target_dir().join(profile), profile))
}

/// Builds the cluster's binaries ([`build_cluster_bins`]), then runs the
/// bench binary `bin`, which starts its own cluster and writes
/// `bench-results/<report>.md`. `quick_args` are passed with
/// `SLUICE_BENCH_QUICK=1`.
fn on_a_cluster(bin: &str, report: &str, quick: bool, quick_args: &[&str]) -> Result<()> {
    let root = workspace_root();
    let (bins, profile) = build_cluster_bins(bin)?;
    let path = bins.join(bin);
    step("measuring (starts a two-node cluster; a few minutes)");
    let out = root.join(format!("bench-results/{report}.md"));
    let mut cmd = Command::new(&path);
    cmd.current_dir(&root)
        .arg("--out")
        .arg(&out)
        .args(["--profile", profile]);
    if quick {
        cmd.args(quick_args);
    }
    util::run(&mut cmd).with_context(|| format!("running {}", path.display()))?;
    step(&format!("wrote bench-results/{report}.md"));
    Ok(())
}
