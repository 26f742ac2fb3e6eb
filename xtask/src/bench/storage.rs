//! `cargo xtask bench storage`: time from a PersistentVolumeClaim's creation
//! to a Running pod using it (p50/p99, against the same pods without a
//! volume), and write throughput of a local-path volume against the node's
//! file system directly, in the same run, on a real two-node cluster. Not a
//! test.
//!
//! The measuring is done by the `storage-bench` binary of `sluice-bench`;
//! this task builds it with the cluster's binaries and runs it, and it
//! writes `bench-results/storage.md`. `SLUICE_BENCH_DEBUG=1` uses a debug
//! build; `SLUICE_BENCH_QUICK=1` 10 claims.

use anyhow::Result;

/// Run the benchmark.
pub fn run(quick: bool) -> Result<()> {
    super::on_a_cluster("storage-bench", "storage", quick, &["--claims", "10"])
}
