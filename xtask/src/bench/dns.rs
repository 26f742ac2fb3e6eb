//! `cargo xtask bench dns`: the cluster DNS server (`sluice-dns`) against
//! dnsmasq serving the same names from a file, with dnsperf, at 1,000 and
//! 10,000 Services, on loopback. Not a test.
//!
//! The measuring is done by the `sluice-dns-bench` binary of `sluice-dns`
//! (xtask stays light): this task builds it in release mode, runs it and
//! writes its report to `bench-results/dns.md`.

use crate::util::{self, step, workspace_root};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) runs 3 s per measurement instead of 10 s.
pub fn run(quick: bool) -> Result<()> {
    let root = workspace_root();
    step("building sluice-dns-bench (release)");
    util::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "sluice-dns",
        "--bin",
        "sluice-dns-bench",
    ]))?;
    let bin = util::target_dir().join("release/sluice-dns-bench");
    step("measuring (loopback only; about a minute)");
    let mut cmd = Command::new(&bin);
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
    std::fs::write(dir.join("dns.md"), &report)?;
    println!("{report}");
    step("wrote bench-results/dns.md");
    Ok(())
}
