//! WebSocket `v5.channel.k8s.io` exec/attach, bridged to a SPDY/3.1
//! session with the runtime's streaming server.
//!
//! On the WebSocket side every binary message is `[channel, bytes...]`:
//! 0 stdin, 1 stdout, 2 stderr, 3 error (a meta/v1 Status: `Success`, or
//! `NonZeroExitCode` with the exit code in `details.causes`), 4 resize
//! (`{"Width":..,"Height":..}`), and in v5 255 CLOSE (`[255, 0]`: stdin is
//! finished). On the SPDY side (protocol `v4.channel.k8s.io`, the runtime's
//! newest) each of those is a stream the client opens with a `streamtype`
//! header; a stdin CLOSE becomes the stdin stream's FIN, which the runtime
//! turns into closing the process's stdin. The runtime's stream data goes
//! back on the matching channel; the session ends when the runtime has
//! finished its streams (or hung up), and the WebSocket is closed after the
//! last byte.
//!
//! Output is held back until the client has surely registered its channels:
//! client-go before 1.33 (kubectl 1.30–1.32) starts reading WebSocket
//! messages before it creates its streams and drops a message for a channel
//! it has not created yet (kubernetes/kubernetes#131189). Kubernetes' own
//! hops (API server translator → kubelet → runtime) make that window
//! unlikely; here a fast command can answer first. The runtime's output is
//! therefore read at once but held until the client sent a message (stdin,
//! resize, CLOSE: it has its streams) or [`CLIENT_GRACE`] after the upgrade.
//! The command itself starts at once, so this costs no latency beyond the
//! grace when the command is faster than it. (Not reading the runtime
//! meanwhile loses output: a runtime that has finished and hung up answers
//! our next write with a reset, which discards what it sent.)

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy::{Codec, Frame, FLAG_FIN};
use super::{StreamOptions, V5_PROTOCOL};

/// How long a finished session waits for the client's answering Close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The remote command channels.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's CLOSE signal: `[255, channel]`.
const CLOSE: u8 = 255;

/// How long output waits for a client that sends nothing first.
const CLIENT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// The SPDY streams of one session: (channel, stream id, streamtype).
fn plan(opts: StreamOptions) -> Vec<(u8, u32, &'static str)> {
    let mut wanted = vec![(ERROR, "error")];
    if opts.stdin {
        wanted.push((STDIN, "stdin"));
    }
    if opts.stdout {
        wanted.push((STDOUT, "stdout"));
    }
    if opts.stderr {
        wanted.push((STDERR, "stderr"));
    }
    if opts.tty {
        wanted.push((RESIZE, "resize"));
    }
    wanted
        .into_iter()
        .enumerate()
        .map(|(i, (ch, ty))| (ch, 2 * i as u32 + 1, ty))
        .collect()
}

/// Answer the client's v5 handshake once the runtime accepted a SPDY session.
pub async fn serve_v5(url: &str, opts: StreamOptions, mut req: Request) -> Response {
    let runtime = match super::spdy_to_runtime(url, "v4.channel.k8s.io").await {
        Ok(r) => r,
        Err(r) => return r.into(),
    };
    let resp = match super::websocket_accept(&req, V5_PROTOCOL) {
        Ok(r) => r,
        Err(r) => return r.into(),
    };
    let client = hyper::upgrade::on(&mut req);
    let runtime = runtime();
    tokio::spawn(async move {
        let (client, runtime) = match tokio::try_join!(client, runtime) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%err, "remote command upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
        if let Err(err) = bridge(ws, TokioIo::new(runtime), opts).await {
            tracing::debug!(%err, "remote command session ended with an error");
        }
    });
    resp
}

