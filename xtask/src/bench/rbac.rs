//! `cargo xtask bench rbac`: API request latency with RBAC on vs off at
//! 1,000 writes/s, with 1,000 Roles and RoleBindings. Not a test.
//!
//! The measuring is done by the `rbac-bench` binary of `sluice-bench`: this
//! task builds it and the API server in release mode and runs it; it starts
//! its own etcd and API server on free ports, kills them by pid, and writes
//! `bench-results/rbac.md`.

use anyhow::Result;

/// Run the benchmark; `quick` (env `SLUICE_BENCH_QUICK=1`) makes one round
/// of 2 s per user at 500 writes/s.
pub fn run(quick: bool) -> Result<()> {
    super::on_an_apiserver(
        "rbac-bench",
        "rbac",
        "1,000 Roles and bindings, then paced creates with RBAC on and off; about a minute",
        quick,
        &["--rounds", "1", "--seconds", "2", "--rate", "500"],
    )
}
