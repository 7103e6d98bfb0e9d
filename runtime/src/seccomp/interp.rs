//! A classic-BPF interpreter for seccomp programs, so tests can run compiled
//! filters against (arch, nr, args) without a kernel.

use super::bpf::Insn;
use super::Filter;

/// The inputs of one syscall, as in `struct seccomp_data`.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub arch: u32,
    pub nr: u32,
    pub args: [u64; 6],
}

fn load(c: &Call, off: u32) -> u32 {
    assert!(off.is_multiple_of(4) && off < 64, "bad load offset {off}");
    match off {
        0 => c.nr,
        4 => c.arch,
        8 | 12 => 0, // instruction_pointer
        _ => {
            let arg = c.args[(off as usize - 16) / 8];
            if off.is_multiple_of(8) {
                arg as u32
            } else {
                (arg >> 32) as u32
            }
        }
    }
}

/// Runs `prog`; returns the action and the number of instructions executed.
/// Panics on anything the kernel's checker would refuse at run time.
pub fn run(prog: &[Insn], c: &Call) -> (u32, usize) {
    let (mut pc, mut a, mut steps) = (0usize, 0u32, 0usize);
    loop {
        let i = *prog
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} ran off the program"));
        steps += 1;
        let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        pc += 1 + match i.code {
            0x20 => {
                a = load(c, i.k);
                0
            }
            0x54 => {
                a &= i.k;
                0
            }
            0x05 => i.k as usize,
            0x15 => jump(a == i.k),
            0x25 => jump(a > i.k),
            0x35 => jump(a >= i.k),
            0x45 => jump(a & i.k != 0),
            0x06 => return (i.k, steps),
            code => panic!("unexpected opcode {code:#x} at {}", pc),
        };
    }
}

impl Filter {
    /// The action the filter returns for `call`.
    pub fn eval(&self, call: Call) -> u32 {
        run(self.instructions(), &call).0
    }
}
