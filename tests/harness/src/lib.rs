//! Harness for Sluice's end-to-end tests.
//!
//! Tests in `tests/tests/` start real processes (etcd, the API server, ...)
//! built into the same target directory as the test binary (`cargo xtask
//! test`, or `cargo build -p sluice-apiserver` first); this crate finds them
//! and cleans up after them (kill by pid, temp dirs removed on drop).
//!
//! # Quick start
//! ```ignore
//! use sluice_tests::ControlPlane;
//! #[tokio::test]
//! async fn my_story() {
//!     let cp = ControlPlane::start().await;          // etcd + apiserver on free ports
//!     let client: kube::Client = cp.client().await;   // admin (client certificate)
//!     let raw = cp.raw().await;                       // raw HTTP for Status assertions
//!     let resp = raw.get("/api/v1/namespaces/nope").await;
//!     assert_eq!(resp.status, 404);
//!     assert_eq!(resp.json()["reason"], "NotFound");
//!     // kubectl: `Command::new("kubectl").arg("--kubeconfig").arg(cp.kubeconfig_path())`
//! }
//! ```
//! * [`ControlPlane::start_with`] passes extra `apiserver serve` flags
//!   (e.g. `--event-ttl 5s`).
//! * [`ControlPlane::restart_apiserver`] restarts the API server on the same
//!   port, cert dir and etcd.
//! * [`Etcd`] and [`ApiServer`] are usable separately, e.g. two API servers
//!   on one etcd: `let etcd = Etcd::start().await; let a = ApiServer::start(&etcd, &[]).await;
//!   let b = ApiServer::start_sharing(&etcd, &a, &[]).await;` (same CA and tokens).
//! * [`Etcd`] serves TLS only, with client certificates of a CA of its own
//!   (made per etcd in its temp dir, as `cargo xtask up` serves etcd), so the
//!   API server gets `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`,
//!   never `--etcd-allow-insecure`. [`Etcd::etcdctl`] runs etcdctl against
//!   it with those files (e.g. `compact`); [`Etcd::tls`] hands them to any
//!   other client.
//! * On a panicking test, the guards print the tail of each process log.
//! * [`https`] and [`webhook`] run real HTTPS servers (test CA, recorded
//!   requests) for admission webhooks and aggregated API servers.

pub mod browser;
pub mod cluster;
pub mod controllers;
pub mod https;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod scheduling;
pub mod webhook;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The bearer token the harness writes for the admin user.
pub const ADMIN_TOKEN: &str = "sluice-test-admin-token";

/// Path of a workspace binary built into the same target directory as this test.
///
/// Panics with a clear message when it has not been built: run `cargo xtask test`
/// (or `cargo build --workspace --bins`) first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // A test lives in target/<profile>/deps/<test> -> target/<profile>/<name>;
    // a binary of this crate (e.g. a benchmark) lives next to the others.
    let here = exe.parent().expect("executable has a directory");
    let path = if here.join(name).exists() {
        here.join(name)
    } else {
        here.parent()
            .expect("test executable lives in target/<profile>/deps")
            .join(name)
    };
    assert!(
        path.exists(),
        "{} is not built; run `cargo xtask test` or `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/harness lives two levels below the workspace root")
        .to_path_buf()
}

/// Where [`free_port`] hands ports out: below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768–60999 by default), so no
/// `bind(0)` or outgoing connection of any process can take a port between
/// the harness choosing it and the component binding it; and below the
/// NodePort range (30000–32767), which a test cluster's Services use.
const PORTS: std::ops::Range<u16> = 20_000..30_000;

/// A free TCP port on loopback, never one another test process holds or
/// this process was given before.
///
/// Tests run as many processes at once (nextest runs each in its own), and
/// a component binds its port a moment after the harness chose it. A port
/// is therefore taken from [`PORTS`], outside the kernel's ephemeral range,
/// and held for this process's lifetime by an abstract Unix socket named
/// after it: the kernel releases that name when the process exits, leaving
/// no file behind. Ports are handed out two apart (even numbers only), so
/// a component that also listens on the port after its own (etcd's peers
/// are given out the same way) never meets another's.
pub fn free_port() -> u16 {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    static HELD: std::sync::Mutex<Vec<UnixListener>> = std::sync::Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let slots = u32::from(PORTS.end - PORTS.start) / 2;
    // Start where other processes are unlikely to be looking.
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(held.len() as u32 * 7919);
    for i in 0..slots {
        let slot = (seed.wrapping_add(i)) % slots;
        let port = PORTS.start + (slot * 2) as u16;
        let Ok(addr) = SocketAddr::from_abstract_name(port_lock_name(port).as_bytes()) else {
            continue;
        };
        // Another test process holds it.
        let Ok(lock) = UnixListener::bind_addr(&addr) else {
            continue;
        };
        // Something outside the harness listens there.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        held.push(lock);
        return port;
    }
    panic!("no free port in {PORTS:?}: every one is held by a test process or in use");
}

