//! The node's client certificate, rotated while noded runs (the kubelet's
//! `rotateCertificates` and its certificate manager).
//!
//! noded's API client presents whatever certificate its [`Identity`] holds
//! (a rustls client-certificate resolver), starting with the kubeconfig's.
//! [`keep_rotated`] waits until 70–90 % of the certificate's lifetime has
//! passed (a random point, as the kubelet picks it, so nodes joined together
//! do not renew together), makes a new key and asks, with the current
//! certificate, for `CN=system:node:<name>, O=system:nodes` from signer
//! `kubernetes.io/kube-apiserver-client-kubelet`: csrapproving approves it as
//! `selfnodeclient`, csrsigning signs it. It then writes the kubeconfig with
//! the new pair (atomically, so a restart uses it), swaps it into the
//! resolver and closes every connection opened with the old certificate, as
//! the kubelet does: the API server checks a client certificate at the
//! handshake, so a long watch would otherwise keep the old identity past its
//! expiry. Watches and requests on those connections fail once and are made
//! again on new ones. A failed renewal is retried with backoff (5 s doubling
//! to 5 min) until the certificate expires; with an expired certificate,
//! noded's next start joins again with its bootstrap token, if it has one
//! (`bootstrap::ensure_kubeconfig`).
//!
//! The client is `sluice_kube::client`'s (one HTTP/2 connection when the
//! server offers it, client-go's health check; kube's base URI, credentials
//! and headers), built here rather than by `sluice_kube::client::from_config`
//! because kube fixes a client's certificate when it is built: its TLS
//! settings carry the resolver, and its connector wraps every connection so
//! that a rotation closes it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine;
use hyper_util::client::legacy::connect::{Connected, Connection};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::serving_cert::{certified_key, ServingCert};

/// Errors of building the rotating client.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The client could not be built.
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// The certificate and key a kubeconfig's current user presents, PEM, if it
/// authenticates with a client certificate.
pub fn kubeconfig_identity(path: &Path) -> Result<Option<ServingCert>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| e.to_string())?;
    let doc = serde_json::to_value(&kc).map_err(|e| e.to_string())?;
    let Some(user) = current_user(&doc) else {
        return Ok(None);
    };
    let read = |data: &str, file: &str| -> Result<Option<String>, String> {
        if let Some(b64) = user.get(data).and_then(serde_json::Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("{data}: {e}"))?;
            return String::from_utf8(raw).map(Some).map_err(|e| format!("{data}: {e}"));
        }
        match user.get(file).and_then(serde_json::Value::as_str) {
            Some(f) => std::fs::read_to_string(f).map(Some).map_err(|e| format!("{f}: {e}")),
            None => Ok(None),
        }
    };
    let cert = read("client-certificate-data", "client-certificate")?;
    let key = read("client-key-data", "client-key")?;
    Ok(cert
        .zip(key)
        .map(|(cert_pem, key_pem)| ServingCert { cert_pem, key_pem }))
}

/// The `user` object of the current context's user in a kubeconfig document.
fn current_user(doc: &serde_json::Value) -> Option<&serde_json::Value> {
    let name = current_user_name(doc)?;
    doc.get("users")?
        .as_array()?
        .iter()
        .find(|u| u.get("name").and_then(serde_json::Value::as_str) == Some(name.as_str()))?
        .get("user")
}

/// The name of the current context's user in a kubeconfig document.
fn current_user_name(doc: &serde_json::Value) -> Option<String> {
    let context = doc.get("current-context")?.as_str()?;
    let user = doc
        .get("contexts")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(serde_json::Value::as_str) == Some(context))?
        .pointer("/context/user")?
        .as_str()?;
    Some(user.to_string())
}

/// Write `next` as the current user's certificate and key into the kubeconfig at `path`.
pub fn write_identity(path: &Path, next: &ServingCert) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| e.to_string())?;
    let mut doc = serde_json::to_value(&kc).map_err(|e| e.to_string())?;
    let user_name = current_user_name(&doc).ok_or("the kubeconfig has no current user")?;
    let user = doc
        .get_mut("users")
        .and_then(serde_json::Value::as_array_mut)
        .and_then(|us| {
            us.iter_mut()
                .find(|u| u.get("name").and_then(serde_json::Value::as_str) == Some(user_name.as_str()))
        })
        .and_then(|u| u.get_mut("user"))
        .and_then(serde_json::Value::as_object_mut)
        .ok_or("the kubeconfig has no current user")?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    user.remove("client-certificate");
    user.remove("client-key");
    user.insert("client-certificate-data".into(), b64(&next.cert_pem).into());
    user.insert("client-key-data".into(), b64(&next.key_pem).into());
    crate::bootstrap::write_private(path, &doc.to_string()).map_err(|e| e.to_string())
}

/// The certificate noded's client presents; replaced on rotation.
#[derive(Debug)]
pub struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
    /// Bumped on every rotation; each connection closes when it changes.
    epoch: watch::Sender<u64>,
}

