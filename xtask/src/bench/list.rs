//! `cargo xtask bench list`: lists of 1,000 and 10,000 pods served from the
//! API server's watch cache, against the same lists read from etcd by a
//! second API server with `--watch-cache=false` on the same etcd (same run).
//! Not a test.
//!
//! The measuring is done by the `list-bench` binary of `sluice-bench`: this
//! task builds it and the API server in release mode and runs it; it starts
//! its own etcd and API servers on free ports, kills them by pid, and writes
//! `bench-results/list.md`.

use anyhow::Result;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) uses 200 and 2,000 pods, 10 lists each.
pub fn run(quick: bool) -> Result<()> {
    super::on_an_apiserver(
        "list-bench",
        "list",
        "lists of 1,000 and 10,000 pods, consistent and at resourceVersion=0, cache vs etcd; a minute or two",
        quick,
        &["--small", "200", "--big", "2000", "--rounds", "10"],
    )
}
