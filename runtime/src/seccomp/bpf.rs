//! A tiny classic-BPF assembler: instructions with symbolic forward labels,
//! resolved into `sock_filter` form.
//!
//! Conditional jumps in classic BPF have 8-bit forward offsets. The code
//! generator never has to care: [`Asm::finish`] relaxes every conditional
//! branch whose target is more than 255 instructions away by placing a
//! trampoline right after the jump, an unconditional `ja` (32-bit offset) or,
//! when the target is a `ret`, a copy of that `ret`. Inserting trampolines
//! pushes later code down, so relaxation repeats until nothing is too far.

use super::SeccompError;

/// The kernel's limit on the length of one filter program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

// Opcodes (linux/bpf_common.h); only what seccomp filters need.
/// BPF_LD | BPF_W | BPF_ABS (BPF_LD and BPF_W are 0).
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x04 | 0x50;
const JMP_JA: u16 = 0x05;
const RET_K: u16 = 0x06;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Conditions of conditional jumps (`BPF_JMP | cond | BPF_K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
}

/// A forward jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Op {
    Ld(u32),
    And(u32),
    Jmp {
        cond: Cond,
        k: u32,
        jt: Label,
        jf: Label,
    },
    Ja(Label),
    Ret(u32),
    Bind(Label),
}

/// A program under construction.
#[derive(Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `l` to the next instruction emitted.
    pub fn bind(&mut self, l: Label) {
        self.ops.push(Op::Bind(l));
    }

    /// `A = *(u32 *)(seccomp_data + off)`
    pub fn ld(&mut self, off: u32) {
        self.ops.push(Op::Ld(off));
    }

    /// `A &= k`
    pub fn and(&mut self, k: u32) {
        self.ops.push(Op::And(k));
    }

    pub fn jmp(&mut self, cond: Cond, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jmp { cond, k, jt, jf });
    }

    /// A conditional jump to `jt`; falls through to the next instruction otherwise.
    pub fn jmp_or_next(&mut self, cond: Cond, k: u32, jt: Label) {
        let next = self.label();
        self.jmp(cond, k, jt, next);
        self.bind(next);
    }

    /// A conditional jump that falls through when true and goes to `jf` otherwise.
    pub fn next_or_jmp(&mut self, cond: Cond, k: u32, jf: Label) {
        let next = self.label();
        self.jmp(cond, k, next, jf);
        self.bind(next);
    }

    pub fn ja(&mut self, l: Label) {
        self.ops.push(Op::Ja(l));
    }

    pub fn ret(&mut self, k: u32) {
        self.ops.push(Op::Ret(k));
    }

    /// Resolves the labels; fails when the program exceeds [`MAX_INSNS`].
    pub fn finish(mut self) -> Result<Vec<Insn>, SeccompError> {
        loop {
            let pos = self.positions();
            if !self.relax(&pos) {
                return self.encode(&pos);
            }
        }
    }

    /// Where each label points, as an instruction index.
    fn positions(&self) -> Vec<usize> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut at = 0;
        for op in &self.ops {
            match op {
                Op::Bind(l) => pos[l.0] = at,
                _ => at += 1,
            }
        }
        pos
    }

    /// Adds a trampoline after every jump with a branch out of 8-bit reach.
    /// Returns false when there was none.
    fn relax(&mut self, pos: &[usize]) -> bool {
        let mut out = Vec::with_capacity(self.ops.len() + 16);
        let mut changed = false;
        let mut at = 0;
        let ops = std::mem::take(&mut self.ops);
        let insns: Vec<Op> = ops
            .iter()
            .copied()
            .filter(|o| !matches!(o, Op::Bind(_)))
            .collect();
        for op in &ops {
            let Op::Jmp { cond, k, jt, jf } = *op else {
                if !matches!(op, Op::Bind(_)) {
                    at += 1;
                }
                out.push(*op);
                continue;
            };
            let far = |l: Label| distance(pos, at, l) > usize::from(u8::MAX);
            let (far_t, far_f) = (far(jt), far(jf));
            at += 1;
            if !far_t && !far_f {
                out.push(*op);
                continue;
            }
            changed = true;
            let (tt, tf) = (self.label(), self.label());
            let jt2 = if far_t { tt } else { jt };
            let jf2 = if far_f { tf } else { jf };
            out.push(Op::Jmp {
                cond,
                k,
                jt: jt2,
                jf: jf2,
            });
            for (is_far, tramp, target) in [(far_t, tt, jt), (far_f, tf, jf)] {
                if is_far {
                    out.push(Op::Bind(tramp));
                    out.push(trampoline(&insns, pos, target));
                }
            }
        }
        self.ops = out;
        changed
    }

    fn encode(&self, pos: &[usize]) -> Result<Vec<Insn>, SeccompError> {
        let len = self
            .ops
            .iter()
            .filter(|o| !matches!(o, Op::Bind(_)))
            .count();
        if len > MAX_INSNS {
            return Err(SeccompError::TooLarge { len });
        }
        let mut prog = Vec::with_capacity(len);
        for op in &self.ops {
            let at = prog.len();
            let off = |l: Label| distance(pos, at, l);
            let insn = match *op {
                Op::Bind(_) => continue,
                Op::Ld(k) => Insn {
                    code: LD_W_ABS,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::And(k) => Insn {
                    code: ALU_AND_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Ret(k) => Insn {
                    code: RET_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Ja(l) => Insn {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(off(l)).expect("programs are far shorter than 2^32"),
                },
                Op::Jmp { cond, k, jt, jf } => Insn {
                    code: 0x05 | cond as u16,
                    // relax() guarantees both offsets fit.
                    jt: u8::try_from(off(jt)).expect("relaxed"),
                    jf: u8::try_from(off(jf)).expect("relaxed"),
                    k,
                },
            };
            prog.push(insn);
        }
        Ok(prog)
    }
}

/// How many instructions a jump at `at` skips to reach `target`. The code
/// generator binds every label it uses after the jumps to it.
fn distance(pos: &[usize], at: usize, target: Label) -> usize {
    let to = pos[target.0];
    assert!(to != usize::MAX, "label {target:?} is never bound");
    to.checked_sub(at + 1)
        .expect("classic BPF jumps only go forward")
}

/// The instruction a trampoline to `target` consists of: a copy of the `ret`
/// at the target when there is one (as short as a `ja`, one hop less), else `ja`.
/// `insns` are the program's instructions without the label bindings.
fn trampoline(insns: &[Op], pos: &[usize], target: Label) -> Op {
    match insns.get(pos[target.0]) {
        Some(Op::Ret(k)) => Op::Ret(*k),
        _ => Op::Ja(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_branches_get_trampolines() {
        let mut a = Asm::default();
        let far = a.label();
        a.ld(0);
        a.jmp_or_next(Cond::Eq, 7, far);
        for _ in 0..300 {
            a.ld(4);
        }
        a.bind(far);
        a.ret(42);
        let prog = a.finish().unwrap();
        assert_eq!(prog.len(), 1 + 2 + 300 + 1);
        // jeq 7 -> trampoline (offset 0), else skip it (offset 1).
        assert_eq!((prog[1].jt, prog[1].jf), (0, 1));
        // The trampoline is a copy of the `ret` it would have jumped to.
        assert_eq!(
            prog[2],
            Insn {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: 42
            }
        );
    }

    #[test]
    fn too_long_is_refused() {
        let mut a = Asm::default();
        for _ in 0..=MAX_INSNS {
            a.ret(0);
        }
        assert!(matches!(
            a.finish(),
            Err(SeccompError::TooLarge { len: 4097 })
        ));
    }
}
