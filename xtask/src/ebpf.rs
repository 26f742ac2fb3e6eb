//! `cargo xtask build-ebpf`: builds the `ebpf/programs` crate for the kernel.
//!
//! The programs need a nightly toolchain (`-Z build-std=core` for the
//! `bpfel-unknown-none` target) with `rust-src`, and `bpf-linker` built
//! against the nightly's *own* LLVM (a system LLVM of another major version
//! produces objects the kernel or aya reject). This task sets both up when they
//! are missing, so a fresh machine needs nothing but rustup, and does nothing
//! slow when they are already there (an up-to-date build takes well under a second).
//!
//! The object lands at [`object_path`]; `sluice-datapath`'s build script embeds
//! it from there (see that crate's docs), so `cargo xtask build-ebpf` must run
//! before a plain `cargo build` of the workspace. `cargo xtask test` does it.

use crate::util::{self, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `cargo xtask build-ebpf`.
#[derive(Args, Default)]
pub struct BuildEbpfArgs {
    /// Only check (and install when missing) the toolchain, do not build.
    #[arg(long)]
    pub setup_only: bool,
}

/// The nightly toolchain the eBPF crate builds with (matches `ebpf/programs/rust-toolchain.toml`).
const NIGHTLY: &str = "nightly";

/// The directory of the eBPF programs crate.
pub fn programs_dir() -> PathBuf {
    workspace_root().join("ebpf").join("programs")
}

/// Where the built eBPF object lands (one ELF holding every program and map).
pub fn object_path() -> PathBuf {
    programs_dir().join("target/bpfel-unknown-none/release/sluice-programs")
}

/// Build the eBPF object, installing the toolchain pieces first when missing.
pub fn build_ebpf(args: BuildEbpfArgs) -> Result<()> {
    let sysroot = ensure_nightly()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot)?;
    if args.setup_only {
        return Ok(());
    }
    step("building eBPF programs (ebpf/programs, nightly, bpfel-unknown-none, BTF)");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(programs_dir());
    scrub_cargo_env(&mut cmd);
    // bpf-linker loads the nightly's libLLVM at run time.
    cmd.env("LD_LIBRARY_PATH", sysroot.join("lib"));
    cmd.args([
        &format!("+{NIGHTLY}"),
        "build",
        "--release",
        // aya-ebpf 0.2.1 pulls aya-build, whose rust-version is newer than
        // the nightly's version number; the code builds fine.
        "--ignore-rust-version",
    ])
    .env("RUSTFLAGS", "-C debuginfo=2 -C link-arg=--btf");
    util::run(&mut cmd).context(
        "building the eBPF programs failed; the toolchain is set up, so this is a compile error \
         in ebpf/programs (see above)",
    )?;
    let object = object_path();
    if !object.is_file() {
        bail!("the eBPF build succeeded but {} is missing", object.display());
    }
    step(&format!("eBPF object: {}", object.display()));
    Ok(())
}

/// Remove variables the outer (stable) cargo set, so the inner nightly build
/// is not steered by them (own target dir, own toolchain, no host flags).
fn scrub_cargo_env(cmd: &mut Command) {
    for var in [
        "CARGO_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
}

/// Make sure the nightly toolchain exists; return its sysroot.
fn ensure_nightly() -> Result<PathBuf> {
    if !util::have("rustup") {
        bail!("rustup is missing: the eBPF programs need a rustup-managed nightly toolchain (https://rustup.rs)");
    }
    if let Ok(sysroot) = nightly_sysroot() {
        return Ok(sysroot);
    }
    step(&format!("installing the {NIGHTLY} toolchain (rustup)"));
    util::run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
        .context("could not install the nightly toolchain the eBPF programs need")?;
    nightly_sysroot()
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args([&format!("+{NIGHTLY}"), "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("could not run rustc +nightly")?;
    if !out.status.success() {
        bail!("rustc +{NIGHTLY} is not available");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `-Z build-std=core` needs the standard library sources of the nightly.
fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").is_file() {
        return Ok(());
    }
    step(&format!(
        "adding rust-src to the {NIGHTLY} toolchain (needed for -Z build-std=core)"
    ));
    util::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        .context("could not add the rust-src component to the nightly toolchain")
}

/// The LLVM major version of the nightly rustc (`LLVM version: 22.1.4` → 22).
fn nightly_llvm_major() -> Result<u32> {
    let out = Command::new("rustc")
        .args([&format!("+{NIGHTLY}"), "-vV"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("could not run rustc +nightly -vV")?;
    let text = String::from_utf8(out.stdout)?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV printed no LLVM version")?;
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("unexpected LLVM version {version:?}"))
}

/// Whether an installed bpf-linker runs (with the nightly's libLLVM on the library path).
fn bpf_linker_works(sysroot: &Path) -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .env("LD_LIBRARY_PATH", sysroot.join("lib"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Install bpf-linker linked against the nightly's own libLLVM.
///
/// `cargo install bpf-linker` with default features looks for a system LLVM
/// of the newest major version; instead we point `LLVM_PREFIX` at a directory
/// whose `lib/libLLVM.so` is the nightly's shared LLVM, and pick the matching
/// `llvm-<major>` feature.
fn ensure_bpf_linker(sysroot: &Path) -> Result<()> {
    if bpf_linker_works(sysroot) {
        return Ok(());
    }
    let major = nightly_llvm_major()?;
    let lib_dir = sysroot.join("lib");
    let llvm_lib = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        })
        .with_context(|| {
            format!(
                "the nightly toolchain has no shared libLLVM in {}; bpf-linker cannot be built against it",
                lib_dir.display()
            )
        })?;
    let prefix = workspace_root().join("ebpf/programs/target/llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm_lib, &link)
        .with_context(|| format!("symlinking {} to {}", link.display(), llvm_lib.display()))?;
    step(&format!(
        "installing bpf-linker against the nightly's LLVM {major} ({}) — about a minute",
        llvm_lib.display()
    ));
    let mut cmd = Command::new("cargo");
    scrub_cargo_env(&mut cmd);
    cmd.args([
        "install",
        "--locked",
        "bpf-linker",
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ])
    .env("LLVM_PREFIX", &prefix)
    .env("LD_LIBRARY_PATH", &lib_dir)
    // Let the binary find the nightly's libLLVM without LD_LIBRARY_PATH too.
    .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", lib_dir.display()));
    util::run(&mut cmd).with_context(|| {
        format!(
            "could not install bpf-linker (needs crates.io and a C toolchain); tried LLVM_PREFIX={} with feature llvm-{major}",
            prefix.display()
        )
    })?;
    if !bpf_linker_works(sysroot) {
        bail!("bpf-linker was installed but `bpf-linker --version` fails (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}
