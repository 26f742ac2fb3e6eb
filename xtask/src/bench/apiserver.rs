//! `cargo xtask bench apiserver`: API server create/get/list/watch latency
//! and throughput against direct etcd access measured in the same run, then
//! create/list/watch for a custom resource (a CRD the bench creates) beside
//! ConfigMap, with the ratios, and listing/watching all pods as JSON vs
//! protobuf. Not a test.
//!
//! The measuring is done by the `apiserver-bench` binary of `sluice-bench`
//! (it needs kube and etcd-client; xtask stays light): this task builds it
//! and the API server in release mode and runs it; it starts its own etcd and
//! API server on free ports, kills them by pid, and writes
//! `bench-results/apiserver.md`.

use anyhow::Result;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) uses 1,000 pods and 20 watchers,
/// and 500 objects per kind in the custom resource vs ConfigMap phase.
pub fn run(quick: bool) -> Result<()> {
    super::on_an_apiserver(
        "apiserver-bench",
        "apiserver",
        "creates, gets, lists, watch delay under paced writes, then ConfigMap vs custom resource; a minute or two",
        quick,
        &[
            "--pods",
            "1000",
            "--watchers",
            "20",
            "--watch-seconds",
            "5",
            "--kind-objects",
            "500",
            "--kind-watchers",
            "10",
            "--kind-seconds",
            "3",
            "--encoding-rounds",
            "8",
        ],
    )
}
