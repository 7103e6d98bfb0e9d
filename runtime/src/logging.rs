//! Log lines in runc's formats, through `tracing`.
//!
//! containerd's runc shim passes `--log <file> --log-format json` and reads the file back
//! to report errors, expecting logrus-shaped lines: `{"level":"error","msg":"…","time":"…"}`.
//! The text format mirrors logrus's too: `time="…" level=error msg="…"`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::cli::LogFormat;
use crate::timefmt::rfc3339_nano;

/// A subscriber writing one line per event to the log file or stderr.
pub struct RuncLog {
    out: Mutex<Option<File>>,
    json: bool,
    max: Level,
}

/// Installs the logger. A log file that cannot be opened is reported on stderr and
/// logging falls back to stderr: a missing log must not stop the container.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) {
    let out = path.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| {
                eprintln!("hull: cannot open log file {}: {e}", p.display());
            })
            .ok()
    });
    let sub = RuncLog {
        out: Mutex::new(out),
        json: format == LogFormat::Json,
        max: if debug { Level::DEBUG } else { Level::WARN },
    };
    let _ = tracing::subscriber::set_global_default(sub);
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

/// Formats one line.
pub fn format_line(json: bool, level: &Level, msg: &str, time: &str) -> String {
    let level = level.as_str().to_ascii_lowercase();
    if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string() + "\n"
    } else {
        format!("time={time:?} level={level} msg={msg:?}\n")
    }
}

impl Subscriber for RuncLog {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        // Library chatter (libcgroups warns about every controller a host lacks) is
        // only wanted with --debug.
        let ours = meta.target().starts_with("hull");
        *meta.level() <= self.max && (ours || self.max == Level::DEBUG)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        let line = format_line(
            self.json,
            event.metadata().level(),
            &msg.0,
            &rfc3339_nano(SystemTime::now()),
        );
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        match out.as_mut() {
            Some(f) => drop(f.write_all(line.as_bytes())),
            None => drop(std::io::stderr().write_all(line.as_bytes())),
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_logrus_shape() {
        let l = format_line(true, &Level::ERROR, "container init failed: \"x\"", "T");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container init failed: \"x\"");
        assert_eq!(v["time"], "T");
    }

    #[test]
    fn text_line() {
        assert_eq!(
            format_line(false, &Level::WARN, "a b", "T"),
            "time=\"T\" level=warn msg=\"a b\"\n"
        );
    }
}
