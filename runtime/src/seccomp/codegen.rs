//! BPF code generation from a [`Plan`].
//!
//! Layout of the program:
//!
//! ```text
//!   ld arch; jeq X86_64 -> x86_64; [jeq I386 -> i386]; ret KILL_THREAD (bad arch)
//! x86_64:
//!   ld nr; [runc's ENOSYS stub]; [x32 not filtered: nr >= 0x40000000 -> -1 ? default : KILL_THREAD]
//!   binary search over ranges of syscall numbers -> ret ACTION | ja rule block
//! i386:
//!   ld nr; [ENOSYS stub]; binary search ...
//! rule blocks (shared between syscalls with identical rules):
//!   for each rule: its conditions, each jumping to the next rule when false; ret ACTION
//!   ret DEFAULT
//! ```
//!
//! The search compares ranges, not single numbers, so a profile's hundreds of
//! allowed syscalls cost one instruction per run of consecutive numbers with
//! the same outcome, and a lookup takes about log2(ranges) jumps.

use std::collections::{BTreeMap, HashMap};

use super::action::{RET_ENOSYS, RET_KILL_THREAD};
use super::bpf::{Asm, Cond, Insn, Label};
use super::plan::{ArgCmp, CmpOp, Outcome, Plan, Rule, StubMax};
use super::tables::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use super::SeccompError;

/// Offsets in `struct seccomp_data` (little-endian x86).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Where a range of syscall numbers goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ret(u32),
    Block(Label),
}

struct Gen {
    asm: Asm,
    default: u32,
    ret_default: Label,
    enosys: Label,
    kill: Label,
    /// Rule blocks by (64-bit arguments, rules), so identical ones are shared.
    blocks: HashMap<(bool, Vec<Rule>), Label>,
    pending: Vec<(Label, bool, Vec<Rule>)>,
}

/// Generates the filter program of `plan`.
pub fn generate(plan: &Plan) -> Result<Vec<Insn>, SeccompError> {
    let mut asm = Asm::default();
    let (ret_default, enosys, kill) = (asm.label(), asm.label(), asm.label());
    let mut g = Gen {
        asm,
        default: plan.default,
        ret_default,
        enosys,
        kill,
        blocks: HashMap::new(),
        pending: Vec::new(),
    };
    let x86_64 = g.asm.label();
    let i386 = plan.abis.contains(&Abi::X86).then(|| g.asm.label());
    g.asm.ld(OFF_ARCH);
    g.asm.jmp_or_next(Cond::Eq, AUDIT_ARCH_X86_64, x86_64);
    if let Some(i386) = i386 {
        g.asm.jmp_or_next(Cond::Eq, AUDIT_ARCH_I386, i386);
    }
    // libseccomp's default bad-architecture action, which runc keeps.
    g.asm.ret(RET_KILL_THREAD);
    g.asm.bind(x86_64);
    g.x86_64_section(plan);
    if let Some(i386) = i386 {
        g.asm.bind(i386);
        g.i386_section(plan);
    }
    g.emit_blocks();
    g.asm.bind(g.ret_default);
    g.asm.ret(g.default);
    g.asm.bind(g.enosys);
    g.asm.ret(RET_ENOSYS);
    g.asm.bind(g.kill);
    g.asm.ret(RET_KILL_THREAD);
    g.asm.finish()
}

/// The syscalls of `abi`, each tagged with whether its arguments are 64-bit.
fn tagged(plan: &Plan, abi: Abi) -> BTreeMap<u32, (&Outcome, bool)> {
    let wide = abi.args_are_64bit();
    plan.syscalls[&abi]
        .iter()
        .map(|(nr, o)| (*nr, (o, wide)))
        .collect()
}

impl Gen {
    fn x86_64_section(&mut self, plan: &Plan) {
        let x32 = plan.abis.contains(&Abi::X32);
        self.asm.ld(OFF_NR);
        if let Some(stub) = plan.stub {
            self.x86_64_stub(stub);
        }
        if !x32 {
            // libseccomp: without x32 in the filter, x32 syscalls get the
            // bad-architecture action, except -1, which tracers use to skip
            // a syscall.
            let (high, search) = (self.asm.label(), self.asm.label());
            self.asm.jmp(Cond::Ge, X32_SYSCALL_BIT, high, search);
            self.asm.bind(high);
            self.asm
                .jmp(Cond::Eq, u32::MAX, self.ret_default, self.kill);
            self.asm.bind(search);
        }
        let mut table = tagged(plan, Abi::X86_64);
        if x32 {
            // x32 numbers carry the x32 bit, so they never collide with x86_64 ones.
            table.extend(tagged(plan, Abi::X32));
        }
        self.dispatch(&table);
    }

    /// runc's stub (libcontainer/seccomp/patchbpf): the x32 bit picks which
    /// maximum applies; numbers above it get ENOSYS before the filter proper.
    fn x86_64_stub(&mut self, stub: StubMax) {
        let after = self.asm.label();
        match (stub.x86_64, stub.x32) {
            (None, None) => {}
            (Some(max64), None) => {
                let native = self.asm.label();
                self.asm.jmp(Cond::Set, X32_SYSCALL_BIT, after, native);
                self.asm.bind(native);
                self.asm.jmp(Cond::Gt, max64, self.enosys, after);
            }
            (None, Some(max32)) => {
                let x32 = self.asm.label();
                self.asm.jmp(Cond::Set, X32_SYSCALL_BIT, x32, after);
                self.asm.bind(x32);
                self.asm.jmp(Cond::Gt, max32, self.enosys, after);
            }
            (Some(max64), Some(max32)) => {
                let (native, x32) = (self.asm.label(), self.asm.label());
                self.asm.jmp(Cond::Set, X32_SYSCALL_BIT, x32, native);
                self.asm.bind(native);
                self.asm.jmp(Cond::Gt, max64, self.enosys, after);
                self.asm.bind(x32);
                self.asm.jmp(Cond::Gt, max32, self.enosys, after);
            }
        }
        self.asm.bind(after);
    }

