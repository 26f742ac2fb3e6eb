//! `metrics-server`: scrapes kubelets and serves `metrics.k8s.io/v1beta1`
//! to the API server's aggregator (see the library's documentation).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;
use secrecy::ExposeSecret;
use sluice_metrics_server::api::{self, AppState, Delegated, Snapshot};
use sluice_metrics_server::{certs, register, scraper};

/// Kubernetes' metrics-server flags that apply here.
#[derive(Parser, Debug)]
#[command(name = "metrics-server", version)]
struct Args {
    /// kubeconfig of the server's own identity (default: the usual lookup).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// How often kubelets are scraped (at least 10s, as Kubernetes' metrics-server).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    metric_resolution: Duration,
    /// Node address types tried in order to reach a kubelet.
    #[arg(long, value_delimiter = ',', default_value = "InternalIP,ExternalIP,Hostname")]
    kubelet_preferred_address_types: Vec<String>,
    /// CA file kubelets' serving certificates are verified against (default: the kubeconfig's CA).
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Timeout of one kubelet scrape.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    kubelet_request_timeout: Duration,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// HTTPS port to serve on (0: any free port; the registration records the one taken).
    #[arg(long, default_value_t = 4443)]
    secure_port: u16,
    /// Address the API server reaches this server at (default: --bind-address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Directory keeping the self-made serving CA and certificate across restarts.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// CA that signs the front proxy's client certificate (default: the kubeconfig's CA,
    /// which signs the API server's front-proxy-client certificate here).
    #[arg(long)]
    requestheader_client_ca_file: Option<PathBuf>,
    /// Client certificate CNs accepted as the front proxy (empty: any signed by the CA).
    #[arg(long, value_delimiter = ',', default_value = "front-proxy-client")]
    requestheader_allowed_names: Vec<String>,
}

fn der_to_pem(ders: &[Vec<u8>]) -> Vec<u8> {
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

fn data_or_file(data: Option<&str>, file: Option<&String>, what: &str) -> Result<Vec<u8>> {
    if let Some(d) = data {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .with_context(|| format!("decoding the kubeconfig's {what} data"));
    }
    if let Some(f) = file {
        return std::fs::read(f).with_context(|| format!("reading {f}"));
    }
    bail!("the kubeconfig has no {what}: kubelets need a client certificate")
}

#[tokio::main]
async fn main() -> Result<()> {
    sluice_kube::logging::init();
    let args = Args::parse();
    if args.metric_resolution < Duration::from_secs(10) {
        bail!(
            "metric-resolution should be a time duration at least 10s, but value {} provided",
            humantime::format_duration(args.metric_resolution)
        );
    }
    let config = sluice_kube::client::config(args.kubeconfig.as_deref()).await?;
    let cluster_ca = der_to_pem(config.root_cert.as_deref().unwrap_or_default());
    let cert = data_or_file(
        config.auth_info.client_certificate_data.as_deref(),
        config.auth_info.client_certificate.as_ref(),
        "client certificate",
    )?;
    let key_data = config
        .auth_info
        .client_key_data
        .as_ref()
        .map(|s| s.expose_secret().to_string());
    let key = data_or_file(key_data.as_deref(), config.auth_info.client_key.as_ref(), "client key")?;
    let read_or_ca = |path: &Option<PathBuf>| -> Result<Vec<u8>> {
        match path {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
            None => Ok(cluster_ca.clone()),
        }
    };
    let kubelet_ca = read_or_ca(&args.kubelet_certificate_authority)?;
    let requestheader_ca = read_or_ca(&args.requestheader_client_ca_file)?;
    let kubelets = scraper::KubeletClient::new(
        &kubelet_ca,
        &cert,
        &key,
        args.kubelet_request_timeout,
        args.kubelet_preferred_address_types.clone(),
    )?;
    let client = kube::Client::try_from(config).context("building the API client")?;

    let advertise = match args.advertise_address {
        Some(a) => a,
        None if args.bind_address.is_unspecified() => {
            bail!(
                "--advertise-address is needed when --bind-address is {}",
                args.bind_address
            )
        }
        None => args.bind_address,
    };
    let hosts = vec![
        register::SERVICE_HOST.to_string(),
        format!("{}.cluster.local", register::SERVICE_HOST),
        "localhost".to_string(),
    ];
    let serving = certs::load_or_generate(args.cert_dir.as_deref(), &hosts, &[advertise])?;
    let tls = api::tls_config(&serving.cert_pem, &serving.key_pem, &requestheader_ca)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind_address, args.secure_port))
        .await
        .with_context(|| format!("binding {}:{}", args.bind_address, args.secure_port))?;
    let port = listener.local_addr()?.port();
    tracing::info!(address = %advertise, port, "serving metrics.k8s.io/v1beta1 over HTTPS");

    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    let state = AppState {
        snapshot: snapshot.clone(),
        authorizer: Arc::new(Delegated::new(client.clone())),
        allowed_names: Arc::new(
            args.requestheader_allowed_names
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
        ),
    };
    tokio::spawn(api::serve(listener, tls, api::router(state)));
    tokio::spawn(sluice_metrics_server::run_scraper(
        client.clone(),
        kubelets,
        args.metric_resolution,
        snapshot,
    ));

    let mut backoff = Duration::from_millis(500);
    loop {
        match register::ensure(&client, advertise, port, &serving.ca_pem).await {
            Ok(()) => {
                tracing::info!("registered APIService {}", register::APISERVICE);
                break;
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "registration failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    tokio::signal::ctrl_c().await.context("waiting for a signal")?;
    Ok(())
}
