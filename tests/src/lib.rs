//! Harness for Sluice's end-to-end tests.
//!
//! Tests in `tests/tests/` start real processes (etcd, the API server, ...)
//! built into `target/debug` by `cargo xtask test`; this crate finds them and
//! cleans up after them (by pid).

use std::path::PathBuf;

/// Path of a workspace binary built into the same target directory as this test.
///
/// Panics with a clear message when it has not been built: run `cargo xtask test`
/// (or `cargo build --workspace --bins`) first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo xtask test` or `cargo build --workspace --bins` first",
        path.display()
    );
    path
}
