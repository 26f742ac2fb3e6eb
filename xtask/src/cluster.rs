//! `cargo xtask up` / `cargo xtask down`: a Sluice cluster on this machine.
//!
//! `up` installs what is missing, builds the binaries, writes certificates and
//! the admin kubeconfig under `$SLUICE_HOME`, then starts every entry of
//! [`components`] in order, in the background (own session, logs under
//! `$SLUICE_HOME/logs`, pid files under `$SLUICE_HOME/run`), waiting for each
//! to be ready. `down` stops them in reverse order by pid, after checking the
//! pid still runs the binary we started, and keeps the data unless `--purge`.
//!
//! Adding a component (controller-manager, scheduler, containerd, noded) means
//! adding one [`Component`] to [`components`].

use crate::util::{ensure_packages, run, step, workspace_root};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Arguments of `cargo xtask up`.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Build debug binaries instead of release ones (faster to build, slower to run).
    #[arg(long)]
    pub debug: bool,
    /// Use the binaries already in this directory instead of building them.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Arguments of `cargo xtask down`.
#[derive(Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Also delete all data under $SLUICE_HOME.
    #[arg(long)]
    pub purge: bool,
}

/// Where the cluster lives and which ports it uses (tests run a second one
/// beside the default with another home and ports).
#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// State directory: certificates, kubeconfig, etcd data, logs, pid files
    /// [default: $SLUICE_HOME, else /var/lib/sluice].
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// etcd client port (etcd's peer port is this plus one).
    #[arg(long, default_value_t = 2379)]
    pub etcd_port: u16,
}

/// Paths and ports of one cluster, derived from [`ClusterArgs`].
pub struct Cluster {
    home: PathBuf,
    apiserver_port: u16,
    etcd_port: u16,
    /// Directory holding the workspace binaries (`apiserver`, ...).
    bin_dir: PathBuf,
}

impl Cluster {
    fn new(args: &ClusterArgs, bin_dir: PathBuf) -> Cluster {
        let home = args
            .home
            .clone()
            .or_else(|| std::env::var_os("SLUICE_HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/sluice"));
        Cluster {
            home,
            apiserver_port: args.apiserver_port,
            etcd_port: args.etcd_port,
            bin_dir,
        }
    }
    fn pki(&self) -> PathBuf {
        self.home.join("pki")
    }
    fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.home.join("admin.kubeconfig")
    }
    fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }
    fn etcd_peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port + 1)
    }
    fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }
    fn pid_file(&self, c: &Component) -> PathBuf {
        self.run_dir().join(format!("{}.pid", c.name))
    }
    fn log_file(&self, c: &Component) -> PathBuf {
        self.logs().join(format!("{}.log", c.name))
    }
    fn program(&self, c: &Component) -> PathBuf {
        match c.binary {
            Binary::System(name) => PathBuf::from(name),
            Binary::Workspace(name) => self.bin_dir.join(name),
        }
    }
}

