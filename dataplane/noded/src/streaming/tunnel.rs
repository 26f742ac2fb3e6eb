//! WebSocket `SPDY/3.1+portforward.k8s.io`: kubectl port-forward (1.30+)
//! sends SPDY frames inside WebSocket binary messages. After the WebSocket
//! handshake the bytes are plain SPDY port-forward (`portforward.k8s.io`),
//! so they go to a SPDY connection with the runtime's streaming server
//! unchanged: each message's payload is written to the runtime, each read
//! from the runtime becomes a message.

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::TUNNEL_PROTOCOL;

/// Answer the client's handshake once the runtime accepted a SPDY port-forward.
pub async fn serve(url: &str, mut req: Request) -> Response {
    let runtime = match super::spdy_to_runtime(url, "portforward.k8s.io").await {
        Ok(r) => r,
        Err(r) => return r.into(),
    };
    let resp = match super::websocket_accept(&req, TUNNEL_PROTOCOL) {
        Ok(r) => r,
        Err(r) => return r.into(),
    };
    let client = hyper::upgrade::on(&mut req);
    let runtime = runtime();
    tokio::spawn(async move {
        let (client, runtime) = match tokio::try_join!(client, runtime) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%err, "port-forward upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
        if let Err(err) = carry(ws, TokioIo::new(runtime)).await {
            tracing::debug!(%err, "port-forward tunnel ended with an error");
        }
    });
    resp
}

/// Carry bytes both ways until either side closes.
pub async fn carry<W, R>(ws: WebSocketStream<W>, runtime: R) -> Result<(), super::remotecommand::BridgeError>
where
    W: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut rt_r, mut rt_w) = tokio::io::split(runtime);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            n = rt_r.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    break;
                }
                ws_tx.send(Message::Binary(Bytes::copy_from_slice(&chunk[..n]))).await?;
            }
            msg = ws_rx.next() => match msg {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => rt_w.write_all(&b).await?,
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = rt_w.shutdown().await;
    super::remotecommand::close_handshake(ws_tx, ws_rx, None).await;
    Ok(())
}
