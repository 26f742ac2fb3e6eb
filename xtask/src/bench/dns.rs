//! `cargo xtask bench dns`: the cluster DNS server (`sluice-dns`) against
//! dnsmasq serving the same names from a file, with dnsperf, at 1,000 and
//! 10,000 Services, on loopback; then the same server as a pod sees it, on a
//! real one-node cluster, against asking it directly. Not a test.
//!
//! The measuring is done by the `dns-bench` and `dns-pod-bench` binaries of
//! `sluice-bench` (xtask stays light): this task builds them (release; the
//! cluster's binaries too, for the pod phase), runs them and writes their
//! reports to `bench-results/dns.md`. `SLUICE_BENCH_DEBUG=1` uses debug
//! builds (quick to build, slower to run; the report says which).

use crate::util::{step, workspace_root};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) runs 3 s per measurement instead of 10 s.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    let (bins, profile) = super::build_cluster_bins("dns-bench and dns-pod-bench")?;
    let seconds = if quick { "3" } else { "10" };

    step("measuring on loopback (a few minutes)");
    let bin = bins.join("dns-bench");
    let mut cmd = Command::new(&bin);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    let mut report = String::from_utf8(out.stdout)?;

    step("measuring from inside a pod (starts a one-node cluster; a few minutes)");
    let bin = bins.join("dns-pod-bench");
    let out = Command::new(&bin)
        .current_dir(&root)
        .args(["--profile", profile, "--seconds", seconds])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} failed", bin.display());
    }
    report.push_str(&String::from_utf8(out.stdout)?);

    let dir = root.join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("dns.md"), &report)?;
    println!("{report}");
    step("wrote bench-results/dns.md");
    Ok(())
}