impl Identity {
    /// Presenting `first`.
    pub fn new(first: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
            epoch: watch::Sender::new(0),
        }
    }

    /// Present `next` from now on, and close every connection opened before.
    pub fn replace(&self, next: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.epoch.send_modify(|e| *e += 1);
    }
}

impl rustls::client::ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A connector whose connections close when the [`Identity`] rotates.
#[derive(Clone)]
struct Closing<C> {
    inner: C,
    epoch: watch::Sender<u64>,
}

impl<C> tower::Service<http::Uri> for Closing<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = ClosingStream<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Subscribed before the handshake: a rotation during it closes this one too.
        let mut rx = self.epoch.subscribe();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let inner = connecting.await?;
            let rotated = Box::pin(async move {
                // The sender lives as long as the client: an error only means it is gone.
                let _ = rx.changed().await;
            });
            Ok(ClosingStream {
                inner,
                rotated,
                closed: false,
            })
        })
    }
}

/// A connection that fails every read and write once its certificate was rotated away.
struct ClosingStream<S> {
    inner: S,
    rotated: Pin<Box<dyn Future<Output = ()> + Send>>,
    closed: bool,
}

impl<S> ClosingStream<S> {
    /// Whether the identity rotated since this connection was made (registers the waker).
    fn is_closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closed && self.rotated.as_mut().poll(cx).is_ready() {
            self.closed = true;
        }
        self.closed
    }
}

fn rotated_away() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection closed: the node's client certificate was rotated",
    )
}