/// The abstract Unix socket name that holds `port` for a test process.
fn port_lock_name(port: u16) -> String {
    format!("sluice-test-port-{port}")
}

/// Why a component exited, from its log: the error it reported (anyhow's
/// `Error:` line and the causes after it) and the log's last `lines`. The
/// tail alone can be all backtrace, which a failed start prints after the
/// error.
fn exit_report(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let error: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Error:"))
        .take_while(|l| !l.starts_with("Stack backtrace:"))
        .take(12)
        .collect();
    format!(
        "{}\n--- last {lines} lines ---\n{}",
        error.join("\n"),
        tail(path, lines)
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Run `cmd` to completion and panic, showing the command, its exit status,
/// stdout and stderr, unless it succeeded; the output when it did.
pub fn run_ok(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("{shown} did not start: {err}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process a test started (e.g. `kubectl logs -f`), killed by pid and
/// reaped when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// A real etcd in a temp dir on free ports, served over TLS with client
/// certificates of a CA of its own (as `cargo xtask up` serves it); killed
/// and removed on drop.
pub struct Etcd {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    tls: EtcdTls,
}

/// The files of a test etcd's own CA: what a client of it needs.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The etcd CA certificate (`--trusted-ca-file`; a client's `--cacert`, `--etcd-cafile`).
    pub ca: PathBuf,
    /// A client certificate signed by the etcd CA (`--cert`, `--etcd-certfile`).
    pub cert: PathBuf,
    /// Its key (`--key`, `--etcd-keyfile`).
    pub key: PathBuf,
    /// etcd's serving (and peer) certificate, for 127.0.0.1 and localhost.
    server_cert: PathBuf,
    /// Its key.
    server_key: PathBuf,
}

impl EtcdTls {
    /// Make a CA in `dir` (`ca.crt`), etcd's serving certificate (`server.crt`,
    /// SANs 127.0.0.1 and localhost, server and client use, also its peer
    /// certificate as `up`'s is) and a client certificate (`client.crt`,
    /// CN kube-apiserver-etcd-client, O system:masters), with their keys.
    fn create(dir: &Path) -> EtcdTls {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().expect("etcd CA key");
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(DnType::CommonName, "etcd-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("etcd CA certificate");
        let ca_path = dir.join("ca.crt");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write etcd ca.crt");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str, cn: &str, org: Option<&str>, sans: Vec<SanType>, usages| {
            let key = KeyPair::generate().expect("etcd leaf key");
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, cn);
            if let Some(org) = org {
                params.distinguished_name.push(DnType::OrganizationName, org);
            }
            params.subject_alt_names = sans;
            params.extended_key_usages = usages;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            let cert = params.signed_by(&key, &issuer).expect("etcd leaf certificate");
            let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
            std::fs::write(&cert_path, cert.pem()).expect("write etcd certificate");
            std::fs::write(&key_path, key.serialize_pem()).expect("write etcd key");
            (cert_path, key_path)
        };
        let (server_cert, server_key) = leaf(
            "server",
            "sluice-test-etcd",
            None,
            vec![
                SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
                SanType::DnsName("localhost".try_into().expect("a valid DNS name")),
            ],
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        );
        let (cert, key) = leaf(
            "client",
            "kube-apiserver-etcd-client",
            Some("system:masters"),
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        EtcdTls {
            ca: ca_path,
            cert,
            key,
            server_cert,
            server_key,
        }
    }

    /// etcdctl's TLS flags: `--cacert`, `--cert`, `--key`.
    pub fn etcdctl_args(&self) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.cert.display()),
            format!("--key={}", self.key.display()),
        ]
    }

    /// The API server's TLS flags: `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
    pub fn apiserver_args(&self) -> Vec<String> {
        vec![
            format!("--etcd-cafile={}", self.ca.display()),
            format!("--etcd-certfile={}", self.cert.display()),
            format!("--etcd-keyfile={}", self.key.display()),
        ]
    }
}

