//! SPDY tunnelled through WebSocket, as client-go's `NewSPDYOverWebsocketDialer` speaks it
//! for port-forward (subprotocol `SPDY/3.1+portforward.k8s.io`; kubectl and critest's
//! `-websocket-portforward` use it): the SPDY byte stream rides in binary messages, with
//! no channel byte and message boundaries that mean nothing. [`open`] turns the upgraded
//! connection back into a byte stream that [`super::spdy::Session`] runs on unchanged.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::websocket::{
    close_frame, control, decode, encode, Control, WsError, OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT,
};

/// Bytes buffered between the WebSocket pumps and the SPDY session, each way.
const BUFFER: usize = 64 << 10;
/// Largest binary message sent; SPDY frames are split across messages freely.
const CHUNK: usize = 32 << 10;

/// Starts pumping between the WebSocket connection `io` and the returned byte stream.
/// The pumps end when either side ends: the client's Close (or hang-up) is end-of-file
/// on the stream, and the stream's end sends Close (1000) to the client.
pub fn open<IO>(io: IO) -> DuplexStream
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    let (r, w) = tokio::io::split(io);
    let (or, ow) = tokio::io::split(ours);
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(e) = inbound(r, ow, &ctl_tx).await {
            tracing::debug!(error = %crate::monitor::chain(&e), "websocket tunnel reader ended");
            let _ = ctl_tx.send(close_frame(1002)).await;
        }
    });
    tokio::spawn(async move {
        if let Err(e) = outbound(or, w, ctl_rx).await {
            tracing::debug!(error = %crate::monitor::chain(&e), "websocket tunnel writer ended");
        }
    });
    theirs
}

/// Client frames -> the stream; pings and Close are answered through `ctl`.
async fn inbound<R, W>(mut r: R, mut ow: W, ctl: &mpsc::Sender<Vec<u8>>) -> Result<(), WsError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(BUFFER);
    let mut in_message = false;
    loop {
        while let Some((f, n)) = decode(&buf)? {
            buf.advance(n);
            match control(&f)? {
                Some(Control::Pong(pong)) => {
                    ctl.send(pong).await.map_err(|_| WsError::Closed)?;
                    continue;
                }
                Some(Control::Ignore) => continue,
                Some(Control::Close) => {
                    // Echo the Close (RFC 6455 section 5.5.1), then end-of-file for SPDY.
                    let _ = ctl.send(close_frame(1000)).await;
                    return ow.shutdown().await.map_err(WsError::Io);
                }
                None => {}
            }
            match f.opcode {
                OP_BINARY if !in_message => {
                    in_message = !f.fin;
                    ow.write_all(&f.payload).await.map_err(WsError::Io)?;
                }
                OP_CONT if in_message => {
                    in_message = !f.fin;
                    ow.write_all(&f.payload).await.map_err(WsError::Io)?;
                }
                OP_TEXT => return Err(WsError::Protocol("text message in a SPDY tunnel")),
                _ => return Err(WsError::Protocol("unexpected opcode")),
            }
        }
        buf.reserve(BUFFER);
        if r.read_buf(&mut buf).await.map_err(WsError::Io)? == 0 {
            return ow.shutdown().await.map_err(WsError::Io);
        }
    }
}

/// The stream's bytes -> binary messages, interleaved with the control frames of `ctl`.
async fn outbound<R, W>(
    mut or: R,
    mut w: W,
    mut ctl: mpsc::Receiver<Vec<u8>>,
) -> Result<(), WsError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; CHUNK];
    let mut frame = Vec::with_capacity(CHUNK + 10);
    loop {
        // Both branches are cancel safe: `recv` and `read` lose nothing when not chosen.
        tokio::select! {
            Some(f) = ctl.recv() => {
                w.write_all(&f).await.map_err(WsError::Io)?;
                if f.first() == Some(&(0x80 | OP_CLOSE)) {
                    break;
                }
            }
            n = or.read(&mut chunk) => {
                let n = n.map_err(WsError::Io)?;
                if n == 0 {
                    w.write_all(&close_frame(1000)).await.map_err(WsError::Io)?;
                    break;
                }
                frame.clear();
                encode(OP_BINARY, &chunk[..n], &mut frame);
                w.write_all(&frame).await.map_err(WsError::Io)?;
            }
        }
        w.flush().await.map_err(WsError::Io)?;
    }
    w.flush().await.map_err(WsError::Io)?;
    w.shutdown().await.map_err(WsError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::websocket::{OP_PING, OP_PONG};

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![
            if fin { 0x80 } else { 0 } | opcode,
            0x80 | payload.len() as u8,
        ];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_close_ends_the_stream() {
        let (client, server) = tokio::io::duplex(4096);
        let mut stream = open(server);
        let (mut cr, mut cw) = tokio::io::split(client);
        // A fragmented message, a ping in between, then a second message.
        let mut input = masked(OP_BINARY, false, b"he");
        input.extend(masked(OP_PING, true, b"p"));
        input.extend(masked(OP_CONT, true, b"llo"));
        input.extend(masked(OP_BINARY, true, b"!"));
        cw.write_all(&input).await.unwrap();
        let mut got = [0u8; 6];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello!");
        let mut pong = [0u8; 3];
        cr.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x80 | OP_PONG, 1, b'p']);
        stream.write_all(b"back").await.unwrap();
        let mut msg = [0u8; 6];
        cr.read_exact(&mut msg).await.unwrap();
        assert_eq!(&msg, &[0x80 | OP_BINARY, 4, b'b', b'a', b'c', b'k']);
        // The client's Close: echoed, and end-of-file on the stream.
        cw.write_all(&masked(OP_CLOSE, true, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
        let mut echo = Vec::new();
        cr.read_to_end(&mut echo).await.unwrap();
        assert_eq!(echo, [0x80 | OP_CLOSE, 2, 0x03, 0xe8]);
    }

    #[tokio::test]
    async fn text_messages_are_refused_with_1002() {
        let (client, server) = tokio::io::duplex(4096);
        let mut stream = open(server);
        let (mut cr, mut cw) = tokio::io::split(client);
        cw.write_all(&masked(OP_TEXT, true, b"hi")).await.unwrap();
        let mut close = [0u8; 4];
        cr.read_exact(&mut close).await.unwrap();
        assert_eq!(close, [0x80 | OP_CLOSE, 2, 0x03, 0xea]);
        let mut rest = Vec::new();
        // The stream still ends: the inbound pump dropped its half.
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