impl<S: hyper::rt::Read + Unpin> hyper::rt::Read for ClosingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.is_closed(cx) {
            return Poll::Ready(Err(rotated_away()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: hyper::rt::Write + Unpin> hyper::rt::Write for ClosingStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.is_closed(cx) {
            return Poll::Ready(Err(rotated_away()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connection> Connection for ClosingStream<S> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// noded's API client for `kubeconfig`. With a client certificate in it, the
/// client presents the returned [`Identity`] (to be kept fresh by
/// [`keep_rotated`] with the returned certificate); otherwise it is kube's
/// plain client and there is nothing to rotate.
pub async fn client(
    kubeconfig: &Path,
) -> Result<(kube::Client, Option<(Arc<Identity>, ServingCert)>), ClientCertError> {
    let bad = |message: String| ClientCertError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        message,
    };
    let config = sluice_kube::client::config(Some(kubeconfig))
        .await
        .map_err(|e| bad(e.to_string()))?;
    let Some(first) = kubeconfig_identity(kubeconfig).map_err(bad)? else {
        return Ok((kube::Client::try_from(config)?, None));
    };
    let identity = Arc::new(Identity::new(certified_key(&first).map_err(|e| bad(e.to_string()))?));
    use kube::client::ConfigExt;
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = identity.clone();
    let connector = Closing {
        inner: sluice_kube::client::connector(&config, tls).map_err(|e| bad(e.to_string()))?,
        epoch: identity.epoch.clone(),
    };
    let http = sluice_kube::client::http_client(connector);
    let client = sluice_kube::client::over(config, http).map_err(|e| bad(e.to_string()))?;
    Ok((client, Some((identity, first))))
}

/// When to renew the certificate in `cert_pem`: at `0.7 + 0.2 × jitter`
/// (`jitter` in 0..1) of its lifetime, the kubelet's rotation deadline. The
/// lifetime counts from its notBefore, or from `received` when that is later
/// (for the certificate found at start, when its kubeconfig was written):
/// csrsigning backdates notBefore by 5 minutes, which for a short-lived
/// certificate would put the deadline before it even arrived.
pub fn rotation_deadline(cert_pem: &str, jitter: f64, received: Option<SystemTime>) -> Option<SystemTime> {
    let (not_before, not_after) = crate::serving_cert::validity(cert_pem)?;
    let from = received.map_or(not_before, |r| r.max(not_before));
    let lifetime = not_after.duration_since(from).unwrap_or_default();
    Some(from + lifetime.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0)))
}

/// The certificate's notAfter.
fn expiry(cert_pem: &str) -> Option<SystemTime> {
    crate::serving_cert::lifetime_point(cert_pem, 1.0)
}

/// Renew the node's client certificate (`current`, presented by `identity`)
/// before it expires, forever: see the module docs.
pub async fn keep_rotated(
    client: kube::Client,
    identity: Arc<Identity>,
    kubeconfig: PathBuf,
    node_name: String,
    mut current: ServingCert,
) {
    // The certificate at start arrived when its kubeconfig was written.
    let mut received = std::fs::metadata(&kubeconfig).and_then(|m| m.modified()).ok();
    loop {
        let deadline = rotation_deadline(&current.cert_pem, fastrand::f64(), received);
        let wait = deadline
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        tracing::info!(
            node = node_name,
            in_seconds = wait.as_secs(),
            "next rotation of the node client certificate"
        );
        tokio::time::sleep(wait).await;
        let mut backoff = Duration::from_secs(5);
        let next = loop {
            match renew(&client, &node_name).await {
                Ok(next) => break next,
                Err(err) => {
                    let expired = expiry(&current.cert_pem).is_some_and(|at| at <= SystemTime::now());
                    tracing::warn!(%err, expired, retry_in = backoff.as_secs(), "renewing the node client certificate failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        };
        if let Err(err) = write_identity(&kubeconfig, &next.0) {
            tracing::warn!(%err, kubeconfig = %kubeconfig.display(), "writing the renewed client certificate (a restart would use the old one)");
        }
        identity.replace(next.1);
        tracing::info!(
            node = node_name,
            "node client certificate rotated; connections made with the old one closed"
        );
        current = next.0;
        received = Some(SystemTime::now());
    }
}

/// One renewal: a new key and its signed certificate.
async fn renew(client: &kube::Client, node_name: &str) -> Result<(ServingCert, CertifiedKey), String> {
    let (request_pem, key_pem) = crate::bootstrap::client_request(node_name).map_err(|e| e.to_string())?;
    let cert_pem = crate::bootstrap::request_certificate(
        client,
        &format!("node-csr-{node_name}-"),
        &request_pem,
        crate::bootstrap::NODE_CLIENT_SIGNER,
        crate::bootstrap::NODE_CLIENT_USAGES,
        RENEWAL_WAIT,
    )
    .await
    .map_err(|e| e.to_string())??;
    let next = ServingCert { cert_pem, key_pem };
    let key = certified_key(&next).map_err(|e| e.to_string())?;
    Ok((next, key))
}

/// How long one renewal request may stay pending before it is made again.
const RENEWAL_WAIT: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(days: (u8, u8)) -> ServingCert {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params.not_before = rcgen::date_time_ymd(2030, 1, days.0);
        params.not_after = rcgen::date_time_ymd(2030, 1, days.1);
        let key = rcgen::KeyPair::generate().unwrap();
        ServingCert {
            cert_pem: params.self_signed(&key).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    #[test]
    fn rotation_falls_between_seventy_and_ninety_percent_of_the_lifetime() {
        let c = cert((1, 11));
        let day = |d: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000 + d * 86_400);
        assert_eq!(rotation_deadline(&c.cert_pem, 0.0, None), Some(day(7)));
        assert_eq!(rotation_deadline(&c.cert_pem, 1.0, None), Some(day(9)));
        assert_eq!(rotation_deadline(&c.cert_pem, 0.5, None), Some(day(8)));
        // Received on day 5 (the notBefore was backdated): 70 % of the 5 days left.
        assert_eq!(
            rotation_deadline(&c.cert_pem, 0.0, Some(day(5))),
            Some(day(5) + Duration::from_secs(302_400))
        );
        assert_eq!(
            rotation_deadline(&c.cert_pem, 0.0, Some(day(0))),
            Some(day(7)),
            "never before notBefore"
        );
        assert_eq!(expiry(&c.cert_pem), Some(day(10)));
        assert!(rotation_deadline("garbage", 0.5, None).is_none());
    }

    #[test]
    fn the_kubeconfig_identity_is_read_and_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("sluice-client-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let first = cert((1, 11));
        let text = crate::bootstrap::kubeconfig_text(
            "https://10.0.0.1:6443",
            "CA",
            "system:node:n1",
            serde_json::json!({
                "client-certificate-data": base64::engine::general_purpose::STANDARD.encode(&first.cert_pem),
                "client-key-data": base64::engine::general_purpose::STANDARD.encode(&first.key_pem),
            }),
        );
        std::fs::write(&path, text).unwrap();
        let read = kubeconfig_identity(&path).unwrap().unwrap();
        assert_eq!(read.cert_pem, first.cert_pem);
        assert_eq!(read.key_pem, first.key_pem);

        let next = cert((2, 12));
        write_identity(&path, &next).unwrap();
        let read = kubeconfig_identity(&path).unwrap().unwrap();
        assert_eq!(read.cert_pem, next.cert_pem);
        assert_eq!(read.key_pem, next.key_pem);
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://10.0.0.1:6443");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_kubeconfig_has_no_identity() {
        let dir = std::env::temp_dir().join(format!("sluice-client-cert-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let text =
            crate::bootstrap::kubeconfig_text("https://10.0.0.1:6443", "CA", "u", serde_json::json!({"token": "t"}));
        std::fs::write(&path, text).unwrap();
        assert!(kubeconfig_identity(&path).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_connection_closes_when_the_identity_rotates() {
        let (epoch, _) = watch::channel(0u64);
        let mut rx = epoch.subscribe();
        let mut stream = ClosingStream {
            inner: (),
            rotated: Box::pin(async move {
                let _ = rx.changed().await;
            }),
            closed: false,
        };
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!stream.is_closed(&mut cx));
        epoch.send_modify(|e| *e += 1);
        assert!(stream.is_closed(&mut cx));
        assert!(stream.is_closed(&mut cx), "stays closed");
    }
}
