//! The streaming HTTP server: `/exec/<token>`, `/attach/<token>` and
//! `/portforward/<token>`, each upgraded to SPDY/3.1 (`Upgrade: SPDY/3.1`, the protocol in
//! `X-Stream-Protocol-Version`) or WebSocket (`Sec-WebSocket-Protocol`; port-forward
//! tunnels SPDY through it, see tunnel.rs). A token is good for one connection; an
//! unknown, expired or used one gets 404.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::remotecommand::{self, Op, Version, SPDY_VERSIONS, WS_VERSIONS};
use super::tokens::{StreamRequest, TokenError, Tokens};
use super::{portforward, spdy, tunnel, websocket, Backend};

type Reply = Response<Full<Bytes>>;

/// The WebSocket subprotocol of port-forward: SPDY's `portforward.k8s.io`, tunnelled.
const TUNNEL_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// Hands out the URLs the Exec, Attach and PortForward RPCs return.
pub struct StreamUrls {
    base: String,
    tokens: Arc<Tokens>,
}

impl StreamUrls {
    /// URLs on the server listening at `addr` (its resolved address). An unspecified
    /// address (`0.0.0.0`, `::`) is reachable on loopback, so URLs name loopback then.
    pub fn new(addr: SocketAddr, tokens: Arc<Tokens>) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            base: format!("http://{}", SocketAddr::new(ip, addr.port())),
            tokens,
        }
    }

    /// Stores `req` under a new token and returns its absolute URL.
    pub fn issue(&self, req: StreamRequest) -> Result<String, TokenError> {
        let kind = req.kind();
        let token = self.tokens.insert(req)?;
        Ok(format!("{}/{kind}/{token}", self.base))
    }
}

/// Serves streaming connections on `listener` for as long as the task runs.
pub async fn serve(listener: TcpListener, tokens: Arc<Tokens>, backend: Arc<dyn Backend>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of fds and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting a streaming connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tokens, backend) = (tokens.clone(), backend.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (tokens, backend) = (tokens.clone(), backend.clone());
                async move { Ok::<_, Infallible>(route(req, &tokens, backend)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "streaming connection");
            }
        });
    }
}

fn text(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Comma-separated values of every `name` header, trimmed.
fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn has(h: &HeaderMap, name: &str, want: &str) -> bool {
    values(h, name).iter().any(|v| v.eq_ignore_ascii_case(want))
}

/// The first protocol of the client's list this server speaks. `Ok(None)`: the client
/// named none (kubernetes then falls back to the oldest protocol).
fn negotiate<'a>(client: &[String], server: &[&'a str]) -> Result<Option<&'a str>, String> {
    if client.is_empty() {
        return Ok(None);
    }
    client
        .iter()
        .find_map(|c| server.iter().find(|s| *s == c).copied())
        .map(Some)
        .ok_or_else(|| {
            format!("unable to negotiate a protocol: client offers {client:?}, server speaks {server:?}")
        })
}

fn route(mut req: Request<Body>, tokens: &Tokens, backend: Arc<dyn Backend>) -> Reply {
    let path = req.uri().path().to_string();
    let Some((kind, token)) = path.trim_start_matches('/').split_once('/') else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no streaming endpoint at {path}"),
        );
    };
    if !["exec", "attach", "portforward"].contains(&kind) || token.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            format!("no streaming endpoint at {path}"),
        );
    }
    let Some(sreq) = tokens.take(token) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream token {token:?} is unknown, expired or already used"),
        );
    };
    if sreq.kind() != kind {
        return text(
            StatusCode::NOT_FOUND,
            format!("stream token {token:?} is for {}, not {kind}", sreq.kind()),
        );
    }
    let h = req.headers().clone();
    let upgrade = hyper::upgrade::on(&mut req);
    if has(&h, "upgrade", "websocket") && has(&h, "connection", "upgrade") {
        websocket_upgrade(&h, sreq, upgrade, backend)
    } else if has(&h, "upgrade", spdy::UPGRADE) && has(&h, "connection", "upgrade") {
        spdy_upgrade(&h, sreq, upgrade, backend)
    } else {
        text(
            StatusCode::BAD_REQUEST,
            format!(
                "{path}: expected an upgrade to {} or websocket",
                spdy::UPGRADE
            ),
        )
    }
}

