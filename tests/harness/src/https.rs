//! HTTPS servers that stand in for the programs the API server calls out to
//! (admission webhooks, aggregated API servers): a test CA made with rcgen,
//! a server certificate for chosen names and addresses, and a hyper server
//! on a real socket that records every request it answers.
//!
//! ```ignore
//! let ca = TestCa::new("my story CA");
//! let server = HttpsServer::start(&ca, "127.0.0.1:0", |req| {
//!     Reply::json(200, &serde_json::json!({"path": req.path}))
//! }).await;
//! // give the API server `ca.pem()` as caBundle and `server.url("/x")` as URL;
//! // afterwards: server.requests() holds what was sent.
//! server.stop();                 // the port now refuses connections
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// A certificate authority for one test, and the server certificates it signs.
pub struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM (what a `caBundle` holds, before base64).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate as a `caBundle` field holds it in JSON (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&self.pem)
    }

    /// A rustls server configuration with a certificate for `names` (DNS
    /// names or IP addresses), signed by this CA; HTTP/1.1 only.
    pub fn server_config(&self, names: &[String]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(names.to_vec()).expect("server params");
        let cert = params.signed_by(&key, &self.issuer).expect("server certificate");
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key_der)
                .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string (`timeout=10s`), empty when none.
    pub query: String,
    /// Every header, in order (names lower-case); repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of header `name`, if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long before answering (to test timeouts).
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer, sent after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A running HTTPS server; stopped (its port then refuses connections) on
/// [`stop`](Self::stop) or drop.
pub struct HttpsServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpsServer {
    /// Listen on `bind` (e.g. `127.0.0.1:0`, or `<host ip>:0`) with a
    /// certificate from `ca` for the bound IP address and `localhost`, and
    /// answer every request with `handler`.
    pub async fn start<F>(ca: &TestCa, bind: &str, handler: F) -> HttpsServer
    where
        F: Fn(&Seen) -> Reply + Send + Sync + 'static,
    {
        Self::start_with_names(ca, bind, &[], handler).await
    }

    /// Like [`start`](Self::start), with extra certificate names (e.g. the
    /// Service DNS name `svc.ns.svc` an API server verifies against).
    pub async fn start_with_names<F>(ca: &TestCa, bind: &str, extra_names: &[&str], handler: F) -> HttpsServer
    where
        F: Fn(&Seen) -> Reply + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("bind test HTTPS server");
        let addr = listener.local_addr().expect("local addr");
        let mut names = vec![addr.ip().to_string(), "localhost".to_string()];
        names.extend(extra_names.iter().map(|n| n.to_string()));
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&names));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, handler, recorded) = (acceptor.clone(), handler.clone(), recorded.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (handler, recorded) = (handler.clone(), recorded.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                query: parts.uri.query().unwrap_or_default().to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                                body,
                            };
                            let reply = handler(&seen);
                            recorded.lock().expect("lock").push(seen);
                            tokio::time::sleep(reply.delay).await;
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(reply.status)
                                    .header("content-type", reply.content_type)
                                    .body(Full::new(bytes::Bytes::from(reply.body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer {
            addr,
            seen,
            task: Some(task),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<addr><path>`
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Requests answered so far whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests().into_iter().filter(|s| s.path == path).collect()
    }

    /// Stop listening and drop open connections: the port refuses from now on.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the accept loop drops the listener and the JoinSet,
            // which aborts every connection task.
            task.abort();
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An IPv4 address of this machine that Kubernetes accepts as an endpoint
/// address: not loopback, link-local or unspecified (Endpoints and
/// EndpointSlice validation refuse those with `may not be in the loopback
/// range (127.0.0.0/8, ::1/128)`). Taken from the default route's source
/// address, else from `ip -4 -o addr show scope global`.
pub fn host_ip() -> IpAddr {
    let usable = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(_) => false,
    };
    // Connecting a UDP socket sends nothing; it only picks the source address.
    if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") {
        if sock.connect("198.51.100.1:9").is_ok() || sock.connect("203.0.113.1:9").is_ok() {
            if let Ok(local) = sock.local_addr() {
                if usable(local.ip()) {
                    return local.ip();
                }
            }
        }
    }
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .filter(|ip| usable(*ip))
        .expect("this machine has a non-loopback IPv4 address (needed as a Kubernetes endpoint address)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server answers over TLS trusted through the CA, records the
    /// request, and refuses connections once stopped.
    #[tokio::test(flavor = "multi_thread")]
    async fn serves_records_and_stops() {
        let ca = TestCa::new("harness test CA");
        let dir = tempfile::tempdir().expect("dir");
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let mut server = HttpsServer::start_with_names(&ca, &format!("{}:0", host_ip()), &["svc.ns.svc"], |s| {
            Reply::json(201, &serde_json::json!({"path": s.path}))
        })
        .await;
        let url = server.url("/hello?x=1");
        let curl = |url: String, ca_file: std::path::PathBuf| {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["-sS", "-w", " %{http_code}", "--cacert"])
                    .arg(ca_file)
                    .args(["-H", "X-Remote-Group: a", "-H", "X-Remote-Group: b", &url])
                    .output()
                    .expect("curl runs")
            })
        };
        let out = curl(url.clone(), ca_file.clone()).await.expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            "{\"path\":\"/hello\"} 201",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = server.requests_to("/hello");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].query, "x=1");
        assert_eq!(seen[0].header_values("x-remote-group"), ["a", "b"]);
        server.stop();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = curl(url, ca_file).await.expect("join");
        assert!(!out.status.success(), "stopped server still answers");
    }
}
