//! SPDY/3.1, as far as kubernetes' streaming protocols use it: the client opens streams,
//! the server accepts them, both sides send data and half-close. Framing in [`frame`],
//! header compression in [`zlib`], the session (streams, flow control) in [`session`].

pub mod frame;
pub mod session;
pub mod zlib;

#[cfg(test)]
mod tests;

pub use session::{Incoming, RecvStream, SendStream, Session};
pub use zlib::Headers;

/// The `Upgrade` token of SPDY/3.1 (kubernetes' `HeaderSpdy31`).
pub const UPGRADE: &str = "SPDY/3.1";

/// Errors of a SPDY session.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The peer sent bytes that are not a frame.
    #[error("reading a spdy frame")]
    Frame(#[from] frame::FrameError),
    /// A header block did not decode.
    #[error("spdy header block")]
    Zlib(#[from] zlib::ZlibError),
    /// The peer broke the protocol.
    #[error("spdy protocol error: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("spdy connection i/o")]
    Io(#[source] std::io::Error),
    /// The session has ended.
    #[error("spdy session is closed")]
    Closed,
    /// The stream was reset or already half-closed by this side.
    #[error("spdy stream {0} is closed")]
    StreamClosed(u32),
}
