//! gRPC over unix sockets: a tonic [`Channel`] that dials a socket path.
//!
//! tonic's transport speaks TCP URIs; for a unix socket the channel gets a
//! custom connector and a placeholder URI that is never resolved.

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Error};

/// Connect a gRPC channel to the server listening on the unix socket `path`.
///
/// The connection is made eagerly so a missing server is reported here.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel, Error> {
    endpoint().connect_with_connector(connector(path.as_ref())).await
}

/// Like [`connect`], but the first connection is made on first use.
pub fn connect_lazy(path: impl AsRef<Path>) -> Channel {
    endpoint().connect_with_connector_lazy(connector(path.as_ref()))
}

fn endpoint() -> Endpoint {
    // The authority is ignored by the connector below; it only has to parse.
    Endpoint::from_static("http://unix.socket")
}

fn connector(
    path: &Path,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    let path: PathBuf = path.to_owned();
    tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}
