//! `cargo xtask containerd`: one private containerd per (simulated) node.
//!
//! Every node of a Sluice cluster on this machine gets its own containerd
//! with its own root, state, socket, runc state root and CNI directories, all
//! under one directory, so several nodes run side by side and `cleanup`
//! removes exactly one node's containers, mounts and network namespaces.
//! The config carries what this machine needs (see
//! `shared/notes/platform-facts.md`): `restrict_oom_score_adj = true`, our
//! pause image as `sandbox_image`, and registry mirrors: `config_path` points
//! at `certs.d/` with one `hosts.toml` per registry ([`crate::registry`]), so
//! every pull goes through the cluster registry first.
//!
//! Directory layout ([`ContainerdLayout`]):
//! `config.toml`, `containerd.sock`, `root/`, `state/`, `runc/` (runc `--root`),
//! `opt/`, `certs.d/<registry>/hosts.toml`, `cni/bin/` (our `sluice-cni` plus
//! links to `/usr/lib/cni/*`), `cni/net.d/` (written by `noded` once the node
//! has a podCIDR).

use crate::images::pause_image;
use crate::registry::{self, UserRegistries};
use crate::util::step;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the distribution's reference CNI plugins live (`loopback` etc.).
pub const SYSTEM_CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Arguments of `cargo xtask containerd`.
#[derive(Args)]
pub struct ContainerdArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Create the directory layout and write `config.toml`; prints `key=path` lines
    /// (config, socket, cni_bin_dir, cni_conf_dir).
    Config {
        /// The node's containerd directory.
        #[arg(long)]
        dir: PathBuf,
        /// The `sluice-cni` binary to install into the node's CNI bin dir.
        #[arg(long)]
        cni_plugin: Option<PathBuf>,
        /// The cluster registry (`ip:port`) every upstream is mirrored through.
        #[arg(long, value_name = "ADDR")]
        registry: Option<String>,
        /// Users' mirrors and credentials (the `registries.yaml` format).
        #[arg(long, value_name = "FILE")]
        registries_yaml: Option<PathBuf>,
    },
    /// Kill what an instance left running (containerd, shims, containers) by
    /// pid, unmount its mounts and network namespaces, and delete the directory.
    Cleanup {
        /// The node's containerd directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `cargo xtask containerd ...`.
pub fn containerd(args: ContainerdArgs) -> Result<()> {
    match args.action {
        Action::Config {
            dir,
            cni_plugin,
            registry,
            registries_yaml,
        } => {
            let user = match registries_yaml {
                Some(file) => UserRegistries::parse(
                    &fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
                )
                .with_context(|| format!("parsing {}", file.display()))?,
                None => UserRegistries::default(),
            };
            let layout = ContainerdLayout::new(dir);
            let config = layout.prepare(cni_plugin.as_deref(), registry.as_deref(), &user)?;
            println!("config={}", config.display());
            println!("socket={}", layout.socket().display());
            println!("cni_bin_dir={}", layout.cni_bin_dir().display());
            println!("cni_conf_dir={}", layout.cni_conf_dir().display());
            Ok(())
        }
        Action::Cleanup { dir } => ContainerdLayout::new(dir).cleanup(),
    }
}

/// The files and directories of one node's containerd.
pub struct ContainerdLayout {
    dir: PathBuf,
}

impl ContainerdLayout {
    /// A layout rooted at `dir` (made absolute; nothing is created yet).
    pub fn new(dir: PathBuf) -> Self {
        let dir = if dir.is_absolute() {
            dir
        } else {
            std::env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir)
        };
        Self { dir }
    }

    /// The config file to pass as `containerd --config`.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// The gRPC socket (CRI and `ctr --address`).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The CNI plugin directory containerd executes plugins from.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.join("cni").join("bin")
    }

    /// The CNI config directory (`noded` writes the node's conflist here).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni").join("net.d")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// containerd's `config_path`: one `<registry>/hosts.toml` per registry.
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// Create the directories, fill the CNI bin dir, write the registry hosts
    /// (mirrors through `cluster_registry`, `ip:port`, plus the user's) and the config.
    pub fn prepare(
        &self,
        cni_plugin: Option<&Path>,
        cluster_registry: Option<&str>,
        user: &UserRegistries,
    ) -> Result<PathBuf> {
        for dir in [
            self.dir.join("root"),
            self.dir.join("state"),
            self.runc_root(),
            self.dir.join("opt"),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::create_dir_all(self.cni_conf_dir())?;
        let bin = self.cni_bin_dir();
        fs::create_dir_all(&bin)?;
        if let Ok(entries) = fs::read_dir(SYSTEM_CNI_BIN_DIR) {
            for entry in entries.flatten() {
                let link = bin.join(entry.file_name());
                if fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(entry.path(), &link)?;
                }
            }
        }
        if let Some(plugin) = cni_plugin {
            let plugin =
                fs::canonicalize(plugin).with_context(|| format!("CNI plugin {} not found", plugin.display()))?;
            let link = bin.join("sluice-cni");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(plugin, &link)?;
        }
        registry::render_hosts_dir(&self.hosts_dir(), cluster_registry, user)?;
        let config = self.config_file();
        fs::write(&config, self.render_config(user)).with_context(|| format!("writing {}", config.display()))?;
        Ok(config)
    }

    /// containerd config version 2 for this node.
    pub fn render_config(&self, user: &UserRegistries) -> String {
        let d = self.dir.display();
        let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
        let pause = pause_image();
        let auth = user.render_cri_auth();
        format!(
            r#"# Generated by `cargo xtask containerd config`: one private containerd per node.
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  # Our own pause binary, pulled through the cluster registry like any image.
  sandbox_image = "{pause}"
  # Required on this machine: runc cannot lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [{cri}.cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1

  [{cri}.containerd]
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        # Each node's runc keeps its container state apart from the others'.
        Root = "{d}/runc"
        SystemdCgroup = false

  [{cri}.registry]
    # One hosts.toml per registry: the cluster registry mirrors them all.
    config_path = "{d}/certs.d"
{auth}"#
        )
    }

    /// Remove everything this instance left behind. Safe to call repeatedly.
    pub fn cleanup(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        step(&format!("cleaning up containerd in {}", self.dir.display()));
        let netns = self.sandbox_netns();
        // containerd and its shims reference this directory on their command line.
        for pid in processes_mentioning(&self.dir) {
            kill(pid);
        }
        // Container processes: ask this instance's runc state root.
        let runc_root = self.runc_root();
        for ns in fs::read_dir(&runc_root).into_iter().flatten().flatten() {
            let root = ns.path();
            let ids = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"])
                .output();
            for id in ids.iter().flat_map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .into_owned()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }) {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", &id])
                    .output();
            }
        }
        for path in netns {
            let _ = Command::new("umount").arg(&path).output();
            let _ = fs::remove_file(&path);
        }
        unmount_below(&self.dir);
        fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))
    }

    /// Network namespaces of this instance's sandboxes: named in the OCI
    /// bundles of running sandboxes and in containerd's metadata (where a
    /// stopped but not yet removed sandbox, e.g. of a pod still terminating
    /// when `down` ran, still records the namespace CRI made for it).
    fn sandbox_netns(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let tasks = self.dir.join("state").join("io.containerd.runtime.v2.task");
        for ns in fs::read_dir(tasks).into_iter().flatten().flatten() {
            for bundle in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                if let Ok(spec) = fs::read(bundle.path().join("config.json")) {
                    netns_paths_in(&spec, &mut found);
                }
            }
        }
        let meta = self
            .dir
            .join("root")
            .join("io.containerd.metadata.v1.bolt")
            .join("meta.db");
        if let Ok(db) = fs::read(meta) {
            netns_paths_in(&db, &mut found);
        }
        found.sort();
        found.dedup();
        // Deleted records may linger in the database's free pages: keep what exists.
        found.retain(|p| p.exists());
        found
    }
}

/// Every `/var/run/netns/cni-<id>` (CRI's sandbox namespaces) named in `bytes`.
fn netns_paths_in(bytes: &[u8], out: &mut Vec<PathBuf>) {
    const NEEDLE: &[u8] = b"/var/run/netns/cni-";
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(NEEDLE.len()).position(|w| w == NEEDLE) {
        let start = at + pos;
        let end = bytes[start + NEEDLE.len()..]
            .iter()
            .position(|b| !(b.is_ascii_hexdigit() || *b == b'-'))
            .map_or(bytes.len(), |n| start + NEEDLE.len() + n);
        if end > start + NEEDLE.len() {
            out.push(PathBuf::from(String::from_utf8_lossy(&bytes[start..end]).into_owned()));
        }
        at = end;
    }
}

/// Pids of processes whose command line mentions `dir` (never our own).
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILL one process by pid.
fn kill(pid: u32) {
    let _ = crate::process::signal(pid, libc::SIGKILL);
}

/// Unmount every mount point below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(point).output();
    }
}
