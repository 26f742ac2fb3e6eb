//! `cargo xtask bench <name>`: benchmarks (not tests).
//!
//! Each benchmark is one module; it measures its baseline in the same run,
//! prints ratios against it and writes results under `bench-results/`,
//! which the README links.

mod apiserver;
mod dataplane;
mod node;
mod scheduler;

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
}

/// Run one benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        Which::Dataplane => dataplane::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Scheduler => scheduler::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Apiserver => apiserver::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
        Which::Node => node::run(std::env::var_os("SLUICE_BENCH_QUICK").is_some()),
    }
}
