//! What the tracer reads and patches through /proc/<pid>: the executable, its load base
//! and its memory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no mapping of the executable at offset 0")]
    NoBase { path: String },
    #[error("/proc/{pid}/mem at {addr:#x}")]
    Mem {
        pid: Pid,
        addr: u64,
        #[source]
        source: io::Error,
    },
}

fn read_err(path: &str) -> impl FnOnce(io::Error) -> ProcError + '_ {
    move |source| ProcError::Read {
        path: path.to_string(),
        source,
    }
}

/// Whether `pid` now runs a file with exactly `binary`'s bytes. hull re-executes itself
/// from a sealed copy (an overlay file or a memfd), so the path says nothing.
pub fn runs(pid: Pid, binary: &[u8]) -> Result<bool, ProcError> {
    let path = format!("/proc/{pid}/exe");
    let size = fs::metadata(&path).map_err(read_err(&path))?.len();
    if size != binary.len() as u64 {
        return Ok(false);
    }
    Ok(fs::read(&path).map_err(read_err(&path))? == binary)
}

/// Start of the executable's mapping at file offset 0 (a static-pie's load base).
pub fn load_base(pid: Pid) -> Result<u64, ProcError> {
    let exe = format!("/proc/{pid}/exe");
    let ino = fs::metadata(&exe).map_err(read_err(&exe))?.ino();
    let shown = fs::read_link(&exe).map_err(read_err(&exe))?;
    let maps = format!("/proc/{pid}/maps");
    let text = fs::read_to_string(&maps).map_err(read_err(&maps))?;
    for line in text.lines() {
        // start-end perms offset dev inode path
        let f: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
        if f.len() < 6 || f[2] != "00000000" {
            continue;
        }
        let same_ino = f[4].parse::<u64>() == Ok(ino);
        let same_path = f[5].trim_start() == shown.to_string_lossy();
        if same_ino || same_path {
            let start = f[0].split('-').next().unwrap_or_default();
            if let Ok(base) = u64::from_str_radix(start, 16) {
                return Ok(base);
            }
        }
    }
    Err(ProcError::NoBase { path: maps })
}

/// A process's memory. Writes go through the kernel's forced access, so read-only text
/// can be patched, as a debugger does.
pub struct Mem {
    pid: Pid,
    file: File,
}

impl Mem {
    pub fn open(pid: Pid) -> Result<Self, ProcError> {
        let path = format!("/proc/{pid}/mem");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(read_err(&path))?;
        Ok(Mem { pid, file })
    }

    pub fn byte(&self, addr: u64) -> Result<u8, ProcError> {
        let mut b = [0u8];
        self.file
            .read_exact_at(&mut b, addr)
            .map_err(|source| self.err(addr, source))?;
        Ok(b[0])
    }

    pub fn set_byte(&self, addr: u64, value: u8) -> Result<(), ProcError> {
        self.file
            .write_all_at(&[value], addr)
            .map_err(|source| self.err(addr, source))
    }

    fn err(&self, addr: u64, source: io::Error) -> ProcError {
        ProcError::Mem {
            pid: self.pid,
            addr,
            source,
        }
    }
}
