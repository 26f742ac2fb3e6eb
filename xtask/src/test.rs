//! `cargo xtask test`: the README's test command.
//!
//! Installs what the tests need, builds the eBPF object and every binary
//! (integration tests start the real binaries from `target/debug`) and the
//! images the stories pull (`target/sluice-images`), then runs
//! the whole workspace's tests with cargo-nextest (one process per test, a few
//! at once; `.config/nextest.toml`) and the doc tests with `cargo test --doc`.

use crate::util::{self, ensure_packages, step, workspace_root};
use anyhow::Result;
use clap::Args;
use std::process::Command;

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo nextest run` (e.g. a test name filter,
    /// `--test-threads 2`, `--no-capture`).
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
    // Once, before the stories: each cluster they start pushes these, and a
    // build inside a story would spend its time budget (and run beside others).
    let mut images = crate::images::ALL.to_vec();
    images.push("curl");
    step(&format!("building the images the stories pull ({})", images.join(", ")));
    crate::images::build(&crate::images::default_out_dir(), false, &images)?;
    ensure_nextest()?;
    if args.cargo_args.is_empty() {
        // First, so that nextest's summary is the run's closing line.
        step("running the doc tests");
        util::run(
            Command::new("cargo")
                .current_dir(&root)
                .args(["test", "--workspace", "--doc"]),
        )?;
    }
    step("running the test suite (cargo nextest)");
    util::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["nextest", "run", "--workspace"])
            .args(&args.cargo_args),
    )
}

/// cargo-nextest ships with this kind of machine; install it when it does not.
fn ensure_nextest() -> Result<()> {
    let have = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    step("installing cargo-nextest (cargo install --locked)");
    util::run(Command::new("cargo").args(["install", "--locked", "cargo-nextest"]))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A story file whose tests take the harness's `serial()` lock runs them
    /// one after another; nextest must know it (a test group of one thread per
    /// file), or a waiting test holds one of the few slots for nothing.
    #[test]
    fn serial_story_files_have_a_test_group() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
        let stories = root.join("tests/stories/tests");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&stories).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let tests = source.matches("#[tokio::test").count() + source.matches("#[test]").count();
            if source.contains("serial()") && tests > 1 {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                let filter = format!(
                    "filter = \"binary({stem})\"\ntest-group = \"serial-{}\"",
                    stem.replace('_', "-")
                );
                if !config.contains(&filter) {
                    missing.push(stem);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add a test group to .config/nextest.toml for {missing:?}"
        );
    }
}
