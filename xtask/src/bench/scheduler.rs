//! `cargo xtask bench scheduler`: scheduler throughput with 5,000 simulated nodes, for a
//! backlog of 2,000 pods created before the scheduler starts, 10,000 basic pods, and then
//! 5,000 pods with a required podAntiAffinity on hostname and a zone
//! topologySpreadConstraint (10 pods per app), against a direct-binding baseline measured
//! in the same run. Not a test.
//!
//! The measuring is done by the `scheduler-bench` binary of `sluice-scheduler` (it needs
//! kube; xtask stays light): this task builds the control-plane binaries in release mode
//! and runs it; it starts its own etcd, API server, controller-manager (when it builds),
//! scheduler and nodesim on free ports, kills them by pid, and writes
//! `bench-results/scheduler.md`.

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) uses 500 nodes, 500 backlog,
/// 1,000 basic and 500 anti-affinity + spread pods.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    step("building apiserver, scheduler, scheduler-bench, nodesim (release)");
    util::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sluice-apiserver",
        "-p",
        "sluice-scheduler",
        "-p",
        "sluice-nodesim",
    ]))?;
    step("building controller-manager (release; the workload uses Deployments when it is available)");
    if let Err(e) =
        util::run(
            Command::new("cargo")
                .current_dir(&root)
                .args(["build", "--release", "-p", "sluice-controllers"]),
        )
    {
        eprintln!("controller-manager not built ({e}); pods will be created directly");
    }
    let bin_dir = util::target_dir().join("release");
    step("measuring (registers the nodes, then schedules the pods; several minutes)");
    let mut cmd = Command::new(bin_dir.join("scheduler-bench"));
    cmd.current_dir(&root)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(root.join("bench-results/scheduler.md"));
    if quick {
        cmd.args([
            "--nodes",
            "500",
            "--pods",
            "1000",
            "--spread-pods",
            "500",
            "--baseline-pods",
            "500",
            "--backlog-pods",
            "500",
        ]);
    }
    util::run(&mut cmd).context("scheduler-bench")?;
    step("wrote bench-results/scheduler.md");
    Ok(())
}
