//! `cargo xtask dashboard`: build the web dashboard (`control/dashboard`,
//! TypeScript + Preact, bundled by Vite) into `control/dashboard/dist`, which
//! the API server serves at `/dashboard/` (`--dashboard-dir`).
//!
//! `up` and `test` call [`ensure_built`]: the packages are installed with
//! `npm ci` (exactly the versions in `package-lock.json`) when
//! `node_modules` is missing or older than the lock file, and the bundle is
//! rebuilt when any source file is newer than it, so a cluster started many
//! times (every story does) builds it once.

use crate::util::{have, run, step, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The dashboard's sources.
pub fn source_dir() -> PathBuf {
    workspace_root().join("control/dashboard")
}

/// The built dashboard the API server serves.
pub fn dist_dir() -> PathBuf {
    source_dir().join("dist")
}

/// Build the dashboard now (`cargo xtask dashboard`).
pub fn build() -> Result<()> {
    install_packages(true)?;
    bundle()
}

/// Build the dashboard if it is missing or older than its sources.
pub fn ensure_built() -> Result<()> {
    install_packages(false)?;
    let built = newest(&dist_dir().join("index.html"));
    let sources = [
        "src",
        "index.html",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ]
    .iter()
    .filter_map(|p| newest(&source_dir().join(p)))
    .max();
    match (built, sources) {
        (Some(b), Some(s)) if b >= s => Ok(()),
        _ => bundle(),
    }
}

fn npm() -> Result<Command> {
    if !have("npm") || !have("node") {
        bail!(
            "the dashboard is built with Node.js and npm, which this machine lacks (machines of this kind ship both)"
        );
    }
    let mut cmd = Command::new("npm");
    // Node trusts only its own CA bundle; the machine's (with an egress
    // proxy's CA, when there is one) is the system store. Machines of this
    // kind set NODE_EXTRA_CA_CERTS; a clean environment (fresh-check) does not.
    let system_store = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if std::env::var_os("NODE_EXTRA_CA_CERTS").is_none() && system_store.is_file() {
        cmd.env("NODE_EXTRA_CA_CERTS", system_store);
    }
    cmd.current_dir(source_dir())
        .args(["--no-audit", "--no-fund", "--loglevel=error"]);
    Ok(cmd)
}

/// The dashboard's own unit tests (`npm test`: vitest, with a whole-page
/// test in a simulated DOM against a fake API).
pub fn unit_tests() -> Result<()> {
    install_packages(false)?;
    step("running the dashboard's unit tests (vitest)");
    run(npm()?.arg("test"))
}

/// `npm ci` when `node_modules` is missing or older than the lock file (or always with `force`).
fn install_packages(force: bool) -> Result<()> {
    let installed = newest_file(&source_dir().join("node_modules/.package-lock.json"));
    let lock = newest_file(&source_dir().join("package-lock.json"));
    if !force && installed.is_some() && installed >= lock {
        return Ok(());
    }
    step("installing the dashboard's npm packages (npm ci)");
    run(npm()?.arg("ci"))
}

fn bundle() -> Result<()> {
    step("building the dashboard (tsc + vite) into control/dashboard/dist");
    run(npm()?.args(["run", "build"]))?;
    let index = dist_dir().join("index.html");
    if !index.is_file() {
        bail!("the dashboard build wrote no {}", index.display());
    }
    Ok(())
}

/// Modification time of a file.
fn newest_file(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of any file under a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| newest(&e.path()))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_time_under_a_directory_is_its_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/old"), "").unwrap();
        let old = newest(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("a/new"), "").unwrap();
        let new = newest(dir.path()).unwrap();
        assert!(new > old);
        assert_eq!(newest(&dir.path().join("missing")), None);
    }
}
