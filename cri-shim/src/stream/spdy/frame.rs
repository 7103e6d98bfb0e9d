//! SPDY/3.1 frames (draft-mbelshe-httpbis-spdy-00 section 2.2 and the 3.1 additions):
//! an 8-byte header (control bit; version and type, or stream id; flags; 24-bit length)
//! and a payload. Header blocks travel here still compressed; [`super::zlib`] owns them.

use bytes::{Buf, Bytes};

/// The only version spoken.
pub const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's half is closed.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// Control frames beyond this are refused: kubernetes' header blocks are tiny.
pub const MAX_CONTROL: usize = 1 << 20;

/// RST_STREAM status codes (section 2.4.2).
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM: a frame for a stream that is not active.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM: the stream was not processed.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL: the stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// STREAM_IN_USE: a SYN_STREAM for an id already open.
    pub const STREAM_IN_USE: u32 = 8;
}

/// GOAWAY status codes.
pub mod goaway {
    /// OK: normal end of the session.
    pub const OK: u32 = 0;
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
}

/// A frame. `headers` fields hold the compressed header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients).
        stream_id: u32,
        /// The stream it is associated with, 0 for none.
        assoc_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// FLAG_FIN, FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// See [`rst`].
        status: u32,
    },
    /// Session settings: (flags, id, value).
    Settings(Vec<(u8, u32, u32)>),
    /// A liveness probe, echoed by the receiver when the other side started it.
    Ping(u32),
    /// The sender will accept no more streams.
    GoAway {
        /// The last stream the sender processed.
        last_good: u32,
        /// See [`goaway`].
        status: u32,
    },
    /// More headers on a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// Flow-control credit; stream 0 is the session (SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// Bytes granted.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// A control frame of a type this side does not know; receivers must ignore it.
    Unknown(u16),
}

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A control frame too large or too short for its type.
    #[error("control frame of type {kind} has a bad length {len}")]
    Length {
        /// The frame type.
        kind: u16,
        /// Its length.
        len: usize,
    },
}

const HEADER: usize = 8;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one frame from the front of `buf`: `None` when more bytes are needed, else the
/// frame and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (u32_at(buf, 4) & 0x00ff_ffff) as usize;
    let control = buf[0] & 0x80 != 0;
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    if control {
        let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if len > MAX_CONTROL {
            return Err(FrameError::Length { kind, len });
        }
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    let p = &buf[HEADER..HEADER + len];
    let frame = if !control {
        Frame::Data {
            stream_id: u32_at(buf, 0) & 0x7fff_ffff,
            flags,
            data: Bytes::copy_from_slice(p),
        }
    } else {
        control_frame(kind, flags, p)?
    };
    Ok(Some((frame, HEADER + len)))
}

