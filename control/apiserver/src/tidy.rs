//! Tidy checks: the layering that `lib.rs` and ARCHITECTURE.md state, read
//! from the source files themselves, so a change that breaks it fails here
//! with the file and line.

use std::path::{Path, PathBuf};

/// (folder under `src/`, paths it may not use, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "kinds",
        &["crate::http", "crate::registry", "crate::discovery"],
        "kinds describe objects; the registry and the HTTP layer use them, not the other way round",
    ),
    (
        "meta",
        &["crate::http", "crate::registry", "crate::discovery"],
        "meta is object-metadata machinery below every layer",
    ),
    (
        "storage",
        &["crate::http", "crate::registry", "crate::discovery"],
        "storage is the bottom layer: etcd and the watch cache",
    ),
    (
        "registry",
        &["crate::http", "crate::discovery"],
        "the registry is driven by HTTP handlers and never calls back into them",
    ),
    (
        "discovery",
        &["crate::http"],
        "discovery documents are derived from the catalog, not from routing",
    ),
];

/// Known breaks, to be removed, as (file, path). None left: keep it empty.
const KNOWN: &[(&str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn layers_only_use_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (folder, forbidden, why) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let rel = f.strip_prefix(&src).unwrap_or(&f).to_string_lossy().replace('\\', "/");
                for path in *forbidden {
                    let known = KNOWN.iter().any(|(file, p)| *file == rel && code.contains(p));
                    if code.contains(path) && !known {
                        broken.push(format!(
                            "{}:{}: uses {path} ({why})",
                            f.strip_prefix(&src).unwrap_or(&f).display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn no_import_cycles_between_the_known_pairs() {
    // The cycles the folder split removed, kept out: discovery <-> openapi,
    // and the server, its state and the node endpoints.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let uses = |file: &str, path: &str| {
        std::fs::read_to_string(src.join(file))
            .unwrap_or_default()
            .lines()
            .any(|l| l.split("//").next().unwrap_or_default().contains(path))
    };
    assert!(!uses("discovery/openapi.rs", "crate::discovery::GIT_VERSION"));
    assert!(!uses("discovery/openapi.rs", "crate::discovery::routes"));
    for f in ["http/state.rs", "http/node_proxy.rs", "http/node_certs.rs"] {
        assert!(!uses(f, "crate::http::server"), "{f} uses the server");
        assert!(!uses(f, "crate::http::handlers"), "{f} uses the handlers");
    }
    assert!(!uses("http/node_proxy.rs", "crate::http::state"));
}
