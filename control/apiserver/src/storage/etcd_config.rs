//! How the API server reaches etcd: `--etcd-servers` and Kubernetes' client
//! TLS flags `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
//!
//! etcd holds every object, Secrets included, so the API server speaks TLS
//! to it and authenticates with a client certificate (etcd started with
//! `--client-cert-auth`). A plain `http://` server is refused at start
//! unless `--etcd-allow-insecure` says so: Kubernetes has no such switch (it
//! connects wherever it is told), but a silent fallback to plain HTTP would
//! hand everything, encrypted Secrets' neighbours included, to anyone on the
//! path. Tests that run their own loopback etcd pass the flag.
//!
//! The files are read and checked here, before anything listens, so a wrong
//! path or a file without a certificate or key is a clear start-up error
//! rather than a handshake failure in the log.

use std::path::{Path, PathBuf};

/// What `apiserver serve` was told about etcd on its command line.
#[derive(Debug, Clone, Default)]
pub struct EtcdFlags {
    /// `--etcd-servers`.
    pub servers: Vec<String>,
    /// `--etcd-cafile`: the CA that signed etcd's serving certificate.
    pub cafile: Option<PathBuf>,
    /// `--etcd-certfile`: the API server's client certificate.
    pub certfile: Option<PathBuf>,
    /// `--etcd-keyfile`: its key.
    pub keyfile: Option<PathBuf>,
    /// `--etcd-allow-insecure`: accept `http://` servers.
    pub allow_insecure: bool,
}

/// Why the etcd flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConfigError {
    /// No server at all.
    #[error("--etcd-servers: at least one etcd server is required")]
    NoServers,
    /// A server URL without `http://` or `https://`.
    #[error(
        "--etcd-servers: {0:?} has no scheme: write https://host:port (or http://host:port with --etcd-allow-insecure)"
    )]
    NoScheme(String),
    /// `http://` and `https://` servers together.
    #[error("--etcd-servers: {0} and {1} mix http and https; every server must use the same scheme")]
    MixedSchemes(String, String),
    /// A plain-HTTP server without `--etcd-allow-insecure`.
    #[error(
        "--etcd-servers: {0} is plain HTTP: etcd would receive every object unencrypted and unauthenticated; \
         use an https:// server with --etcd-cafile, --etcd-certfile and --etcd-keyfile, \
         or pass --etcd-allow-insecure to accept plain HTTP"
    )]
    Insecure(String),
    /// TLS files given for `http://` servers.
    #[error("{0}: given but --etcd-servers are http://; use https:// servers or drop the TLS flags")]
    TlsWithoutHttps(&'static str),
    /// An `https://` server without a CA to verify it.
    #[error("--etcd-cafile: required for https:// etcd servers (the CA that signed etcd's serving certificate)")]
    NoCa,
    /// One of the certificate/key pair without the other.
    #[error("--etcd-certfile and --etcd-keyfile: give both or neither")]
    HalfIdentity,
    /// A file that cannot be read.
    #[error("{flag}: reading {path}: {source}")]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file without what the flag needs.
    #[error("{flag}: {path} holds no PEM {what}")]
    NoPem {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// "CERTIFICATE" or "private key".
        what: &'static str,
    },
}

/// PEM material for a TLS connection to etcd.
#[derive(Clone)]
struct Tls {
    ca: Vec<u8>,
    /// Client certificate chain and key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Checked etcd connection settings.
#[derive(Clone)]
pub struct EtcdConfig {
    servers: Vec<String>,
    tls: Option<Tls>,
}

impl std::fmt::Debug for EtcdConfig {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("servers", &self.servers)
            .field("tls", &self.tls.is_some())
            .field(
                "client_certificate",
                &self.tls.as_ref().is_some_and(|t| t.identity.is_some()),
            )
            .finish()
    }
}

