//! One SPDY/3.1 session, server side: the client opens streams (odd ids), this side
//! accepts them, and both pump data with half-close.
//!
//! Tasks: a reader owns the read half and the inflater (header blocks must be inflated in
//! frame order, even those whose headers are ignored), a writer owns the write half and the
//! deflater. Stream handles talk to the writer through a bounded queue, which is the
//! back-pressure towards a slow peer.
//!
//! Flow control. Received data is credited back (WINDOW_UPDATE for the stream and the
//! session) when the consumer takes it, and at most one window per stream is buffered: a
//! peer sending beyond its window stalls its own connection. For sending, the peer's
//! windows are honoured from the moment it shows it keeps them (a WINDOW_UPDATE or an
//! INITIAL_WINDOW_SIZE setting). The SPDY peers of this protocol, moby/spdystream in
//! client-go and kubelet, never send WINDOW_UPDATE and ignore it (connection.go has no
//! window handling), so enforcing the 64 KiB default against them would stall every stream
//! after 64 KiB.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::frame::{self, goaway, rst, Frame, FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE};
use super::zlib::{Deflater, Headers, Inflater};
use super::SpdyError;

/// The initial window of every stream and of the session (SPDY/3.1).
const DEFAULT_WINDOW: i64 = 64 << 10;
/// Data frames this side sends carry at most this much.
const MAX_CHUNK: usize = 32 << 10;
/// How long [`Session::close`] waits for the peer to hang up.
const LINGER: Duration = Duration::from_secs(5);

enum Out {
    Frame(Frame),
    Reply(u32),
    Close,
}

struct Chunk {
    data: Bytes,
    permits: u32,
}

struct StreamState {
    send_window: i64,
    /// `None` once the peer half-closed.
    data: Option<mpsc::UnboundedSender<Chunk>>,
    credit: Arc<Semaphore>,
    local_fin: bool,
}

struct State {
    streams: HashMap<u32, StreamState>,
    session_window: i64,
    initial_window: i64,
    /// The peer has shown it keeps flow-control windows.
    enforce: bool,
    closed: bool,
    last_id: u32,
}

struct Shared {
    out: mpsc::Sender<Out>,
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation is a few field updates; a panic mid-way leaves nothing worse than
        // a stale window.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, out: Out) -> Result<(), SpdyError> {
        self.out.send(out).await.map_err(|_| SpdyError::Closed)
    }

    /// Forgets a stream once both halves are closed.
    fn maybe_forget(&self, id: u32) {
        let mut st = self.state();
        if st
            .streams
            .get(&id)
            .is_some_and(|s| s.local_fin && s.data.is_none())
        {
            st.streams.remove(&id);
        }
    }
}

/// A stream the client opened. Reply to it ([`SendStream::reply`]) or reset it.
pub struct Incoming {
    /// The stream id.
    pub id: u32,
    /// Its SYN_STREAM headers.
    pub headers: Headers,
    /// What the client sends.
    pub rx: RecvStream,
    /// What this side sends.
    pub tx: SendStream,
}

/// The receiving half of a stream.
pub struct RecvStream {
    id: u32,
    rx: mpsc::UnboundedReceiver<Chunk>,
    credit: Arc<Semaphore>,
    shared: Arc<Shared>,
}

impl RecvStream {
    /// The next chunk; `None` after the client's FIN, a reset, or the session's end.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let chunk = self.rx.recv().await?;
        self.credit.add_permits(chunk.permits as usize);
        let delta = chunk.data.len() as u32;
        if delta > 0 {
            for stream_id in [self.id, 0] {
                let _ = self
                    .shared
                    .send(Out::Frame(Frame::WindowUpdate { stream_id, delta }))
                    .await;
            }
        }
        Some(chunk.data)
    }
}

/// The sending half of a stream.
#[derive(Clone)]
pub struct SendStream {
    id: u32,
    shared: Arc<Shared>,
}

impl SendStream {
    /// Accepts the stream (SYN_REPLY without headers, as kubernetes' servers send).
    pub async fn reply(&self) -> Result<(), SpdyError> {
        self.shared.send(Out::Reply(self.id)).await
    }

