//! `cargo xtask bench workloads`: the Job and DaemonSet controllers on simulated nodes,
//! against baselines measured in the same run. Not a test.
//!
//! The measuring is done by the `workloads-bench` binary of `sluice-nodesim` (it needs
//! kube; xtask stays light): this task builds the control-plane binaries in release mode
//! and runs it; it starts its own etcd, API server, controller-manager, scheduler and two
//! nodesim pools on free ports, kills them by pid, and writes `bench-results/workloads.md`:
//! a Job of 1,000 completions at parallelism 50 on 100 nodes (completions/s, against as
//! many bare pods created with the same parallelism) and a DaemonSet created and rolled out
//! over 500 nodes (against 500 bare pods pinned to the nodes).

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) runs 200 completions on 20
/// nodes and a DaemonSet over 50 nodes.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    step("building apiserver, controller-manager, scheduler, nodesim, workloads-bench (release)");
    util::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sluice-apiserver",
        "-p",
        "sluice-controllers",
        "-p",
        "sluice-scheduler",
        "-p",
        "sluice-nodesim",
    ]))?;
    let bin_dir = util::target_dir().join("release");
    step("measuring (Job, then DaemonSet; a few minutes)");
    let mut cmd = Command::new(bin_dir.join("workloads-bench"));
    cmd.current_dir(&root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(root.join("bench-results/workloads.md"));
    if quick {
        cmd.args(["--job-nodes", "20", "--completions", "200", "--ds-nodes", "50"]);
    }
    util::run(&mut cmd).context("workloads-bench")?;
    step("wrote bench-results/workloads.md");
    Ok(())
}
