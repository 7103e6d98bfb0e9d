//! The `linux.seccomp` object of runtime-spec features.md.

use serde_json::{json, Value};

use super::action::ACTION_NAMES;
use super::{FLAG_LOG, FLAG_NEW_LISTENER, FLAG_SPEC_ALLOW, FLAG_TSYNC, FLAG_WAIT_KILLABLE_RECV};

/// Flags hull knows, with what the kernel must accept for each to be usable.
/// WAIT_KILLABLE_RECV is only valid with NEW_LISTENER, so it is probed with it.
const FLAGS: &[(&str, u32)] = &[
    ("SECCOMP_FILTER_FLAG_TSYNC", FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", FLAG_SPEC_ALLOW),
    ("SECCOMP_FILTER_FLAG_LOG", FLAG_LOG),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER,
    ),
];

const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures hull's filters handle (x86_64 hosts only).
const ARCHS: &[&str] = &["SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"];

/// `linux.seccomp` for `hull features`. `supportedFlags` are the known flags
/// the running kernel accepts (probed without installing anything).
pub fn features() -> Value {
    let known: Vec<&str> = FLAGS.iter().map(|(name, _)| *name).collect();
    let supported: Vec<&str> = FLAGS
        .iter()
        .filter(|(_, bits)| crate::sys::seccomp_flags_supported(*bits))
        .map(|(name, _)| *name)
        .collect();
    json!({
        "enabled": true,
        "actions": ACTION_NAMES,
        "operators": OPERATORS,
        "archs": ARCHS,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_everything_implemented() {
        let f = super::features();
        assert_eq!(f["enabled"], true);
        assert_eq!(f["actions"].as_array().unwrap().len(), 9);
        assert_eq!(f["operators"].as_array().unwrap().len(), 7);
        assert_eq!(f["knownFlags"].as_array().unwrap().len(), 4);
        let supported = f["supportedFlags"].as_array().unwrap();
        assert!(supported
            .iter()
            .all(|s| f["knownFlags"].as_array().unwrap().contains(s)));
    }
}