impl Etcd {
    /// Start etcd and wait until it answers.
    pub async fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("sluice-etcd-")
            .tempdir()
            .expect("temp dir");
        let pki = dir.path().join("pki");
        std::fs::create_dir(&pki).expect("etcd pki dir");
        let tls = EtcdTls::create(&pki);
        for _ in 0..5 {
            let (client, peer) = (free_port(), free_port());
            let url = format!("https://127.0.0.1:{client}");
            let peer_url = format!("https://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
            let mut child = Command::new("etcd")
                .arg("--name=default")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={url}"))
                .arg(format!("--advertise-client-urls={url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=default={peer_url}"))
                // TLS with client certificates of its own CA only, towards
                // clients and peers, as `cargo xtask up` starts etcd.
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg(format!("--peer-cert-file={}", tls.server_cert.display()))
                .arg(format!("--peer-key-file={}", tls.server_key.display()))
                .arg("--peer-client-cert-auth")
                .arg(format!("--peer-trusted-ca-file={}", tls.ca.display()))
                .arg("--logger=zap")
                .arg("--log-level=warn")
                // As `cargo xtask up`: the API server's watch cache serves
                // consistent lists on etcd's periodic progress notifications.
                .arg("--experimental-watch-progress-notify-interval=100ms")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd is installed (apt-get install etcd-server)");
            if wait_etcd_ready(&mut child, &url, &tls, Duration::from_secs(20)).await {
                return Etcd { child, dir, url, tls };
            }
            kill(&mut child);
            eprintln!("etcd did not start:\n{}", tail(&dir.path().join("etcd.log"), 20));
            let _ = std::fs::remove_dir_all(dir.path().join("data"));
        }
        panic!("etcd did not start after 5 attempts");
    }

    /// Client URL, e.g. `https://127.0.0.1:23791` (TLS; a client needs
    /// [`Etcd::tls`]'s CA and client certificate).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The etcd CA and the client certificate the harness (etcdctl, the API
    /// server) reaches this etcd with.
    pub fn tls(&self) -> &EtcdTls {
        &self.tls
    }

    /// Run `etcdctl <args>` against this etcd (over TLS, with the client
    /// certificate); returns stdout (panics on failure).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url)
            .args(self.tls.etcdctl_args())
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Compact etcd history up to its current revision; returns that revision.
    pub fn compact_now(&self) -> i64 {
        let out = self.etcdctl(&["get", "/", "--prefix", "--keys-only", "--limit=1", "-w", "json"]);
        let v: Value = serde_json::from_str(&out).expect("etcdctl json");
        let rev = v["header"]["revision"].as_i64().expect("revision");
        self.etcdctl(&["compact", &rev.to_string(), "--physical"]);
        rev
    }
}

async fn wait_etcd_ready(child: &mut Child, url: &str, tls: &EtcdTls, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", url, "--command-timeout=1s"])
            .args(tls.etcdctl_args())
            .args(["endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if out.is_ok_and(|o| o.success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

impl Drop for Etcd {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- etcd log tail ---\n{}", tail(&self.dir.path().join("etcd.log"), 20));
        }
    }
}

/// A real `apiserver serve` process on a free port; killed on drop.
pub struct ApiServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    cert_dir: PathBuf,
    token_file: PathBuf,
    etcd_url: String,
    etcd_tls: EtcdTls,
    port: u16,
    extra_args: Vec<String>,
    kubeconfig: PathBuf,
}

impl ApiServer {
    /// Start an API server on `etcd` with its own cert dir and extra `serve` flags.
    pub async fn start(etcd: &Etcd, extra_args: &[&str]) -> ApiServer {
        Self::start_inner(etcd, None, extra_args).await
    }

    /// Start a second API server on `etcd` sharing `other`'s CA and tokens.
    pub async fn start_sharing(etcd: &Etcd, other: &ApiServer, extra_args: &[&str]) -> ApiServer {
        Self::start_inner(etcd, Some((&other.cert_dir, &other.token_file)), extra_args).await
    }

