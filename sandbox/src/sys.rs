//! Every raw system call and `unsafe` block of hull-sandbox.
//!
//! The rest of the crate uses nix's safe wrappers; what nix lacks (forking the address-space
//! stub, the FP register ptrace requests, installing a raw BPF filter) lives here.

use std::io;
use std::os::fd::RawFd;

use nix::unistd::Pid;

/// Where every address space keeps the stub page: `syscall; int3`, used to run the host
/// calls the Sentry needs inside an address space (mmap, munmap, mprotect, clone).
pub const STUB_ADDR: u64 = 0x7fff_f000_0000;
/// The stub page's length.
pub const STUB_LEN: u64 = 4096;
/// The highest user address on x86_64 with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// The machine code at [`STUB_ADDR`]: `syscall` then `int3`.
const STUB_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];

/// x86_64 `user_fpregs_struct`: the 512-byte FXSAVE area.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct FpRegs(pub [u8; 512]);

impl Default for FpRegs {
    /// The state a fresh process starts with: FCW 0x37f, MXCSR 0x1f80.
    fn default() -> Self {
        let mut b = [0u8; 512];
        b[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        b[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        FpRegs(b)
    }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Reads a tracee's FXSAVE area (PTRACE_GETFPREGS).
pub fn get_fpregs(pid: Pid) -> io::Result<FpRegs> {
    let mut fp = FpRegs([0; 512]);
    // SAFETY: PTRACE_GETFPREGS writes exactly sizeof(user_fpregs_struct) = 512 bytes to the
    // pointer, which points at our 512-byte, 16-aligned buffer.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETFPREGS,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            fp.0.as_mut_ptr() as *mut libc::c_void,
        )
    };
    check(r)?;
    Ok(fp)
}

/// Sets a tracee's FXSAVE area (PTRACE_SETFPREGS).
pub fn set_fpregs(pid: Pid, fp: &FpRegs) -> io::Result<()> {
    // SAFETY: PTRACE_SETFPREGS reads 512 bytes from the pointer, our FpRegs buffer.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SETFPREGS,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            fp.0.as_ptr() as *mut libc::c_void,
        )
    };
    check(r).map(drop)
}

/// Forks the first address-space stub: a child that closes every descriptor, maps the
/// stub page, asks to be traced and stops itself. Call only while single-threaded.
pub fn fork_stub() -> io::Result<Pid> {
    // SAFETY: the Sentry is single-threaded when it forks the stub (it starts no threads),
    // so the child may run any code; it only makes raw system calls and never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => stub_child(),
        p => Ok(Pid::from_raw(p)),
    }
}

