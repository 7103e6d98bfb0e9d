//! Compiles a device [`Policy`] into a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! The kernel runs the program on every device mknod and open in the cgroup
//! with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
//! where `access_type` is `(access << 16) | kind`; returning 1 allows, 0 denies
//! (EPERM). The program tests each exception in turn and returns the opposite
//! of the default on the first match, else the default:
//!
//! ```text
//!   r2 = kind, r3 = access, r4 = major, r5 = minor
//!   per exception:  if r2 != kind goto next
//!                   (access test)                  goto next when it fails
//!                   if r4 != major goto next       (omitted for a wildcard)
//!                   if r5 != minor goto next       (omitted for a wildcard)
//!                   return !default
//!   next: ...
//!   return default
//! ```
//!
//! The access test differs by side, as in v1 (security/device_cgroup.c): a
//! grant must cover every requested access (an open for read and write needs
//! both), a denial matches when it covers any of them. It is omitted when the
//! exception covers all three. Comparisons are 32-bit (BPF_JMP32), so every
//! u32 major and minor compares exactly.

use crate::sys::BpfInsn;

use super::rules::{Policy, ALL};

const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP32_JEQ_K: u8 = 0x16;
const JMP32_JNE_K: u8 = 0x56;
const EXIT: u8 = 0x95;

/// Registers: r0 return value, r1 the context on entry.
const R0: u8 = 0;
const R1: u8 = 1;
const KIND: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// A conditional jump to the end of the current block; the offset is patched
/// once the block is complete.
fn jump_out(code: u8, reg: u8, imm: u32) -> BpfInsn {
    insn(code, reg, 0, i16::MAX, imm as i32)
}

/// The program for `policy`.
pub fn compile(policy: &Policy) -> Vec<BpfInsn> {
    let mut prog = vec![
        insn(LDX_MEM_W, KIND, R1, 0, 0),
        insn(ALU32_AND_K, KIND, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, R1, 0, 0),
        insn(ALU32_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    let verdict = i32::from(!policy.default_allow);
    for (pattern, &access) in &policy.exceptions {
        let mut block = vec![jump_out(JMP32_JNE_K, KIND, pattern.kind as u32)];
        if access != ALL {
            block.push(insn(ALU32_MOV_X, R0, ACCESS, 0, 0));
            if policy.default_allow {
                // A denial: skip unless some requested access is denied.
                block.push(insn(ALU32_AND_K, R0, 0, 0, i32::from(access)));
                block.push(jump_out(JMP32_JEQ_K, R0, 0));
            } else {
                // A grant: skip if any requested access is not granted.
                block.push(insn(ALU32_AND_K, R0, 0, 0, i32::from(!access & ALL)));
                block.push(jump_out(JMP32_JNE_K, R0, 0));
            }
        }
        if let Some(major) = pattern.major {
            block.push(jump_out(JMP32_JNE_K, MAJOR, major));
        }
        if let Some(minor) = pattern.minor {
            block.push(jump_out(JMP32_JNE_K, MINOR, minor));
        }
        block.push(insn(ALU32_MOV_K, R0, 0, 0, verdict));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.off == i16::MAX {
                // Blocks are at most 8 instructions long.
                ins.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(policy.default_allow)));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}