impl EtcdConfig {
    /// Check the flags and read the files they name.
    pub fn from_flags(flags: &EtcdFlags) -> Result<Self, EtcdConfigError> {
        let servers: Vec<String> = flags
            .servers
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let Some(first) = servers.first() else {
            return Err(EtcdConfigError::NoServers);
        };
        let https = |s: &str| -> Result<bool, EtcdConfigError> {
            if s.starts_with("https://") {
                Ok(true)
            } else if s.starts_with("http://") {
                Ok(false)
            } else {
                Err(EtcdConfigError::NoScheme(s.to_owned()))
            }
        };
        let secure = https(first)?;
        for s in &servers[1..] {
            if https(s)? != secure {
                return Err(EtcdConfigError::MixedSchemes(first.clone(), s.clone()));
            }
        }
        if flags.certfile.is_some() != flags.keyfile.is_some() {
            return Err(EtcdConfigError::HalfIdentity);
        }
        if !secure {
            if !flags.allow_insecure {
                return Err(EtcdConfigError::Insecure(first.clone()));
            }
            for (flag, file) in [
                ("--etcd-cafile", &flags.cafile),
                ("--etcd-certfile", &flags.certfile),
                ("--etcd-keyfile", &flags.keyfile),
            ] {
                if file.is_some() {
                    return Err(EtcdConfigError::TlsWithoutHttps(flag));
                }
            }
            return Ok(Self { servers, tls: None });
        }
        let ca_path = flags.cafile.as_deref().ok_or(EtcdConfigError::NoCa)?;
        let ca = read_certificates("--etcd-cafile", ca_path)?;
        let identity = match (&flags.certfile, &flags.keyfile) {
            (Some(cert), Some(key)) => Some((
                read_certificates("--etcd-certfile", cert)?,
                read_key("--etcd-keyfile", key)?,
            )),
            _ => None,
        };
        Ok(Self {
            servers,
            tls: Some(Tls { ca, identity }),
        })
    }

    /// The server URLs.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// etcd-client options carrying the TLS settings (none for plain HTTP).
    pub fn connect_options(&self) -> etcd_client::ConnectOptions {
        let opts = etcd_client::ConnectOptions::new();
        match &self.tls {
            None => opts,
            Some(tls) => {
                let mut t = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&tls.ca));
                if let Some((cert, key)) = &tls.identity {
                    t = t.identity(etcd_client::Identity::from_pem(cert, key));
                }
                opts.with_tls(t)
            }
        }
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    std::fs::read(path).map_err(|source| EtcdConfigError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

/// The file's bytes, once it is known to hold at least one PEM certificate.
fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    let pem = read(flag, path)?;
    let found = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .count();
    if found == 0 {
        return Err(EtcdConfigError::NoPem {
            flag,
            path: path.to_owned(),
            what: "CERTIFICATE",
        });
    }
    Ok(pem)
}

/// The file's bytes, once it is known to hold a PEM private key.
fn read_key(flag: &'static str, path: &Path) -> Result<Vec<u8>, EtcdConfigError> {
    let pem = read(flag, path)?;
    if !matches!(rustls_pemfile::private_key(&mut pem.as_slice()), Ok(Some(_))) {
        return Err(EtcdConfigError::NoPem {
            flag,
            path: path.to_owned(),
            what: "private key",
        });
    }
    Ok(pem)
}

/// How often [`watch_endpoints`] probes each etcd member.
const ENDPOINT_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Keep only reachable etcd members in `client`'s rotation. etcd-client
/// balances requests over every `--etcd-servers` endpoint but keeps
/// sending a share to a member that went away (each such request fails
/// with a connect error), so a task probes each member's port every
/// second: one that refuses connections is taken out of rotation, and put
/// back once it accepts them again. The last member in rotation is never
/// taken out. Nothing to do with a single server.
pub fn watch_endpoints(client: &etcd_client::Client, servers: &[String]) {
    if servers.len() < 2 {
        return;
    }
    let (client, servers) = (client.clone(), servers.to_vec());
    tokio::spawn(async move {
        let mut in_rotation = vec![true; servers.len()];
        let mut tick = tokio::time::interval(ENDPOINT_PROBE_EVERY);
        loop {
            tick.tick().await;
            for (i, server) in servers.iter().enumerate() {
                let up = reachable(server).await;
                if up && !in_rotation[i] {
                    match client.add_endpoint(server).await {
                        Ok(()) => {
                            tracing::info!(endpoint = %server, "etcd member reachable again: back in rotation");
                            in_rotation[i] = true;
                        }
                        Err(e) => tracing::warn!(endpoint = %server, error = %e, "adding the etcd member back"),
                    }
                } else if !up && in_rotation[i] && in_rotation.iter().filter(|r| **r).count() > 1 {
                    match client.remove_endpoint(server).await {
                        Ok(()) => {
                            tracing::warn!(endpoint = %server, "etcd member unreachable: out of rotation");
                            in_rotation[i] = false;
                        }
                        Err(e) => tracing::warn!(endpoint = %server, error = %e, "taking the etcd member out"),
                    }
                }
            }
        }
    });
}