fn switching(headers: &[(&'static str, String)]) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

fn spdy_upgrade(
    h: &HeaderMap,
    sreq: StreamRequest,
    upgrade: hyper::upgrade::OnUpgrade,
    backend: Arc<dyn Backend>,
) -> Reply {
    let offered = values(h, "x-stream-protocol-version");
    let names: Vec<&str> = match &sreq {
        StreamRequest::PortForward { .. } => vec![portforward::PROTOCOL],
        _ => SPDY_VERSIONS.iter().map(|v| v.name()).collect(),
    };
    let chosen = match negotiate(&offered, &names) {
        Ok(c) => c,
        Err(msg) => return text(StatusCode::FORBIDDEN, msg),
    };
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => return tracing::debug!(error = %e, "spdy upgrade failed"),
        };
        let session = spdy::Session::start(io);
        match sreq {
            StreamRequest::PortForward { pod_id } => {
                portforward::serve_spdy(session, pod_id, backend).await
            }
            StreamRequest::Exec(r) => {
                remotecommand::serve_spdy(session, version(chosen), Op::Exec(r), backend).await
            }
            StreamRequest::Attach(r) => {
                remotecommand::serve_spdy(session, version(chosen), Op::Attach(r), backend).await
            }
        }
    });
    let mut headers = vec![
        ("connection", "Upgrade".to_string()),
        ("upgrade", spdy::UPGRADE.to_string()),
    ];
    if let Some(c) = chosen {
        headers.push(("x-stream-protocol-version", c.to_string()));
    }
    switching(&headers)
}

/// The version named `name`; none negotiated means the first, unversioned protocol.
fn version(name: Option<&str>) -> Version {
    [Version::V5, Version::V4, Version::V3, Version::V2]
        .into_iter()
        .find(|v| Some(v.name()) == name)
        .unwrap_or(Version::V1)
}

fn websocket_upgrade(
    h: &HeaderMap,
    sreq: StreamRequest,
    upgrade: hyper::upgrade::OnUpgrade,
    backend: Arc<dyn Backend>,
) -> Reply {
    let Some(key) = h.get("sec-websocket-key").and_then(|k| k.to_str().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key".to_string(),
        );
    };
    if !has(h, "sec-websocket-version", "13") {
        return text(
            StatusCode::BAD_REQUEST,
            "unsupported Sec-WebSocket-Version (13 is spoken)".to_string(),
        );
    }
    let offered = values(h, "sec-websocket-protocol");
    let chosen = match &sreq {
        // Port-forward has no channel protocol of its own on WebSocket: client-go tunnels
        // SPDY through it (tunnel.rs).
        StreamRequest::PortForward { .. } => match negotiate(&offered, &[TUNNEL_PORTFORWARD]) {
            Ok(Some(c)) => Some(c),
            Ok(None) => {
                return text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "port-forward over websocket needs the subprotocol {TUNNEL_PORTFORWARD}"
                    ),
                )
            }
            Err(msg) => return text(StatusCode::FORBIDDEN, msg),
        },
        _ => {
            let names: Vec<&str> = WS_VERSIONS.iter().map(|v| v.name()).collect();
            match negotiate(&offered, &names) {
                Ok(c) => c,
                Err(msg) => return text(StatusCode::FORBIDDEN, msg),
            }
        }
    };
    let mut headers = vec![
        ("connection", "Upgrade".to_string()),
        ("upgrade", "websocket".to_string()),
        ("sec-websocket-accept", websocket::accept_key(key)),
    ];
    if let Some(c) = chosen {
        headers.push(("sec-websocket-protocol", c.to_string()));
    }
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        match sreq {
            StreamRequest::PortForward { pod_id } => {
                let session = spdy::Session::start(tunnel::open(io));
                portforward::serve_spdy(session, pod_id, backend).await
            }
            StreamRequest::Exec(r) => {
                remotecommand::serve_websocket(io, version(chosen), Op::Exec(r), backend).await
            }
            StreamRequest::Attach(r) => {
                remotecommand::serve_websocket(io, version(chosen), Op::Attach(r), backend).await
            }
        }
    });
    switching(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_order() {
        let offered = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let spdy: Vec<&str> = SPDY_VERSIONS.iter().map(|v| v.name()).collect();
        assert_eq!(
            negotiate(&offered(&["v5.channel.k8s.io", "v4.channel.k8s.io"]), &spdy),
            Ok(Some("v4.channel.k8s.io"))
        );
        assert_eq!(negotiate(&[], &spdy), Ok(None));
        assert!(negotiate(&offered(&["v9.channel.k8s.io"]), &spdy).is_err());
        assert_eq!(version(None), Version::V1);
        assert_eq!(version(Some("v3.channel.k8s.io")), Version::V3);
    }

    #[test]
    fn urls_are_absolute_and_name_loopback_for_wildcards() {
        let tokens = Arc::new(Tokens::default());
        let u = StreamUrls::new("0.0.0.0:1234".parse().unwrap(), tokens.clone());
        let url = u
            .issue(StreamRequest::PortForward { pod_id: "p".into() })
            .unwrap();
        let token = url
            .strip_prefix("http://127.0.0.1:1234/portforward/")
            .unwrap();
        assert!(tokens.take(token).is_some());
        let u = StreamUrls::new("[::]:80".parse().unwrap(), tokens);
        assert!(u.base.starts_with("http://[::1]:80"));
    }
}
