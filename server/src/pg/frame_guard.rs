//! A guard on every message a client sends, before pgwire decodes it.
//!
//! pgwire 0.41's decoder panics on malformed lengths and bodies; the fuzzer
//! found 46 such inputs (`fuzz/`, target `pgwire`). A panic ends only the
//! connection's task, but the client sees its connection cut with no
//! error, and anyone can send such bytes before authenticating.
//!
//! So the connection's bytes go through [`FrameGuard`], an `AsyncRead`
//! between the socket (after TLS) and pgwire's codec. It splits the stream
//! into messages as the protocol frames them (a startup packet has no type
//! byte, every later message has one) and checks each whole message
//! ([`super::frame_check`]) before releasing it to the codec. The first bad
//! one ends the connection with a FATAL 08P01 (protocol_violation) saying
//! what was wrong, as Postgres answers it: the client's fault.
//!
//! pgwire's `process_socket` takes a `TcpStream` and wires its codec to it
//! itself, so [`process_socket`] here is pgwire's with the guard put under
//! the codec; TLS negotiation and every message still go through pgwire's
//! public functions. Its one hook is in `server.rs`, where each accepted
//! socket is served.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::frame_check::{Frame, STARTUP_LENGTH, next_message, startup_follows};

/// How long a client has to start up (pgwire's own limit).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A client's byte stream, released to pgwire's codec one checked message
/// at a time.
pub struct FrameGuard<T> {
    io: T,
    /// Bytes read but not yet checked: the start of an incomplete message.
    unchecked: BytesMut,
    /// Checked messages the codec has not read yet.
    checked: BytesMut,
    /// Is the next message a startup packet (no type byte)?
    startup: bool,
    /// Why the stream stopped, once a message was bad.
    bad: Option<String>,
}

impl<T> FrameGuard<T> {
    /// Guard `io`, whose next message is a startup packet when `startup`;
    /// `buffered` are bytes already read from it.
    pub fn new(io: T, startup: bool, buffered: BytesMut) -> Self {
        let mut guard = Self {
            io,
            unchecked: buffered,
            checked: BytesMut::new(),
            startup,
            bad: None,
        };
        guard.check();
        guard
    }

    /// Move every complete message that passes from `unchecked` to
    /// `checked`; at the first that does not, stop for good.
    fn check(&mut self) {
        while self.bad.is_none() {
            match next_message(&self.unchecked, self.startup) {
                Frame::Incomplete => return,
                Frame::Bad(reason) => {
                    self.bad = Some(reason);
                    self.unchecked.clear();
                }
                Frame::Message(len) => {
                    let message = self.unchecked.split_to(len);
                    if self.startup {
                        self.startup = startup_follows(&message);
                    }
                    self.checked.extend_from_slice(&message);
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FrameGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.checked.is_empty() {
                let n = this.checked.len().min(buf.remaining());
                buf.put_slice(&this.checked.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if let Some(reason) = &this.bad {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    reason.clone(),
                )));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end: a half-sent message is dropped, as a cut
                // connection's would be.
                return Poll::Ready(Ok(()));
            }
            this.unchecked.extend_from_slice(read.filled());
            this.check();
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FrameGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serve one client connection: pgwire's `process_socket`, with every
/// message checked by a [`FrameGuard`] before pgwire's codec decodes it.
pub async fn process_socket<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    // pgwire waits for 8 bytes before it looks at the first packet; a
    // length no packet has is refused at once, as Postgres refuses it.
    let first = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        first = first_length(&socket) => first?,
    };
    if let Err(reason) = first {
        return refuse(socket, reason).await;
    }
    // TLS first: pgwire reads only the 8-byte SSLRequest and GSSENCRequest
    // packets itself, and leaves anything else in its read buffer.
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let old = negotiated.into_parts();
    let startup = matches!(
        old.codec.client_info.state,
        PgWireConnectionState::AwaitingStartup
    );
    let mut parts = FramedParts::new(FrameGuard::new(old.io, startup, old.read_buf), old.codec);
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup_handler = handlers.startup_handler();
    let simple_query_handler = handlers.simple_query_handler();
    let extended_query_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    let error_handler = handlers.error_handler();
    loop {
        let next = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                _ = &mut startup_timeout => None,
                next = socket.next() => next,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(PgWireError::IoError(err))) if err.kind() == io::ErrorKind::InvalidData => {
                // The guard refused a message: say so, as Postgres does, and
                // close. The client's fault; nothing was decoded.
                let info = ErrorInfo::new("FATAL".into(), "08P01".into(), err.to_string());
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                return Ok(());
            }
            _ => return Ok(()),
        };
        // A Terminate means the client is leaving: drop the socket.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(mut err) = process_message(
            message,
            &mut socket,
            startup_handler.clone(),
            simple_query_handler.clone(),
            extended_query_handler.clone(),
            copy_handler.clone(),
            cancel_handler.clone(),
        )
        .await
        {
            error_handler.on_error(&socket, &mut err);
            process_error(&mut socket, err, is_extended_query).await?;
        }
    }
}

/// Check the length field of the client's first packet, peeked (pgwire
/// reads it next): `Err` with the reason when no packet has that length. A
/// direct TLS handshake (its first byte 0x16) and a closed socket pass, for
/// pgwire to handle.
async fn first_length(socket: &TcpStream) -> io::Result<Result<(), String>> {
    let mut head = [0u8; 4];
    loop {
        let n = socket.peek(&mut head).await?;
        if n == 0 || head[0] == 0x16 {
            return Ok(Ok(()));
        }
        if n == head.len() {
            break;
        }
        // Part of the length so far (rare: four bytes come in one segment).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let length = i32::from_be_bytes(head);
    Ok(
        match usize::try_from(length).is_ok_and(|l| STARTUP_LENGTH.contains(&l)) {
            true => Ok(()),
            false => Err(format!("invalid length of startup packet: {length}")),
        },
    )
}

/// Answer a client whose first packet is malformed with a FATAL 08P01,
/// straight on the socket (there is no protocol state yet), and close.
async fn refuse(mut socket: TcpStream, reason: String) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let info = ErrorInfo::new("FATAL".into(), "08P01".into(), reason);
    let mut out = BytesMut::new();
    PgWireBackendMessage::ErrorResponse(info.into())
        .encode(&mut out)
        .map_err(io::Error::other)?;
    socket.write_all(&out).await?;
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn typed(kind: u8, length: i32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&length.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn the_guard_releases_checked_messages_and_then_fails() {
        let mut bytes = typed(b'Q', 13, b"select 1\0");
        bytes.extend(typed(b'd', 2, b""));
        let mut guard = FrameGuard::new(&bytes[..], false, BytesMut::new());
        let mut first = [0u8; 14];
        guard
            .read_exact(&mut first)
            .await
            .expect("the query passes");
        assert_eq!(&first[..], &bytes[..14]);
        let err = guard
            .read_u8()
            .await
            .expect_err("the bad CopyData does not");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("invalid message length 2"),
            "{err}"
        );
    }
}