/// Whether `server`'s host:port accepts a TCP connection within half a second.
async fn reachable(server: &str) -> bool {
    let authority = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::net::TcpStream::connect(authority)
        )
        .await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(servers: &[&str]) -> EtcdFlags {
        EtcdFlags {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            ..EtcdFlags::default()
        }
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let err = EtcdConfig::from_flags(&flags(&["http://127.0.0.1:2379"])).unwrap_err();
        assert!(matches!(err, EtcdConfigError::Insecure(_)), "{err}");
        assert!(err.to_string().contains("--etcd-allow-insecure"), "{err}");
        let mut f = flags(&["http://127.0.0.1:2379"]);
        f.allow_insecure = true;
        let cfg = EtcdConfig::from_flags(&f).unwrap();
        assert!(!cfg.is_tls());
        assert_eq!(cfg.servers(), ["http://127.0.0.1:2379"]);
    }

    #[test]
    fn bad_server_lists_are_refused() {
        assert!(matches!(
            EtcdConfig::from_flags(&flags(&[])),
            Err(EtcdConfigError::NoServers)
        ));
        assert!(matches!(
            EtcdConfig::from_flags(&flags(&["127.0.0.1:2379"])),
            Err(EtcdConfigError::NoScheme(_))
        ));
        let mut f = flags(&["https://a:2379", "http://b:2379"]);
        f.allow_insecure = true;
        assert!(matches!(
            EtcdConfig::from_flags(&f),
            Err(EtcdConfigError::MixedSchemes(..))
        ));
    }

    #[test]
    fn https_needs_a_ca_and_a_whole_identity() {
        assert!(matches!(
            EtcdConfig::from_flags(&flags(&["https://127.0.0.1:2379"])),
            Err(EtcdConfigError::NoCa)
        ));
        let mut f = flags(&["https://127.0.0.1:2379"]);
        f.cafile = Some("/nonexistent/ca.crt".into());
        f.certfile = Some("/nonexistent/client.crt".into());
        assert!(matches!(EtcdConfig::from_flags(&f), Err(EtcdConfigError::HalfIdentity)));
        f.keyfile = Some("/nonexistent/client.key".into());
        let err = EtcdConfig::from_flags(&f).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--etcd-cafile: reading /nonexistent/ca.crt"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_with_http_servers_are_refused() {
        let mut f = flags(&["http://127.0.0.1:2379"]);
        f.allow_insecure = true;
        f.cafile = Some("/x/ca.crt".into());
        let err = EtcdConfig::from_flags(&f).unwrap_err();
        assert!(
            matches!(err, EtcdConfigError::TlsWithoutHttps("--etcd-cafile")),
            "{err}"
        );
    }

    #[test]
    fn files_without_pem_are_refused_by_flag() {
        let dir = std::env::temp_dir().join(format!("etcd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (ca, crt, k, junk) = (
            dir.join("ca.crt"),
            dir.join("c.crt"),
            dir.join("c.key"),
            dir.join("junk"),
        );
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::write(&junk, "not pem").unwrap();
        let mut f = flags(&["https://127.0.0.1:2379"]);
        f.cafile = Some(ca.clone());
        f.certfile = Some(crt);
        f.keyfile = Some(junk.clone());
        let err = EtcdConfig::from_flags(&f).unwrap_err();
        assert!(err.to_string().starts_with("--etcd-keyfile:"), "{err}");
        f.keyfile = Some(k);
        let cfg = EtcdConfig::from_flags(&f).unwrap();
        assert!(cfg.is_tls());
        assert!(!format!("{cfg:?}").contains("PRIVATE"));
        f.cafile = Some(junk);
        let err = EtcdConfig::from_flags(&f).unwrap_err();
        assert!(err.to_string().starts_with("--etcd-cafile:"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
