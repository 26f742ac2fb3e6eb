//! `cargo xtask bench rbac`: API request latency with RBAC on vs off at
//! 1,000 writes/s, with 1,000 Roles and RoleBindings. Not a test.
//!
//! The measuring is done by the `rbac-bench` binary of `sluice-bench`: this
//! task builds it and the API server in release mode and runs it; it starts
//! its own etcd and API server on free ports, kills them by pid, and writes
//! `bench-results/rbac.md`.

use crate::util::{self, step, workspace_root};
use anyhow::{Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) makes one round
/// of 2 s per user at 500 writes/s.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    step("building apiserver and rbac-bench (release)");
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
        "rbac-bench",
    ]))?;
    let bin = util::target_dir().join("release/rbac-bench");
    step("measuring (1,000 Roles and bindings, then paced creates with RBAC on and off; about a minute)");
    let mut cmd = Command::new(bin);
    cmd.current_dir(&root)
        .arg("--out")
        .arg(root.join("bench-results/rbac.md"));
    if quick {
        cmd.args(["--rounds", "1", "--seconds", "2", "--rate", "500"]);
    }
    util::run(&mut cmd).context("rbac-bench")?;
    step("wrote bench-results/rbac.md");
    Ok(())
}
