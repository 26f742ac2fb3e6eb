//! Compiles the pinned Kubernetes `.proto` files (`proto/`, the files k8s-pb
//! 0.9.0 is generated from) into one `FileDescriptorSet` the converter reads
//! at run time (needs `protoc`: `PROTOC`, see `.cargo/protoc`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let mut files = Vec::new();
    protos(&root, &mut files)?;
    files.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s.fds");
    let protoc = std::env::var("PROTOC").unwrap_or_else(|_| "protoc".into());
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg(format!("-I{}", root.display()))
        .args(&files)
        .status()
        .map_err(|e| format!("running {protoc}: {e}"))?;
    if !status.success() {
        return Err(format!("{protoc} failed: {status}").into());
    }
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
