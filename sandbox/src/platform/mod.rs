//! The platform: how the Sentry intercepts a workload's system calls and manages its
//! address spaces. Stage 1 has one backend, ptrace with PTRACE_SYSEMU (see
//! docs/design/sandbox.md for why, and for the systrap-style backend planned next).
//!
//! Every workload thread is a host process traced by the Sentry. Its system calls stop at
//! syscall entry and are never executed by the host; the Sentry serves them and writes the
//! result into `rax`. Address-space changes (mmap, munmap, mprotect, clone) are made by the
//! Sentry running the call itself on the stub page inside the address space, with
//! arguments the Sentry computed.

pub mod mem;
pub mod ptrace;

pub use ptrace::{Event, PlatformError, Regs, Tracee};
