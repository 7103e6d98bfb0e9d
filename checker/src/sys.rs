//! Every raw libc call the checker makes. Each wrapper is safe to call.

use std::io;

/// Host and domain names from uname(2).
pub struct Names {
    pub nodename: String,
    pub domainname: String,
}

fn field_to_string(field: &[libc::c_char]) -> String {
    // uname(2) NUL-terminates each field; fall back to the whole buffer if not.
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Calls uname(2).
pub fn uname() -> io::Result<Names> {
    // SAFETY: utsname is a plain C struct of char arrays; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname that outlives the call.
    let rc = unsafe { libc::uname(&mut uts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Names {
        nodename: field_to_string(&uts.nodename),
        domainname: field_to_string(&uts.domainname),
    })
}

/// Real, effective user and group ids.
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
}

/// Returns the process's real and effective ids.
pub fn ids() -> Ids {
    Ids {
        // SAFETY: getuid takes no arguments and cannot fail.
        uid: unsafe { libc::getuid() },
        // SAFETY: getgid takes no arguments and cannot fail.
        gid: unsafe { libc::getgid() },
        // SAFETY: geteuid takes no arguments and cannot fail.
        euid: unsafe { libc::geteuid() },
        // SAFETY: getegid takes no arguments and cannot fail.
        egid: unsafe { libc::getegid() },
    }
}

/// Returns the parent pid.
pub fn getppid() -> i32 {
    // SAFETY: getppid takes no arguments and cannot fail.
    unsafe { libc::getppid() }
}

/// Returns the supplementary group list.
pub fn getgroups() -> io::Result<Vec<u32>> {
    // SAFETY: a zero size with a null list only asks for the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `groups` has room for exactly `n` gids and outlives the call.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(got as usize);
    Ok(groups)
}

/// Returns `(soft, hard)` for one resource.
pub fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    let rc = unsafe { libc::getrlimit(resource, &mut lim) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Tells whether `fd` is an open descriptor (F_GETFD does not touch it).
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor flags; an unknown fd gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Restores the default action for `sig`, unblocks it and raises it.
/// Returns only if the signal did not end the process: its default action is
/// to ignore, or the process is a PID namespace's init, which the kernel
/// shields from its own signals.
pub fn signal_self(sig: i32) -> io::Result<()> {
    if sig != libc::SIGKILL && sig != libc::SIGSTOP {
        // SAFETY: SIG_DFL is always a valid disposition; signal() rejects bad numbers.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: sigset_t is plain data; all-zero is valid and sigemptyset fills it anyway.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: `set` is initialised; `sig` was accepted by signal() above.
    unsafe { libc::sigaddset(&mut set, sig) };
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: raise(3) only sends a signal to the calling thread.
    if unsafe { libc::raise(sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes syscall `nr` of the x86_64 ABI (x32 when `nr` has bit 30) with six
/// arguments; returns 0 on success, else the errno.
pub fn syscall6(nr: i64, args: [u64; 6]) -> i32 {
    let [a, b, c, d, e, f] = args.map(|x| x as libc::c_long);
    // SAFETY: the caller picks numbers and arguments that fail harmlessly or
    // only query; the kernel validates every pointer argument.
    let ret = unsafe { libc::syscall(nr as libc::c_long, a, b, c, d, e, f) };
    if ret == -1 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

/// Makes syscall `nr` of the i386 ABI through `int 0x80`, which the kernel's
/// IA32 emulation serves to 64-bit processes too (seccomp then sees
/// AUDIT_ARCH_I386); returns 0 on success, else the errno.
pub fn int80(nr: u32, args: [u32; 6]) -> i32 {
    let ret: u32;
    // SAFETY: int 0x80 takes ebx, ecx, edx, esi, edi, ebp; rbx and rbp are
    // reserved by the compiler, so they are saved on the stack and restored
    // (the asm block may use the stack, no `nostack`). r8-r11 are declared
    // clobbered in case the kernel does not preserve them.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "mov ebx, {a0:e}",
            "mov ebp, {a5:e}",
            "int 0x80",
            "pop rbp",
            "pop rbx",
            a0 = in(reg) args[0],
            a5 = in(reg) args[5],
            inlateout("eax") nr => ret,
            in("ecx") args[1],
            in("edx") args[2],
            in("esi") args[3],
            in("edi") args[4],
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    let ret = ret as i32;
    if (-4095..0).contains(&ret) {
        -ret
    } else {
        0
    }
}

/// Sets no_new_privs and loads `prog` as a seccomp filter with `flags`
/// (seccomp(2) SECCOMP_SET_MODE_FILTER).
pub fn load_seccomp(flags: u32, prog: &[libc::sock_filter]) -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS only sets a flag of the calling thread.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` instructions that outlive the call; the
    // kernel copies them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
