//! MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): the HTTP upgrade on the
//! configured path with the `mqtt` subprotocol, then a byte stream carried in
//! binary frames.
//!
//! MQTT packets may span frames and one frame may hold several packets: the
//! MQTT connection reads a plain byte stream and frames packets itself. Text
//! frames are a protocol error and end the connection. Our writes go out as
//! one binary frame per coalesced write.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Subprotocols we answer, in order of preference: MQTT 3.1.1 and 5.0 use
/// `mqtt`, some MQTT 3.1 clients `mqttv3.1`.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Largest binary frame we write; a larger write goes out in several.
const MAX_WRITE_FRAME: usize = 64 * 1024;

/// Completes the WebSocket upgrade on `path`, bounded by `timeout`. A refused
/// or failed upgrade is logged and yields `None`.
// The upgrade callback's large error type is the shape tungstenite asks for.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    protocol: &'static str,
    path: &str,
    max_message: usize,
    timeout: Duration,
) -> Option<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        // Allocated per connection up front; MQTT packets are mostly small.
        .read_buffer_size(4096)
        // We coalesce writes ourselves: send each at once.
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let callback = |request: &Request, response: Response| upgrade(request, response, path);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    match tokio::time::timeout(timeout, upgrade).await {
        Ok(Ok(ws)) => Some(WsStream::new(ws)),
        Ok(Err(e)) => {
            tracing::info!(%protocol, %peer, reason = %e, "websocket upgrade refused");
            None
        }
        Err(_) => {
            tracing::info!(%protocol, %peer, reason = %format_args!("no upgrade within {timeout:?}"), "websocket upgrade refused");
            None
        }
    }
}

/// Decides an upgrade request: 404 off the configured path; the `mqtt`
/// subprotocol chosen when offered; 400 when only other subprotocols are
/// offered. A client offering none is accepted (the response then names
/// none), as lenient clients and tools expect.
#[allow(clippy::result_large_err)]
fn upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!("no MQTT WebSocket endpoint here; it is at {path}\n"),
        ));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(response);
    }
    let Some(chosen) = SUBPROTOCOLS
        .iter()
        .find(|ours| offered.iter().any(|p| p.eq_ignore_ascii_case(ours)))
    else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "this endpoint speaks the `mqtt` WebSocket subprotocol only\n".into(),
        ));
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(chosen),
    );
    Ok(response)
}

fn refusal(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
}

/// A byte stream over a WebSocket: reads the payloads of binary frames in
/// order, writes binary frames.
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the current binary message.
    pending: Bytes,
    /// The peer closed (or the socket ended).
    eof: bool,
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncBufRead for WsStream<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.pending.is_empty() && !this.eof {
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    // MQTT 5.0 §6.0: a text frame closes the connection.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame on an MQTT WebSocket",
                    )));
                }
                // Pings are answered by the WebSocket layer.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)))
                | None
                | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        Poll::Ready(Ok(&this.pending))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pending.advance(amt.min(this.pending.len()));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let data = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(ws.poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_WRITE_FRAME);
        let frame = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
        Pin::new(&mut self.ws).start_send(frame).map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, protocols: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(path);
        if let Some(p) = protocols {
            builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        builder.body(()).unwrap()
    }

    fn chosen(response: &Response) -> Option<&str> {
        response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn mqtt_subprotocol_is_chosen_among_those_offered() {
        let r = upgrade(
            &request("/mqtt", Some("wamp, mqtt")),
            Response::default(),
            "/mqtt",
        )
        .unwrap();
        assert_eq!(chosen(&r), Some("mqtt"));
        let r = upgrade(
            &request("/mqtt", Some("mqttv3.1")),
            Response::default(),
            "/mqtt",
        )
        .unwrap();
        assert_eq!(chosen(&r), Some("mqttv3.1"));
    }

    #[test]
    fn no_subprotocol_offered_is_accepted_without_one() {
        let r = upgrade(&request("/mqtt", None), Response::default(), "/mqtt").unwrap();
        assert_eq!(chosen(&r), None);
    }

    #[test]
    fn only_foreign_subprotocols_are_refused_with_400() {
        let e = upgrade(
            &request("/mqtt", Some("chat")),
            Response::default(),
            "/mqtt",
        )
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn another_path_is_refused_with_404() {
        let e = upgrade(&request("/ws", Some("mqtt")), Response::default(), "/mqtt").unwrap_err();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
