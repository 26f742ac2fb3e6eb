//! `cargo xtask bench node`: pod startup latency (create → Running seen by a
//! watch) on a real cluster, against raw CRI calls to the same containerd
//! measured in the same run. Not a test.
//!
//! The measuring is done by the `node-bench` binary of `sluice-bench` (it
//! needs kube and the CRI client; xtask stays light): this task builds the
//! eBPF object and every binary a cluster needs, then runs it. It starts its
//! own two-node cluster with `xtask up --nodes 2` (temp home, free ports, own
//! bridge and namespaces), removes it with `xtask down --purge`, and writes
//! `bench-results/node.md`. `SLUICE_BENCH_DEBUG=1` uses a debug build (quick
//! to build, slower to run; the report says which).

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) uses 10 and 20 pods.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    let debug = std::env::var_os("SLUICE_BENCH_DEBUG").is_some();
    let profile = if debug { "debug" } else { "release" };
    step(&format!("building the cluster's binaries and node-bench ({profile})"));
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
    let bin = util::target_dir().join(profile).join("node-bench");
    step("measuring (starts a two-node cluster; a few minutes)");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root)
        .arg("--out")
        .arg(root.join("bench-results/node.md"))
        .args(["--profile", profile]);
    if quick {
        cmd.args(["--pods-one-node", "10", "--pods-two-nodes", "20", "--pods-cold", "5"]);
    }
    util::run(&mut cmd).with_context(|| format!("running {}", bin.display()))?;
    step("wrote bench-results/node.md");
    Ok(())
}
