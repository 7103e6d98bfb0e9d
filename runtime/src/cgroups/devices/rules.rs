//! The effective device policy of a list of OCI device rules, as the cgroup v1
//! devices controller would hold it after the rules were written to
//! devices.allow and devices.deny in order: a default (allow or deny) and
//! exceptions to it, each a device pattern with the accesses it covers.
//!
//! The semantics are the kernel's (security/device_cgroup.c) as runc's devices
//! emulator reproduces them (github.com/opencontainers/cgroups, devices/):
//! - a rule of type `a` resets the policy: allow-all or deny-all, no exceptions;
//! - a rule agreeing with the default removes the accesses it names from the
//!   exception with exactly its pattern;
//! - a rule disagreeing with the default adds its accesses to that exception.
//!
//! As runc does, removing accesses from one device while a wildcard exception
//! still grants them is refused: v1 would silently ignore it.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::DeviceError;

/// Access bits as `struct bpf_cgroup_dev_ctx` encodes them (BPF_DEVCG_ACC_*).
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
pub const ALL: u8 = MKNOD | READ | WRITE;

/// Device kinds as `struct bpf_cgroup_dev_ctx` encodes them (BPF_DEVCG_DEV_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Block = 1,
    Char = 2,
}

/// A device pattern: kind, and major and minor numbers (`None` = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pattern {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// One rule: allow or deny `access` on devices matching `pattern`
/// (`None`: type `a`, every device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub pattern: Option<Pattern>,
    pub access: u8,
}

impl Rule {
    /// `a *:* rwm` denied: where a policy starts.
    pub const fn deny_everything() -> Self {
        Self {
            allow: false,
            pattern: None,
            access: ALL,
        }
    }

    /// An allow rule for `kind major:minor`, used for hull's built-in list.
    const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Self {
        Self {
            allow: true,
            pattern: Some(Pattern { kind, major, minor }),
            access,
        }
    }

    /// Parses `linux.resources.devices[index]`.
    pub fn from_oci(rule: &LinuxDeviceCgroup, index: usize) -> Result<Self, DeviceError> {
        let kind = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(Kind::Block),
            LinuxDeviceType::C => Some(Kind::Char),
            other => {
                return Err(DeviceError::Type {
                    index,
                    typ: other.as_str().to_owned(),
                })
            }
        };
        let access = parse_access(rule.access().as_deref().unwrap_or(""), index)?;
        let pattern = match kind {
            None => None,
            Some(kind) => Some(Pattern {
                kind,
                major: number(rule.major(), index, "major")?,
                minor: number(rule.minor(), index, "minor")?,
            }),
        };
        Ok(Self {
            allow: rule.allow(),
            pattern,
            access,
        })
    }
}

fn parse_access(text: &str, index: usize) -> Result<u8, DeviceError> {
    text.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | READ),
        'w' => Ok(acc | WRITE),
        'm' => Ok(acc | MKNOD),
        _ => Err(DeviceError::Access {
            index,
            access: text.to_owned(),
        }),
    })
}

/// A major or minor number: absent or -1 is the wildcard.
fn number(
    value: Option<i64>,
    index: usize,
    field: &'static str,
) -> Result<Option<u32>, DeviceError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| DeviceError::Number {
            index,
            field,
            value: n,
        }),
    }
}

/// The devices every container may use whatever its rules say, appended after
/// them: mknod of any device, and /dev/null, zero, full, tty, urandom, random,
/// console, the pty devices and tun. This is runc's `AllowedDevices` list
/// (libcontainer/specconv), which libcgroups also writes on cgroup v1.
pub const BUILTIN: [Rule; 12] = [
    Rule::allow(Kind::Char, None, None, MKNOD),
    Rule::allow(Kind::Block, None, None, MKNOD),
    Rule::allow(Kind::Char, Some(1), Some(3), ALL),
    Rule::allow(Kind::Char, Some(1), Some(5), ALL),
    Rule::allow(Kind::Char, Some(1), Some(7), ALL),
    Rule::allow(Kind::Char, Some(5), Some(0), ALL),
    Rule::allow(Kind::Char, Some(1), Some(9), ALL),
    Rule::allow(Kind::Char, Some(1), Some(8), ALL),
    Rule::allow(Kind::Char, Some(5), Some(1), ALL),
    Rule::allow(Kind::Char, Some(136), None, ALL),
    Rule::allow(Kind::Char, Some(5), Some(2), ALL),
    Rule::allow(Kind::Char, Some(10), Some(200), ALL),
];

/// The policy: a default and the exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// True: every access not excepted is allowed (a v1 "black-list").
    pub default_allow: bool,
    /// Exceptions (denials when `default_allow`, grants otherwise), each with
    /// a non-empty access mask.
    pub exceptions: BTreeMap<Pattern, u8>,
}

impl Policy {
    /// Deny everything: where runc starts too (its emulator's zero value).
    pub fn deny_all() -> Self {
        Self {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// Applies `rule` (from `linux.resources.devices[index]`, or hull's
    /// built-in list when `index` is `None`).
    pub fn apply(&mut self, rule: &Rule, index: Option<usize>) -> Result<(), DeviceError> {
        let Some(pattern) = rule.pattern else {
            *self = Self {
                default_allow: rule.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        };
        if rule.allow != self.default_allow {
            if rule.access != 0 {
                *self.exceptions.entry(pattern).or_insert(0) |= rule.access;
            }
            return Ok(());
        }
        self.check_no_hole(pattern, rule.access, index)?;
        if let Some(acc) = self.exceptions.get_mut(&pattern) {
            *acc &= !rule.access;
            if *acc == 0 {
                self.exceptions.remove(&pattern);
            }
        }
        Ok(())
    }

    /// Refuses to take `access` away from `pattern` while a wider exception
    /// (a wildcard in major, minor or both) still holds some of it.
    fn check_no_hole(
        &self,
        p: Pattern,
        access: u8,
        index: Option<usize>,
    ) -> Result<(), DeviceError> {
        let wider = [
            Pattern { major: None, ..p },
            Pattern { minor: None, ..p },
            Pattern {
                major: None,
                minor: None,
                ..p
            },
        ];
        for w in wider.into_iter().filter(|w| *w != p) {
            if self.exceptions.get(&w).is_some_and(|a| a & access != 0) {
                return Err(DeviceError::Hole {
                    rule: describe(p, access),
                    wildcard: describe(w, self.exceptions[&w]),
                    index,
                });
            }
        }
        Ok(())
    }
}

/// `c 1:* rw`, as devices.list writes a rule.
pub fn describe(p: Pattern, access: u8) -> String {
    let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
    let kind = match p.kind {
        Kind::Block => 'b',
        Kind::Char => 'c',
    };
    let mut acc = String::new();
    for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
        if access & bit != 0 {
            acc.push(c);
        }
    }
    format!("{kind} {}:{} {acc}", num(p.major), num(p.minor))
}
