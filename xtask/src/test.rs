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
    ("protoc", "protobuf-compiler"),
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("iptables-save", "iptables"),
    ("nft", "nftables"),
    ("ipvsadm", "ipvsadm"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("umoci", "umoci"),
    ("busybox", "busybox-static"),
    ("curl", "curl"),
];

/// Run the whole test suite.
pub fn run_all(args: TestArgs) -> Result<()> {
    ensure_packages(TEST_PACKAGES)?;
    crate::ebpf::build_ebpf(crate::ebpf::BuildEbpfArgs::default())?;
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
