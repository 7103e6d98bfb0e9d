//! Device policy and program tests: exact instruction sequences for small
//! policies, and a small interpreter running compiled programs the way the
//! kernel would for representative rule sets.

use oci_spec::runtime::LinuxDeviceCgroup;
use serde_json::json;

use super::program::compile;
use super::rules::{Kind, Pattern, Policy, ALL, MKNOD, READ, WRITE};
use super::{policy, DeviceError};
use crate::sys::BpfInsn;

fn rules(v: serde_json::Value) -> Vec<LinuxDeviceCgroup> {
    serde_json::from_value(v).expect("device rules")
}

/// Runs `prog` on a device access and returns its verdict (1 allow, 0 deny).
/// Knows exactly the opcodes `compile` emits; panics on any other.
fn run(prog: &[BpfInsn], kind: Kind, access: u8, major: u32, minor: u32) -> u32 {
    let ctx = [(u32::from(access) << 16) | kind as u32, major, minor];
    let mut r = [0u32; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as u32;
        pc += 1;
        match i.code {
            0x61 => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = ctx[(i.off / 4) as usize];
            }
            0x54 => r[dst] &= imm,
            0x74 => r[dst] >>= imm,
            0xb4 => r[dst] = imm,
            0xbc => r[dst] = r[src],
            0x16 | 0x56 => {
                if (r[dst] == imm) == (i.code == 0x16) {
                    pc += i.off as usize;
                }
            }
            0x95 => return r[0],
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

fn program(v: serde_json::Value) -> Vec<BpfInsn> {
    compile(&policy(&rules(v)).expect("valid rules"))
}

/// (code, dst, src, off, imm) of each instruction, for readable comparisons.
fn shape(prog: &[BpfInsn]) -> Vec<(u8, u8, u8, i16, i32)> {
    prog.iter()
        .map(|i| (i.code, i.regs & 0xf, i.regs >> 4, i.off, i.imm))
        .collect()
}

const PROLOGUE: [(u8, u8, u8, i16, i32); 6] = [
    (0x61, 2, 1, 0, 0),
    (0x54, 2, 0, 0, 0xffff),
    (0x61, 3, 1, 0, 0),
    (0x74, 3, 0, 0, 16),
    (0x61, 4, 1, 4, 0),
    (0x61, 5, 1, 8, 0),
];

#[test]
fn allow_list_instructions() {
    let mut policy = Policy::deny_all();
    policy.exceptions.insert(
        Pattern {
            kind: Kind::Block,
            major: Some(8),
            minor: None,
        },
        READ,
    );
    policy.exceptions.insert(
        Pattern {
            kind: Kind::Char,
            major: Some(1),
            minor: Some(3),
        },
        ALL,
    );
    let mut want = PROLOGUE.to_vec();
    want.extend([
        // b 8:* r: kind, access ⊆ r, major.
        (0x56, 2, 0, 6, 1),
        (0xbc, 0, 3, 0, 0),
        (0x54, 0, 0, 0, i32::from(MKNOD | WRITE)),
        (0x56, 0, 0, 3, 0),
        (0x56, 4, 0, 2, 8),
        (0xb4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
        // c 1:3 rwm: no access test.
        (0x56, 2, 0, 4, 2),
        (0x56, 4, 0, 3, 1),
        (0x56, 5, 0, 2, 3),
        (0xb4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
        // default: deny.
        (0xb4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
    ]);
    assert_eq!(shape(&compile(&policy)), want);
}

#[test]
fn deny_list_instructions() {
    let mut policy = Policy::deny_all();
    policy.default_allow = true;
    policy.exceptions.insert(
        Pattern {
            kind: Kind::Char,
            major: None,
            minor: Some(7),
        },
        WRITE,
    );
    let mut want = PROLOGUE.to_vec();
    want.extend([
        (0x56, 2, 0, 6, 2),
        (0xbc, 0, 3, 0, 0),
        (0x54, 0, 0, 0, i32::from(WRITE)),
        (0x16, 0, 0, 3, 0),
        (0x56, 5, 0, 2, 7),
        (0xb4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        (0xb4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
    ]);
    assert_eq!(shape(&compile(&policy)), want);
}

/// runc's default config: deny all, then the built-in list.
#[test]
fn deny_all_keeps_only_the_builtin_devices() {
    let p = program(json!([{ "allow": false, "access": "rwm" }]));
    let rw = READ | WRITE;
    assert_eq!(run(&p, Kind::Char, rw, 1, 3), 1, "/dev/null");
    assert_eq!(run(&p, Kind::Char, rw, 136, 4), 1, "/dev/pts/4");
    assert_eq!(run(&p, Kind::Char, rw, 10, 200), 1, "/dev/net/tun");
    assert_eq!(run(&p, Kind::Block, MKNOD, 8, 0), 1, "mknod of any device");
    assert_eq!(run(&p, Kind::Block, READ, 8, 0), 0, "a host disk");
    assert_eq!(run(&p, Kind::Char, READ, 1, 1), 0, "/dev/mem");
    assert_eq!(
        run(&p, Kind::Block, READ, 1, 3),
        0,
        "block 1:3 is not /dev/null"
    );
}

#[test]
fn no_rules_is_deny_all_plus_builtin() {
    let p = program(json!([]));
    assert_eq!(run(&p, Kind::Char, READ, 1, 9), 1);
    assert_eq!(run(&p, Kind::Block, READ, 8, 0), 0);
}

#[test]
fn grants_must_cover_every_requested_access() {
    let p = program(json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "b", "major": 1, "minor": 0, "access": "r" },
        { "allow": true, "type": "b", "major": 1, "minor": -1, "access": "w" }
    ]));
    assert_eq!(run(&p, Kind::Block, READ, 1, 0), 1);
    assert_eq!(
        run(&p, Kind::Block, WRITE, 1, 0),
        1,
        "via the wildcard minor"
    );
    assert_eq!(
        run(&p, Kind::Block, READ | WRITE, 1, 0),
        0,
        "no single rule grants rw"
    );
    assert_eq!(run(&p, Kind::Block, READ, 1, 1), 0);
    assert_eq!(run(&p, Kind::Block, WRITE, 1, 1), 1);
}

#[test]
fn denials_match_any_requested_access() {
    let p = program(json!([
        { "allow": true, "access": "rwm" },
        { "allow": false, "type": "c", "major": 1, "minor": 1, "access": "w" }
    ]));
    assert_eq!(run(&p, Kind::Char, READ, 1, 1), 1);
    assert_eq!(run(&p, Kind::Char, WRITE, 1, 1), 0);
    assert_eq!(
        run(&p, Kind::Char, READ | WRITE, 1, 1),
        0,
        "rw includes the denied w"
    );
    assert_eq!(run(&p, Kind::Block, READ | WRITE, 8, 0), 1);
}

/// Later rules win: an allow after a deny of the same device removes the denial.
#[test]
fn rules_apply_in_order() {
    let p = program(json!([
        { "allow": true, "access": "rwm" },
        { "allow": false, "type": "b", "major": 8, "minor": 0, "access": "rw" },
        { "allow": true, "type": "b", "major": 8, "minor": 0, "access": "r" }
    ]));
    assert_eq!(run(&p, Kind::Block, READ, 8, 0), 1);
    assert_eq!(run(&p, Kind::Block, WRITE, 8, 0), 0);
    // A type-a rule resets everything before it.
    let p = program(json!([
        { "allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm" },
        { "allow": false, "type": "a", "major": 8, "access": "r" }
    ]));
    assert_eq!(run(&p, Kind::Block, READ | WRITE, 8, 0), 0);
}

#[test]
fn large_device_numbers_compare_exactly() {
    let p = program(json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "major": 4_294_967_295u64, "minor": 2_147_483_648u64, "access": "rw" }
    ]));
    assert_eq!(run(&p, Kind::Char, READ, u32::MAX, 1 << 31), 1);
    assert_eq!(run(&p, Kind::Char, READ, u32::MAX, 0), 0);
}

#[test]
fn punching_a_hole_in_a_wildcard_is_refused() {
    let err = policy(&rules(json!([
        { "allow": true, "access": "rwm" },
        { "allow": false, "type": "c", "major": 1, "access": "rw" },
        { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "r" }
    ])))
    .unwrap_err();
    assert!(
        matches!(err, DeviceError::Hole { index: Some(2), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("[c 1:* rw]"), "{err}");
}

#[test]
fn bad_rules_name_the_field() {
    let bad = [
        (
            json!([{ "allow": true, "type": "u", "access": "r" }]),
            "devices[0].type",
        ),
        (
            json!([{ "allow": true, "type": "c", "access": "rx" }]),
            "devices[0].access",
        ),
        (
            json!([{ "allow": true, "type": "c", "major": -2, "access": "r" }]),
            "devices[0].major",
        ),
        (
            json!([{ "allow": true }, { "allow": true, "type": "b", "minor": 4_294_967_296u64 }]),
            "devices[1].minor",
        ),
    ];
    for (v, field) in bad {
        let err = policy(&rules(v)).unwrap_err().to_string();
        assert!(err.contains(field), "{err} should name {field}");
    }
}
