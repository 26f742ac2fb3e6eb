//! `cargo xtask test`: the README's test command.
//!
//! Installs what the tests need, builds the eBPF object and every binary
//! (integration tests start the real binaries from `target/debug`), then runs
//! `cargo test` over the whole workspace.

use crate::util::{self, ensure_packages, step, workspace_root};
use anyhow::Result;
use clap::Args;
use std::process::Command;

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo test` (e.g. a test name filter).
    #[arg(trailing_var_arg = true)]
    pub cargo_args: Vec<String>,
}

/// Debian packages the test suite needs, as (command, package).
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("iptables-save", "iptables"),
    ("nft", "nftables"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("umoci", "umoci"),
    ("busybox", "busybox-static"),
    ("curl", "curl"),
    // Stories stop processes with /bin/kill (`kill` alone would find the shell builtin).
    ("/bin/kill", "procps"),
    // The cluster registry and the images pushed to it (xtask images).
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("mmdebstrap", "mmdebstrap"),
    // htpasswd for the private-registry story.
    ("htpasswd", "apache2-utils"),
    // Continuous HTTP load through endpoint changes (cluster_zero_loss).
    ("hey", "hey"),
];

/// Run the whole test suite.
pub fn run_all(args: TestArgs) -> Result<()> {
    ensure_packages(TEST_PACKAGES)?;
    let root = workspace_root();
    step("building all binaries (integration tests run them)");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    )?;
    step("running the test suite");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["test", "--workspace"])
            .args(&args.cargo_args),
    )
}
