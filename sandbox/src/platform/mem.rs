//! Copying to and from a workload's memory. Each argument is copied once into the Sentry,
//! which then acts on its copy: the host kernel never re-reads workload memory for it.

use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

/// Copies `buf.len()` bytes from `addr` in `pid`; EFAULT if any of it is unmapped.
pub fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    let want = buf.len();
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == want => Ok(()),
        Ok(_) | Err(Errno::EFAULT) | Err(Errno::EIO) => Err(Errno::EFAULT),
        Err(e) => Err(e),
    }
}

/// Copies `buf` to `addr` in `pid`; EFAULT if any of it is unmapped or read-only.
pub fn write(pid: Pid, addr: u64, buf: &[u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: buf.len(),
    }];
    match process_vm_writev(pid, &[IoSlice::new(buf)], &remote) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) | Err(Errno::EFAULT) | Err(Errno::EIO) => Err(Errno::EFAULT),
        Err(e) => Err(e),
    }
}

/// Reads `len` bytes into a new vector.
pub fn read_vec(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = vec![0u8; len];
    read(pid, addr, &mut v)?;
    Ok(v)
}

/// Reads a little-endian u64.
pub fn read_u64(pid: Pid, addr: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    read(pid, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a little-endian u32.
pub fn read_u32(pid: Pid, addr: u64) -> Result<u32, Errno> {
    let mut b = [0u8; 4];
    read(pid, addr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Reads a NUL-terminated string of at most `max` bytes (ENAMETOOLONG beyond), a page at a
/// time so a string ending just before an unmapped page still reads.
pub fn read_cstr(pid: Pid, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        let to_page_end = 4096 - (at % 4096) as usize;
        let mut chunk = vec![0u8; to_page_end.min(256)];
        read(pid, at, &mut chunk)?;
        if let Some(n) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..n]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
        at += chunk.len() as u64;
    }
}

/// Reads a NULL-terminated array of string pointers (argv, envp).
pub fn read_strv(pid: Pid, addr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    for i in 0..65536u64 {
        let p = read_u64(pid, addr + i * 8)?;
        if p == 0 {
            return Ok(out);
        }
        out.push(read_cstr(pid, p, 128 * 1024)?);
    }
    Err(Errno::E2BIG)
}
