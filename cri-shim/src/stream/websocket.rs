//! WebSocket (RFC 6455), server side, with kubernetes' channel protocol on top: every
//! binary message starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize); `v5.channel.k8s.io` adds the message `[255, ch]`, "the sender closed
//! channel ch" (client-go's `StreamClose`), which is how a v5 client half-closes stdin.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The channel-close marker of `v5.channel.k8s.io`.
pub const CLOSE_CHANNEL: u8 = 255;
/// Client frames and messages beyond this are refused.
const MAX_MESSAGE: usize = 1 << 20;
/// How long [`WsSession::close`] waits for the client's Close.
const LINGER: Duration = Duration::from_secs(5);

pub(super) const OP_CONT: u8 = 0;
pub(super) const OP_TEXT: u8 = 1;
pub(super) const OP_BINARY: u8 = 2;
pub(super) const OP_CLOSE: u8 = 8;
pub(super) const OP_PING: u8 = 9;
pub(super) const OP_PONG: u8 = 10;

/// Errors of a WebSocket connection.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The client broke RFC 6455 or the channel protocol.
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// The connection failed.
    #[error("websocket connection i/o")]
    Io(#[source] std::io::Error),
    /// The connection has ended.
    #[error("websocket connection is closed")]
    Closed,
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// One frame as received (unmasked).
#[derive(Debug, PartialEq, Eq)]
pub struct WsFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Bytes,
}

/// Parses one client frame from the front of `buf` (`None`: need more bytes). Client
/// frames must be masked.
pub fn decode(buf: &[u8]) -> Result<Option<(WsFrame, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("client frame is not masked"));
    }
    let (len, mut at) = match b1 & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(WsError::Protocol("frame too large"));
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload: Vec<u8> = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    let frame = WsFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload: payload.into(),
    };
    Ok(Some((frame, at + len)))
}

/// Appends a server frame (unmasked, FIN set) to `out`.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

enum Out {
    Frame(Vec<u8>),
    Shutdown,
}

/// A channel-protocol connection: inbound channels are delivered as byte chunks; outbound
/// ones are written through [`WsSession::send`].
pub struct WsSession {
    out: mpsc::Sender<Out>,
    gone: watch::Receiver<bool>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl WsSession {
    /// Starts reading and writing on `io`; messages for the `inbound` channels come out of
    /// the returned receivers, in order, ending when the client closes the channel (v5) or
    /// the connection.
    pub fn start<IO>(io: IO, inbound: &[u8]) -> (Self, HashMap<u8, mpsc::Receiver<Bytes>>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (gone_tx, gone_rx) = watch::channel(false);
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for &ch in inbound {
            let (tx, rx) = mpsc::channel(16);
            senders.insert(ch, tx);
            receivers.insert(ch, rx);
        }
        let writer = tokio::spawn(async move {
            if let Err(e) = write_loop(w, out_rx).await {
                tracing::debug!(error = %crate::monitor::chain(&e), "websocket writer ended");
            }
        });
        let out = out_tx.clone();
        let reader = tokio::spawn(async move {
            if let Err(e) = read_loop(r, senders, &out).await {
                tracing::debug!(error = %crate::monitor::chain(&e), "websocket reader ended");
                // 1002: protocol error, as RFC 6455 section 7.4.1 names it.
                let _ = send_close(&out, 1002).await;
            }
            let _ = gone_tx.send(true);
        });
        let session = Self {
            out: out_tx,
            gone: gone_rx,
            reader: Some(reader),
            writer: Some(writer),
        };
        (session, receivers)
    }

    /// A sender of binary messages on channel `ch`.
    pub fn sender(&self, ch: u8) -> WsSender {
        WsSender {
            ch,
            out: self.out.clone(),
        }
    }

    /// Turns true when the client's side has ended.
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.clone()
    }