    async fn start_inner(etcd: &Etcd, share: Option<(&PathBuf, &PathBuf)>, extra_args: &[&str]) -> ApiServer {
        let dir = tempfile::Builder::new()
            .prefix("sluice-apiserver-")
            .tempdir()
            .expect("temp dir");
        let (cert_dir, token_file) = match share {
            Some((c, t)) => (c.clone(), t.clone()),
            None => {
                let t = dir.path().join("tokens.csv");
                std::fs::write(&t, format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n")).expect("token file");
                (dir.path().join("pki"), t)
            }
        };
        let port = free_port();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let out = Command::new(workspace_bin("apiserver"))
            .args(["kubeconfig", "--cert-dir"])
            .arg(&cert_dir)
            .args([
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--user",
                "admin",
                "--group",
                "system:masters",
                "--out",
            ])
            .arg(&kubeconfig)
            .output()
            .expect("apiserver kubeconfig runs");
        assert!(
            out.status.success(),
            "apiserver kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = ApiServer {
            child: None,
            dir,
            cert_dir,
            token_file,
            etcd_url: etcd.url().to_string(),
            etcd_tls: etcd.tls().clone(),
            port,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            kubeconfig,
        };
        s.spawn().await;
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("apiserver.log")
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = Command::new(workspace_bin("apiserver"))
            .arg("serve")
            .args(["--etcd-servers", &self.etcd_url, "--bind-address", "127.0.0.1"])
            // The harness's etcd speaks TLS and wants a client certificate of its CA.
            .args(self.etcd_tls.apiserver_args())
            .args(["--secure-port", &self.port.to_string()])
            .arg("--cert-dir")
            .arg(&self.cert_dir)
            .arg("--token-auth-file")
            .arg(&self.token_file)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_APISERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("apiserver starts");
        self.child = Some(child);
        let start = Instant::now();
        let anon = self.anonymous().await;
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("apiserver exited with {status}:\n{}", exit_report(&self.log_path(), 40));
            }
            if anon
                .try_request("GET", "/readyz", None, Vec::new())
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("apiserver not ready after 30s:\n{}", tail(&self.log_path(), 40));
    }