    /// Sends `data`, waiting for window when the peer keeps windows.
    pub async fn write(&self, mut data: Bytes) -> Result<(), SpdyError> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_CHUNK)).await?;
            let chunk = data.split_to(n);
            self.shared
                .send(Out::Frame(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: chunk,
                }))
                .await?;
        }
        Ok(())
    }

    async fn reserve(&self, want: usize) -> Result<usize, SpdyError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.shared.state();
                if st.closed {
                    return Err(SpdyError::Closed);
                }
                let enforce = st.enforce;
                let session = st.session_window;
                let s = st
                    .streams
                    .get_mut(&self.id)
                    .filter(|s| !s.local_fin)
                    .ok_or(SpdyError::StreamClosed(self.id))?;
                if !enforce {
                    return Ok(want);
                }
                let avail = s.send_window.min(session);
                if avail > 0 {
                    let n = want.min(avail as usize);
                    s.send_window -= n as i64;
                    st.session_window -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }

    /// Half-closes: an empty DATA frame with FLAG_FIN.
    pub async fn finish(&self) -> Result<(), SpdyError> {
        {
            let mut st = self.shared.state();
            match st.streams.get_mut(&self.id) {
                Some(s) if !s.local_fin => s.local_fin = true,
                _ => return Err(SpdyError::StreamClosed(self.id)),
            }
        }
        self.shared.maybe_forget(self.id);
        self.shared
            .send(Out::Frame(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            }))
            .await
    }

    /// Aborts the stream with RST_STREAM `status`.
    pub async fn reset(&self, status: u32) {
        self.shared.state().streams.remove(&self.id);
        let _ = self
            .shared
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status,
            }))
            .await;
    }
}

