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

use anyhow::Result;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) uses 10 and 20 pods.
pub fn run(quick: bool) -> Result<()> {
    super::on_a_cluster(
        "node-bench",
        "node",
        quick,
        &["--pods-one-node", "10", "--pods-two-nodes", "20", "--pods-cold", "5"],
    )
}