    /// Sends Close (1000, normal), waits a while for the client's Close, then hangs up.
    pub async fn close(mut self) {
        let _ = send_close(&self.out, 1000).await;
        if let Some(mut r) = self.reader.take() {
            if tokio::time::timeout(LINGER, &mut r).await.is_err() {
                r.abort();
            }
        }
        let _ = self.out.send(Out::Shutdown).await;
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

/// Writes one channel's messages.
#[derive(Clone)]
pub struct WsSender {
    ch: u8,
    out: mpsc::Sender<Out>,
}

impl WsSender {
    /// Sends `data` as one message on the channel.
    pub async fn send(&self, data: &[u8]) -> Result<(), WsError> {
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(self.ch);
        msg.extend_from_slice(data);
        let mut frame = Vec::with_capacity(msg.len() + 10);
        encode(OP_BINARY, &msg, &mut frame);
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| WsError::Closed)
    }
}

/// A Close frame with status `code`.
pub fn close_frame(code: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    encode(OP_CLOSE, &code.to_be_bytes(), &mut frame);
    frame
}

/// What a received control frame asks of the reader (RFC 6455 section 5.5).
pub enum Control {
    /// A Ping: send this Pong.
    Pong(Vec<u8>),
    /// A Close: echo it and stop reading.
    Close,
    /// A Pong: nothing to do.
    Ignore,
}

/// Classifies `f`: `None` for a data frame; an error for a fragmented or oversized
/// control frame.
pub fn control(f: &WsFrame) -> Result<Option<Control>, WsError> {
    if !matches!(f.opcode, OP_PING | OP_PONG | OP_CLOSE) {
        return Ok(None);
    }
    if !f.fin || f.payload.len() > 125 {
        return Err(WsError::Protocol("fragmented or oversized control frame"));
    }
    Ok(Some(match f.opcode {
        OP_PING => {
            let mut pong = Vec::new();
            encode(OP_PONG, &f.payload, &mut pong);
            Control::Pong(pong)
        }
        OP_CLOSE => Control::Close,
        _ => Control::Ignore,
    }))
}

async fn send_close(out: &mpsc::Sender<Out>, code: u16) -> Result<(), WsError> {
    out.send(Out::Frame(close_frame(code)))
        .await
        .map_err(|_| WsError::Closed)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Out>,
) -> Result<(), WsError> {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(f) => w.write_all(&f).await.map_err(WsError::Io)?,
            Out::Shutdown => break,
        }
        if rx.is_empty() {
            w.flush().await.map_err(WsError::Io)?;
        }
    }
    w.shutdown().await.map_err(WsError::Io)
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    mut inbound: HashMap<u8, mpsc::Sender<Bytes>>,
    out: &mpsc::Sender<Out>,
) -> Result<(), WsError> {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut message: Option<Vec<u8>> = None;
    loop {
        while let Some((f, n)) = decode(&buf)? {
            buf.advance(n);
            match control(&f)? {
                Some(Control::Pong(pong)) => {
                    out.send(Out::Frame(pong))
                        .await
                        .map_err(|_| WsError::Closed)?;
                    continue;
                }
                Some(Control::Ignore) => continue,
                Some(Control::Close) => {
                    // Echo the client's Close (RFC 6455 section 5.5.1); the caller's own
                    // Close, if it already went, makes this one redundant but harmless.
                    let _ = send_close(out, 1000).await;
                    return Ok(());
                }
                None => {}
            }
            match f.opcode {
                OP_BINARY if message.is_none() => message = Some(f.payload.to_vec()),
                OP_CONT if message.is_some() => {
                    let m = message.as_mut().ok_or(WsError::Protocol("continuation"))?;
                    if m.len() + f.payload.len() > MAX_MESSAGE {
                        return Err(WsError::Protocol("message too large"));
                    }
                    m.extend_from_slice(&f.payload);
                }
                OP_TEXT => return Err(WsError::Protocol("text message on a binary protocol")),
                _ => return Err(WsError::Protocol("unexpected opcode")),
            }
            if f.fin && matches!(f.opcode, OP_BINARY | OP_CONT) {
                if let Some(m) = message.take() {
                    deliver(&mut inbound, m).await?;
                }
            }
        }
        buf.reserve(64 << 10);
        if r.read_buf(&mut buf).await.map_err(WsError::Io)? == 0 {
            return Ok(());
        }
    }
}

