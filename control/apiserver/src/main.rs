//! `apiserver`: the Kubernetes-compatible API server on etcd.
//!
//! `apiserver serve ...` runs the server; `apiserver kubeconfig ...` issues a
//! client certificate from the cluster CA and writes a kubeconfig.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: a list of 10,000 pods allocates and
/// frees millions of small objects (decoded values, their copies, the
/// encoded answer), and glibc's free-chunk consolidation took a sixth of the
/// server's time serving it (perf, `cargo xtask bench list`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "apiserver", about = "Sluice's Kubernetes-compatible API server on etcd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve the Kubernetes API over HTTPS.
    Serve {
        /// etcd client URLs (comma-separated; all https:// or, with
        /// --etcd-allow-insecure, all http://).
        #[arg(long, default_value = "https://127.0.0.1:2379", value_delimiter = ',')]
        etcd_servers: Vec<String>,
        /// SSL Certificate Authority file used to secure etcd communication.
        #[arg(long)]
        etcd_cafile: Option<PathBuf>,
        /// SSL certification file used to secure etcd communication (the API server's client certificate).
        #[arg(long)]
        etcd_certfile: Option<PathBuf>,
        /// SSL key file used to secure etcd communication.
        #[arg(long)]
        etcd_keyfile: Option<PathBuf>,
        /// Accept http:// etcd servers (plain, unauthenticated; for tests on
        /// loopback). Without it the server refuses to start on one.
        #[arg(long)]
        etcd_allow_insecure: bool,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind_address: IpAddr,
        /// Address published as the `kubernetes` Service's endpoint (default: the
        /// bind address; bound to 0.0.0.0, the default route's source address;
        /// never a loopback address).
        #[arg(long)]
        advertise_address: Option<IpAddr>,
        /// HTTPS port.
        #[arg(long, default_value_t = 6443)]
        secure_port: u16,
        /// Directory of the cluster CA and serving certificate (created at first start).
        #[arg(long)]
        cert_dir: PathBuf,
        /// Static bearer tokens: CSV `token,user,uid,"group1,group2"`.
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// CIDR Service ClusterIPs are allocated from.
        #[arg(long, default_value = "10.96.0.0/12")]
        service_cluster_ip_range: String,
        /// NodePort range.
        #[arg(long, default_value = "30000-32767")]
        service_node_port_range: String,
        /// How long Event objects live (e.g. 1h, 30s).
        #[arg(long, default_value = "1h")]
        event_ttl: humantime::Duration,
        /// Extra subject alternative names for the serving certificate.
        #[arg(long = "tls-san")]
        tls_san: Vec<String>,
        /// Issuer (`iss`) of ServiceAccount tokens.
        #[arg(long, default_value = sluice_apiserver::http::service_account_token::DEFAULT_ISSUER)]
        service_account_issuer: String,
        /// Audiences the API accepts in tokens (comma-separated; default: the issuer).
        #[arg(long, value_delimiter = ',')]
        api_audiences: Vec<String>,
        /// Admission plugins to switch off (comma-separated; only `ServiceAccount` can be).
        #[arg(long, value_delimiter = ',')]
        disable_admission_plugins: Vec<String>,
        /// `apiserver.config.k8s.io/v1` EncryptionConfiguration: how resources are encrypted in etcd.
        #[arg(long)]
        encryption_provider_config: Option<PathBuf>,
        /// `audit.k8s.io/v1` Policy: which requests the audit log records, at which level.
        #[arg(long, requires = "audit_log_path")]
        audit_policy_file: Option<PathBuf>,
        /// Where the audit log's JSON lines are appended.
        #[arg(long, requires = "audit_policy_file")]
        audit_log_path: Option<PathBuf>,
        /// The built web dashboard (`control/dashboard/dist`), served at
        /// `/dashboard/`; not served without it.
        #[arg(long)]
        dashboard_dir: Option<PathBuf>,
        /// Serve lists and watches from memory (one etcd watch per resource);
        /// `--watch-cache=false` reads etcd for each. A bare `--watch-cache`
        /// is true; values as Go's ParseBool.
        #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = go_bool, action = clap::ArgAction::Set)]
        watch_cache: bool,
    },
    /// Issue a client certificate from the cluster CA and write a kubeconfig.
    Kubeconfig {
        /// Directory of the cluster CA (created if missing).
        #[arg(long)]
        cert_dir: PathBuf,
        /// API server URL.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        /// User name (certificate CN).
        #[arg(long)]
        user: String,
        /// Groups (certificate O), repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Where to write the kubeconfig.
        #[arg(long)]
        out: PathBuf,
    },
}

/// A boolean flag's value as Go's `strconv.ParseBool` reads it (Kubernetes' flags).
fn go_bool(v: &str) -> Result<bool, String> {
    sluice_kube::strconv::parse_bool(v).ok_or_else(|| format!("strconv.ParseBool: parsing {v:?}: invalid syntax"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Kubeconfig {
            cert_dir,
            server,
            user,
            groups,
            out,
        } => {
            sluice_apiserver::pki::write_kubeconfig(&cert_dir, &server, &user, &groups, &out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Serve {
            etcd_servers,
            etcd_cafile,
            etcd_certfile,
            etcd_keyfile,
            etcd_allow_insecure,
            bind_address,
            advertise_address,
            secure_port,
            cert_dir,
            token_auth_file,
            service_cluster_ip_range,
            service_node_port_range,
            event_ttl,
            tls_san,
            service_account_issuer,
            api_audiences,
            disable_admission_plugins,
            encryption_provider_config,
            audit_policy_file,
            audit_log_path,
            dashboard_dir,
            watch_cache,
        } => {
            let etcd = sluice_apiserver::storage::etcd_config::EtcdConfig::from_flags(
                &sluice_apiserver::storage::etcd_config::EtcdFlags {
                    servers: etcd_servers,
                    cafile: etcd_cafile,
                    certfile: etcd_certfile,
                    keyfile: etcd_keyfile,
                    allow_insecure: etcd_allow_insecure,
                },
            )?;
            if let (Some(policy), Some(log)) = (&audit_policy_file, &audit_log_path) {
                let policy = sluice_apiserver::http::audit::Policy::load(policy)?;
                sluice_apiserver::http::audit::install(policy, log)?;
            }
            if let Some(path) = &encryption_provider_config {
                let t = sluice_apiserver::storage::encryption::Transformers::load(path)?;
                sluice_apiserver::storage::encryption::install(t);
            }
            use sluice_apiserver::registry::serviceaccount_admission as sa_admission;
            for plugin in disable_admission_plugins.iter().filter(|p| !p.is_empty()) {
                anyhow::ensure!(
                    plugin == sa_admission::PLUGIN_NAME,
                    "--disable-admission-plugins: {plugin} cannot be disabled (only {})",
                    sa_admission::PLUGIN_NAME
                );
                sa_admission::set_enabled(false);
            }
            if let Some(dir) = &dashboard_dir {
                anyhow::ensure!(
                    dir.join("index.html").is_file(),
                    "--dashboard-dir {}: no index.html (build the dashboard with `cargo xtask dashboard`)",
                    dir.display()
                );
            }
            sluice_kube::logging::init();
            let cfg = sluice_apiserver::http::server::ServeConfig {
                etcd,
                bind_address,
                advertise_address,
                secure_port,
                cert_dir,
                token_auth_file,
                service_cluster_ip_range,
                service_node_port_range,
                event_ttl: event_ttl.into(),
                extra_sans: tls_san,
                service_account_issuer,
                api_audiences,
                dashboard_dir,
                watch_cache,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(sluice_apiserver::http::server::serve(cfg))
        }
    }
}
