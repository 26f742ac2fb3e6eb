//! `cargo xtask bench <name>`: benchmarks (not tests).
//!
//! Each benchmark is one module; it measures its baseline in the same run,
//! prints ratios against it and writes results under `bench-results/`,
//! which the README links.

mod apiserver;
mod dataplane;
mod dns;
mod node;
mod scheduler;
mod workloads;

use anyhow::Result;
use clap::{Args, ValueEnum};

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
    /// eBPF Service load balancing against iptables and IPVS.
    Dataplane,
    /// Scheduler throughput with simulated nodes.
    Scheduler,
    /// Pod startup latency on real nodes.
    Node,
    /// Cluster DNS against dnsmasq with dnsperf at 1,000 and 10,000 Services.
    Dns,
    /// Job completions/s and DaemonSet rollout time with simulated nodes.
    Workloads,
}

/// Debian packages each benchmark runs, as (command, package); `up` installs
/// the node bench's cluster packages itself.
fn packages(which: Which) -> &'static [(&'static str, &'static str)] {
    match which {
        Which::Apiserver | Which::Scheduler | Which::Workloads => &[("etcd", "etcd-server")],
        Which::Dataplane => &[
            ("ip", "iproute2"),
            ("iperf3", "iperf3"),
            ("iptables-restore", "iptables"),
            ("ipvsadm", "ipvsadm"),
            ("sysctl", "procps"),
        ],
        Which::Node => &[],
        Which::Dns => &[("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq-base")],
    }
}

/// Run one benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    crate::util::ensure_packages(packages(args.which))?;
    match args.which {
        Which::Dataplane => dataplane::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Scheduler => scheduler::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Apiserver => apiserver::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Node => node::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Dns => dns::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Workloads => workloads::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
    }
}