/// The stub child's set-up; never returns. Only raw calls: no allocation, no locks.
fn stub_child() -> ! {
    // SAFETY: we are the freshly forked, single-threaded stub child (fork_stub's contract).
    unsafe { unregister_rseq() };
    // SAFETY: prctl and close_range take plain integers; the child owns every fd it closes.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: as above; closing all of the child's descriptors affects only the child.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    // SAFETY: a fixed mapping at STUB_ADDR with MAP_FIXED_NOREPLACE never replaces anything
    // the child uses; the result is checked below.
    let page = unsafe {
        libc::mmap(
            STUB_ADDR as *mut libc::c_void,
            STUB_LEN as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if page as u64 != STUB_ADDR {
        // SAFETY: _exit only ends the child.
        unsafe { libc::_exit(127) };
    }
    // SAFETY: the page is mapped writable and STUB_LEN (4096) is larger than the code.
    unsafe { std::ptr::copy_nonoverlapping(STUB_CODE.as_ptr(), page as *mut u8, STUB_CODE.len()) };
    // SAFETY: changes only the protection of the page just mapped.
    unsafe { libc::mprotect(page, STUB_LEN as usize, libc::PROT_READ | libc::PROT_EXEC) };
    // SAFETY: PTRACE_TRACEME takes no pointers; the Sentry, our parent, becomes the tracer.
    unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    // SAFETY: raise stops the child for the tracer; nothing else runs in it.
    unsafe { libc::raise(libc::SIGSTOP) };
    // SAFETY: never reached while traced (the tracer takes the task over); ends the child.
    unsafe { libc::_exit(127) }
}

extern "C" {
    /// glibc (2.35+): the offset of the thread's registered rseq area from the thread
    /// pointer.
    static __rseq_offset: isize;
}

/// The signature glibc registers rseq with on x86_64.
const RSEQ_SIG: u32 = 0x5305_3053;

/// Drops the rseq registration the forked stub inherited from glibc: once the stub's memory
/// is unmapped the kernel would fault writing the area on every return to user space.
///
/// # Safety
/// Call only in the freshly forked single-threaded stub child.
unsafe fn unregister_rseq() {
    let tp: u64;
    // SAFETY: reading the thread pointer from %fs:0 is how x86_64 TLS is addressed; glibc
    // keeps the TCB self-pointer there.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly)) };
    // SAFETY: __rseq_offset is a constant glibc sets before main.
    let area = (tp as i64 + unsafe { __rseq_offset } as i64) as u64;
    for len in [32u32, 20] {
        // SAFETY: rseq(2) unregistration only compares the arguments with the registration.
        let r = unsafe { libc::syscall(libc::SYS_rseq, area, len, 1, RSEQ_SIG) };
        if r == 0 {
            return;
        }
    }
}

/// openat2(2) with RESOLVE flags: what the gofer resolves workload paths with.
pub fn openat2(dir: RawFd, path: &std::ffi::CStr, flags: u64, resolve: u64) -> io::Result<RawFd> {
    // open_how is non-exhaustive in libc: build it zeroed, then set the known fields.
    // SAFETY: open_how is plain integers, for which all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.resolve = resolve;
    // SAFETY: openat2 reads the NUL-terminated path and the open_how struct, both borrowed
    // for the call, and returns a new descriptor we take ownership of.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    check(r).map(|fd| fd as RawFd)
}

/// Takes ownership of a descriptor a nix call returned as a raw fd.
pub fn own_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass a descriptor just returned to them by a successful open or
    // recvmsg, which nothing else owns or will close.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// Borrows a host descriptor for one poll or read: the Sentry's stdio, or one an open
/// file or the control socket holds while the call runs.
pub fn borrow_fd(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: callers use the borrow only for the single call they make at once, while the
    // owner (the Sentry's stdio, an open file of a parked task, the control socket) holds
    // the descriptor open; a number reused after a close would only cause a spurious wake.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Fills `buf` from the host's random source (getrandom(2)); zeros if it fails.
pub fn fill_random(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: getrandom writes at most `len - done` bytes into the tail of `buf`, which
        // we own mutably for the call.
        let n = unsafe {
            libc::getrandom(
                buf[done..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - done,
                0,
            )
        };
        if n <= 0 {
            return;
        }
        done += n as usize;
    }
}

/// fork(2) for the sandbox's helper processes (the gofer). Call only while
/// single-threaded.
pub fn fork_process() -> Result<nix::unistd::ForkResult, nix::errno::Errno> {
    // SAFETY: hull-sandbox is single-threaded (it never starts threads), so the child may
    // run arbitrary code after fork.
    unsafe { nix::unistd::fork() }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Gives `sigs` a handler that does nothing. The Sentry is pid 1 of its pid namespace, and
/// the kernel drops signals to such an init while their disposition is SIG_DFL, even when
/// blocked; with a handler they queue for the Sentry's signalfd.
pub fn catch_signals(sigs: &[nix::sys::signal::Signal]) -> Result<(), nix::errno::Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let act = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &s in sigs {
        // SAFETY: the handler is an empty extern "C" function, trivially async-signal-safe.
        unsafe { sigaction(s, &act) }?;
    }
    Ok(())
}
