//! Builds the eBPF programs and embeds the object for `include_bytes!`.
//!
//! `sluice-ebpf-build` builds `ebpf/programs` with the nightly toolchain for
//! `bpfel-unknown-none` (installing nightly rust-src and bpf-linker first when
//! missing), so a plain `cargo build` of the workspace yields working
//! binaries. `SLUICE_EBPF_OBJECT=<path>` embeds a prebuilt object instead.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_EBPF_OBJECT");
    let object = match std::env::var_os("SLUICE_EBPF_OBJECT") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            for source in sluice_ebpf_build::sources() {
                println!("cargo:rerun-if-changed={}", source.display());
            }
            match sluice_ebpf_build::build() {
                Ok(object) => object,
                Err(e) => {
                    eprintln!("error: building the eBPF programs failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    };
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("sluice.bpf.o");
    if let Err(e) = std::fs::copy(&object, &out) {
        eprintln!(
            "error: copying the eBPF object {} to {}: {e}",
            object.display(),
            out.display()
        );
        std::process::exit(1);
    }
}
