//! `cargo xtask bench dataplane`: Sluice's eBPF Service load balancing
//! against kube-proxy-style iptables chains and IPVS, plus the XDP_TX
//! ceiling, in network namespaces (needs root). Not a test.
//!
//! The measuring is done by the `sluice-datapath-bench` binary of
//! `sluice-datapath` (it needs aya; xtask stays light): this task builds the
//! eBPF object and that binary in release mode, runs it, and writes its
//! report to `bench-results/dataplane.md`.

use crate::util::{self, step, workspace_root};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) measures 1 and 1,000 services only, for 1 s each.
pub fn run(quick: bool) -> Result<()> {
    measure(quick, &[], "dataplane")
}

/// `cargo xtask bench flow-events`: only the cost of flow events (on vs off,
/// alternated), written to `bench-results/flow-events.md`.
pub fn flow_events(quick: bool) -> Result<()> {
    measure(quick, &["--flow-events-only"], "flow-events")
}

/// `cargo xtask bench dataplane-routing`: only pod-to-pod routing, written to
/// `bench-results/dataplane-routing.md`.
pub fn routing(quick: bool) -> Result<()> {
    measure(quick, &["--routing-only"], "dataplane-routing")
}

/// `cargo xtask bench dataplane-dsr`: only NodePort to a backend on another
/// node, source NAT vs direct server return, written to
/// `bench-results/dataplane-dsr.md`.
pub fn dsr(quick: bool) -> Result<()> {
    measure(quick, &["--dsr-only"], "dataplane-dsr")
}

/// `cargo xtask bench scale-down`: failed requests when a Service's pods are
/// removed under load, Sluice (drain off and on) vs kube-proxy-style iptables,
/// 10 rounds each (3 when quick), written to `bench-results/scale-down.md`.
pub fn scale_down(quick: bool) -> Result<()> {
    measure(quick, &["--scale-down-only"], "scale-down")
}

/// Build and run `sluice-datapath-bench` with `args`; write its report to `bench-results/<report>.md`.
fn measure(quick: bool, args: &[&str], report_name: &str) -> Result<()> {
    let root = workspace_root();
    step("building sluice-datapath-bench (release)");
    util::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sluice-datapath",
        "--bin",
        "sluice-datapath-bench",
    ]))?;
    let bin = util::target_dir().join("release/sluice-datapath-bench");
    step("measuring (namespaces, iptables/IPVS only inside them; a few minutes)");
    let mut cmd = Command::new(&bin);
    cmd.args(args);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    let report = String::from_utf8(out.stdout)?;
    let dir = root.join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{report_name}.md")), &report)?;
    println!("{report}");
    step(&format!("wrote bench-results/{report_name}.md"));
    Ok(())
}
