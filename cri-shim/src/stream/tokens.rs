//! One-time tokens naming a pending stream request: the RPC stores the request and hands
//! out a URL holding the token; the first connection presenting it takes the request. A
//! token is 128 random bits, expires after a minute, and is gone once used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{AttachRequest, ExecRequest};

/// How long a token stays valid (kubelet's streaming server uses one minute too).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many tokens wait at once (kubelet's request cache has the same bound).
const MAX_PENDING: usize = 1000;

/// A request waiting for its client to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRequest {
    /// Exec.
    Exec(ExecRequest),
    /// Attach.
    Attach(AttachRequest),
    /// PortForward into pod `pod_id`'s network namespace.
    PortForward {
        /// The full pod sandbox id.
        pod_id: String,
    },
}

impl StreamRequest {
    /// The URL path segment for this kind: `exec`, `attach` or `portforward`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exec(_) => "exec",
            Self::Attach(_) => "attach",
            Self::PortForward { .. } => "portforward",
        }
    }
}

/// Errors of issuing tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The OS random source failed.
    #[error("reading random bytes for a stream token: {0}")]
    Random(getrandom::Error),
    /// Too many requests wait for their clients.
    #[error("{MAX_PENDING} stream requests are already waiting for their clients")]
    TooMany,
}

/// The pending requests, by token.
pub struct Tokens {
    ttl: Duration,
    pending: Mutex<HashMap<String, (Instant, StreamRequest)>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::with_ttl(TOKEN_TTL)
    }
}

impl Tokens {
    /// A store whose tokens live for `ttl` (tests use short ones).
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            pending: Mutex::default(),
        }
    }

    /// Stores `req` and returns its new token (32 hex digits, URL-safe).
    pub fn insert(&self, req: StreamRequest) -> Result<String, TokenError> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, (deadline, _)| *deadline > now);
        if pending.len() >= MAX_PENDING {
            return Err(TokenError::TooMany);
        }
        loop {
            let mut raw = [0u8; 16];
            getrandom::getrandom(&mut raw).map_err(TokenError::Random)?;
            let token = hex::encode(raw);
            if !pending.contains_key(&token) {
                pending.insert(token.clone(), (now + self.ttl, req));
                return Ok(token);
            }
        }
    }

    /// Takes the request of `token`: `None` if it is unknown, expired or already taken.
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (deadline, req) = pending.remove(token)?;
        (deadline > Instant::now()).then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(pod: &str) -> StreamRequest {
        StreamRequest::PortForward {
            pod_id: pod.to_string(),
        }
    }

    #[test]
    fn a_token_is_taken_once() {
        let t = Tokens::default();
        let a = t.insert(pf("a")).unwrap();
        let b = t.insert(pf("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(t.take(&b), Some(pf("b")));
        assert_eq!(t.take(&b), None);
        assert_eq!(t.take(&a), Some(pf("a")));
        assert_eq!(t.take("not-a-token"), None);
    }

    #[test]
    fn tokens_expire() {
        let t = Tokens::with_ttl(Duration::from_millis(30));
        let a = t.insert(pf("a")).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.take(&a), None);
    }

    #[test]
    fn pending_requests_are_bounded_and_expired_ones_pruned() {
        let t = Tokens::with_ttl(Duration::from_millis(50));
        for _ in 0..MAX_PENDING {
            t.insert(pf("p")).unwrap();
        }
        assert!(matches!(t.insert(pf("p")), Err(TokenError::TooMany)));
        std::thread::sleep(Duration::from_millis(80));
        t.insert(pf("p")).unwrap();
        assert_eq!(t.pending.lock().unwrap().len(), 1);
    }
}