    /// Kill and start again (same port, certificates and etcd).
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
        self.spawn().await;
    }

    /// Stop the process (it can be started again with [`restart`](Self::restart)).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Admin kubeconfig (client certificate, CN=admin, O=system:masters).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cert dir (ca.crt, ca.key, apiserver.crt...).
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    /// A kube client authenticated as admin.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
        kube::Client::try_from(cfg).expect("kube client")
    }

    fn base_config(&self) -> kube::Config {
        let pem = std::fs::read(self.cert_dir.join("ca.crt")).expect("ca.crt");
        let ders: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
            .map(|c| c.expect("pem").to_vec())
            .collect();
        let mut cfg = kube::Config::new(self.url().parse().expect("url"));
        cfg.root_cert = Some(ders);
        cfg.default_retry = false;
        cfg
    }

    /// Raw HTTP as admin (bearer token).
    pub async fn raw(&self) -> RawClient {
        let mut cfg = self.base_config();
        cfg.auth_info.token = Some(ADMIN_TOKEN.to_string().into());
        RawClient {
            client: kube::Client::try_from(cfg).expect("client"),
        }
    }

    /// Raw HTTP without credentials.
    pub async fn anonymous(&self) -> RawClient {
        RawClient {
            client: kube::Client::try_from(self.base_config()).expect("client"),
        }
    }

    /// A kubeconfig for user `user` in `groups`, with a client certificate
    /// signed by the cluster CA (how stories make users other than admin).
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let path = self.dir.path().join(format!("{}.kubeconfig", user.replace(':', "_")));
        let mut cmd = Command::new(workspace_bin("apiserver"));
        cmd.args(["kubeconfig", "--cert-dir"])
            .arg(&self.cert_dir)
            .args(["--server", &self.url(), "--user", user]);
        for g in groups {
            cmd.args(["--group", g]);
        }
        run_ok(cmd.arg("--out").arg(&path));
        path
    }

    /// Raw HTTP with the credentials of `kubeconfig` (see [`Self::user_kubeconfig`]).
    pub async fn raw_as(&self, kubeconfig: &Path) -> RawClient {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
        cfg.default_retry = false;
        RawClient {
            client: kube::Client::try_from(cfg).expect("client"),
        }
    }

    /// Raw HTTP with an arbitrary bearer token.
    pub async fn with_token(&self, token: &str) -> RawClient {
        let mut cfg = self.base_config();
        cfg.auth_info.token = Some(token.to_string().into());
        RawClient {
            client: kube::Client::try_from(cfg).expect("client"),
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- apiserver log tail ({}) ---\n{}",
                self.url(),
                tail(&self.log_path(), 40)
            );
        }
    }
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON (Null when not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// HTTP client for asserting exact status codes and `Status` bodies.
#[derive(Clone)]
pub struct RawClient {
    client: kube::Client,
}

impl RawClient {
    /// Send any request (panics when the server cannot be reached).
    pub async fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> RawResponse {
        self.try_request(method, path, content_type, body)
            .await
            .expect("request sent")
    }

    /// Send any request; errors when the server cannot be reached.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<RawResponse, kube::Error> {
        let mut b = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        let req = b.body(kube::client::Body::from(body)).expect("request");
        let resp = self.client.send(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        use http_body_util::BodyExt;
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        Ok(RawResponse { status, headers, body })
    }
    /// GET with an `Accept` header (e.g. a Table: `application/json;as=Table;v=v1;g=meta.k8s.io`).
    pub async fn get_accept(&self, path: &str, accept: &str) -> RawResponse {
        let req = http::Request::builder()
            .method("GET")
            .uri(path)
            .header(http::header::ACCEPT, accept)
            .body(kube::client::Body::from(Vec::new()))
            .expect("request");
        let resp = self.client.send(req).await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        use http_body_util::BodyExt;
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        RawResponse { status, headers, body }
    }
    /// GET
    pub async fn get(&self, path: &str) -> RawResponse {
        self.request("GET", path, None, Vec::new()).await
    }
    /// POST JSON
    pub async fn post(&self, path: &str, body: &Value) -> RawResponse {
        self.request(
            "POST",
            path,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }
    /// PUT JSON
    pub async fn put(&self, path: &str, body: &Value) -> RawResponse {
        self.request("PUT", path, Some("application/json"), serde_json::to_vec(body).unwrap())
            .await
    }
    /// PATCH with a content type (e.g. `application/strategic-merge-patch+json`).
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> RawResponse {
        self.request("PATCH", path, Some(content_type), serde_json::to_vec(body).unwrap())
            .await
    }
    /// DELETE
    pub async fn delete(&self, path: &str) -> RawResponse {
        self.request("DELETE", path, None, Vec::new()).await
    }
}

/// Raw HTTPS to a component's secure port at `url` (a scheduler's or
/// controller-manager's `/metrics`), with the client certificate of
/// `kubeconfig` (see [`ApiServer::user_kubeconfig`]), or `token`, or
/// anonymous. The component's self-signed serving certificate is not
/// verified, as `curl -k` would not.
pub async fn raw_at(url: &str, kubeconfig: Option<&Path>, token: Option<&str>) -> RawClient {
    let mut cfg = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config")
        }
        None => kube::Config::new(url.parse().expect("url")),
    };
    cfg.cluster_url = url.parse().expect("url");
    cfg.root_cert = None;
    cfg.accept_invalid_certs = true;
    cfg.default_retry = false;
    if let Some(token) = token {
        cfg.auth_info.token = Some(token.to_string().into());
    }
    RawClient {
        client: kube::Client::try_from(cfg).expect("client"),
    }
}

/// etcd + one API server, ready to use.
pub struct ControlPlane {
    /// The API server (dropped before etcd).
    pub apiserver: ApiServer,
    /// The etcd it stores into.
    pub etcd: Etcd,
}

impl ControlPlane {
    /// Start etcd and the API server with default flags.
    pub async fn start() -> ControlPlane {
        Self::start_with(&[]).await
    }

    /// Start with extra `apiserver serve` flags, e.g. `&["--event-ttl", "5s"]`.
    ///
    /// No controller-manager runs here, so no namespace gets its `default`
    /// ServiceAccount and Kubernetes' ServiceAccount admission would refuse
    /// every pod: it is switched off (`--disable-admission-plugins`). Start
    /// `Etcd` and `ApiServer` directly to keep it.
    pub async fn start_with(extra_args: &[&str]) -> ControlPlane {
        let etcd = Etcd::start().await;
        let mut args = vec!["--disable-admission-plugins=ServiceAccount"];
        args.extend_from_slice(extra_args);
        let apiserver = ApiServer::start(&etcd, &args).await;
        ControlPlane { apiserver, etcd }
    }

