//! Port forwarding over SPDY (`portforward.k8s.io`), as kubelet's streaming server speaks
//! it: for each connection the client opens an error stream and a data stream with equal
//! `requestID` headers and a `port` header; data is pumped to the port on the pod's
//! loopback, both ways with half-close, and a failure is written as text on the error
//! stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::spdy::{frame::rst, Incoming, Session};
use super::Backend;

/// The SPDY subprotocol.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// How long the second stream of a pair may lag behind the first (kubelet's default).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    error: Option<Incoming>,
    data: Option<Incoming>,
    port: u16,
    since: Option<Instant>,
}

/// Checks a new stream's headers: (request id, port, is the data stream).
fn classify(s: &Incoming) -> Result<(String, u16, bool), String> {
    let port = s.headers.get("port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {port:?} is not a number in 1..65535"))?;
    let data = match s.headers.get("streamtype") {
        Some("data") => true,
        Some("error") => false,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    // Clients before requestID derived pairs from stream ids, error first (kubelet does
    // the same).
    let id = match s.headers.get("requestid") {
        Some(id) => id.to_string(),
        None if data => s.id.saturating_sub(2).to_string(),
        None => s.id.to_string(),
    };
    Ok((id, port, data))
}

/// Serves port-forward streams into pod `pod_id` until the client ends the session.
pub async fn serve_spdy(mut session: Session, pod_id: String, backend: Arc<dyn Backend>) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let s = tokio::select! {
            s = session.accept() => match s {
                Some(s) => s,
                None => break,
            },
            _ = tick.tick() => {
                expire(&mut pairs).await;
                continue;
            }
        };
        let (id, port, data) = match classify(&s) {
            Ok(c) => c,
            Err(reason) => {
                tracing::debug!(stream = s.id, reason, "refusing a port-forward stream");
                s.tx.reset(rst::PROTOCOL_ERROR).await;
                continue;
            }
        };
        let pair = pairs.entry(id.clone()).or_default();
        let slot = if data {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() || (pair.since.is_some() && pair.port != port) {
            tracing::debug!(request = id, "refusing a duplicate or mismatched stream");
            s.tx.reset(rst::PROTOCOL_ERROR).await;
            continue;
        }
        if s.tx.reply().await.is_err() {
            break;
        }
        *slot = Some(s);
        pair.port = port;
        pair.since.get_or_insert_with(Instant::now);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
                ..
            }) = pairs.remove(&id)
            {
                forwards.spawn(forward(pod_id.clone(), port, data, error, backend.clone()));
            }
        }
    }
    forwards.abort_all();
    session.close().await;
}

/// Gives up on pairs whose second stream never came.
async fn expire(pairs: &mut HashMap<String, Pair>) {
    let late: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() > PAIR_TIMEOUT))
        .map(|(id, _)| id.clone())
        .collect();
    for id in late {
        let Some(p) = pairs.remove(&id) else { continue };
        if let Some(e) = p.error {
            let msg = format!("timed out waiting for the data stream of request {id}");
            let _ = e.tx.write(Bytes::from(msg)).await;
            let _ = e.tx.finish().await;
        }
        if let Some(d) = p.data {
            d.tx.reset(rst::CANCEL).await;
        }
    }
}

async fn forward(
    pod_id: String,
    port: u16,
    mut data: Incoming,
    error: Incoming,
    backend: Arc<dyn Backend>,
) {
    let conn = match backend.port_forward(pod_id.clone(), port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {pod_id}: {}",
                crate::monitor::chain(&e)
            );
            let _ = error.tx.write(Bytes::from(msg)).await;
            let _ = error.tx.finish().await;
            data.tx.reset(rst::CANCEL).await;
            return;
        }
    };
    let (mut r, mut w) = conn.into_split();
    let up = async {
        while let Some(chunk) = data.rx.recv().await {
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The client's half-close becomes the connection's.
        let _ = w.shutdown().await;
    };
    let tx = data.tx.clone();
    let down = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.finish().await;
    };
    tokio::join!(up, down);
    let _ = error.tx.finish().await;
}