/// Where a component's executable comes from.
#[derive(Clone, Copy)]
enum Binary {
    /// A program on PATH, installed from a Debian package.
    System(&'static str),
    /// A binary of this workspace, built by `up`.
    Workspace(&'static str),
}

impl Binary {
    /// The executable's file name, used to check a pid still runs it.
    fn file_name(self) -> &'static str {
        match self {
            Binary::System(n) | Binary::Workspace(n) => n,
        }
    }
}

/// How `up` knows a component is ready.
#[derive(Clone, Copy)]
enum Ready {
    /// Plain HTTP GET answering 2xx on a URL built from the cluster.
    Http(fn(&Cluster) -> String),
    /// HTTPS GET answering 2xx, verified with the cluster CA.
    Https(fn(&Cluster) -> String),
    /// No endpoint to ask (controllers that only talk to the API server):
    /// ready once the process has stayed up for [`ALIVE_GRACE`].
    Alive,
}

/// How long a [`Ready::Alive`] component must stay up to count as started.
const ALIVE_GRACE: Duration = Duration::from_secs(2);

/// One process `up` manages.
struct Component {
    /// Name used for its pid file and log file.
    name: &'static str,
    binary: Binary,
    /// Command-line arguments.
    args: fn(&Cluster) -> Vec<String>,
    ready: Ready,
}

/// Every managed process, in start order (`down` stops them in reverse).
fn components() -> Vec<Component> {
    vec![
        Component {
            name: "etcd",
            binary: Binary::System("etcd"),
            args: |c| {
                vec![
                    "--name=sluice".into(),
                    format!("--data-dir={}", c.home.join("etcd").display()),
                    format!("--listen-client-urls={}", c.etcd_url()),
                    format!("--advertise-client-urls={}", c.etcd_url()),
                    format!("--listen-peer-urls={}", c.etcd_peer_url()),
                    format!("--initial-advertise-peer-urls={}", c.etcd_peer_url()),
                    format!("--initial-cluster=sluice={}", c.etcd_peer_url()),
                    "--log-level=warn".into(),
                ]
            },
            ready: Ready::Http(|c| format!("{}/health", c.etcd_url())),
        },
        Component {
            name: "apiserver",
            binary: Binary::Workspace("apiserver"),
            args: |c| {
                vec![
                    "serve".into(),
                    format!("--etcd-servers={}", c.etcd_url()),
                    format!("--secure-port={}", c.apiserver_port),
                    format!("--cert-dir={}", c.pki().display()),
                ]
            },
            ready: Ready::Https(|c| format!("{}/readyz", c.apiserver_url())),
        },
        Component {
            name: "controller-manager",
            binary: Binary::Workspace("controller-manager"),
            args: |c| vec![format!("--kubeconfig={}", c.kubeconfig().display())],
            ready: Ready::Alive,
        },
        Component {
            name: "scheduler",
            binary: Binary::Workspace("scheduler"),
            args: |c| vec![format!("--kubeconfig={}", c.kubeconfig().display())],
            ready: Ready::Alive,
        },
    ]
}

/// Debian packages `up` needs: (command, package).
const PACKAGES: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("curl", "curl"),
    ("setsid", "util-linux"),
    ("protoc", "protobuf-compiler"),
];

/// Directory cargo puts binaries of `profile` in.
fn target_bin_dir(profile: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join(profile)
}

/// Start a cluster.
pub fn up(args: UpArgs) -> Result<()> {
    ensure_packages(PACKAGES)?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            let profile = if args.debug { "debug" } else { "release" };
            step(&format!("building the Sluice binaries ({profile})"));
            let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cargo.current_dir(workspace_root()).args(["build", "--bins"]);
            if !args.debug {
                cargo.arg("--release");
            }
            run(&mut cargo)?;
            target_bin_dir(profile)
        }
    };
    let cluster = Cluster::new(&args.cluster, bin_dir);
    for dir in [cluster.home.clone(), cluster.pki(), cluster.logs(), cluster.run_dir()] {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    if cluster.kubeconfig().exists() {
        step(&format!("admin kubeconfig exists: {}", cluster.kubeconfig().display()));
    } else {
        step("generating the cluster CA and the admin kubeconfig");
        let apiserver = cluster.bin_dir.join("apiserver");
        run(Command::new(&apiserver)
            .arg("kubeconfig")
            .arg("--cert-dir")
            .arg(cluster.pki())
            .arg("--server")
            .arg(cluster.apiserver_url())
            .args(["--user", "admin", "--group", "system:masters"])
            .arg("--out")
            .arg(cluster.kubeconfig()))?;
    }

    for c in components() {
        if let Some(pid) = running_pid(&cluster, &c) {
            step(&format!("{} is already running (pid {pid})", c.name));
            continue;
        }
        let pid = start(&cluster, &c)?;
        step(&format!("started {} (pid {pid}), waiting until it is ready", c.name));
        wait_ready(&cluster, &c, pid)?;
    }
    println!("Sluice is up. Logs: {}", cluster.logs().display());
    println!("export KUBECONFIG={}", cluster.kubeconfig().display());
    Ok(())
}