    /// Admin kube client.
    pub async fn client(&self) -> kube::Client {
        self.apiserver.client().await
    }

    /// Admin kubeconfig path (for kubectl `--kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        self.apiserver.kubeconfig_path()
    }

    /// API server URL.
    pub fn url(&self) -> String {
        self.apiserver.url()
    }

    /// Raw HTTP as admin.
    pub async fn raw(&self) -> RawClient {
        self.apiserver.raw().await
    }

    /// Raw HTTP without credentials.
    pub async fn anonymous(&self) -> RawClient {
        self.apiserver.anonymous().await
    }

    /// Restart the API server process (same port, certificates, etcd data).
    pub async fn restart_apiserver(&mut self) {
        self.apiserver.restart().await
    }

    /// A `kubectl` command with this cluster's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(self.kubeconfig_path());
        c
    }
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what`
/// after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcdctl against `etcd` with `tls` flags; whether it answered.
    fn etcdctl_health(url: &str, tls: &[String]) -> bool {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", url, "--dial-timeout=1s", "--command-timeout=1s"])
            .args(tls)
            .args(["endpoint", "health"])
            .output()
            .expect("etcdctl runs")
            .status
            .success()
    }

    #[test]
    fn a_port_given_out_is_held_against_every_other_test_process() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixListener};
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        for (i, &port) in ports.iter().enumerate() {
            assert!(PORTS.contains(&port) && port % 2 == 0, "port {port}");
            assert!(
                ports[..i].iter().all(|p| p.abs_diff(port) >= 2),
                "{port} next to one given before: {ports:?}"
            );
            // What another process finds when it tries the same port.
            let addr = SocketAddr::from_abstract_name(port_lock_name(port).as_bytes()).expect("name");
            assert!(UnixListener::bind_addr(&addr).is_err(), "port {port} is not held");
            // And the component it is for can bind it.
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free to bind");
        }
    }

    #[test]
    fn an_exit_report_leads_with_the_error_a_backtrace_would_push_out_of_the_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("apiserver.log");
        let mut text = String::from(
            "INFO serving\nError: binding 127.0.0.1:4: Address already in use\n\nCaused by:\n    os error 98\nStack backtrace:\n",
        );
        for i in 0..60 {
            text.push_str(&format!("  {i}: frame\n"));
        }
        std::fs::write(&log, text).expect("log");
        let report = exit_report(&log, 40);
        let (head, tail) = report.split_once("--- last 40 lines ---").expect("both parts");
        assert!(
            head.starts_with("Error: binding 127.0.0.1:4: Address already in use"),
            "{report}"
        );
        assert!(head.contains("os error 98") && !head.contains("frame"), "{report}");
        assert!(
            !tail.contains("Error:") && tail.trim_end().ends_with("59: frame"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn etcd_speaks_tls_with_client_certificates_of_its_own_ca_only() {
        let etcd = Etcd::start().await;
        assert!(etcd.url().starts_with("https://127.0.0.1:"), "{}", etcd.url());
        assert!(etcdctl_health(etcd.url(), &etcd.tls().etcdctl_args()));
        // Plain HTTP on the same port is no etcd.
        assert!(!etcdctl_health(&etcd.url().replace("https://", "http://"), &[]));
        // TLS without a client certificate is refused.
        let ca_only = [format!("--cacert={}", etcd.tls().ca.display())];
        assert!(!etcdctl_health(etcd.url(), &ca_only));
        // So is a client certificate of another etcd's CA.
        let other = Etcd::start().await;
        let foreign = [
            format!("--cacert={}", etcd.tls().ca.display()),
            format!("--cert={}", other.tls().cert.display()),
            format!("--key={}", other.tls().key.display()),
        ];
        assert!(!etcdctl_health(etcd.url(), &foreign));
        etcd.etcdctl(&["put", "/k", "v"]);
        assert_eq!(etcd.etcdctl(&["get", "/k", "--print-value-only"]).trim(), "v");
    }
}
