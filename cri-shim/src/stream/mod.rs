//! Streaming for Exec, Attach and PortForward: the CRI RPCs hand out one-time URLs of
//! hull-cri's own HTTP server, and the client (kubelet, kubectl via kubelet, crictl,
//! critest) upgrades that connection to SPDY/3.1 or WebSocket and streams stdio or ports.
//!
//! The protocol side (framing, upgrade, tokens) talks to containers only through
//! [`Backend`], so it can be tested against a fake backend and the real Go clients.

pub mod backend;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod tokens;
pub mod tunnel;
pub mod websocket;

pub use backend::{
    AttachRequest, Backend, BackendError, BoxFuture, BoxRead, BoxWrite, ExecRequest, Session,
    TermSize,
};
pub use server::{serve, StreamUrls};
pub use tokens::{StreamRequest, TokenError, Tokens};
