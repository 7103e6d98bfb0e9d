//! Session tests: a hand-driven client on an in-memory pipe.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Frame, FLAG_FIN};
use super::zlib::{Deflater, Headers, Inflater};
use super::Session;

struct Client {
    io: DuplexStream,
    deflater: Deflater,
    inflater: Inflater,
    buf: BytesMut,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            deflater: Deflater::new().unwrap(),
            inflater: Inflater::default(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn open(&mut self, id: u32, h: Headers, flags: u8) {
        let headers = Bytes::from(self.deflater.compress(&h.encode()).unwrap());
        self.send(Frame::SynStream {
            stream_id: id,
            assoc_id: 0,
            priority: 0,
            flags,
            headers,
        })
        .await;
    }

    /// The next frame, skipping WINDOW_UPDATEs; `None` at EOF.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf).unwrap() {
                let _ = self.buf.split_to(n);
                match f {
                    Frame::WindowUpdate { .. } => continue,
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    } => {
                        let raw = self.inflater.decompress(&headers).unwrap();
                        assert_eq!(Headers::decode(&raw).unwrap(), Headers::default());
                        return Some(Frame::SynReply {
                            stream_id,
                            flags,
                            headers: Bytes::new(),
                        });
                    }
                    f => return Some(f),
                }
            }
            if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }
}

fn pipe() -> (Client, Session) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (Client::new(a), Session::start(b))
}

#[tokio::test]
async fn streams_echo_with_half_close() {
    let (mut c, mut s) = pipe();
    c.open(1, Headers::from([("streamtype", "stdin")]), 0).await;
    c.open(3, Headers::from([("streamtype", "stdout")]), FLAG_FIN)
        .await;
    let mut stdin = s.accept().await.unwrap();
    let stdout = s.accept().await.unwrap();
    assert_eq!(stdin.headers.get("streamType"), Some("stdin"));
    assert_eq!((stdin.id, stdout.id), (1, 3));
    stdin.tx.reply().await.unwrap();
    stdout.tx.reply().await.unwrap();
    c.send(Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from_static(b"hello "),
    })
    .await;
    c.send(Frame::Data {
        stream_id: 1,
        flags: FLAG_FIN,
        data: Bytes::from_static(b"world"),
    })
    .await;
    let mut got = Vec::new();
    while let Some(chunk) = stdin.rx.recv().await {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"hello world");
    // 100 KB, more than one window and several chunks, then FIN.
    stdout
        .tx
        .write(Bytes::from(vec![7u8; 100_000]))
        .await
        .unwrap();
    stdout.tx.finish().await.unwrap();
    assert!(stdout.tx.write(Bytes::from_static(b"late")).await.is_err());
    let mut replies = 0;
    let mut data = 0;
    loop {
        match c.next().await.unwrap() {
            Frame::SynReply { .. } => replies += 1,
            Frame::Data {
                stream_id: 3,
                flags,
                data: d,
            } => {
                data += d.len();
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
            f => panic!("unexpected {f:?}"),
        }
    }
    assert_eq!((replies, data), (2, 100_000));
    let closing = tokio::spawn(s.close());
    assert!(matches!(
        c.next().await,
        Some(Frame::GoAway {
            last_good: 3,
            status: 0
        })
    ));
    assert_eq!(c.next().await, None);
    drop(c);
    closing.await.unwrap();
}

#[tokio::test]
async fn peer_windows_are_kept_once_the_peer_keeps_them() {
    let (mut c, mut s) = pipe();
    c.send(Frame::Settings(vec![(
        0,
        frame::SETTINGS_INITIAL_WINDOW_SIZE,
        10,
    )]))
    .await;
    c.open(1, Headers::from([("streamtype", "stdout")]), FLAG_FIN)
        .await;
    let out = s.accept().await.unwrap();
    out.tx.reply().await.unwrap();
    let writer =
        tokio::spawn(async move { out.tx.write(Bytes::from_static(b"0123456789abcdef")).await });
    let mut got = Vec::new();
    while got.len() < 10 {
        match c.next().await.unwrap() {
            Frame::Data { data, .. } => got.extend_from_slice(&data),
            Frame::SynReply { .. } => {}
            f => panic!("unexpected {f:?}"),
        }
    }
    // The window is spent: nothing more until credit arrives.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!writer.is_finished());
    c.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 6,
    })
    .await;
    while got.len() < 16 {
        if let Some(Frame::Data { data, .. }) = c.next().await {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"0123456789abcdef");
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn pings_are_echoed_and_bad_ids_end_the_session() {
    let (mut c, mut s) = pipe();
    c.send(Frame::Ping(5)).await;
    assert_eq!(c.next().await, Some(Frame::Ping(5)));
    c.open(3, Headers::default(), 0).await;
    let _first = s.accept().await.unwrap();
    // Stream ids must grow.
    c.open(1, Headers::default(), 0).await;
    assert!(matches!(
        c.next().await,
        Some(Frame::GoAway { status: 1, .. })
    ));
    assert_eq!(c.next().await, None);
    assert!(s.accept().await.is_none());
}

#[tokio::test]
async fn data_for_unknown_streams_is_refused() {
    let (mut c, _s) = pipe();
    c.send(Frame::Data {
        stream_id: 9,
        flags: 0,
        data: Bytes::from_static(b"x"),
    })
    .await;
    assert_eq!(
        c.next().await,
        Some(Frame::RstStream {
            stream_id: 9,
            status: frame::rst::INVALID_STREAM
        })
    );
}