/// Stop the cluster.
pub fn down(args: DownArgs) -> Result<()> {
    let cluster = Cluster::new(&args.cluster, PathBuf::new());
    for c in components().iter().rev() {
        let pid_file = cluster.pid_file(c);
        match running_pid(&cluster, c) {
            Some(pid) => {
                step(&format!("stopping {} (pid {pid})", c.name));
                stop(pid)?;
            }
            None => step(&format!("{} is not running", c.name)),
        }
        let _ = fs::remove_file(&pid_file);
    }
    if args.purge {
        let home = &cluster.home;
        if home.parent().is_none() || home.as_os_str().is_empty() {
            bail!("refusing to purge {}", home.display());
        }
        if home.exists() {
            step(&format!("deleting {}", home.display()));
            fs::remove_dir_all(home).with_context(|| format!("deleting {}", home.display()))?;
        }
    } else {
        println!("Data kept under {} (use --purge to delete it).", cluster.home.display());
    }
    Ok(())
}

/// The pid in the component's pid file, if that process is alive and still runs
/// the component's binary (a recycled pid is not ours).
fn running_pid(cluster: &Cluster, c: &Component) -> Option<u32> {
    let pid: u32 = fs::read_to_string(cluster.pid_file(c)).ok()?.trim().parse().ok()?;
    process_runs(pid, c.binary.file_name()).then_some(pid)
}

/// Whether `pid` is alive and its executable is named `name`.
fn process_runs(pid: u32, name: &str) -> bool {
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A binary rebuilt while running shows as "<path> (deleted)".
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // State is the field after the parenthesised command name; Z is a zombie.
            s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false)
        })
        .unwrap_or(false);
    alive && Path::new(exe).file_name().is_some_and(|f| f == name)
}

/// Start a component detached in its own session, logging to its log file.
fn start(cluster: &Cluster, c: &Component) -> Result<u32> {
    let program = cluster.program(c);
    if matches!(c.binary, Binary::Workspace(_)) && !program.exists() {
        bail!("{} is not built", program.display());
    }
    let log_path = cluster.log_file(c);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    // `setsid` execs the program in place (same pid) in a new session, so it
    // outlives this command and a Ctrl-C in the terminal does not reach it.
    let child = Command::new("setsid")
        .arg(&program)
        .args((c.args)(cluster))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    fs::write(cluster.pid_file(c), format!("{pid}\n"))?;
    Ok(pid)
}

/// Wait until the component answers its readiness check; fail with the end of
/// its log if it exits or takes too long.
fn wait_ready(cluster: &Cluster, c: &Component, pid: u32) -> Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let mut last_note = Instant::now();
    loop {
        if is_ready(cluster, c.ready) {
            return Ok(());
        }
        // setsid may still be exec'ing the program during the first instants.
        let exe_ok = process_runs(pid, c.binary.file_name()) || process_runs(pid, "setsid");
        if matches!(c.ready, Ready::Alive) && exe_ok && started.elapsed() >= ALIVE_GRACE {
            return Ok(());
        }
        if !exe_ok {
            bail!(
                "{} exited during startup; end of {}:\n{}",
                c.name,
                cluster.log_file(c).display(),
                log_tail(&cluster.log_file(c))
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready after 90 s; end of {}:\n{}",
                c.name,
                cluster.log_file(c).display(),
                log_tail(&cluster.log_file(c))
            );
        }
        if last_note.elapsed() > Duration::from_secs(10) {
            step(&format!("still waiting for {}", c.name));
            last_note = Instant::now();
        }
        sleep(Duration::from_millis(250));
    }
}

fn is_ready(cluster: &Cluster, ready: Ready) -> bool {
    let mut curl = Command::new("curl");
    curl.args(["-sf", "-o", "/dev/null", "--max-time", "2"]);
    match ready {
        Ready::Http(url) => {
            curl.arg(url(cluster));
        }
        Ready::Https(url) => {
            curl.arg("--cacert").arg(cluster.pki().join("ca.crt")).arg(url(cluster));
        }
        // Judged by `wait_ready` from the process staying up.
        Ready::Alive => return false,
    }
    curl.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// SIGTERM, then SIGKILL after 10 s if the process is still there.
fn stop(pid: u32) -> Result<()> {
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
    };
    signal("-TERM").context("running kill")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    step(&format!("pid {pid} ignored SIGTERM; sending SIGKILL"));
    signal("-KILL").context("running kill")?;
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}