/// A server-side SPDY/3.1 session over an upgraded connection.
pub struct Session {
    incoming: mpsc::Receiver<Incoming>,
    shared: Arc<Shared>,
    gone: watch::Receiver<bool>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts the reader and writer tasks on `io`.
    pub fn start<IO>(io: IO) -> Self
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(16);
        let (gone_tx, gone_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            out: out_tx,
            state: Mutex::new(State {
                streams: HashMap::new(),
                session_window: DEFAULT_WINDOW,
                initial_window: DEFAULT_WINDOW,
                enforce: false,
                closed: false,
                last_id: 0,
            }),
            changed: Notify::new(),
        });
        let writer = tokio::spawn(async move {
            if let Err(e) = write_loop(w, out_rx).await {
                tracing::debug!(error = %crate::monitor::chain(&e), "spdy session writer ended");
            }
        });
        let sh = shared.clone();
        let reader = tokio::spawn(async move {
            let mut reader = Reader {
                shared: sh.clone(),
                inflater: Inflater::default(),
                incoming: Some(in_tx),
            };
            if let Err(e) = reader.run(r).await {
                tracing::debug!(error = %crate::monitor::chain(&e), "spdy session reader ended");
                if matches!(
                    e,
                    SpdyError::Frame(_) | SpdyError::Protocol(_) | SpdyError::Zlib(_)
                ) {
                    let last_good = sh.state().last_id;
                    let _ = sh
                        .send(Out::Frame(Frame::GoAway {
                            last_good,
                            status: goaway::PROTOCOL_ERROR,
                        }))
                        .await;
                    let _ = sh.send(Out::Close).await;
                }
            }
            let streams = {
                let mut st = sh.state();
                st.closed = true;
                std::mem::take(&mut st.streams)
            };
            drop(streams);
            sh.changed.notify_waiters();
            let _ = gone_tx.send(true);
        });
        Self {
            incoming: in_rx,
            shared,
            gone: gone_rx,
            reader: Some(reader),
            writer: Some(writer),
        }
    }

    /// The next stream the client opens; `None` once it sent GOAWAY or hung up.
    pub async fn accept(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Turns true when the client's side of the connection has ended.
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.clone()
    }

    /// Ends the session: GOAWAY, then the write side is shut down after every queued frame,
    /// and the peer gets a few seconds to hang up.
    pub async fn close(mut self) {
        let last_good = self.shared.state().last_id;
        let _ = self
            .shared
            .send(Out::Frame(Frame::GoAway {
                last_good,
                status: goaway::OK,
            }))
            .await;
        let _ = self.shared.send(Out::Close).await;
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
        if let Some(mut r) = self.reader.take() {
            if tokio::time::timeout(LINGER, &mut r).await.is_err() {
                r.abort();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Out>,
) -> Result<(), SpdyError> {
    let mut deflater = Deflater::new()?;
    let mut buf = Vec::with_capacity(MAX_CHUNK + 64);
    while let Some(out) = rx.recv().await {
        buf.clear();
        match out {
            Out::Frame(f) => f.encode(&mut buf),
            Out::Reply(stream_id) => {
                let block = deflater.compress(&Headers::default().encode())?;
                Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: block.into(),
                }
                .encode(&mut buf);
            }
            Out::Close => break,
        }
        w.write_all(&buf).await.map_err(SpdyError::Io)?;
        // Frames queued behind this one go out in the same flush.
        if rx.is_empty() {
            w.flush().await.map_err(SpdyError::Io)?;
        }
    }
    w.shutdown().await.map_err(SpdyError::Io)
}

struct Reader {
    shared: Arc<Shared>,
    inflater: Inflater,
    /// Dropped on GOAWAY: no new streams after it.
    incoming: Option<mpsc::Sender<Incoming>>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut r: R) -> Result<(), SpdyError> {
        let mut buf = BytesMut::with_capacity(64 << 10);
        loop {
            for f in frame::drain(&mut buf)? {
                self.handle(f).await?;
            }
            buf.reserve(64 << 10);
            if r.read_buf(&mut buf).await.map_err(SpdyError::Io)? == 0 {
                return Ok(());
            }
        }
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        Ok(Headers::decode(&self.inflater.decompress(block)?)?)
    }

    async fn handle(&mut self, f: Frame) -> Result<(), SpdyError> {
        match f {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let headers = self.headers(&headers)?;
                self.open(stream_id, flags, headers).await?;
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => self.data(stream_id, flags, data).await?,
            Frame::RstStream { stream_id, .. } => {
                self.shared.state().streams.remove(&stream_id);
                self.shared.changed.notify_waiters();
            }
            Frame::Settings(entries) => self.settings(&entries),
            Frame::Ping(id) if id & 1 == 1 => {
                self.shared.send(Out::Frame(Frame::Ping(id))).await?;
            }
            Frame::GoAway { .. } => self.incoming = None,
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                // Inflated only to keep the shared context in step.
                self.headers(&headers)?;
                if flags & FLAG_FIN != 0 {
                    self.remote_fin(stream_id);
                }
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut st = self.shared.state();
                st.enforce = true;
                if stream_id == 0 {
                    st.session_window += delta as i64;
                } else if let Some(s) = st.streams.get_mut(&stream_id) {
                    s.send_window += delta as i64;
                }
                drop(st);
                self.shared.changed.notify_waiters();
            }
            // Pongs to pings this side never sends, replies to streams it never opens,
            // and unknown types (which SPDY says to ignore).
            Frame::Ping(_) | Frame::SynReply { .. } | Frame::Unknown(_) => {}
        }
        Ok(())
    }

    fn settings(&mut self, entries: &[(u8, u32, u32)]) {
        let mut st = self.shared.state();
        for &(_, id, value) in entries {
            if id == SETTINGS_INITIAL_WINDOW_SIZE {
                let delta = value as i64 - st.initial_window;
                st.initial_window = value as i64;
                st.enforce = true;
                for s in st.streams.values_mut() {
                    s.send_window += delta;
                }
            }
        }
        drop(st);
        self.shared.changed.notify_waiters();
    }

    async fn open(&mut self, id: u32, flags: u8, headers: Headers) -> Result<(), SpdyError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(DEFAULT_WINDOW as usize));
        {
            let mut st = self.shared.state();
            if id & 1 == 0 || id <= st.last_id {
                return Err(SpdyError::Protocol(format!(
                    "stream id {id} is not a new client stream id (last {})",
                    st.last_id
                )));
            }
            st.last_id = id;
            let send_window = st.initial_window;
            st.streams.insert(
                id,
                StreamState {
                    send_window,
                    data: (flags & FLAG_FIN == 0).then_some(tx),
                    credit: credit.clone(),
                    local_fin: false,
                },
            );
        }
        let incoming = Incoming {
            id,
            headers,
            rx: RecvStream {
                id,
                rx,
                credit,
                shared: self.shared.clone(),
            },
            tx: SendStream {
                id,
                shared: self.shared.clone(),
            },
        };
        let refused = match &self.incoming {
            Some(q) => q.send(incoming).await.is_err(),
            None => true,
        };
        if refused {
            self.shared.state().streams.remove(&id);
            self.shared
                .send(Out::Frame(Frame::RstStream {
                    stream_id: id,
                    status: rst::REFUSED_STREAM,
                }))
                .await?;
        }
        Ok(())
    }

    async fn data(&mut self, id: u32, flags: u8, data: Bytes) -> Result<(), SpdyError> {
        let known = self
            .shared
            .state()
            .streams
            .get(&id)
            .map(|s| (s.data.clone(), s.credit.clone()));
        let Some((tx, credit)) = known else {
            return self
                .shared
                .send(Out::Frame(Frame::RstStream {
                    stream_id: id,
                    status: rst::INVALID_STREAM,
                }))
                .await;
        };
        if let (Some(tx), false) = (tx, data.is_empty()) {
            let len = data.len() as u32;
            let permits = len.min(DEFAULT_WINDOW as u32);
            // Waits only when the peer overruns its window (see the module doc).
            let taken = tokio::select! {
                p = credit.acquire_many_owned(permits) => p.ok(),
                _ = tx.closed() => None,
            };
            let delivered = match taken {
                Some(p) => {
                    p.forget();
                    tx.send(Chunk { data, permits }).is_ok()
                }
                None => false,
            };
            if !delivered {
                // Nobody reads this stream: credit the bytes back at once.
                for stream_id in [id, 0] {
                    self.shared
                        .send(Out::Frame(Frame::WindowUpdate {
                            stream_id,
                            delta: len,
                        }))
                        .await?;
                }
            }
        }
        if flags & FLAG_FIN != 0 {
            self.remote_fin(id);
        }
        Ok(())
    }

    fn remote_fin(&self, id: u32) {
        if let Some(s) = self.shared.state().streams.get_mut(&id) {
            s.data = None;
        }
        self.shared.maybe_forget(id);
    }
}
