//! `cargo xtask build-ebpf`: a thin front to `sluice-ebpf-build`.
//!
//! A plain `cargo build` builds the eBPF object already (`sluice-datapath`'s
//! build script calls the same library); this task does it on its own, prints
//! where the object is, and with `--setup-only` just installs the toolchain
//! pieces (nightly rust-src, bpf-linker built against the nightly's LLVM).

use crate::util::step;
use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `cargo xtask build-ebpf`.
#[derive(Args, Default)]
pub struct BuildEbpfArgs {
    /// Only check (and install when missing) the toolchain, do not build.
    #[arg(long)]
    pub setup_only: bool,
}

/// Build the eBPF object, installing the toolchain pieces first when missing.
pub fn build_ebpf(args: BuildEbpfArgs) -> Result<()> {
    if args.setup_only {
        sluice_ebpf_build::setup().context("setting up the eBPF toolchain")?;
        return Ok(());
    }
    let object = sluice_ebpf_build::build().context("building the eBPF programs")?;
    step(&format!("eBPF object: {}", object.display()));
    Ok(())
}
