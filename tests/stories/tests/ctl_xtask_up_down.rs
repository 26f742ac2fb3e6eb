//! A new user starts a cluster with `cargo xtask up`, uses it with ctl and
//! kubectl, stops it with `cargo xtask down` (data kept), starts it again and
//! finds their objects, then purges it. The cluster runs in its own
//! SLUICE_HOME (a temp dir) on free ports, so it never touches a real
//! /var/lib/sluice cluster on the same machine.

use sluice_tests::{free_port, run_ok as ok, workspace_bin};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `xtask` against one temp cluster; on drop stops whatever is still running.
struct TempCluster {
    home: tempfile::TempDir,
    apiserver_port: u16,
    etcd_port: u16,
}

impl TempCluster {
    fn new() -> TempCluster {
        // etcd uses the client port and the one above it (peer).
        let etcd_port = loop {
            let p = free_port();
            if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
                break p;
            }
        };
        TempCluster {
            home: tempfile::Builder::new()
                .prefix("sluice-home-")
                .tempdir()
                .expect("temp dir"),
            apiserver_port: free_port(),
            etcd_port,
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn xtask(&self, task: &str) -> Command {
        let mut c = Command::new(workspace_bin("xtask"));
        c.arg(task)
            .arg("--home")
            .arg(self.home())
            .args(["--apiserver-port", &self.apiserver_port.to_string()])
            .args(["--etcd-port", &self.etcd_port.to_string()]);
        if task == "up" {
            let bins: PathBuf = workspace_bin("apiserver").parent().expect("bin dir").to_path_buf();
            // The control plane only: nodes have their own stories (cluster_*.rs).
            c.arg("--bin-dir").arg(bins).args(["--nodes", "0"]);
        }
        c
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.home().join("run").join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.xtask("down").output();
        // Belt and braces: if `down` failed, kill what the pid files name, if it is still ours.
        for name in ["scheduler", "controller-manager", "apiserver", "etcd"] {
            if let Some(pid) = self.pid(name) {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
                if exe.file_name().is_some_and(|f| f.to_string_lossy().starts_with(name)) {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn xtask_up_then_down_keeps_data_and_purge_removes_it() {
    let cluster = TempCluster::new();
    let kubeconfig = cluster.home().join("admin.kubeconfig");

    let up = ok(&mut cluster.xtask("up"));
    let printed = String::from_utf8_lossy(&up.stdout);
    assert!(
        printed.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{printed}"
    );
    assert!(kubeconfig.exists());
    assert!(cluster.home().join("logs/apiserver.log").exists() && cluster.home().join("logs/etcd.log").exists());
    let (etcd, apiserver) = (
        cluster.pid("etcd").expect("etcd pid"),
        cluster.pid("apiserver").expect("apiserver pid"),
    );
    assert!(alive(etcd) && alive(apiserver));
    let controllers: Vec<u32> = ["controller-manager", "scheduler"]
        .iter()
        .map(|name| cluster.pid(name).unwrap_or_else(|| panic!("{name} pid")))
        .collect();
    assert!(
        controllers.iter().all(|&pid| alive(pid)),
        "controller-manager and scheduler run"
    );

    // The printed kubeconfig works for kubectl and ctl.
    let ns = ok(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "ns", "-o", "name"]));
    assert!(String::from_utf8_lossy(&ns.stdout).contains("namespace/default"));
    let manifest = cluster.home().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: b}\n",
    )
    .expect("write");
    ok(Command::new(workspace_bin("ctl"))
        .env("SLUICE_HOME", cluster.home())
        .env_remove("KUBECONFIG")
        .arg("apply")
        .arg("-f")
        .arg(&manifest));

    // `up` again is a no-op that says so.
    let again = ok(&mut cluster.xtask("up"));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
    assert_eq!(
        (cluster.pid("etcd"), cluster.pid("apiserver")),
        (Some(etcd), Some(apiserver))
    );

    // `down` stops both by pid and keeps the data.
    ok(&mut cluster.xtask("down"));
    assert!(!alive(etcd) && !alive(apiserver), "processes still running after down");
    assert!(
        controllers.iter().all(|&pid| !alive(pid)),
        "controllers still running after down"
    );
    assert!(cluster.home().join("etcd").exists(), "etcd data kept");

    // Up again: the object created before is still there.
    ok(&mut cluster.xtask("up"));
    let got = ok(Command::new(workspace_bin("ctl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "cm", "kept", "-o", "json"]));
    let cm: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(cm["data"]["a"], "b");

    // down --purge removes everything.
    let (etcd, apiserver) = (
        cluster.pid("etcd").expect("etcd pid"),
        cluster.pid("apiserver").expect("apiserver pid"),
    );
    ok(cluster.xtask("down").arg("--purge"));
    assert!(!alive(etcd) && !alive(apiserver));
    assert!(!cluster.home().exists(), "home purged");
}
