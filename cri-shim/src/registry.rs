//! A client of the OCI distribution API (`/v2/<name>/manifests|blobs/<ref>`), with Basic
//! and Bearer-token auth. Everything it returns is verified against digests by the caller or
//! here.

use std::path::Path;
use std::sync::{Arc, Mutex};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::config::{host_of_url, Endpoint};
use crate::digest::{Digest, DigestError, Hasher};
use crate::manifest::{self, MAX_DOCUMENT};
use crate::tls::{self, Clients};

/// Tokens larger than this are refused.
const MAX_TOKEN: u64 = 1 << 20;

/// Errors of registry access.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry cannot be reached.
    #[error("registry {url} unreachable")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed: an untrusted CA, a certificate for another name, an expired
    /// one, or a client certificate the registry refused. `hint` says what to configure.
    #[error("TLS handshake with registry {host} failed{hint}")]
    Tls {
        host: String,
        hint: String,
        #[source]
        source: reqwest::Error,
    },
    /// 404.
    #[error("{url} not found")]
    NotFound { url: String },
    /// 401/403 after trying the credentials given.
    #[error("{url}: access denied (status {status})")]
    Denied { url: String, status: u16 },
    /// Any other non-success status.
    #[error("{url}: unexpected status {status}")]
    Status { url: String, status: u16 },
    /// The body is larger than allowed or than its descriptor says.
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// The body is shorter than its descriptor says.
    #[error("{url}: body of {got} bytes, expected {expected}")]
    Short {
        url: String,
        got: u64,
        expected: u64,
    },
    /// Content does not match its digest.
    #[error("{url}: content verification failed")]
    Digest {
        url: String,
        #[source]
        source: DigestError,
    },
    /// The token endpoint's answer is unusable.
    #[error("token from {realm}: {reason}")]
    Token { realm: String, reason: String },
    /// Writing a blob to the ingest area failed.
    #[error("writing {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Credentials from the CRI AuthConfig.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Username and password for Basic auth and token requests.
    pub basic: Option<(String, String)>,
    /// A bearer token to present directly (registry_token or identity_token).
    pub bearer: Option<String>,
}

/// A session with one endpoint for one repository; it caches a bearer token.
pub struct Session {
    clients: Arc<Clients>,
    http: reqwest::Client,
    endpoint: Endpoint,
    repository: String,
    creds: Credentials,
    token: Mutex<Option<String>>,
}

impl Session {
    /// A session for `repository` at `endpoint`, over the client for the endpoint's host.
    pub fn new(
        clients: Arc<Clients>,
        endpoint: Endpoint,
        repository: &str,
        creds: Credentials,
    ) -> Self {
        let token = Mutex::new(creds.bearer.clone());
        let http = clients.for_host(&endpoint.host).clone();
        Self {
            clients,
            http,
            endpoint,
            repository: repository.to_string(),
            creds,
            token,
        }
    }

    /// The endpoint's base URL.
    pub fn base(&self) -> &str {
        &self.endpoint.base
    }

