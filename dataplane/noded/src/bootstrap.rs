//! Joining a cluster with a bootstrap token.
//!
//! A node either starts with a kubeconfig holding its client certificate, or
//! with `--bootstrap-token <id>.<secret>`, `--apiserver <url>` and
//! `--ca-file <cluster CA>`. In the second case noded makes a key pair, sends a
//! certificate request for `CN=system:node:<name>, O=system:nodes` (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`) authenticated by the token,
//! watches the request until the controllers (csrapproving as `nodeclient`,
//! then csrsigning) or a human approve and sign it (a `Denied` or `Failed`
//! request is an error naming its reason), and writes the kubeconfig, which
//! every later start uses: the token is needed once, and again only if the
//! node's certificate expired while noded was down (`client_cert` renews it
//! while noded runs).

use base64::Engine;
use std::path::{Path, PathBuf};

/// How to join when no kubeconfig exists yet.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// API server URL, e.g. `https://10.0.0.1:6443`.
    pub apiserver: String,
    /// The cluster CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The bootstrap token `<id>.<secret>`.
    pub token: String,
}

/// Errors of the join.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// No kubeconfig and nothing to make one with.
    #[error("{0} does not exist; pass --bootstrap-token, --apiserver and --ca-file to join the cluster")]
    NoCredential(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key or certificate request could not be made.
    #[error("making the key and certificate request: {0}")]
    Key(#[from] rcgen::Error),
    /// Talking to the API server failed (e.g. the token was refused).
    #[error("requesting the node certificate: {0}")]
    Api(#[from] kube::Error),
    /// The kubeconfig could not be built.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The API server's answer had no certificate.
    #[error("the API server did not issue a certificate: {0}")]
    NotIssued(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How long [`request_certificate`] waits for a request to be approved and
/// signed (the kubelet's bootstrap waits an hour too).
pub const CERTIFICATE_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Submit a `CertificateSigningRequest` for `request_pem` to `signer` and
/// return the certificate issued for it (PEM), or why none was: the request
/// was `Denied` or `Failed` (with the condition's reason and message),
/// deleted, or not signed within `wait`.
///
/// The API server may answer with the certificate already set (it signs a
/// node's serving requests itself, see its `node_certs`); otherwise the request is watched until the controllers
/// (csrapproving, csrsigning) or a human decide it — no polling.
pub async fn request_certificate(
    client: &kube::Client,
    generate_name: &str,
    request_pem: &str,
    signer: &str,
    usages: &[&str],
    wait: std::time::Duration,
) -> Result<Result<String, String>, kube::Error> {
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": generate_name},
        "spec": {
            "request": b64(request_pem.as_bytes()),
            "signerName": signer,
            "usages": usages,
        },
    });
    let req = http::Request::post("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&csr).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    let answer: serde_json::Value = client.request(req).await?;
    if let Some(decided) = decision(&answer) {
        return Ok(decided);
    }
    let name = answer
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    tracing::info!(
        csr = name,
        signer,
        "waiting for the certificate signing request to be approved and signed"
    );
    let api: kube::Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> = kube::Api::all(client.clone());
    let watch = async {
        use futures::StreamExt;
        let stream = kube::runtime::watcher::watch_object(api, &name);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Some(csr)) => {
                    let v = serde_json::to_value(&csr).unwrap_or_default();
                    if let Some(decided) = decision(&v) {
                        return decided;
                    }
                }
                Ok(None) => return Err(format!("certificate signing request {name} was deleted")),
                Err(err) => tracing::warn!(%err, csr = name, "watching the certificate signing request (retrying)"),
            }
        }
        Err(format!("the watch of certificate signing request {name} ended"))
    };
    Ok(tokio::time::timeout(wait, watch).await.unwrap_or_else(|_| {
        Err(format!(
            "certificate signing request {name} was not approved and signed within {}s",
            wait.as_secs()
        ))
    }))
}

/// The certificate (PEM) a CSR object carries, or why it never will
/// (`Denied`/`Failed`); `None` while it is still pending.
fn decision(csr: &serde_json::Value) -> Option<Result<String, String>> {
    if let Some(pem) = csr
        .pointer("/status/certificate")
        .and_then(serde_json::Value::as_str)
        .filter(|c| !c.is_empty())
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .and_then(|c| String::from_utf8(c).ok())
    {
        return Some(Ok(pem));
    }
    let name = csr
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let conditions = csr
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)?;
    conditions.iter().find_map(|c| {
        let kind = c.get("type").and_then(serde_json::Value::as_str)?;
        if !matches!(kind, "Denied" | "Failed") || c.get("status").and_then(serde_json::Value::as_str) == Some("False")
        {
            return None;
        }
        let field = |f: &str| {
            c.get(f)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Err(format!(
            "certificate signing request {name} was {}: {}: {}",
            kind.to_lowercase(),
            field("reason"),
            field("message")
        )))
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A kubeconfig document (JSON is valid YAML) for `server`, `ca_pem` and the user's credential.
pub fn kubeconfig_text(server: &str, ca_pem: &str, user: &str, credential: serde_json::Value) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sluice", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem.as_bytes())}}],
        "users": [{"name": user, "user": credential}],
        "contexts": [{"name": "sluice", "context": {"cluster": "sluice", "user": user}}],
        "current-context": "sluice",
    })
    .to_string()
}

