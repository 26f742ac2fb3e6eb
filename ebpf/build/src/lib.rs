//! Builds the eBPF object of `ebpf/programs`, setting up what that needs.
//!
//! The programs are built by a nightly toolchain for `bpfel-unknown-none` with
//! `-Z build-std=core` (so nightly needs `rust-src`) and linked by
//! `bpf-linker`, which must use the nightly's *own* LLVM (an LLVM of another
//! major version produces objects the kernel or aya reject). A plain `cargo
//! build` of the workspace cannot build another target with another
//! toolchain, so `sluice-datapath`'s build script calls [`build`] (in the
//! spirit of aya-build), and `cargo xtask build-ebpf` is a thin front to the
//! same function. Missing pieces are installed through rustup and cargo; when
//! that is impossible the error names the one command that fixes it.
//!
//! Progress goes to stderr and every child's stdout is sent to stderr too, so
//! nothing a child prints can be read as a build-script directive.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The nightly toolchain the programs build with (matches `ebpf/programs/rust-toolchain.toml`).
pub const NIGHTLY: &str = "nightly";

/// What can go wrong while setting up or building.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool is missing and could not be installed.
    #[error("{what} is missing and could not be set up: {detail}\n  fix it with: {fix}")]
    Setup {
        what: &'static str,
        detail: String,
        fix: String,
    },
    /// A command ran and failed.
    #[error("{command} failed ({status})")]
    Failed { command: String, status: String },
    /// A command could not be started at all.
    #[error("could not run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The build ran but produced no object.
    #[error("the eBPF build succeeded but {0} is missing")]
    NoObject(PathBuf),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The `ebpf/programs` crate.
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../programs")
}

/// Where the built object lands (one ELF holding every program and map).
pub fn object_path() -> PathBuf {
    programs_dir().join("target/bpfel-unknown-none/release/sluice-programs")
}

/// The sources whose change makes the object stale (for `cargo:rerun-if-changed`).
pub fn sources() -> Vec<PathBuf> {
    let ebpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        "programs/src",
        "programs/Cargo.toml",
        "programs/Cargo.lock",
        "common/src",
        "common/Cargo.toml",
    ]
    .iter()
    .map(|p| ebpf.join(p))
    .collect()
}

/// Print a progress line for a step of a long operation.
fn step(msg: &str) {
    eprintln!("==> {msg}");
}

/// Set the toolchain up (nightly, rust-src, bpf-linker) when pieces are missing.
/// Returns the nightly's sysroot.
pub fn setup() -> Result<PathBuf> {
    let sysroot = ensure_nightly()?;
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot)?;
    Ok(sysroot)
}

/// Set the toolchain up and build the object; returns its path.
/// An up-to-date build takes well under a second.
pub fn build() -> Result<PathBuf> {
    let sysroot = setup()?;
    step("building eBPF programs (ebpf/programs, nightly, bpfel-unknown-none, BTF)");
    let mut cmd = rustup();
    cmd.args(["run", NIGHTLY, "cargo", "build", "--release"])
        // aya-ebpf 0.2.1 pulls aya-build, whose rust-version is newer than the
        // nightly's version number; the code builds fine.
        .arg("--ignore-rust-version")
        .current_dir(programs_dir())
        // bpf-linker loads the nightly's libLLVM at run time.
        .env("LD_LIBRARY_PATH", sysroot.join("lib"))
        .env("RUSTFLAGS", "-C debuginfo=2 -C link-arg=--btf");
    run(&mut cmd)?;
    let object = object_path();
    if !object.is_file() {
        return Err(Error::NoObject(object));
    }
    Ok(object)
}

/// A `rustup` command with the variables of an outer (stable) cargo removed,
/// so the inner build is not steered by them (own target dir, own toolchain,
/// no host flags).
fn rustup() -> Command {
    rustup_proxy("rustup")
}

/// `$CARGO_HOME/bin`, where rustup's proxies and `cargo install`ed tools live.
fn cargo_bin() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"))
}

/// A command for one of rustup's programs (`rustup`, or the `cargo` proxy of
/// the default toolchain), with `$CARGO_HOME/bin` first on PATH and the outer
/// cargo's variables removed.
fn rustup_proxy(name: &str) -> Command {
    let bin = cargo_bin();
    let program = bin
        .as_ref()
        .map(|b| b.join(name))
        .filter(|p| p.is_file())
        .map(OsString::from)
        .unwrap_or_else(|| name.into());
    let mut cmd = Command::new(program);
    if let Some(bin) = bin {
        let mut paths = vec![bin];
        paths.extend(std::env::var_os("PATH").iter().flat_map(std::env::split_paths));
        if let Ok(path) = std::env::join_paths(paths) {
            cmd.env("PATH", path);
        }
    }
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
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
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_NAME",
        "CARGO",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Run a command, its stdout sent to our stderr, and fail with its command line.
fn run(cmd: &mut Command) -> Result<()> {
    let command = format!("{cmd:?}");
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| Error::Io {
            context: "duplicating stderr".into(),
            source,
        })?;
    let status = cmd
        .stdout(Stdio::from(stderr))
        .status()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Failed {
            command,
            status: status.to_string(),
        });
    }
    Ok(())
}

