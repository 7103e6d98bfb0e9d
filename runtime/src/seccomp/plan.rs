//! The profile normalised into per-ABI decision tables, with runc's and
//! libseccomp's rules applied (see the module documentation of `seccomp`).

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator as SpecOp, LinuxSyscall,
};

use super::action::{encode, is_allow_ish};
use super::tables::{numbers, x86_multiplexed, Abi};
use super::SeccompError;

/// Syscalls take at most six arguments.
const MAX_ARGS: usize = 6;

/// A comparison operator, as the BPF code generator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
    MaskedEq,
}

/// One argument comparison: `(arg & mask) <op> datum`, with `mask` all ones
/// except for MASKED_EQ, and both already cut to the ABI's argument width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgCmp {
    pub index: u8,
    pub op: CmpOp,
    pub mask: u64,
    pub datum: u64,
}

/// Conditions that must all hold for `action` to be returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub conds: Vec<ArgCmp>,
    pub action: u32,
}

/// What one syscall number does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// An unconditional rule: libseccomp lets it override conditional ones.
    Action(u32),
    /// The first rule whose conditions hold decides; else the default action.
    Rules(Vec<Rule>),
}

/// The largest syscall number the profile names per ABI: runc's ENOSYS stub
/// answers ENOSYS above it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StubMax {
    pub x86_64: Option<u32>,
    pub x32: Option<u32>,
    pub x86: Option<u32>,
}

/// The whole filter, before code generation.
#[derive(Debug, Clone)]
pub struct Plan {
    pub default: u32,
    /// The ABIs filtered; x86_64, the native one, always is.
    pub abis: BTreeSet<Abi>,
    /// Per ABI: syscall number (as in `seccomp_data.nr`) to outcome.
    pub syscalls: BTreeMap<Abi, BTreeMap<u32, Outcome>>,
    pub stub: Option<StubMax>,
    /// Some rule uses SCMP_ACT_NOTIFY, so a listener fd is needed.
    pub notify: bool,
}

/// Builds the plan of `spec`.
pub fn plan(spec: &LinuxSeccomp) -> Result<Plan, SeccompError> {
    let default_action = spec.default_action();
    if default_action == Action::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let default = encode(default_action, spec.default_errno_ret(), &|| {
        "defaultErrnoRet".into()
    })?;
    let abis = abis(spec.architectures().as_deref().unwrap_or_default())?;
    let rules = spec.syscalls().as_deref().unwrap_or_default();
    let mut plan = Plan {
        default,
        syscalls: abis.iter().map(|a| (*a, BTreeMap::new())).collect(),
        stub: None,
        abis,
        notify: false,
    };
    let mut max = [0u32; 3];
    for rule in rules {
        plan.add_rule(rule, &mut max)?;
    }
    // A maximum of 0 means the ABI has no syscall of the profile: no stub.
    let stub_max = |abi: Abi| Some(max[abi as usize]).filter(|m| *m != 0);
    if !is_allow_ish(default_action) {
        plan.stub = Some(StubMax {
            x86_64: stub_max(Abi::X86_64),
            x32: stub_max(Abi::X32),
            x86: stub_max(Abi::X86),
        });
    }
    if plan.notify && spec.listener_path().is_none() {
        return Err(SeccompError::NotifyWithoutListener);
    }
    for table in plan.syscalls.values_mut() {
        for outcome in table.values_mut() {
            if let Outcome::Rules(rules) = outcome {
                rules.sort_by(libseccomp_order);
            }
        }
    }
    Ok(plan)
}

/// The ABIs of `architectures`; the native x86_64 is always filtered, as
/// libseccomp's filters always include the native architecture.
fn abis(archs: &[Arch]) -> Result<BTreeSet<Abi>, SeccompError> {
    let mut abis = BTreeSet::from([Abi::X86_64]);
    for arch in archs {
        abis.insert(match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            other => {
                return Err(SeccompError::UnsupportedArch {
                    arch: other.to_string(),
                })
            }
        });
    }
    Ok(abis)
}

/// runc's `findLastSyscalls` for one name: every name of every rule counts,
/// whatever its action. On i386 the names libseccomp multiplexes resolve to
/// negative pseudo-numbers, so they never count. Only filtered ABIs count.
fn track_max(max: &mut [u32; 3], abis: &[Abi], name: &str, numbers: [Option<u32>; 3]) {
    for &abi in abis {
        if abi == Abi::X86 && x86_multiplexed(name).is_some() {
            continue;
        }
        if let Some(nr) = numbers[abi as usize] {
            max[abi as usize] = max[abi as usize].max(nr);
        }
    }
}

impl Plan {
    fn add_rule(&mut self, rule: &LinuxSyscall, max: &mut [u32; 3]) -> Result<(), SeccompError> {
        let names = rule.names();
        let what = || format!("syscall rule for {}", names.join(","));
        let action = encode(rule.action(), rule.errno_ret(), &what)?;
        let args = rule.args().as_deref().unwrap_or_default();
        for name in names {
            if name.is_empty() {
                return Err(SeccompError::EmptyName);
            }
            if rule.action() == Action::ScmpActNotify && name == "write" {
                // The init reports the listener fd with write(2) after loading the filter.
                return Err(SeccompError::NotifyWrite);
            }
            if let Some(arg) = args.iter().find(|a| a.index() >= MAX_ARGS) {
                let (name, index) = (name.clone(), arg.index());
                return Err(SeccompError::ArgIndex { name, index });
            }
        }
        if rule.action() == Action::ScmpActNotify {
            self.notify = true;
        }
        let abis: Vec<Abi> = self.abis.iter().copied().collect();
        for name in names {
            let numbers = numbers(name);
            track_max(max, &abis, name, numbers);
            // runc drops rules whose action is the default one (they still
            // count for the stub's maximum).
            if action == self.default {
                continue;
            }
            for &abi in &abis {
                self.add_name(abi, name, numbers[abi as usize], args, action);
            }
        }
        Ok(())
    }

