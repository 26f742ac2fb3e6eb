//! `cargo xtask build-ebpf`: builds the `ebpf/programs` crate for the kernel.
//!
//! (Filled in by the eBPF data plane work.)

use anyhow::Result;
use clap::Args;

/// Arguments of `cargo xtask build-ebpf`.
#[derive(Args, Default)]
pub struct BuildEbpfArgs {}

/// Build the eBPF object. There are no eBPF programs yet, so there is nothing to build.
pub fn build_ebpf(_args: BuildEbpfArgs) -> Result<()> {
    Ok(())
}