    fn i386_section(&mut self, plan: &Plan) {
        self.asm.ld(OFF_NR);
        if let Some(max) = plan.stub.and_then(|s| s.x86) {
            self.asm.jmp_or_next(Cond::Gt, max, self.enosys);
        }
        self.dispatch(&tagged(plan, Abi::X86));
    }

    /// Emits the search over syscall numbers (in the accumulator).
    fn dispatch(&mut self, table: &BTreeMap<u32, (&Outcome, bool)>) {
        let default = Target::Ret(self.default);
        let mut segs: Vec<(u32, Target)> = Vec::new();
        let mut push = |start: u32, t: Target| match segs.last() {
            Some((_, last)) if *last == t => {}
            _ => segs.push((start, t)),
        };
        let mut next: u64 = 0;
        for (&nr, &(outcome, wide)) in table {
            if u64::from(nr) > next {
                push(next as u32, default);
            }
            let target = match outcome {
                Outcome::Action(a) => Target::Ret(*a),
                Outcome::Rules(rules) => Target::Block(self.block(wide, rules)),
            };
            push(nr, target);
            next = u64::from(nr) + 1;
        }
        if next <= u64::from(u32::MAX) {
            push(next as u32, default);
        }
        self.search(&segs);
    }

    /// Binary search over `segs`, sorted ranges `[start, next start)`.
    fn search(&mut self, segs: &[(u32, Target)]) {
        if let [(_, target)] = segs {
            match *target {
                Target::Ret(k) => self.asm.ret(k),
                Target::Block(l) => self.asm.ja(l),
            }
            return;
        }
        let mid = segs.len() / 2;
        let right = self.asm.label();
        self.asm.jmp_or_next(Cond::Ge, segs[mid].0, right);
        self.search(&segs[..mid]);
        self.asm.bind(right);
        self.search(&segs[mid..]);
    }

    fn block(&mut self, wide: bool, rules: &[Rule]) -> Label {
        let key = (wide, rules.to_vec());
        if let Some(l) = self.blocks.get(&key) {
            return *l;
        }
        let l = self.asm.label();
        self.pending.push((l, wide, rules.to_vec()));
        self.blocks.insert(key, l);
        l
    }

    fn emit_blocks(&mut self) {
        for (label, wide, rules) in std::mem::take(&mut self.pending) {
            self.asm.bind(label);
            for rule in &rules {
                let next = self.asm.label();
                for c in &rule.conds {
                    self.cond(c, wide, next);
                }
                self.asm.ret(rule.action);
                self.asm.bind(next);
            }
            self.asm.ret(self.default);
        }
    }

    /// Emits code that falls through when `c` holds and jumps to `fail` when
    /// not. 64-bit arguments are compared as libseccomp does: the high words
    /// first, the low words only when the high words are equal.
    fn cond(&mut self, c: &ArgCmp, wide: bool, fail: Label) {
        let lo_off = OFF_ARGS + 8 * u32::from(c.index);
        let hi_off = lo_off + 4;
        let (dh, dl) = ((c.datum >> 32) as u32, c.datum as u32);
        let (mh, ml) = ((c.mask >> 32) as u32, c.mask as u32);
        let pass = self.asm.label();
        match c.op {
            CmpOp::Eq | CmpOp::MaskedEq => {
                // A zero mask half always matches; plan.rs drops all-zero masks.
                for (on, off, mask, datum) in [(wide, hi_off, mh, dh), (true, lo_off, ml, dl)] {
                    if on && mask != 0 {
                        self.asm.ld(off);
                        if mask != u32::MAX {
                            self.asm.and(mask);
                        }
                        self.asm.next_or_jmp(Cond::Eq, datum, fail);
                    }
                }
            }
            CmpOp::Ne => {
                if wide {
                    let lo = self.asm.label();
                    self.asm.ld(hi_off);
                    self.asm.jmp(Cond::Eq, dh, lo, pass);
                    self.asm.bind(lo);
                }
                self.asm.ld(lo_off);
                self.asm.jmp(Cond::Eq, dl, fail, pass);
            }
            CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le => {
                let greater_passes = matches!(c.op, CmpOp::Gt | CmpOp::Ge);
                let (above, below) = if greater_passes {
                    (pass, fail)
                } else {
                    (fail, pass)
                };
                if wide {
                    let (not_above, equal) = (self.asm.label(), self.asm.label());
                    self.asm.ld(hi_off);
                    self.asm.jmp(Cond::Gt, dh, above, not_above);
                    self.asm.bind(not_above);
                    self.asm.jmp(Cond::Eq, dh, equal, below);
                    self.asm.bind(equal);
                }
                self.asm.ld(lo_off);
                match c.op {
                    CmpOp::Gt => self.asm.jmp(Cond::Gt, dl, pass, fail),
                    CmpOp::Ge => self.asm.jmp(Cond::Ge, dl, pass, fail),
                    CmpOp::Lt => self.asm.jmp(Cond::Ge, dl, fail, pass),
                    _ => self.asm.jmp(Cond::Gt, dl, fail, pass),
                }
            }
        }
        self.asm.bind(pass);
    }
}