async fn deliver(
    inbound: &mut HashMap<u8, mpsc::Sender<Bytes>>,
    m: Vec<u8>,
) -> Result<(), WsError> {
    match m.as_slice() {
        [] => Err(WsError::Protocol("message without a channel byte")),
        [CLOSE_CHANNEL, ch] => {
            inbound.remove(ch);
            Ok(())
        }
        [CLOSE_CHANNEL, ..] => Err(WsError::Protocol("malformed channel close message")),
        [ch, data @ ..] => {
            if let Some(tx) = inbound.get(ch) {
                if !data.is_empty() && tx.send(Bytes::copy_from_slice(data)).await.is_err() {
                    inbound.remove(ch);
                }
            }
            // Channels the server does not read (stdout echoes, unknown ids) are dropped.
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_decode_with_masks_and_lengths() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let wire = if len <= u16::MAX as usize {
                masked(OP_BINARY, true, &payload)
            } else {
                let mut w = vec![0x82, 0x80 | 127];
                w.extend_from_slice(&(len as u64).to_be_bytes());
                w.extend_from_slice(&[0, 0, 0, 0]);
                w.extend_from_slice(&payload);
                w
            };
            for cut in [0, 1, wire.len() - 1] {
                assert_eq!(decode(&wire[..cut]).unwrap(), None);
            }
            let (f, n) = decode(&wire).unwrap().unwrap();
            assert_eq!((f.fin, f.opcode, n), (true, OP_BINARY, wire.len()));
            assert_eq!(&f.payload[..], &payload[..]);
        }
    }

    #[test]
    fn unmasked_or_reserved_frames_are_refused() {
        assert!(decode(&[0x82, 0x01, 0x00]).is_err());
        assert!(decode(&[0xc2, 0x80, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn server_frames_encode_lengths() {
        for (len, header) in [(3usize, 2usize), (200, 4), (70_000, 10)] {
            let mut out = Vec::new();
            encode(OP_BINARY, &vec![1u8; len], &mut out);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
        }
    }

    #[tokio::test]
    async fn channels_pings_fragments_and_v5_close() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (session, mut rx) = WsSession::start(server, &[0, 4]);
        let mut stdin = rx.remove(&0).unwrap();
        let mut wire = Vec::new();
        wire.extend(masked(OP_BINARY, false, &[0, b'a', b'b']));
        wire.extend(masked(OP_PING, true, b"hb"));
        wire.extend(masked(OP_CONT, true, b"cd"));
        wire.extend(masked(OP_BINARY, true, &[1, b'x']));
        wire.extend(masked(OP_BINARY, true, &[CLOSE_CHANNEL, 0]));
        client.write_all(&wire).await.unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"abcd"));
        assert_eq!(stdin.recv().await, None);
        session.sender(1).send(b"out").await.unwrap();
        let mut got = vec![0u8; 4 + 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x8a, 2, b'h', b'b', 0x82, 4, 1, b'o', b'u', b't']);
        client
            .write_all(&masked(OP_CLOSE, true, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        session.close().await;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(&rest[..4], &[0x88, 2, 0x03, 0xe8]);
    }

    #[tokio::test]
    async fn text_messages_end_the_connection_with_1002() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (session, _rx) = WsSession::start(server, &[0]);
        client
            .write_all(&masked(OP_TEXT, true, b"0aGk="))
            .await
            .unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x88, 2, 0x03, 0xea]);
        assert!(*session.gone().wait_for(|g| *g).await.unwrap());
    }
}