/// The signer of node client certificates.
pub const NODE_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The usages a node client certificate request asks for (the kubelet's).
pub const NODE_CLIENT_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// A node client certificate request for `node_name` with a new key:
/// (request PEM, key PEM).
pub fn client_request(node_name: &str) -> Result<(String, String), rcgen::Error> {
    // The serving request's subject, without subjectAltNames.
    crate::serving_cert::certificate_request(node_name, &[])
}

/// Whether the client certificate of the kubeconfig at `path` has expired
/// (false when it has none or it cannot be read: the client will say why).
fn expired(path: &Path) -> bool {
    let Ok(Some(identity)) = crate::client_cert::kubeconfig_identity(path) else {
        return false;
    };
    crate::serving_cert::lifetime_point(&identity.cert_pem, 1.0).is_some_and(|at| at <= std::time::SystemTime::now())
}

/// Make sure `kubeconfig` exists, joining with `bootstrap` when it does not,
/// or when its client certificate has expired and a bootstrap token is given
/// (the kubelet falls back to its bootstrap kubeconfig the same way).
pub async fn ensure_kubeconfig(
    kubeconfig: &Path,
    node_name: &str,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<(), BootstrapError> {
    if kubeconfig.exists() {
        if bootstrap.is_none() || !expired(kubeconfig) {
            return Ok(());
        }
        tracing::warn!(kubeconfig = %kubeconfig.display(), "the node client certificate has expired: joining again with the bootstrap token");
    }
    let Some(bootstrap) = bootstrap else {
        return Err(BootstrapError::NoCredential(kubeconfig.to_path_buf()));
    };
    let ca_pem = std::fs::read_to_string(&bootstrap.ca_file).map_err(io(&bootstrap.ca_file))?;
    let token_config = kubeconfig_text(
        &bootstrap.apiserver,
        &ca_pem,
        "bootstrap",
        serde_json::json!({"token": bootstrap.token}),
    );
    let parsed =
        kube::config::Kubeconfig::from_yaml(&token_config).map_err(|e| BootstrapError::Config(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| BootstrapError::Config(e.to_string()))?;
    let client = kube::Client::try_from(config)?;

    let user = format!("system:node:{node_name}");
    let (request_pem, key_pem) = client_request(node_name)?;
    let cert_pem = request_certificate(
        &client,
        &format!("node-csr-{node_name}-"),
        &request_pem,
        NODE_CLIENT_SIGNER,
        NODE_CLIENT_USAGES,
        CERTIFICATE_WAIT,
    )
    .await?
    .map_err(BootstrapError::NotIssued)?;
    let text = kubeconfig_text(
        &bootstrap.apiserver,
        &ca_pem,
        &user,
        serde_json::json!({"client-certificate-data": b64(cert_pem.as_bytes()), "client-key-data": b64(key_pem.as_bytes())}),
    );
    write_private(kubeconfig, &text)?;
    tracing::info!(kubeconfig = %kubeconfig.display(), user, "joined the cluster: node client certificate issued");
    Ok(())
}

/// Write `text` to `path` (mode 0600) through a temporary file, so a crash never leaves half a kubeconfig.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), BootstrapError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// noded's flags for joining.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JoinArgs {
    /// Bootstrap token `<id>.<secret>` (from `ctl node token create`); used once, when --kubeconfig does not exist yet.
    #[arg(long, requires_all = ["apiserver", "ca_file"])]
    pub bootstrap_token: Option<String>,
    /// API server URL to join (with --bootstrap-token), e.g. https://10.0.0.1:6443.
    #[arg(long)]
    pub apiserver: Option<String>,
    /// The cluster CA certificate, PEM (with --bootstrap-token).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

impl JoinArgs {
    /// The bootstrap settings, when a token was given.
    pub fn config(&self) -> Option<BootstrapConfig> {
        Some(BootstrapConfig {
            apiserver: self.apiserver.clone()?,
            ca_file: self.ca_file.clone()?,
            token: self.bootstrap_token.clone()?,
        })
    }
}
