//! `cargo xtask bench scrape`: how long a Prometheus scrape of each
//! control-plane component's `/metrics` takes at 1,000 pods, against the same
//! scrape before the pods exist (same run). Not a test.
//!
//! The measuring is done by the `scrape-bench` binary of `sluice-bench`: this
//! task builds it and the control plane's binaries (API server,
//! controller-manager, scheduler, nodesim) in release mode and runs it; it
//! starts them on free ports, kills them by pid, and writes
//! `bench-results/scrape.md`.

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) scrapes 10 times at 200 pods.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    step("building apiserver, controller-manager, scheduler, nodesim and scrape-bench (release)");
    let mut cargo = Command::new("cargo");
    cargo.current_dir(&root).args(["build", "--release"]);
    for (package, bin) in [
        ("sluice-apiserver", "apiserver"),
        ("sluice-controllers", "controller-manager"),
        ("sluice-scheduler", "scheduler"),
        ("sluice-nodesim", "nodesim"),
        ("sluice-bench", "scrape-bench"),
    ] {
        cargo.args(["-p", package, "--bin", bin]);
    }
    util::run(&mut cargo)?;
    step("measuring (scrapes of an empty cluster, 1,000 pods, scrapes again; a few minutes)");
    let mut cmd = Command::new(util::target_dir().join("release/scrape-bench"));
    cmd.current_dir(&root)
        .arg("--out")
        .arg(root.join("bench-results/scrape.md"));
    if quick {
        cmd.args(["--pods", "200", "--scrapes", "10"]);
    }
    util::run(&mut cmd).context("scrape-bench")?;
    step("wrote bench-results/scrape.md");
    Ok(())
}
