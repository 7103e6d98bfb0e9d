//! bpf(2) for cgroup v2 device programs: load a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program, attach it to a cgroup, list what is attached, and detach.
//!
//! The attribute structs below are prefixes of the kernel's `union bpf_attr`
//! (include/uapi/linux/bpf.h); the kernel accepts a shorter struct and treats
//! the missing tail as zero.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::check;

/// One eBPF instruction, `struct bpf_insn`: opcode, destination and source
/// registers (low and high nibble), jump offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: programs of the parent cgroups keep running too, and
/// several programs may sit on one cgroup (runc attaches the same way).
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Verifier log kept when a load fails, so the error can say why.
const LOG_SIZE: usize = 16 * 1024;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with `cmd` and `attr`.
///
/// # Safety
/// Every pointer inside `attr` must be valid for the kernel's use of it
/// during the call (read or written as `cmd` defines).
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) prefix of bpf_attr whose
    // size is passed; the caller vouches for the pointers it holds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    check(ret)
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a successful bpf(2) LOAD or GET_FD_BY_ID returns a new fd that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads `insns` as a cgroup device program. On a verifier rejection the error
/// carries the verifier's log.
pub fn bpf_load_device_program(insns: &[BpfInsn]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `insns` and `license` outlive the call and are only read.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(ret) => return owned(ret),
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => return Err(e),
        Err(_) => {}
    }
    // Rejected by the verifier: load again with a log to say why.
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, and `log` is a writable buffer of `log_size` bytes
    // that outlives the call.
    let err = match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(ret) => return owned(ret),
        Err(e) => e,
    };
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    Err(io::Error::new(
        err.kind(),
        format!("{err}; verifier: {}", text.trim()),
    ))
}

/// Attaches device program `prog` to `cgroup` (an open cgroup v2 directory)
/// with `BPF_F_ALLOW_MULTI`.
pub fn bpf_attach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: the attribute holds only fds, which the borrows keep open.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// Detaches device program `prog` from `cgroup`.
pub fn bpf_detach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: the attribute holds only fds, which the borrows keep open.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// Ids of the device programs attached to `cgroup` itself (not inherited ones).
pub fn bpf_query_device_programs(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // A cgroup holds at most BPF_CGROUP_MAX_PROGS (64) programs per type.
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: `ids` is writable for `prog_cnt` u32s and outlives the call;
    // the kernel writes back at most that many and the count in `prog_cnt`.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }?;
    ids.truncate(attr.prog_cnt.min(64) as usize);
    Ok(ids)
}

/// Opens the program with id `id`.
pub fn bpf_program_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: the attribute holds only integers.
    owned(unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }?)
}
