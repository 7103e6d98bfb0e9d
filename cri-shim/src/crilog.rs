//! The CRI container log format: writer (used by the per-container monitor) and parser.
//!
//! One record per line: `<timestamp> <stdout|stderr> <P|F> <text>\n`, the format kubelet's
//! `pkg/kubelet/kuberuntime/logs` parses. The timestamp is RFC 3339 in UTC with nine
//! fraction digits (kubelet's `RFC3339NanoFixed`; its reader is lenient about the digits).
//! `F` closes a line; `P` records are pieces of one line, concatenated by the reader up to
//! the next `F` of the same stream.
//!
//! Choices, compared with containerd's `internal/cri/io/logger.go`:
//! - Lines longer than the maximum are cut into `P` records of exactly the maximum, then a
//!   final `F` with the rest, as containerd does with `max_container_log_line_size`.
//! - Bytes left without a newline when a stream ends are written as a `P` record, as
//!   containerd does at EOF.
//! - The text is written as read. containerd strips a `\r` before the `\n`; we keep it, so
//!   the log holds exactly what the container wrote.
//!
//! The writer is synchronous and single-threaded: the monitor owns it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default maximum length of one record's text (16 KiB, containerd's default
/// `max_container_log_line_size`).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Errors of the CRI log writer and parser.
#[derive(Debug, thiserror::Error)]
pub enum CriLogError {
    /// The log file cannot be opened (or created).
    #[error("cannot open container log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing records to the log file failed.
    #[error("cannot write container log {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A log line lacks one of its four space-separated fields.
    #[error("log line has no {field} field")]
    MissingField { field: &'static str },
    /// The timestamp field is not RFC 3339.
    #[error("log line timestamp {value:?} is not RFC 3339")]
    Timestamp { value: String },
    /// The stream field is neither `stdout` nor `stderr`.
    #[error("log line stream {value:?} is not stdout or stderr")]
    Stream { value: String },
    /// The tag field does not start with `P` or `F`.
    #[error("log line tag {value:?} is not P or F")]
    Tag { value: String },
}

/// The container stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The name used in the log (`stdout`, `stderr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Whether a record ends its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `P`: a piece of a line; more follows (or the stream ended without a newline).
    Partial,
    /// `F`: the last (or only) piece of a line.
    Full,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Partial => "P",
            Tag::Full => "F",
        }
    }
}

