//! Embeds the eBPF object built by `cargo xtask build-ebpf`.
//!
//! The object is built by a nightly toolchain for another target, which a
//! plain `cargo build` cannot do, so it is built beforehand by
//! `cargo xtask build-ebpf` (which `cargo xtask test` runs first) into
//! `ebpf/programs/target/bpfel-unknown-none/release/sluice-programs`. This
//! script copies it into OUT_DIR for `include_bytes!`. When it is missing the
//! crate still builds (so `cargo check` works anywhere) but embeds an empty
//! object, and `Datapath::open_or_adopt` fails with `DatapathError::ObjectNotBuilt`.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let object = std::env::var_os("SLUICE_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../ebpf/programs/target/bpfel-unknown-none/release/sluice-programs"));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("sluice.bpf.o");
    println!("cargo:rerun-if-env-changed=SLUICE_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    match std::fs::read(&object) {
        Ok(bytes) => std::fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!(
                "cargo:warning=eBPF object {} not found: run `cargo xtask build-ebpf`; the datapath will fail to open",
                object.display()
            );
            std::fs::write(&out, b"").unwrap();
        }
    }
}