fn control_frame(kind: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
    let need = |n: usize| {
        if p.len() < n {
            Err(FrameError::Length { kind, len: p.len() })
        } else {
            Ok(())
        }
    };
    let id = |at| u32_at(p, at) & 0x7fff_ffff;
    Ok(match kind {
        1 => {
            need(10)?;
            Frame::SynStream {
                stream_id: id(0),
                assoc_id: id(4),
                priority: p[8] >> 5,
                flags,
                headers: Bytes::copy_from_slice(&p[10..]),
            }
        }
        2 => {
            need(4)?;
            Frame::SynReply {
                stream_id: id(0),
                flags,
                headers: Bytes::copy_from_slice(&p[4..]),
            }
        }
        3 => {
            need(8)?;
            Frame::RstStream {
                stream_id: id(0),
                status: u32_at(p, 4),
            }
        }
        4 => {
            need(4)?;
            let n = u32_at(p, 0) as usize;
            if p.len() != 4 + n.saturating_mul(8) {
                return Err(FrameError::Length { kind, len: p.len() });
            }
            let entries = (0..n)
                .map(|i| {
                    let at = 4 + i * 8;
                    (p[at], u32_at(p, at) & 0x00ff_ffff, u32_at(p, at + 4))
                })
                .collect();
            Frame::Settings(entries)
        }
        6 => {
            need(4)?;
            Frame::Ping(u32_at(p, 0))
        }
        7 => {
            need(8)?;
            Frame::GoAway {
                last_good: id(0),
                status: u32_at(p, 4),
            }
        }
        8 => {
            need(4)?;
            Frame::Headers {
                stream_id: id(0),
                flags,
                headers: Bytes::copy_from_slice(&p[4..]),
            }
        }
        9 => {
            need(8)?;
            Frame::WindowUpdate {
                stream_id: id(0),
                delta: u32_at(p, 4) & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown(other),
    })
}

fn control_header(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(((flags as u32) << 24) | len as u32).to_be_bytes());
}

impl Frame {
    /// Appends the frame's wire form to `out`.
    ///
    /// Payloads must fit the 24-bit length; callers split data into smaller chunks.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::SynStream {
                stream_id,
                assoc_id,
                priority,
                flags,
                headers,
            } => {
                control_header(out, 1, *flags, 10 + headers.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&assoc_id.to_be_bytes());
                out.extend_from_slice(&[priority << 5, 0]);
                out.extend_from_slice(headers);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                control_header(out, 2, *flags, 4 + headers.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(headers);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, 3, 0, 8);
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings(entries) => {
                control_header(out, 4, 0, 4 + entries.len() * 8);
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (flags, id, value) in entries {
                    out.extend_from_slice(&(((*flags as u32) << 24) | id).to_be_bytes());
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            Frame::Ping(id) => {
                control_header(out, 6, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway { last_good, status } => {
                control_header(out, 7, 0, 8);
                out.extend_from_slice(&last_good.to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                control_header(out, 8, *flags, 4 + headers.len());
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(headers);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, 9, 0, 8);
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&delta.to_be_bytes());
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&(((*flags as u32) << 24) | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::Unknown(_) => {}
        }
    }
}

/// Takes every complete frame off the front of `buf`.
pub fn drain(buf: &mut bytes::BytesMut) -> Result<Vec<Frame>, FrameError> {
    let mut frames = Vec::new();
    while let Some((frame, n)) = decode(buf)? {
        buf.advance(n);
        frames.push(frame);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut out = Vec::new();
        f.encode(&mut out);
        // Every prefix is incomplete, the whole is exactly one frame.
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]).unwrap(), None, "{f:?} cut at {cut}");
        }
        assert_eq!(decode(&out).unwrap(), Some((f, out.len())));
    }

    #[test]
    fn frames_round_trip() {
        let h = Bytes::from_static(b"\x78\xf9compressed");
        round_trip(Frame::SynStream {
            stream_id: 7,
            assoc_id: 0,
            priority: 3,
            flags: FLAG_FIN | FLAG_UNIDIRECTIONAL,
            headers: h.clone(),
        });
        round_trip(Frame::SynReply {
            stream_id: 7,
            flags: 0,
            headers: h.clone(),
        });
        round_trip(Frame::RstStream {
            stream_id: 9,
            status: rst::CANCEL,
        });
        round_trip(Frame::Settings(vec![(
            1,
            SETTINGS_INITIAL_WINDOW_SIZE,
            1 << 20,
        )]));
        round_trip(Frame::Ping(0xdead_beef));
        round_trip(Frame::GoAway {
            last_good: 11,
            status: goaway::OK,
        });
        round_trip(Frame::Headers {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: h,
        });
        round_trip(Frame::WindowUpdate {
            stream_id: 0,
            delta: 65536,
        });
        round_trip(Frame::Data {
            stream_id: 0x7fff_ffff,
            flags: FLAG_FIN,
            data: Bytes::from(vec![42u8; 70_000]),
        });
    }

    #[test]
    fn a_captured_go_syn_stream_parses() {
        // client-go's first frame: SYN_STREAM of stream 1 carrying `streamtype: error`.
        let wire = b"\x80\x03\x00\x01\x00\x00\x00\x29\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00";
        let mut buf = wire.to_vec();
        buf.extend_from_slice(&[0u8; 0x29 - 10]);
        let (f, n) = decode(&buf).unwrap().unwrap();
        assert_eq!(n, 8 + 0x29);
        assert!(matches!(
            f,
            Frame::SynStream {
                stream_id: 1,
                assoc_id: 0,
                priority: 0,
                flags: 0,
                ..
            }
        ));
    }

    #[test]
    fn bad_control_frames_are_refused() {
        // SPDY/2.
        assert_eq!(
            decode(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"),
            Err(FrameError::Version(2))
        );
        // A PING with a 2-byte payload.
        assert!(decode(b"\x80\x03\x00\x06\x00\x00\x00\x02\x00\x01").is_err());
        // SETTINGS whose count overruns.
        assert!(decode(b"\x80\x03\x00\x04\x00\x00\x00\x04\x00\x00\x00\x02").is_err());
        // An unknown type is passed up to be ignored.
        assert_eq!(
            decode(b"\x80\x03\x00\x63\x00\x00\x00\x00").unwrap(),
            Some((Frame::Unknown(0x63), 8))
        );
    }

    #[test]
    fn drain_takes_whole_frames_only() {
        let mut out = Vec::new();
        Frame::Ping(1).encode(&mut out);
        Frame::Ping(3).encode(&mut out);
        let mut buf = bytes::BytesMut::from(&out[..out.len() - 1]);
        assert_eq!(drain(&mut buf).unwrap(), vec![Frame::Ping(1)]);
        assert_eq!(buf.len(), 11);
    }
}