/// Make sure the nightly toolchain exists; return its sysroot.
fn ensure_nightly() -> Result<PathBuf> {
    if let Some(sysroot) = nightly_sysroot() {
        return Ok(sysroot);
    }
    step(&format!("installing the {NIGHTLY} toolchain (rustup)"));
    let fix = format!("rustup toolchain install {NIGHTLY} --profile minimal --component rust-src");
    run(rustup().args(["toolchain", "install", NIGHTLY, "--profile", "minimal"])).map_err(|e| Error::Setup {
        what: "the nightly toolchain",
        detail: e.to_string(),
        fix: fix.clone(),
    })?;
    nightly_sysroot().ok_or(Error::Setup {
        what: "the nightly toolchain",
        detail: "rustup installed it but `rustc --print sysroot` fails".into(),
        fix,
    })
}

fn nightly_output(args: &[&str]) -> Option<String> {
    let out = rustup().args(["run", NIGHTLY, "rustc"]).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn nightly_sysroot() -> Option<PathBuf> {
    nightly_output(&["--print", "sysroot"]).map(PathBuf::from)
}

/// `-Z build-std=core` needs the standard library sources of the nightly.
fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").is_file() {
        return Ok(());
    }
    step(&format!(
        "adding rust-src to the {NIGHTLY} toolchain (needed for -Z build-std=core)"
    ));
    run(rustup().args(["component", "add", "rust-src", "--toolchain", NIGHTLY])).map_err(|e| Error::Setup {
        what: "the nightly's rust-src component",
        detail: e.to_string(),
        fix: format!("rustup component add rust-src --toolchain {NIGHTLY}"),
    })
}

/// The LLVM major version of the nightly rustc (`LLVM version: 22.1.4` → 22).
fn nightly_llvm_major() -> Option<u32> {
    nightly_output(&["-vV"])?
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `bpf-linker` as installed by cargo (its bin dir may not be on PATH inside a build script).
fn bpf_linker() -> PathBuf {
    cargo_bin()
        .map(|b| b.join("bpf-linker"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "bpf-linker".into())
}

/// Whether an installed bpf-linker runs (with the nightly's libLLVM on the library path).
fn bpf_linker_works(sysroot: &Path) -> bool {
    Command::new(bpf_linker())
        .arg("--version")
        .env("LD_LIBRARY_PATH", sysroot.join("lib"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Install bpf-linker linked against the nightly's own libLLVM.
///
/// `cargo install bpf-linker` with default features looks for a system LLVM
/// of the newest major version; instead `LLVM_PREFIX` points at a directory
/// whose `lib/libLLVM.so` is the nightly's shared LLVM, with the matching
/// `llvm-<major>` feature.
fn ensure_bpf_linker(sysroot: &Path) -> Result<()> {
    if bpf_linker_works(sysroot) {
        return Ok(());
    }
    let setup = |detail: String| Error::Setup {
        what: "bpf-linker",
        detail,
        fix: "cargo xtask build-ebpf --setup-only".into(),
    };
    let major = nightly_llvm_major().ok_or_else(|| setup("rustc +nightly -vV printed no LLVM version".into()))?;
    let lib_dir = sysroot.join("lib");
    let llvm_lib = std::fs::read_dir(&lib_dir)
        .map_err(|e| setup(format!("reading {}: {e}", lib_dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        })
        .ok_or_else(|| {
            setup(format!(
                "the nightly toolchain has no shared libLLVM in {}",
                lib_dir.display()
            ))
        })?;
    let prefix = programs_dir().join("target/llvm-prefix");
    let prefix_lib = prefix.join("lib");
    let link = prefix_lib.join("libLLVM.so");
    std::fs::create_dir_all(&prefix_lib)
        .and_then(|()| match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => std::os::unix::fs::symlink(&llvm_lib, &link),
        })
        .map_err(|e| setup(format!("linking {} to {}: {e}", link.display(), llvm_lib.display())))?;
    step(&format!(
        "installing bpf-linker against the nightly's LLVM {major} ({}), about a minute",
        llvm_lib.display()
    ));
    // The default toolchain's cargo, run from this crate's directory (no
    // rust-toolchain file there, unlike ebpf/programs).
    let mut cmd = rustup_proxy("cargo");
    cmd.args([
        "install",
        "--locked",
        "bpf-linker",
        "--no-default-features",
        "--features",
    ])
    .arg(format!("llvm-{major}"))
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("LLVM_PREFIX", &prefix)
    .env("LD_LIBRARY_PATH", &lib_dir)
    // Let the binary find the nightly's libLLVM without LD_LIBRARY_PATH too.
    .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", lib_dir.display()));
    run(&mut cmd).map_err(|e| {
        setup(format!(
            "{e} (needs crates.io and a C toolchain; LLVM_PREFIX={})",
            prefix.display()
        ))
    })?;
    if !bpf_linker_works(sysroot) {
        return Err(setup("it was installed but `bpf-linker --version` fails".into()));
    }
    Ok(())
}