    fn auth_header(&self) -> Option<HeaderValue> {
        if let Some(t) = self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return HeaderValue::from_str(&format!("Bearer {t}")).ok();
        }
        self.creds.basic.as_ref().map(|(u, p)| basic_header(u, p))
    }

    /// GET `path` (under `/v2/<repo>/`), answering one auth challenge.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(String, Response), RegistryError> {
        let url = format!("{}/v2/{}/{path}", self.endpoint.base, self.repository);
        let mut retried = false;
        loop {
            let mut headers = HeaderMap::new();
            if let Some(a) = accept {
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_str(a).expect("static accept header"),
                );
            }
            if let Some(h) = self.auth_header() {
                headers.insert(AUTHORIZATION, h);
            }
            let resp = self
                .http
                .get(&url)
                .headers(headers)
                .send()
                .await
                .map_err(|e| transport(&url, e))?;
            match resp.status() {
                s if s.is_success() => return Ok((url, resp)),
                StatusCode::NOT_FOUND => return Err(RegistryError::NotFound { url }),
                StatusCode::UNAUTHORIZED if !retried => {
                    retried = true;
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    if !self.answer_challenge(&challenge).await? {
                        return Err(RegistryError::Denied { url, status: 401 });
                    }
                }
                s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    return Err(RegistryError::Denied {
                        url,
                        status: s.as_u16(),
                    })
                }
                s => {
                    return Err(RegistryError::Status {
                        url,
                        status: s.as_u16(),
                    })
                }
            }
        }
    }

    /// Handles a `WWW-Authenticate` challenge; true when a retry may succeed.
    async fn answer_challenge(&self, challenge: &str) -> Result<bool, RegistryError> {
        let Some(params) = challenge
            .strip_prefix("Bearer ")
            .or_else(|| challenge.strip_prefix("bearer "))
        else {
            // Basic: a retry helps only if we have credentials and did not send them yet.
            let have_token = self
                .token
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .is_some();
            return Ok(self.creds.basic.is_some() && have_token);
        };
        let p = parse_challenge(params);
        let realm = p
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if !realm.starts_with("http://") && !realm.starts_with("https://") {
            return Err(RegistryError::Token {
                realm,
                reason: "realm is not an http(s) URL".into(),
            });
        }
        let query: Vec<(String, String)> = p
            .into_iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .collect();
        // The realm may be another host, with its own TLS settings.
        let mut req = self.clients.for_url(&realm).get(&realm).query(&query);
        if let Some((u, pw)) = &self.creds.basic {
            req = req.header(AUTHORIZATION, basic_header(u, pw));
        }
        let resp = req.send().await.map_err(|e| transport(&realm, e))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Denied {
                url: realm,
                status: resp.status().as_u16(),
            });
        }
        let body = read_limited(&realm, resp, MAX_TOKEN).await?;
        #[derive(serde::Deserialize)]
        struct Tok {
            token: Option<String>,
            access_token: Option<String>,
        }
        let tok: Tok = serde_json::from_slice(&body).map_err(|e| RegistryError::Token {
            realm: realm.clone(),
            reason: e.to_string(),
        })?;
        let Some(t) = tok.token.or(tok.access_token).filter(|t| !t.is_empty()) else {
            return Err(RegistryError::Token {
                realm,
                reason: "no token in answer".into(),
            });
        };
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(true)
    }

    /// Fetches a manifest by tag or digest. Returns its bytes, content type and digest; when
    /// `reference` is a digest the bytes are verified against it.
    pub async fn manifest(
        &self,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest), RegistryError> {
        let (url, resp) = self
            .get(&format!("manifests/{reference}"), Some(manifest::ACCEPT))
            .await?;
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(&url, resp, MAX_DOCUMENT).await?;
        let actual = Digest::of(&body);
        if let Ok(expected) = Digest::parse(reference) {
            expected
                .verify(&body)
                .map_err(|source| RegistryError::Digest { url, source })?;
        }
        Ok((body, ct, actual))
    }

    /// Fetches a small blob (config) into memory, verified.
    pub async fn small_blob(&self, d: &Digest, size: u64) -> Result<Vec<u8>, RegistryError> {
        let (url, resp) = self.get(&format!("blobs/{d}"), None).await?;
        let body = read_limited(&url, resp, size.min(MAX_DOCUMENT)).await?;
        if body.len() as u64 != size {
            return Err(RegistryError::Short {
                url,
                got: body.len() as u64,
                expected: size,
            });
        }
        d.verify(&body)
            .map_err(|source| RegistryError::Digest { url, source })?;
        Ok(body)
    }

    /// Streams blob `d` of `size` bytes to `dest`, hashing as it goes; fails (leaving the
    /// caller to delete `dest`) unless size and digest match.
    pub async fn blob_to_file(
        &self,
        d: &Digest,
        size: u64,
        dest: &Path,
    ) -> Result<(), RegistryError> {
        let (url, mut resp) = self.get(&format!("blobs/{d}"), None).await?;
        let werr = |source| RegistryError::Write {
            path: dest.to_path_buf(),
            source,
        };
        let mut f = tokio::fs::File::create(dest).await.map_err(werr)?;
        let mut h = Hasher::default();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&url, e))? {
            h.update(&chunk);
            if h.len() > size {
                return Err(RegistryError::TooLarge { url, limit: size });
            }
            f.write_all(&chunk).await.map_err(werr)?;
        }
        if h.len() != size {
            return Err(RegistryError::Short {
                url,
                got: h.len(),
                expected: size,
            });
        }
        f.sync_all().await.map_err(werr)?;
        let actual = h.finish();
        if &actual != d {
            let source = DigestError::Mismatch {
                expected: d.clone(),
                actual,
            };
            return Err(RegistryError::Digest { url, source });
        }
        Ok(())
    }
}

/// A failed request: a TLS failure names the host and what to fix; anything else is
/// "unreachable".
fn transport(url: &str, source: reqwest::Error) -> RegistryError {
    match tls::tls_cause(&source) {
        Some(cause) => {
            let host = host_of_url(url).to_string();
            let hint = tls::hint(&host, cause);
            RegistryError::Tls { host, hint, source }
        }
        None => RegistryError::Unreachable {
            url: url.to_string(),
            source,
        },
    }
}

async fn read_limited(url: &str, mut resp: Response, limit: u64) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(url, e))? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn basic_header(user: &str, password: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// Standard base64 with padding (small; avoids a dependency for one header).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (the AuthConfig `auth` field); None if malformed.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = input.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for c in s.chunks(4) {
        if c.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &b) in c.iter().enumerate() {
            n |= val(b)? << (18 - 6 * i);
        }
        for i in 0..c.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Parses `k="v",k2="v2"` challenge parameters.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, r) = if let Some(r) = r.strip_prefix('"') {
            match r.split_once('"') {
                Some((v, r)) => (v, r),
                None => (r, ""),
            }
        } else {
            r.split_once(',').unwrap_or((r, ""))
        };
        out.push((k, v.to_string()));
        rest = r.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:pass", "x:y:z\u{e9}"] {
            assert_eq!(base64_decode(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("@@@@").is_none());
    }

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
    }
}
