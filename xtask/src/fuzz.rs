//! `cargo xtask fuzz`: coverage-guided fuzzing of the API server's
//! authentication path with libFuzzer.
//!
//! The targets are `sluice_apiserver::fuzz` (every test run feeds them their
//! corpus and random inputs on stable); this task runs them under cargo-fuzz
//! on nightly, one after another, each for a time budget. They start from
//! the checked-in seeds (`fuzz/corpus/<target>/`) and keep what they find in
//! `fuzz/target/corpus/<target>/`; an input worth keeping as a seed is copied
//! by hand. A crash leaves its input in `fuzz/artifacts/<target>/` and fails
//! the task.

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::util::{self, step, workspace_root};

/// The targets, as `fuzz/Cargo.toml` names them.
const TARGETS: &[&str] = &[
    "authorization_header",
    "token_file",
    "bootstrap_token",
    "service_account_token",
    "client_certificate",
];

/// Arguments of `cargo xtask fuzz`.
#[derive(Args)]
pub struct FuzzArgs {
    /// Targets to run (default: all).
    pub targets: Vec<String>,
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// Run the fuzz targets.
pub fn fuzz(args: FuzzArgs) -> Result<()> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = targets.iter().find(|t| !TARGETS.contains(t)) {
        bail!("no fuzz target {unknown:?}; the targets are {}", TARGETS.join(", "));
    }
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("fuzz");
    for target in targets {
        std::fs::create_dir_all(dir.join("target/corpus").join(target))?;
        step(&format!(
            "fuzzing {target} for {} s (cargo +nightly fuzz run)",
            args.seconds
        ));
        util::run(
            Command::new("cargo")
                .current_dir(&dir)
                .args(["+nightly", "fuzz", "run", target])
                // libFuzzer adds what it finds to the first folder (ignored by
                // git) and reads the checked-in seeds from the second.
                .arg(dir.join("target/corpus").join(target))
                .arg(dir.join("corpus").join(target))
                .args(["--", &format!("-max_total_time={}", args.seconds)]),
        )
        .with_context(|| format!("fuzz target {target} failed; its input is under fuzz/artifacts/{target}/"))?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    step("installing cargo-fuzz (cargo install --locked)");
    util::run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))
}

#[cfg(test)]
mod tests {
    /// The list here is the fuzz crate's.
    #[test]
    fn targets_are_the_fuzz_crates_bins() {
        let manifest =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml"))
                .unwrap();
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|n| *n != "sluice-fuzz")
            .collect();
        assert_eq!(bins, super::TARGETS);
    }
}
