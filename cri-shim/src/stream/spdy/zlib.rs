//! SPDY/3 header blocks: name/value pairs, zlib-compressed with the dictionary the SPDY/3
//! draft defines (section 2.6.10.1), one compression context per direction for the whole
//! session, each block ending on a sync flush so the peer can decode it at once.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// A decompressed header block may not exceed this; kubernetes' blocks are a few dozen bytes.
const MAX_BLOCK: usize = 256 << 10;

/// The dictionary's words, each stored with a 4-byte big-endian length prefix.
const WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, stored as is after the words.
const TAIL: &str = concat!(
    "10010120120220520630030230330430530630740240540640740840941041141241341441541641",
    "7502504505203 Non-Authoritative Information204 No Content301 Moved Permanently40",
    "0 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O",
    "ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag",
    "e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/",
    "javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1",
    ",utf-,*,enq=0.",
);

/// Errors of header blocks.
#[derive(Debug, thiserror::Error)]
pub enum ZlibError {
    /// zlib refused to compress.
    #[error("compressing a header block")]
    Compress(#[source] flate2::CompressError),
    /// zlib refused to decompress (corrupt block, wrong dictionary, lost context).
    #[error("decompressing a header block")]
    Decompress(#[source] flate2::DecompressError),
    /// The block inflates beyond [`MAX_BLOCK`].
    #[error("header block larger than {MAX_BLOCK} bytes")]
    TooLarge,
    /// The pairs do not parse: lengths overrun the block, or a name is not UTF-8.
    #[error("malformed header block: {0}")]
    Malformed(&'static str),
}

/// The SPDY/3 header dictionary (1,423 bytes).
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// Header name/value pairs. Names are lowercase (SPDY/3 requires it); a value holding
/// several values separates them with NUL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    /// The uncompressed block: pair count, then length-prefixed names and values.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (n, v) in &self.0 {
            for s in [n.to_ascii_lowercase().as_str(), v.as_str()] {
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    /// Parses an uncompressed block.
    pub fn decode(mut b: &[u8]) -> Result<Self, ZlibError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], ZlibError> {
            if b.len() < n {
                return Err(ZlibError::Malformed("length overruns the block"));
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn u32_of(b: &mut &[u8]) -> Result<usize, ZlibError> {
            let raw = take(b, 4)?;
            Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
        }
        fn string(b: &mut &[u8]) -> Result<String, ZlibError> {
            let n = u32_of(b)?;
            let raw = take(b, n)?;
            String::from_utf8(raw.to_vec()).map_err(|_| ZlibError::Malformed("not UTF-8"))
        }
        let count = u32_of(&mut b)?;
        // Each pair needs at least 8 bytes, which bounds the allocation by the block size.
        if count > b.len() / 8 {
            return Err(ZlibError::Malformed("pair count overruns the block"));
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = string(&mut b)?.to_ascii_lowercase();
            let value = string(&mut b)?;
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Headers {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// The compressing side of one direction of a session.
pub struct Deflater(Compress);

impl Deflater {
    /// A context primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self, ZlibError> {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(dictionary())
            .map_err(ZlibError::Compress)?;
        Ok(Self(c))
    }

    /// Compresses one block, ending with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        loop {
            let done = (self.0.total_in() - start) as usize;
            if out.capacity() - out.len() < 32 {
                out.reserve(256);
            }
            self.0
                .compress_vec(&block[done..], &mut out, FlushCompress::Sync)
                .map_err(ZlibError::Compress)?;
            // The flush is complete once all input is taken and zlib left room unused.
            if (self.0.total_in() - start) as usize == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of one direction of a session.
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl Inflater {
    /// Decompresses one block; the dictionary is supplied when the stream asks for it.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        loop {
            let done = (self.0.total_in() - start) as usize;
            let before = (self.0.total_in(), self.0.total_out());
            if out.capacity() - out.len() < 64 {
                if out.len() >= MAX_BLOCK {
                    return Err(ZlibError::TooLarge);
                }
                out.reserve(out.len().max(256));
            }
            match self
                .0
                .decompress_vec(&block[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(dictionary())
                        .map_err(ZlibError::Decompress)?;
                    continue;
                }
                Err(e) => return Err(ZlibError::Decompress(e)),
            }
            let all_in = (self.0.total_in() - start) as usize == block.len();
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.0.total_in(), self.0.total_out()) == before && out.len() < out.capacity() {
                return Err(ZlibError::Malformed("compressed block is truncated"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header block of the first SYN_STREAM client-go v0.37 (spdystream) sent to a test
    /// listener: `streamtype: error`. Captured with conformance/streamclient.
    const GO_CLIENT_BLOCK: &str = "78f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // The zlib dictionary id (Adler-32) SPDY/3 peers put in their first block.
        let (mut a, mut b) = (1u32, 0u32);
        for &x in d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn decodes_a_block_from_the_go_client() {
        let raw = Inflater::default()
            .decompress(&unhex(GO_CLIENT_BLOCK))
            .unwrap();
        let h = Headers::decode(&raw).unwrap();
        assert_eq!(h, Headers::from([("streamtype", "error")]));
        assert_eq!(h.get("streamType"), Some("error"));
    }

    #[test]
    fn blocks_round_trip_through_one_context() {
        let mut d = Deflater::new().unwrap();
        let mut i = Inflater::default();
        let blocks = [
            Headers::from([("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            Headers::from([("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            Headers::default(),
            Headers(vec![("x".into(), "y".repeat(100_000))]),
        ];
        for h in &blocks {
            let z = d.compress(&h.encode()).unwrap();
            assert_eq!(&Headers::decode(&i.decompress(&z).unwrap()).unwrap(), h);
        }
    }

    #[test]
    fn a_block_from_another_context_is_refused() {
        let mut first = Deflater::new().unwrap();
        let _ = first
            .compress(&Headers::from([("a", "b")]).encode())
            .unwrap();
        let second_block = first
            .compress(&Headers::from([("c", "d")]).encode())
            .unwrap();
        // A fresh inflater has not seen the first block: the second alone is garbage to it.
        assert!(Inflater::default().decompress(&second_block).is_err());
    }

    #[test]
    fn malformed_pairs_are_refused() {
        assert!(Headers::decode(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(Headers::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Headers::decode(&[0, 0]).is_err());
    }
}
