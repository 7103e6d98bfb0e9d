//! The framing of the attach socket between a container's monitor and hull-cri.
//!
//! Every frame is one type byte, a big-endian `u32` payload length, then the payload. The
//! monitor sends [`Frame::Stdout`], [`Frame::Stderr`] and, once the container has exited,
//! [`Frame::Exit`]; a client sends [`Frame::OpenStdin`] first if it will write stdin, then
//! [`Frame::Stdin`], [`Frame::StdinClose`] (its half-close) and [`Frame::Resize`]. A length
//! prefix (rather than one stream per socket) keeps stdout and stderr apart on one
//! connection, and makes a stray byte an error instead of a silent mix-up.

/// Bytes before every payload: the type and the length.
pub const HEADER: usize = 5;

/// The largest payload either side sends or accepts.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
const OPEN_STDIN: u8 = 4;
const STDIN: u8 = 5;
const STDIN_CLOSE: u8 = 6;
const RESIZE: u8 = 7;

/// One message on the attach socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Output the container wrote to stdout (or to its terminal).
    Stdout(Vec<u8>),
    /// Output the container wrote to stderr.
    Stderr(Vec<u8>),
    /// The container exited with this code (128 + signal when killed).
    Exit(i32),
    /// The client will write stdin: with `stdin_once`, its detaching closes the stdin.
    OpenStdin,
    /// Bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// The client's stdin ended.
    StdinClose,
    /// The terminal's new size in character cells.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
}

/// Why bytes on the attach socket are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The type byte names no frame.
    #[error("attach frame: unknown type {0}")]
    UnknownType(u8),
    /// The length is above [`MAX_PAYLOAD`].
    #[error("attach frame: payload of {0} bytes exceeds the limit")]
    TooLong(u32),
    /// A fixed-size frame has the wrong length.
    #[error("attach frame: type {kind} with a payload of {len} bytes")]
    BadLength {
        /// The type byte.
        kind: u8,
        /// The length received.
        len: u32,
    },
}

impl Frame {
    /// Appends the encoded frame to `out`.
    ///
    /// # Panics
    /// If a data payload exceeds [`MAX_PAYLOAD`]; senders split their data first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdout(d) => (STDOUT, d),
            Frame::Stderr(d) => (STDERR, d),
            Frame::Stdin(d) => (STDIN, d),
            Frame::Exit(code) => return header_and(out, EXIT, &code.to_be_bytes()),
            Frame::OpenStdin => (OPEN_STDIN, &[]),
            Frame::StdinClose => (STDIN_CLOSE, &[]),
            Frame::Resize { width, height } => {
                let mut p = [0u8; 4];
                p[..2].copy_from_slice(&width.to_be_bytes());
                p[2..].copy_from_slice(&height.to_be_bytes());
                return header_and(out, RESIZE, &p);
            }
        };
        assert!(
            payload.len() <= MAX_PAYLOAD,
            "attach frame payload too long"
        );
        header_and(out, kind, payload);
    }

    /// Decodes the frame at the start of `buf`: `None` until a whole frame is there, else
    /// the frame and the number of bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        let fixed = match kind {
            EXIT | RESIZE => Some(4),
            OPEN_STDIN | STDIN_CLOSE => Some(0),
            STDOUT | STDERR | STDIN => None,
            other => return Err(FrameError::UnknownType(other)),
        };
        if fixed.is_some_and(|n| n != len) {
            return Err(FrameError::BadLength { kind, len });
        }
        let end = HEADER + len as usize;
        if buf.len() < end {
            return Ok(None);
        }
        let p = &buf[HEADER..end];
        let frame = match kind {
            STDOUT => Frame::Stdout(p.to_vec()),
            STDERR => Frame::Stderr(p.to_vec()),
            STDIN => Frame::Stdin(p.to_vec()),
            EXIT => Frame::Exit(i32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            OPEN_STDIN => Frame::OpenStdin,
            STDIN_CLOSE => Frame::StdinClose,
            _ => Frame::Resize {
                width: u16::from_be_bytes([p[0], p[1]]),
                height: u16::from_be_bytes([p[2], p[3]]),
            },
        };
        Ok(Some((frame, end)))
    }
}

fn header_and(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    // The length fits: data payloads are checked against MAX_PAYLOAD, others are fixed.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Stdout(b"out\n".to_vec()),
            Frame::Stderr(b"err".to_vec()),
            Frame::Stdout(Vec::new()),
            Frame::Exit(-3),
            Frame::Exit(137),
            Frame::OpenStdin,
            Frame::Stdin(vec![0; MAX_PAYLOAD]),
            Frame::StdinClose,
            Frame::Resize {
                width: 132,
                height: 43,
            },
        ]
    }

    #[test]
    fn every_frame_round_trips_back_to_back() {
        let mut buf = Vec::new();
        for f in all() {
            f.encode(&mut buf);
        }
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((f, n)) = Frame::decode(&buf[at..]).unwrap() {
            got.push(f);
            at += n;
        }
        assert_eq!(at, buf.len());
        assert_eq!(got, all());
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let mut buf = Vec::new();
        Frame::Stderr(b"hello".to_vec()).encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(Frame::decode(&buf[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            Frame::decode(&buf).unwrap(),
            Some((Frame::Stderr(b"hello".to_vec()), buf.len()))
        );
    }

    #[test]
    fn stdout_and_stderr_stay_distinct() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        Frame::Stdout(b"x".to_vec()).encode(&mut a);
        Frame::Stderr(b"x".to_vec()).encode(&mut b);
        assert_ne!(a, b);
        assert_eq!(
            Frame::decode(&b).unwrap().unwrap().0,
            Frame::Stderr(b"x".to_vec())
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            Frame::decode(&[9, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(9))
        );
        let too_long = (MAX_PAYLOAD as u32 + 1).to_be_bytes();
        assert_eq!(
            Frame::decode(&[STDIN, too_long[0], too_long[1], too_long[2], too_long[3]]),
            Err(FrameError::TooLong(MAX_PAYLOAD as u32 + 1))
        );
        assert_eq!(
            Frame::decode(&[EXIT, 0, 0, 0, 2, 1, 2]),
            Err(FrameError::BadLength { kind: EXIT, len: 2 })
        );
        assert_eq!(
            Frame::decode(&[STDIN_CLOSE, 0, 0, 0, 1, 0]),
            Err(FrameError::BadLength {
                kind: STDIN_CLOSE,
                len: 1
            })
        );
    }
}
