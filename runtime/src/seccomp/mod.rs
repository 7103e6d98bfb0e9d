//! Seccomp: runtime-spec `linux.seccomp`, compiled to classic BPF by hull.
//!
//! [`compile`] is pure (no syscalls): `plan` normalises the profile per ABI
//! with runc's and libseccomp's rules, `codegen` turns that into a program and
//! `bpf` resolves its jumps. [`Filter::install`] loads it with seccomp(2).
//!
//! # Why not seccompiler
//! seccompiler (0.5) builds one filter per architecture with one match
//! action, hard-codes "kill" for a foreign architecture and knows only the
//! TSYNC flag. The spec needs several actions in one filter, x86_64 + x32 +
//! i386 in one program, NOTIFY with its listener fd, the LOG, SPEC_ALLOW and
//! WAIT_KILLABLE_RECV flags and runc's ENOSYS stub. Its remaining use would be
//! the `sock_filter` type, which libc already has, so hull does not depend on it.
//!
//! # Semantics, as runc 1.1+/libseccomp 2.5 on x86_64
//! - Architectures: the native x86_64 is always filtered; SCMP_ARCH_X86 and
//!   SCMP_ARCH_X32 add i386 and x32. Any other `seccomp_data.arch` gets
//!   libseccomp's bad-architecture action, KILL_THREAD. With x32 not listed,
//!   x32 syscalls (numbers with bit 30) get KILL_THREAD too, except nr -1.
//!   Other architectures are refused (hull filters x86 only).
//! - Names are resolved per ABI from tables generated from the kernel headers
//!   (`gen_tables.sh`); a name an ABI lacks is skipped there. On i386 the
//!   socket and SysV IPC calls also match through socketcall(2)/ipc(2) with
//!   the call number as argument 0, as libseccomp multiplexes them.
//! - Rules whose action equals the default action are dropped (runc). Two
//!   conditions on the same argument split the rule into one rule per
//!   condition (runc), so they are ORed; otherwise a rule's conditions are
//!   ANDed. All rules of a syscall are ORed; an unconditional rule overrides
//!   conditional ones (libseccomp); between overlapping conditional rules with
//!   different actions the first in libseccomp's tree order wins (where
//!   libseccomp would refuse the profile with EEXIST, hull keeps the first).
//! - x86_64 arguments are compared as 64-bit values (high words first);
//!   i386 and x32 ones on their low 32 bits, as libseccomp does.
//! - ENOSYS stub (runc's libcontainer/seccomp/patchbpf/enosys_linux.go):
//!   unless the default action is ALLOW, LOG or TRACE, a syscall numbered
//!   above the largest number the profile names on its ABI returns ENOSYS.
//! - `flags` absent means SPEC_ALLOW (runc), dropped if the kernel lacks it.
//!   NOTIFY adds NEW_LISTENER; WAIT_KILLABLE_RECV is passed only with it (the
//!   kernel refuses it alone); TSYNC with NEW_LISTENER adds TSYNC_ESRCH.

mod action;
mod bpf;
mod codegen;
mod features;
mod notify;
mod plan;
pub mod profile;
mod tables;

#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_args;

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag as Flag};

pub use bpf::{Insn, MAX_INSNS};
pub use features::features;
pub use notify::{process_state_json, send_to_listener};
pub use tables::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};

/// Filter flags of seccomp(2).
const FLAG_TSYNC: u32 = 1 << 0;
const FLAG_LOG: u32 = 1 << 1;
const FLAG_SPEC_ALLOW: u32 = 1 << 2;
const FLAG_NEW_LISTENER: u32 = 1 << 3;
const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp architecture {arch} is not supported: hull filters SCMP_ARCH_X86_64, \
         SCMP_ARCH_X86 and SCMP_ARCH_X32"
    )]
    UnsupportedArch { arch: String },
    #[error("SCMP_ACT_NOTIFY cannot be used as the seccomp default action")]
    NotifyDefault,
    #[error("SCMP_ACT_NOTIFY cannot be used for the write syscall")]
    NotifyWrite,
    #[error("SCMP_ACT_NOTIFY is used but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener,
    #[error("empty string is not a valid syscall name")]
    EmptyName,
    #[error("seccomp rule for {name}: argument index {index} is out of range (0-5)")]
    ArgIndex { name: String, index: usize },
    #[error("{what}: {value} does not fit the 16-bit seccomp return data")]
    RetData { what: String, value: u32 },
    #[error("the seccomp filter has {len} instructions, over the kernel's limit of 4096")]
    TooLarge { len: usize },
    #[error("loading the seccomp filter (flags {flags:#x})")]
    Install {
        flags: u32,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the seccomp agent at {path}")]
    ListenerConnect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sending the seccomp notify fd to the agent at {path}")]
    ListenerSend {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing the seccomp profile")]
    Profile {
        #[source]
        source: serde_json::Error,
    },
}

/// A compiled seccomp filter, ready to be installed.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<Insn>,
    flags: u32,
    /// SPEC_ALLOW was added because `flags` was absent; it is dropped when the
    /// kernel does not know it, as runc adds it only when supported.
    implicit_spec_allow: bool,
    notify: bool,
}

/// Compiles `seccomp` into a filter. Pure: no syscalls, no I/O.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let plan = plan::plan(seccomp)?;
    let program = codegen::generate(&plan)?;
    let (mut flags, implicit_spec_allow) = match seccomp.flags() {
        None => (FLAG_SPEC_ALLOW, true),
        Some(list) => (list.iter().fold(0, |acc, f| acc | flag_bit(*f)), false),
    };
    if plan.notify {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    } else {
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }
    Ok(Filter {
        program,
        flags,
        implicit_spec_allow,
        notify: plan.notify,
    })
}

fn flag_bit(flag: Flag) -> u32 {
    match flag {
        Flag::SeccompFilterFlagTsync => FLAG_TSYNC,
        Flag::SeccompFilterFlagLog => FLAG_LOG,
        Flag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
        Flag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
    }
}

impl Filter {
    /// True when a rule uses SCMP_ACT_NOTIFY: [`Filter::install`] then returns
    /// the listener fd, to be sent to `listenerPath` with [`send_to_listener`].
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// The BPF program.
    pub fn instructions(&self) -> &[Insn] {
        &self.program
    }

    /// The seccomp(2) filter flags [`Filter::install`] passes.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Installs the filter on the calling thread (all threads with TSYNC);
    /// returns the notify listener fd when NOTIFY is used. The caller must
    /// have set no_new_privs or hold CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let prog: Vec<libc::sock_filter> = self
            .program
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let mut flags = self.flags;
        if self.implicit_spec_allow && !crate::sys::seccomp_flags_supported(FLAG_SPEC_ALLOW) {
            flags &= !FLAG_SPEC_ALLOW;
        }
        crate::sys::seccomp_set_mode_filter(flags, &prog)
            .map_err(|source| SeccompError::Install { flags, source })
    }
}
