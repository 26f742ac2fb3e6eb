//! `cargo xtask`: the project's task runner.
//!
//! Every long-running or multi-step developer task lives here so that the
//! README, CI (`.ci/run`) and developers all run exactly the same steps.
//! Each task is one module; benchmarks live under [`bench`].

mod bench;
mod cluster;
mod containerd;
mod dashboard;
mod ebpf;
mod fresh_check;
mod fuzz;
mod images;
mod network;
mod nodes;
mod pki;
mod process;
mod registry;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Sluice developer tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "Sluice build, run and bench tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Set up this machine and start a Sluice cluster in the background.
    Up(cluster::UpArgs),
    /// Stop everything `up` started (by pid); keeps data unless --purge.
    Down(cluster::DownArgs),
    /// Build the eBPF programs (nightly, bpfel-unknown-none, BTF).
    BuildEbpf(ebpf::BuildEbpfArgs),
    /// Install what the tests need, build everything and run the whole test suite.
    Test(test::TestArgs),
    /// Prove the README's two commands in a fresh Debian root (mmdebstrap + chroot).
    FreshCheck(fresh_check::FreshCheckArgs),
    /// Fuzz the API server's authentication path with libFuzzer (nightly, cargo-fuzz).
    Fuzz(fuzz::FuzzArgs),
    /// Run a benchmark (not a test): results go under `bench-results/`.
    Bench(bench::BenchArgs),
    /// Build the cluster's images (busybox, nginx, redis, pause) and push them into the cluster registry;
    /// `images push SOURCE NAME` pushes one of your own.
    Images(images::ImagesArgs),
    /// Write a per-node containerd config, or clean up after one.
    Containerd(containerd::ContainerdArgs),
    /// Build the web dashboard (npm ci, tsc, vite) into control/dashboard/dist.
    Dashboard,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Up(args) => cluster::up(args),
        Task::Down(args) => cluster::down(args),
        Task::BuildEbpf(args) => ebpf::build_ebpf(args),
        Task::Test(args) => test::run_all(args),
        Task::Bench(args) => bench::run(args),
        Task::Fuzz(args) => fuzz::fuzz(args),
        Task::FreshCheck(args) => fresh_check::fresh_check(args),
        Task::Images(args) => images::images(args),
        Task::Containerd(args) => containerd::containerd(args),
        Task::Dashboard => dashboard::build(),
    }
}
