//! `cargo xtask up` / `cargo xtask down`: a Sluice cluster on this machine.
//!
//! (Filled in by the foundation work.)

use anyhow::{bail, Result};
use clap::Args;

/// Arguments of `cargo xtask up`.
#[derive(Args)]
pub struct UpArgs {}

/// Arguments of `cargo xtask down`.
#[derive(Args)]
pub struct DownArgs {
    /// Also delete all data under $SLUICE_HOME.
    #[arg(long)]
    pub purge: bool,
}

/// Start a cluster.
pub fn up(_args: UpArgs) -> Result<()> {
    bail!("`cargo xtask up` is not implemented yet")
}

/// Stop the cluster.
pub fn down(_args: DownArgs) -> Result<()> {
    bail!("`cargo xtask down` is not implemented yet")
}