/// A container log file being written in the CRI format.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    max_line: usize,
    /// Bytes read from each stream (indexed by `Stream::index`) not yet ended by a newline.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (creating with mode 0640) `path` for appending, with the default maximum line.
    pub fn open(path: &Path) -> Result<Self, CriLogError> {
        Self::with_max_line(path, DEFAULT_MAX_LINE)
    }

    /// As [`LogWriter::open`], cutting records at `max_line` bytes of text (at least 1).
    pub fn with_max_line(path: &Path, max_line: usize) -> Result<Self, CriLogError> {
        Ok(Self {
            path: path.to_path_buf(),
            file: open_log(path)?,
            max_line: max_line.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// The path the writer (re)opens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `data` read from `stream` now. Every completed line is written (cut into `P`
    /// pieces when longer than the maximum); a trailing piece without newline stays buffered
    /// until more data, [`LogWriter::flush_partial`], or until it exceeds the maximum.
    ///
    /// All records of one call go out in one `write` on an `O_APPEND` file, so a reader never
    /// sees half a record from a successful call. On error the records of this call are
    /// lost (the container's output must keep draining; the caller decides what to report).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), CriLogError> {
        let ts = format_timestamp(SystemTime::now());
        let mut out = Vec::new();
        let max = self.max_line;
        let pending = &mut self.pending[stream.index()];
        pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &pending[start..start + nl];
            while line.len() > max {
                push_record(&mut out, &ts, stream, Tag::Partial, &line[..max]);
                line = &line[max..];
            }
            push_record(&mut out, &ts, stream, Tag::Full, line);
            start += nl + 1;
        }
        while pending.len() - start > max {
            push_record(
                &mut out,
                &ts,
                stream,
                Tag::Partial,
                &pending[start..start + max],
            );
            start += max;
        }
        pending.drain(..start);
        self.emit(&out)
    }

    /// Writes what is buffered for `stream` as a `P` record: the stream reached EOF (or the
    /// container exited) in the middle of a line.
    pub fn flush_partial(&mut self, stream: Stream) -> Result<(), CriLogError> {
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if pending.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        let ts = format_timestamp(SystemTime::now());
        push_record(&mut out, &ts, stream, Tag::Partial, &pending);
        self.emit(&out)
    }

    /// Opens the path again (ReopenContainerLog, after kubelet rotated the file by renaming
    /// it). Buffered partial lines are kept and go to the new file.
    pub fn reopen(&mut self) -> Result<(), CriLogError> {
        self.file = open_log(&self.path)?;
        Ok(())
    }

    fn emit(&mut self, out: &[u8]) -> Result<(), CriLogError> {
        if out.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(out)
            .map_err(|source| CriLogError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

fn open_log(path: &Path) -> Result<File, CriLogError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| CriLogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn push_record(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: Tag, text: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The stream.
    pub stream: Stream,
    /// `P` or `F`.
    pub tag: Tag,
    /// The text, without the record's terminating `\n`.
    pub text: String,
}

/// Parses one record; a terminating `\n` is optional. Extra tags after `:` (`F:x`) are
/// accepted and ignored, as kubelet does, for forward compatibility.
pub fn parse_line(line: &str) -> Result<LogLine, CriLogError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (ts, rest) = line
        .split_once(' ')
        .ok_or(CriLogError::MissingField { field: "stream" })?;
    let timestamp_ns = parse_timestamp(ts).ok_or_else(|| CriLogError::Timestamp {
        value: ts.to_owned(),
    })?;
    let (stream, rest) = rest
        .split_once(' ')
        .ok_or(CriLogError::MissingField { field: "tag" })?;
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => {
            return Err(CriLogError::Stream {
                value: other.to_owned(),
            })
        }
    };
    let (tags, text) = rest
        .split_once(' ')
        .ok_or(CriLogError::MissingField { field: "text" })?;
    let tag = match tags.split(':').next() {
        Some("P") => Tag::Partial,
        Some("F") => Tag::Full,
        _ => {
            return Err(CriLogError::Tag {
                value: tags.to_owned(),
            })
        }
    };
    Ok(LogLine {
        timestamp_ns,
        stream,
        tag,
        text: text.to_owned(),
    })
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC, nine fraction digits). Instants
/// before 1970 are clamped to the epoch; a clock that far off is not worth a log format.
pub fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, mo, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Parses RFC 3339 (`Z` or `±hh:mm` offset, 0 to 9 fraction digits) into nanoseconds since
/// the epoch; `None` when malformed or outside the i64 range.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
    {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let (h, mi, sec) = (
        digits(&s[11..13])?,
        digits(&s[14..16])?,
        digits(&s[17..19])?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    if sec > 59 {
        return None; // leap seconds do not occur in timestamps we write
    }
    let mut rest = &s[19..];
    let mut nanos = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&frac[..n])? * 10i64.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => parse_offset(rest)?,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `+hh:mm` / `-hh:mm` to seconds east of UTC.
fn parse_offset(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let (h, m) = (digits(&s[1..3])?, digits(&s[4..6])?);
    if h > 23 || m > 59 {
        return None;
    }
    match b[0] {
        b'+' => Some(h * 3600 + m * 60),
        b'-' => Some(-(h * 3600 + m * 60)),
        _ => None,
    }
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's public-domain
/// `civil_from_days`, on the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`] (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    fn records(path: &Path) -> Vec<(Stream, Tag, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .split_inclusive('\n')
            .map(|l| {
                assert!(l.ends_with('\n'), "record not terminated: {l:?}");
                let r = parse_line(l).unwrap();
                (r.stream, r.tag, r.text)
            })
            .collect()
    }

    fn rec(stream: Stream, tag: Tag, text: &str) -> (Stream, Tag, String) {
        (stream, tag, text.to_owned())
    }

    use Stream::{Stderr as E, Stdout as O};
    use Tag::{Full as F, Partial as P};

    #[test]
    fn formats_known_instants() {
        let at = |s, n| format_timestamp(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            at(1_475_713_029, 669_794_202),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(at(951_827_696, 1), "2000-02-29T12:34:56.000000001Z");
        assert_eq!(at(2_147_483_648, 0), "2038-01-19T03:14:08.000000000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000000Z");
        assert_eq!(
            at(1_735_689_599, 999_999_999),
            "2024-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn parses_timestamps_leniently_and_rejects_bad_ones() {
        let ns = |s: i64, n: i64| Some(s * 1_000_000_000 + n);
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09.669794202Z"),
            ns(1_475_713_029, 669_794_202)
        );
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09Z"),
            ns(1_475_713_029, 0)
        );
        assert_eq!(
            parse_timestamp("2016-10-06T00:17:09.5Z"),
            ns(1_475_713_029, 500_000_000)
        );
        assert_eq!(
            parse_timestamp("2016-10-06T02:17:09.5+02:00"),
            ns(1_475_713_029, 500_000_000)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), ns(-1, 0));
        for bad in [
            "2016-10-06T00:17:09",
            "2016-10-06 00:17:09Z",
            "2016-02-30T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2016-13-01T00:00:00Z",
            "2016-10-06T24:00:00Z",
            "2016-10-06T00:17:09.Z",
            "2016-10-06T00:17:09.1234567890Z",
            "2016-10-06T00:17:09+0200",
            "2016-10-06T00:17:09.5ZZ",
            "2016-1é-06T00:17:09Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        let now = SystemTime::now();
        let back = parse_timestamp(&format_timestamp(now)).unwrap();
        let expect = now.duration_since(UNIX_EPOCH).unwrap().as_nanos();
        assert_eq!(back as u128, expect);
    }

    #[test]
    fn parse_line_fields_and_errors() {
        let l = parse_line("2016-10-06T00:17:09.669794202Z stderr F:x a b \n").unwrap();
        assert_eq!(l.timestamp_ns, 1_475_713_029_669_794_202);
        assert_eq!((l.stream, l.tag, l.text.as_str()), (E, F, "a b "));
        let ts = "2016-10-06T00:17:09Z";
        assert!(matches!(
            parse_line(ts),
            Err(CriLogError::MissingField { field: "stream" })
        ));
        assert!(matches!(
            parse_line(&format!("{ts} stdout")),
            Err(CriLogError::MissingField { field: "tag" })
        ));
        assert!(matches!(
            parse_line(&format!("{ts} stdout F")),
            Err(CriLogError::MissingField { field: "text" })
        ));
        assert!(matches!(
            parse_line("yesterday stdout F x"),
            Err(CriLogError::Timestamp { .. })
        ));
        assert!(matches!(
            parse_line(&format!("{ts} stdin F x")),
            Err(CriLogError::Stream { .. })
        ));
        assert!(matches!(
            parse_line(&format!("{ts} stdout X x")),
            Err(CriLogError::Tag { .. })
        ));
    }

    #[test]
    fn splits_lines_and_buffers_the_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(O, b"a\nb\nc").unwrap();
        assert_eq!(records(&p), [rec(O, F, "a"), rec(O, F, "b")]);
        w.write(O, b"d").unwrap();
        w.write(O, b"e\n").unwrap();
        assert_eq!(
            records(&p),
            [rec(O, F, "a"), rec(O, F, "b"), rec(O, F, "cde")]
        );
    }

    #[test]
    fn long_lines_are_cut_into_partials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::with_max_line(&p, 4).unwrap();
        w.write(O, b"abcdefghij\n").unwrap();
        w.write(O, b"12345678\n").unwrap();
        w.write(O, b"wxyz\n").unwrap();
        let want = [
            rec(O, P, "abcd"),
            rec(O, P, "efgh"),
            rec(O, F, "ij"),
            rec(O, P, "1234"),
            rec(O, F, "5678"),
            rec(O, F, "wxyz"),
        ];
        assert_eq!(records(&p), want);
    }

    #[test]
    fn long_tail_without_newline_is_not_held_beyond_the_maximum() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::with_max_line(&p, 4).unwrap();
        w.write(O, b"abcdefghij").unwrap();
        assert_eq!(records(&p), [rec(O, P, "abcd"), rec(O, P, "efgh")]);
        w.write(O, b"k\n").unwrap();
        let want = [rec(O, P, "abcd"), rec(O, P, "efgh"), rec(O, F, "ijk")];
        assert_eq!(records(&p), want);
    }

    #[test]
    fn default_maximum_is_16k() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        let line = vec![b'x'; DEFAULT_MAX_LINE + 1];
        w.write(O, &line).unwrap();
        w.write(O, b"\n").unwrap();
        let got = records(&p);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1, got[0].2.len()), (P, DEFAULT_MAX_LINE));
        assert_eq!(got[1], rec(O, F, "x"));
    }

    #[test]
    fn partial_at_eof_is_written_as_p() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(E, b"done\nno newline").unwrap();
        w.flush_partial(O).unwrap(); // nothing pending on stdout: no record
        w.flush_partial(E).unwrap();
        w.flush_partial(E).unwrap(); // already flushed: no second record
        assert_eq!(records(&p), [rec(E, F, "done"), rec(E, P, "no newline")]);
    }

    #[test]
    fn streams_are_buffered_separately() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(O, b"out-").unwrap();
        w.write(E, b"err-").unwrap();
        w.write(E, b"1\n").unwrap();
        w.write(O, b"1\nout-2\n").unwrap();
        let want = [rec(E, F, "err-1"), rec(O, F, "out-1"), rec(O, F, "out-2")];
        assert_eq!(records(&p), want);
    }

    #[test]
    fn empty_lines_and_crlf() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(O, b"\n\nwin\r\n\r\n").unwrap();
        let want = [
            rec(O, F, ""),
            rec(O, F, ""),
            rec(O, F, "win\r"),
            rec(O, F, "\r"),
        ];
        assert_eq!(records(&p), want);
        let raw = std::fs::read_to_string(&p).unwrap();
        let first = raw.lines().next().unwrap();
        assert!(first.ends_with(" stdout F "), "{first:?}");
    }

    #[test]
    fn records_of_one_write_share_a_current_timestamp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut w = LogWriter::open(&p).unwrap();
        w.write(O, b"a\nb\n").unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let ts: Vec<i64> = text
            .lines()
            .map(|l| parse_line(l).unwrap().timestamp_ns)
            .collect();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[0], ts[1]);
        assert!(ts[0] as u128 >= before.as_nanos() && ts[0] as u128 <= after.as_nanos());
    }

    #[test]
    fn reopen_after_rename_writes_to_a_new_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let rotated = d.path().join("c.log.1");
        let mut w = LogWriter::open(&p).unwrap();
        w.write(O, b"old\nhalf").unwrap();
        std::fs::rename(&p, &rotated).unwrap();
        w.write(O, b"-written-before-reopen\n").unwrap(); // still the old file
        w.reopen().unwrap();
        w.write(O, b"new\n").unwrap();
        let old = [rec(O, F, "old"), rec(O, F, "half-written-before-reopen")];
        assert_eq!(records(&rotated), old);
        assert_eq!(records(&p), [rec(O, F, "new")]);
        assert_eq!(w.path(), p);
    }

    #[test]
    fn appends_to_an_existing_log_with_mode_0640() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        LogWriter::open(&p).unwrap().write(O, b"one\n").unwrap();
        LogWriter::open(&p).unwrap().write(O, b"two\n").unwrap();
        assert_eq!(records(&p), [rec(O, F, "one"), rec(O, F, "two")]);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|u| u32::from_str_radix(u.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(mode, 0o640 & !umask);
    }

    #[test]
    fn open_error_names_the_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing-dir/c.log");
        let err = LogWriter::open(&p).unwrap_err();
        assert!(matches!(err, CriLogError::Open { .. }));
        assert!(err.to_string().contains("missing-dir/c.log"), "{err}");
    }
}
