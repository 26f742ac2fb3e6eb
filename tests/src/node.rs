//! Node-side harness: a private containerd per test, with the local images.
//!
//! [`Containerd::start`] does what `cargo xtask up` does for one node: it
//! writes the node's containerd config with `xtask containerd config`,
//! starts containerd on it, and imports the busybox and pause images with
//! `xtask images --import`. Dropping it kills containerd by pid and runs
//! `xtask containerd cleanup`, which removes that instance's shims,
//! containers, mounts and network namespaces, and its directory.

use crate::workspace_bin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The busybox image every test pod uses (has `httpd`).
pub const BUSYBOX_IMAGE: &str = "sluice.local/busybox:latest";
/// The pause image containerd's config names as `sandbox_image`.
pub const PAUSE_IMAGE: &str = "sluice.local/pause:3.10";

/// A running containerd with its own root, state, socket and CNI dirs.
pub struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
    /// The gRPC (CRI) socket.
    pub socket: PathBuf,
    /// Where the node's CNI conflist goes.
    pub cni_conf_dir: PathBuf,
}

/// Run the workspace's `xtask` binary, returning stdout; panics with stderr on failure.
fn xtask(args: &[&str]) -> String {
    let out = Command::new(workspace_bin("xtask")).args(args).output().expect("run xtask");
    assert!(
        out.status.success(),
        "xtask {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Containerd {
    /// Start a containerd whose CNI bin dir holds `sluice-cni` (from the target dir).
    pub fn start() -> Containerd {
        // Short path: the socket path must fit in a sockaddr_un (108 bytes).
        let dir = PathBuf::from(format!("/tmp/sl-ctrd-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("containerd dir");
        let dir_arg = dir.display().to_string();
        let plugin = workspace_bin("sluice-cni").display().to_string();
        let printed = xtask(&["containerd", "config", "--dir", &dir_arg, "--cni-plugin", &plugin]);
        let value = |key: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("xtask containerd config printed no {key}: {printed}"))
        };
        let (config, socket, cni_conf_dir) = (value("config"), value("socket"), value("cni_conf_dir"));
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Containerd { dir, child: Some(child), socket, cni_conf_dir };
        containerd.wait_ready(Duration::from_secs(30));
        xtask(&["images", "--import", &containerd.socket.display().to_string()]);
        containerd
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("containerd exited with {status}: {}", self.log());
                }
            }
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "containerd not ready after {timeout:?}: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(workspace_bin("xtask"))
            .args(["containerd", "cleanup", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
    }
}

/// A number unique within this process (several containerds per test binary).
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