    /// Adds the rule for `name` on `abi`; names the ABI does not have are
    /// skipped, as libseccomp skips them.
    fn add_name(
        &mut self,
        abi: Abi,
        name: &str,
        direct: Option<u32>,
        args: &[LinuxSeccompArg],
        action: u32,
    ) {
        let mux = if abi == Abi::X86 {
            x86_multiplexed(name)
        } else {
            None
        };
        let table = self.syscalls.get_mut(&abi).expect("one table per ABI");
        for conds in split_same_index(args) {
            if let Some((mux_nr, call)) = mux {
                // libseccomp replaces any argument-0 condition with the call number.
                let mut mux_conds: Vec<_> =
                    conds.iter().filter(|a| a.index() != 0).copied().collect();
                mux_conds.insert(0, eq_arg(0, u64::from(call)));
                add(table, mux_nr, rule_for(abi, &mux_conds, action));
            }
            if let Some(nr) = direct {
                add(table, nr, rule_for(abi, &conds, action));
            }
        }
    }
}

/// runc's rule: when two conditions of one rule test the same argument, each
/// condition becomes a rule of its own (so they are ORed, not ANDed).
fn split_same_index(args: &[LinuxSeccompArg]) -> Vec<Vec<LinuxSeccompArg>> {
    let mut seen = [false; MAX_ARGS];
    let repeated = args
        .iter()
        .any(|a| std::mem::replace(&mut seen[a.index()], true));
    if repeated {
        args.iter().map(|a| vec![*a]).collect()
    } else {
        vec![args.to_vec()]
    }
}

fn eq_arg(index: usize, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(SpecOp::ScmpCmpEq)
        .build()
        .expect("every field is set")
}

/// Adds `rule` to syscall `nr` as libseccomp's `db_rule_add` does: the first
/// unconditional rule wins over every other rule of the syscall.
fn add(table: &mut BTreeMap<u32, Outcome>, nr: u32, rule: Rule) {
    let unconditional = rule.conds.is_empty();
    match table.entry(nr) {
        Entry::Vacant(e) if unconditional => {
            e.insert(Outcome::Action(rule.action));
        }
        Entry::Vacant(e) => {
            e.insert(Outcome::Rules(vec![rule]));
        }
        Entry::Occupied(mut e) => match e.get_mut() {
            Outcome::Action(_) => {}
            Outcome::Rules(_) if unconditional => {
                e.insert(Outcome::Action(rule.action));
            }
            Outcome::Rules(rules) => rules.push(rule),
        },
    }
}

/// Normalises the conditions for the ABI's argument width: 32-bit ABIs
/// compare the low words only, and a MASKED_EQ whose mask is zero (in the
/// compared width) always holds, so libseccomp leaves it out.
fn rule_for(abi: Abi, args: &[LinuxSeccompArg], action: u32) -> Rule {
    let width = if abi.args_are_64bit() {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let mut conds: Vec<ArgCmp> = args
        .iter()
        .filter_map(|a| {
            let (op, mask, datum) = match a.op() {
                SpecOp::ScmpCmpMaskedEq => (CmpOp::MaskedEq, a.value(), a.value_two().unwrap_or(0)),
                op => (cmp_op(op), u64::MAX, a.value()),
            };
            let mask = mask & width;
            let index = u8::try_from(a.index()).expect("index checked < 6");
            (mask != 0).then_some(ArgCmp {
                index,
                op,
                mask,
                datum: datum & mask,
            })
        })
        .collect();
    // libseccomp chains a rule's conditions in argument order.
    conds.sort_by_key(|c| c.index);
    Rule { conds, action }
}

fn cmp_op(op: SpecOp) -> CmpOp {
    match op {
        SpecOp::ScmpCmpNe => CmpOp::Ne,
        SpecOp::ScmpCmpLt => CmpOp::Lt,
        SpecOp::ScmpCmpLe => CmpOp::Le,
        SpecOp::ScmpCmpEq => CmpOp::Eq,
        SpecOp::ScmpCmpGe => CmpOp::Ge,
        SpecOp::ScmpCmpGt => CmpOp::Gt,
        SpecOp::ScmpCmpMaskedEq => CmpOp::MaskedEq,
    }
}

/// The order in which libseccomp's decision tree tries a syscall's rules,
/// which decides between overlapping rules with different actions: higher
/// argument numbers first, then EQ/NE/MASKED_EQ before LT/LE before GT/GE,
/// then larger values first (smaller for LT/LE); a rule that is a prefix of
/// another comes first. The sort is stable, so ties keep the profile order.
fn libseccomp_order(a: &Rule, b: &Rule) -> Ordering {
    let key = |c: &ArgCmp| {
        let op = match c.op {
            CmpOp::Eq | CmpOp::Ne | CmpOp::MaskedEq => 3,
            CmpOp::Lt | CmpOp::Le => 2,
            CmpOp::Ge | CmpOp::Gt => 1,
        };
        let datum = if op == 2 { !c.datum } else { c.datum };
        (c.index, op, datum)
    };
    for (x, y) in a.conds.iter().zip(&b.conds) {
        match key(y).cmp(&key(x)) {
            Ordering::Equal => continue,
            unequal => return unequal,
        }
    }
    a.conds.len().cmp(&b.conds.len())
}
