//! A real image registry for tests: Debian's `docker-registry` (CNCF
//! distribution 2.8), the same program `cargo xtask up` runs as the cluster
//! registry.
//!
//! [`Registry::start`] runs one on a free loopback port with its storage in a
//! temp dir (killed by pid on drop); [`Registry::start_at`] listens on a given
//! `ip:port` (e.g. a test cluster's bridge address) and can require htpasswd
//! basic auth (`htpasswd -B`, from apache2-utils). Images go in with skopeo,
//! through `xtask images` so names are laid out exactly as nodes pull them
//! (`busybox:1.35.0` → repository `docker.io/library/busybox`): pushing the
//! cached archives of `target/sluice-images` only uploads what the registry
//! lacks, so a fresh registry with busybox and pause costs well under a second
//! once the archives exist.

use crate::{free_port, run_ok, workspace_bin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `ip:port` it listens on (plain HTTP).
    pub addr: String,
    /// `user:password` when it requires basic auth.
    pub creds: Option<String>,
}

impl Registry {
    /// A registry on a free loopback port, no auth.
    pub fn start() -> Registry {
        Registry::start_at(&format!("127.0.0.1:{}", free_port()), None)
    }

    /// A registry on `addr` (`ip:port`), requiring `user:password` when `creds` is given.
    pub fn start_at(addr: &str, creds: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("sluice-registry-")
            .tempdir()
            .expect("temp dir");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, password)) = creds {
            let htpasswd = dir.path().join("htpasswd");
            let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: sluice-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let mut registry = Registry {
            child: Some(child),
            dir,
            addr: addr.to_string(),
            creds: creds.map(|(u, p)| format!("{u}:{p}")),
        };
        registry.wait_ready(Duration::from_secs(20));
        registry
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            // 200, or 401 when auth is on: either way it answers.
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1"])
                .arg(format!("http://{}/v2/", self.addr))
                .output();
            if out.is_ok_and(|o| matches!(&o.stdout[..], b"200" | b"401")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry on {} not ready after {timeout:?}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Build (cached) and push our images (`busybox`, `pause`, `nginx`, `redis`)
    /// under their usual names.
    pub fn push_images(&self, names: &[&str]) {
        let mut xtask = Command::new(workspace_bin("xtask"));
        xtask.arg("images").args(["--registry", &self.addr]);
        for name in names {
            xtask.args(["--only", name]);
        }
        if let Some(creds) = &self.creds {
            xtask.args(["--creds", creds]);
        }
        run_ok(&mut xtask);
    }

    /// Push `source` (OCI archive, docker archive, OCI layout dir or skopeo
    /// source) as `name` written the way pods write it (`myapp:1`).
    pub fn push(&self, source: &Path, name: &str) {
        let mut xtask = Command::new(workspace_bin("xtask"));
        xtask
            .args(["images", "push"])
            .arg(source)
            .arg(name)
            .args(["--registry", &self.addr]);
        if let Some(creds) = &self.creds {
            xtask.args(["--creds", creds]);
        }
        run_ok(&mut xtask);
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- registry {} log tail ---\n{}",
                self.addr,
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
    }
}

/// The cached OCI archive of one of our images (`busybox`, `pause`, `nginx`,
/// `redis`), built by `xtask images --no-push` if missing.
pub fn cached_archive(name: &str) -> PathBuf {
    run_ok(
        Command::new(workspace_bin("xtask"))
            .args(["images", "--no-push", "--only", name])
            .stdout(Stdio::null()),
    );
    let archive = crate::workspace_root()
        .join("target")
        .join("sluice-images")
        .join(format!("{name}.tar"));
    assert!(archive.exists(), "{} was not built", archive.display());
    archive
}

/// A copy of the OCI archive `base` with `label=value` added to its config:
/// the same files under a new digest (a "new release" of an image), written
/// into `dir`.
pub fn relabelled(base: &Path, dir: &Path, label: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{}", label.replace(['=', '/'], "-")));
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(&layout).expect("layout dir");
    run_ok(Command::new("tar").arg("-xf").arg(base).arg("-C").arg(&layout));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("index json");
    let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or("latest")
        .to_string();
    let image = format!("{}:{tag}", layout.display());
    run_ok(Command::new("umoci").args(["config", "--image", &image, &format!("--config.label={label}")]));
    run_ok(Command::new("umoci").arg("gc").arg("--layout").arg(&layout));
    let archive = dir.join(format!("{}.tar", layout.file_name().unwrap().to_string_lossy()));
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
    );
    archive
}