/// Errors of a bridged session.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The runtime connection failed.
    #[error("runtime connection: {0}")]
    Io(#[from] std::io::Error),
    /// The runtime sent bad SPDY.
    #[error(transparent)]
    Spdy(#[from] super::spdy::SpdyError),
}

/// Carry one session until either side is done.
pub async fn bridge<W, R>(ws: WebSocketStream<W>, runtime: R, opts: StreamOptions) -> Result<(), BridgeError>
where
    W: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut rt_r, mut rt_w) = tokio::io::split(runtime);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut codec = Codec::new()?;
    let streams = plan(opts);
    let id_of = |ch: u8| streams.iter().find(|(c, _, _)| *c == ch).map(|(_, id, _)| *id);
    let channel_of = |id: u32| streams.iter().find(|(_, i, _)| *i == id).map(|(c, _, _)| *c);
    for (_, id, ty) in &streams {
        let syn = Frame::SynStream {
            stream_id: *id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), (*ty).into())],
        };
        rt_w.write_all(&codec.encode(&syn)?).await?;
    }
    // Streams the runtime writes, until it finishes each.
    let mut open: Vec<u32> = [ERROR, STDOUT, STDERR].into_iter().filter_map(id_of).collect();
    let mut stdin_open = opts.stdin;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 32 * 1024];
    let grace = tokio::time::sleep(CLIENT_GRACE);
    tokio::pin!(grace);
    let mut client_ready = false;
    // The runtime is always read (so nothing it sent is lost when it hangs
    // up); what goes to the client waits here until the client is ready.
    let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut runtime_done = false;
    'session: loop {
        if client_ready {
            for (stream_id, msg) in pending.drain(..) {
                let delta = msg.len() as u32 - 1;
                ws_tx.send(Message::Binary(Bytes::from(msg))).await?;
                // Credit is given back once the client has the bytes, so the
                // runtime sends at most one window ahead of the client.
                let credit = Frame::WindowUpdate { stream_id, delta };
                let _ = rt_w.write_all(&codec.encode(&credit)?).await;
            }
            if runtime_done {
                break 'session;
            }
        }
        tokio::select! {
            _ = &mut grace, if !client_ready => client_ready = true,
            n = rt_r.read(&mut chunk), if !runtime_done => {
                // The runtime hanging up (or resetting) ends the session.
                let n = n.unwrap_or(0);
                if n == 0 {
                    runtime_done = true;
                    continue 'session;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(frame) = codec.decode(&mut buf)? {
                    match frame {
                        Frame::Data { stream_id, flags, data } => {
                            if let Some(ch) = channel_of(stream_id).filter(|_| !data.is_empty()) {
                                let mut msg = Vec::with_capacity(data.len() + 1);
                                msg.push(ch);
                                msg.extend_from_slice(&data);
                                pending.push((stream_id, msg));
                            }
                            if flags & FLAG_FIN != 0 {
                                open.retain(|id| *id != stream_id);
                            }
                        }
                        Frame::SynReply { stream_id, flags, .. } | Frame::Headers { stream_id, flags, .. } => {
                            if flags & FLAG_FIN != 0 {
                                open.retain(|id| *id != stream_id);
                            }
                        }
                        Frame::RstStream { stream_id, .. } => open.retain(|id| *id != stream_id),
                        Frame::Ping(id) => { let _ = rt_w.write_all(&codec.encode(&Frame::Ping(id))?).await; }
                        Frame::GoAway { .. } => runtime_done = true,
                        Frame::SynStream { stream_id, .. } => {
                            // The runtime opens no streams in this protocol.
                            let rst = Frame::RstStream { stream_id, status: 3 };
                            let _ = rt_w.write_all(&codec.encode(&rst)?).await;
                        }
                        Frame::Settings(_) | Frame::WindowUpdate { .. } => {}
                    }
                }
                if open.is_empty() {
                    runtime_done = true;
                }
            }
            msg = ws_rx.next() => {
                client_ready = true;
                let data = match msg {
                    None | Some(Ok(Message::Close(_))) => break 'session,
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => continue,
                };
                let Some((&ch, payload)) = data.split_first() else { continue };
                match ch {
                    STDIN if stdin_open && !payload.is_empty() => {
                        if let Some(stream_id) = id_of(STDIN) {
                            let frame = Frame::Data { stream_id, flags: 0, data: payload.to_vec() };
                            let _ = rt_w.write_all(&codec.encode(&frame)?).await;
                        }
                    }
                    RESIZE => {
                        if let Some(stream_id) = id_of(RESIZE) {
                            let frame = Frame::Data { stream_id, flags: 0, data: payload.to_vec() };
                            let _ = rt_w.write_all(&codec.encode(&frame)?).await;
                        }
                    }
                    CLOSE if payload.first() == Some(&STDIN) && stdin_open => {
                        stdin_open = false;
                        if let Some(stream_id) = id_of(STDIN) {
                            let fin = Frame::Data { stream_id, flags: FLAG_FIN, data: Vec::new() };
                            let _ = rt_w.write_all(&codec.encode(&fin)?).await;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = rt_w.shutdown().await;
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    close_handshake(ws_tx, ws_rx, Some(close)).await;
    Ok(())
}

/// End a WebSocket session: send our Close, then drop the connection only
/// once the client answered with its own (or after [`CLOSE_WAIT`]).
/// Dropping it at once, with a late client message (a resize, stdin) still
/// unread, makes the kernel reset the connection, and the reset can overtake
/// our last bytes on the API server's hop: the client then sees 1006
/// "unexpected EOF" instead of the exit status.
pub(super) async fn close_handshake<Tx, Rx>(mut ws_tx: Tx, mut ws_rx: Rx, frame: Option<CloseFrame>)
where
    Tx: futures::Sink<Message> + Unpin,
    Rx: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let _ = ws_tx.send(Message::Close(frame)).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while let Some(Ok(_)) = ws_rx.next().await {} }).await;
    let _ = ws_tx.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_opened_as_the_runtime_expects_them() {
        let all = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            plan(all),
            vec![
                (ERROR, 1, "error"),
                (STDIN, 3, "stdin"),
                (STDOUT, 5, "stdout"),
                (STDERR, 7, "stderr")
            ]
        );
        let tty = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(
            plan(tty),
            vec![
                (ERROR, 1, "error"),
                (STDIN, 3, "stdin"),
                (STDOUT, 5, "stdout"),
                (RESIZE, 7, "resize")
            ]
        );
    }
}
