//! `write`, `read` and `ls` probes. Each prints one JSON object and never fails.

use std::fs;
use std::io::{self, Read, Write};

use crate::json::Json;

/// Bytes of a file that `read` reports.
const READ_LIMIT: u64 = 4096;

fn errno_of(e: &io::Error) -> Json {
    e.raw_os_error().map_or(Json::Null, |n| Json::Int(n.into()))
}

fn failure(e: &io::Error) -> Json {
    Json::obj([
        ("ok", Json::Bool(false)),
        ("errno", errno_of(e)),
        ("error", Json::str(e.to_string())),
    ])
}

/// Creates (or truncates) `path` and writes a line into it.
pub fn write(path: &str) -> Json {
    let res = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"written by hull-checker\n"));
    match res {
        Ok(()) => Json::obj([("ok", Json::Bool(true))]),
        Err(e) => failure(&e),
    }
}

/// Reads the first 4 KiB of `path`.
pub fn read(path: &str) -> Json {
    let mut buf = Vec::new();
    let res = fs::File::open(path).and_then(|f| f.take(READ_LIMIT).read_to_end(&mut buf));
    match res {
        Ok(_) => Json::obj([
            ("ok", Json::Bool(true)),
            ("errno", Json::Null),
            ("content", Json::str(String::from_utf8_lossy(&buf))),
        ]),
        Err(e) => failure(&e),
    }
}

/// Lists the entry names of directory `path`, sorted.
pub fn ls(path: &str) -> Json {
    let res = fs::read_dir(path).and_then(|dir| {
        dir.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<String>>>()
    });
    match res {
        Ok(mut names) => {
            names.sort();
            Json::obj([
                ("ok", Json::Bool(true)),
                (
                    "entries",
                    Json::Arr(names.into_iter().map(Json::Str).collect()),
                ),
            ])
        }
        Err(e) => failure(&e),
    }
}
