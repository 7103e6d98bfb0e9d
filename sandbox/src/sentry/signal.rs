//! Signals: dispositions, siginfo, and the x86_64 rt_sigframe the Sentry builds on the
//! workload's stack (and reads back at rt_sigreturn), as Linux lays it out.

use nix::errno::Errno;

use crate::platform::{mem, Regs, Tracee};
use crate::sys::FpRegs;

/// Signals 1..=64, indexed by number (0 unused).
pub const NSIG: usize = 65;
/// SIG_DFL.
pub const SIG_DFL: u64 = 0;
/// SIG_IGN.
pub const SIG_IGN: u64 = 1;
/// sa_flags bits the Sentry acts on.
pub const SA_SIGINFO: u64 = 4;
/// Don't turn children into zombies.
pub const SA_NOCLDWAIT: u64 = 2;
/// Use sa_restorer.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// Run the handler on the alternate stack.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// Restart interrupted calls.
pub const SA_RESTART: u64 = 0x1000_0000;
/// Don't block the signal in its handler.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// Reset to SIG_DFL on delivery.
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// Signals that can be neither caught nor blocked.
pub const UNBLOCKABLE: u64 = bit(libc::SIGKILL) | bit(libc::SIGSTOP);

/// The mask bit of signal `sig`.
pub const fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// struct k_sigaction for x86_64 rt_sigaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// sa_handler / sa_sigaction.
    pub handler: u64,
    /// sa_flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask.
    pub mask: u64,
}

impl SigAction {
    /// Parses the 32-byte kernel layout.
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        SigAction {
            handler: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3),
        }
    }

    /// The 32-byte kernel layout.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [self.handler, self.flags, self.restorer, self.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// What a signal does with SIG_DFL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default_ {
    /// Terminate the process.
    Term,
    /// Ignore it.
    Ignore,
    /// Stop (job control; the Sentry treats it as ignore in stage 1).
    Stop,
}

/// The default action of `sig`.
pub fn default_action(sig: i32) -> Default_ {
    match sig {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH | libc::SIGCONT => Default_::Ignore,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Default_::Stop,
        _ => Default_::Term,
    }
}

/// The parts of siginfo_t the Sentry fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// si_signo.
    pub signo: i32,
    /// si_code (SI_USER 0, SI_KERNEL 0x80, CLD_EXITED 1, …).
    pub code: i32,
    /// si_pid (or the fault address's low half for faults: see `addr`).
    pub pid: i32,
    /// si_uid.
    pub uid: u32,
    /// si_status for SIGCHLD.
    pub status: i32,
    /// si_addr for faults.
    pub addr: u64,
}

impl SigInfo {
    /// A signal sent by kill(2) from `pid`.
    pub fn user(signo: i32, pid: i32) -> Self {
        SigInfo {
            signo,
            pid,
            ..Default::default()
        }
    }

    /// The 128-byte siginfo_t.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        if self.addr != 0 {
            b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        } else {
            b[16..20].copy_from_slice(&self.pid.to_le_bytes());
            b[20..24].copy_from_slice(&self.uid.to_le_bytes());
            b[24..28].copy_from_slice(&self.status.to_le_bytes());
        }
        b
    }
}

const UC_MCONTEXT: u64 = 40;
const UC_SIGMASK: u64 = UC_MCONTEXT + 256;
const UCONTEXT_LEN: u64 = UC_SIGMASK + 8;
const FRAME_LEN: u64 = 8 + UCONTEXT_LEN + 128;
const REDZONE: u64 = 128;

/// The sigcontext register order (r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip,
/// eflags).
fn gregs(r: &Regs) -> [u64; 18] {
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ]
}

/// Builds the signal frame for `info` on the stack (or alternate stack `alt` = (sp, size))
/// and points the registers at the handler. `mask` is the mask to restore afterwards.
pub fn setup_frame(
    t: &Tracee,
    regs: &mut Regs,
    act: &SigAction,
    info: &SigInfo,
    mask: u64,
    alt: Option<(u64, u64)>,
) -> Result<(), Errno> {
    let fp = t.fpregs().map_err(|_| Errno::EFAULT)?;
    let top = match alt {
        Some((sp, size)) if !(sp..sp + size).contains(&regs.rsp) => sp + size,
        _ => regs.rsp - REDZONE,
    };
    let fp_addr = (top - 512) & !63;
    let frame = ((fp_addr - FRAME_LEN) & !15) - 8;
    let uc = frame + 8;
    let info_addr = uc + UCONTEXT_LEN;
    let mut buf = vec![0u8; (fp_addr + 512 - frame) as usize];
    buf[0..8].copy_from_slice(&act.restorer.to_le_bytes());
    let put = |buf: &mut Vec<u8>, at: u64, v: &[u8]| {
        let o = (at - frame) as usize;
        buf[o..o + v.len()].copy_from_slice(v);
    };
    if let Some((sp, size)) = alt {
        put(&mut buf, uc + 16, &sp.to_le_bytes());
        put(&mut buf, uc + 32, &size.to_le_bytes());
    }
    for (i, g) in gregs(regs).iter().enumerate() {
        put(&mut buf, uc + UC_MCONTEXT + i as u64 * 8, &g.to_le_bytes());
    }
    // cs, gs, fs, ss as 16-bit fields.
    let segs = [regs.cs as u16, 0, 0, regs.ss as u16];
    for (i, s) in segs.iter().enumerate() {
        put(
            &mut buf,
            uc + UC_MCONTEXT + 144 + i as u64 * 2,
            &s.to_le_bytes(),
        );
    }
    put(&mut buf, uc + UC_MCONTEXT + 168, &mask.to_le_bytes()); // oldmask
    put(&mut buf, uc + UC_MCONTEXT + 184, &fp_addr.to_le_bytes()); // fpstate
    put(&mut buf, uc + UC_SIGMASK, &mask.to_le_bytes());
    put(&mut buf, info_addr, &info.to_bytes());
    put(&mut buf, fp_addr, &fp.0);
    mem::write(t.pid, frame, &buf)?;
    regs.rsp = frame;
    regs.rip = act.handler;
    regs.rdi = info.signo as u64;
    regs.rsi = info_addr;
    regs.rdx = uc;
    regs.rax = 0;
    regs.eflags &= !(0x100 | 0x400); // TF, DF
    t.set_fpregs(&FpRegs::default())
        .map_err(|_| Errno::EFAULT)?;
    Ok(())
}

/// Reads the frame back at rt_sigreturn (rsp points just past the return address) and
/// restores the registers; returns the signal mask to restore.
pub fn restore_frame(t: &Tracee, regs: &mut Regs) -> Result<u64, Errno> {
    let uc = regs.rsp;
    let mut buf = [0u8; UCONTEXT_LEN as usize];
    mem::read(t.pid, uc, &mut buf)?;
    let g = |i: usize| {
        let o = UC_MCONTEXT as usize + i * 8;
        u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or_default())
    };
    let (cs, ss) = (regs.cs, regs.ss);
    let f = [
        &mut regs.r8,
        &mut regs.r9,
        &mut regs.r10,
        &mut regs.r11,
        &mut regs.r12,
        &mut regs.r13,
        &mut regs.r14,
        &mut regs.r15,
        &mut regs.rdi,
        &mut regs.rsi,
        &mut regs.rbp,
        &mut regs.rbx,
        &mut regs.rdx,
        &mut regs.rax,
        &mut regs.rcx,
        &mut regs.rsp,
        &mut regs.rip,
    ];
    for (i, r) in f.into_iter().enumerate() {
        *r = g(i);
    }
    // Only the arithmetic flags, DF, TF and AC may come from user memory.
    const USER_FLAGS: u64 = 0x40dd5;
    regs.eflags = (regs.eflags & !USER_FLAGS) | (g(17) & USER_FLAGS);
    regs.cs = cs;
    regs.ss = ss;
    regs.orig_rax = u64::MAX;
    let fp_addr = g(23);
    if fp_addr != 0 {
        let mut fp = FpRegs([0; 512]);
        mem::read(t.pid, fp_addr, &mut fp.0)?;
        // MXCSR reserved bits would make the host reject the state.
        let mxcsr = u32::from_le_bytes(fp.0[24..28].try_into().unwrap_or_default()) & 0xffff;
        fp.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        t.set_fpregs(&fp).map_err(|_| Errno::EFAULT)?;
    }
    let mask = u64::from_le_bytes(buf[UC_SIGMASK as usize..].try_into().unwrap_or_default());
    Ok(mask & !UNBLOCKABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigaction_round_trips_through_the_kernel_layout() {
        let a = SigAction {
            handler: 0x401000,
            flags: SA_RESTORER | SA_RESTART,
            restorer: 0x402000,
            mask: bit(libc::SIGINT),
        };
        assert_eq!(SigAction::from_bytes(&a.to_bytes()), a);
    }

    #[test]
    fn frame_layout_matches_linux() {
        // ucontext: flags, link, stack (24), mcontext (256), sigmask (8).
        assert_eq!(UCONTEXT_LEN, 304);
        assert_eq!(bit(libc::SIGHUP), 1);
        assert_eq!(default_action(libc::SIGCHLD), Default_::Ignore);
        assert_eq!(default_action(libc::SIGTERM), Default_::Term);
    }
}
