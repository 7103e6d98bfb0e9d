//! One failing `create` per setup step. Each must exit non-zero, name the
//! cause on stderr, and leave nothing behind: no state directory, no cgroup
//! directory, no host mount mentioning the bundle, no process.
//!
//! Wording shared by runc and hull is always asserted; hull's own wording is
//! asserted only when the runtime under test is hull.
//!
//! Run against the reference: `HULL_TEST_RUNTIME=/usr/sbin/runc cargo test -p hull --test failures`.

mod common;

use std::fs;

use common::{assert_no_leftovers, cgroup_dirs, host_mountinfo_mentioning, leaked_processes};
use common::{runtime, Ctx, Out};
use serde_json::json;

/// A context whose container has its own cgroup, so leaks there are visible.
fn ctx_with_cgroup(test: &str) -> Option<Ctx> {
    let mut ctx = Ctx::new(test)?;
    let path = ctx.cgroup_path();
    ctx.config["linux"]["cgroupsPath"] = json!(path);
    ctx.checker(&["sleep", "600"]);
    Some(ctx)
}

/// What a failure message must contain.
struct Expect<'a> {
    /// Substrings any runc-compatible runtime prints (runc included).
    always: &'a [&'a str],
    /// Substrings hull must print in addition (case-insensitive, any of them).
    hull_any: &'a [&'a str],
}

/// Runs create, which must fail as described, then checks for leftovers.
#[track_caller]
fn expect_create_failure(ctx: &Ctx, expect: Expect<'_>) -> Out {
    let out = ctx.create();
    out.assert_fail();
    assert!(!out.stderr.trim().is_empty(), "no error message:\n{out}");
    for s in expect.always {
        assert!(
            out.stderr.contains(s),
            "stderr should mention {s:?}:\n{out}"
        );
    }
    if runtime().is_hull && !expect.hull_any.is_empty() {
        let lower = out.stderr.to_lowercase();
        assert!(
            expect
                .hull_any
                .iter()
                .any(|s| lower.contains(&s.to_lowercase())),
            "stderr should mention one of {:?}:\n{out}",
            expect.hull_any
        );
    }
    assert_no_leftovers(ctx);
    out
}

#[test]
fn bad_mount_source() {
    let Some(mut ctx) = ctx_with_cgroup("fail-mount") else {
        return;
    };
    let missing = ctx.tmp.join("no-such-source");
    let mounts = ctx.config["mounts"].as_array_mut().expect("mounts");
    mounts.push(json!({
        "destination": "/mnt", "type": "bind", "source": missing, "options": ["rbind"]
    }));
    let missing = missing.to_string_lossy();
    expect_create_failure(
        &ctx,
        Expect {
            always: &[&missing],
            hull_any: &["mount"],
        },
    );
}

#[test]
fn cwd_is_a_regular_file() {
    let Some(mut ctx) = ctx_with_cgroup("fail-cwd") else {
        return;
    };
    ctx.config["process"]["cwd"] = json!("/bin/busybox");
    // runc: "mkdir /bin/busybox: not a directory"
    expect_create_failure(
        &ctx,
        Expect {
            always: &["/bin/busybox"],
            hull_any: &["cwd"],
        },
    );
}

#[test]
fn uid_not_mapped_in_user_namespace() {
    let Some(mut ctx) = ctx_with_cgroup("fail-unmapped") else {
        return;
    };
    let ns = ctx.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.push(json!({ "type": "user" }));
    let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    ctx.config["linux"]["uidMappings"] = map.clone();
    ctx.config["linux"]["gidMappings"] = map;
    ctx.config["process"]["user"]["uid"] = json!(70000);
    // runc: "cannot set uid to unmapped user in user namespace"
    expect_create_failure(
        &ctx,
        Expect {
            always: &["unmapped"],
            hull_any: &["70000"],
        },
    );
}

#[test]
fn missing_executable() {
    let Some(mut ctx) = ctx_with_cgroup("fail-exec") else {
        return;
    };
    ctx.set_args(&["/no-such-binary", "arg"]);
    // runc: `exec: "/no-such-binary": stat /no-such-binary: no such file or directory`
    let expect = Expect {
        always: &["/no-such-binary"],
        hull_any: &["no such file", "not found"],
    };
    expect_create_failure(&ctx, expect);
}

#[test]
fn invalid_json_syntax() {
    let Some(ctx) = ctx_with_cgroup("fail-syntax") else {
        return;
    };
    ctx.write_config();
    let path = ctx.bundle.join("config.json");
    let text = fs::read_to_string(&path).expect("read config");
    fs::write(&path, &text[..text.len() / 2]).expect("truncate config");
    let bundle = ctx.bundle.to_string_lossy();
    let out = ctx.rt(&["create", "--bundle", &bundle, &ctx.id]);
    out.assert_fail();
    // runc says only "unexpected EOF"; hull must name the file.
    if runtime().is_hull {
        assert!(
            out.stderr.contains("config.json"),
            "should name config.json:\n{out}"
        );
    } else {
        assert!(!out.stderr.trim().is_empty(), "no error message:\n{out}");
    }
    assert_no_leftovers(&ctx);
}

#[test]
fn wrong_type_names_the_field_path() {
    let Some(mut ctx) = ctx_with_cgroup("fail-type") else {
        return;
    };
    ctx.config["process"]["user"]["uid"] = json!("zero");
    // runc: "cannot unmarshal string into Go struct field User.process.user.uid of type uint32"
    expect_create_failure(
        &ctx,
        Expect {
            always: &["process.user.uid"],
            hull_any: &[],
        },
    );
}

#[test]
fn bad_cpuset_value() {
    let Some(mut ctx) = ctx_with_cgroup("fail-cpus") else {
        return;
    };
    if !std::path::Path::new("/sys/fs/cgroup/cpuset").is_dir() {
        eprintln!("SKIPPED bad_cpuset_value: no cpuset hierarchy");
        return;
    }
    ctx.config["linux"]["resources"]["cpu"] = json!({ "cpus": "999" });
    // runc: `failed to write "999": write .../cpuset.cpus: numerical result out of range`
    expect_create_failure(
        &ctx,
        Expect {
            always: &["999", "cpus"],
            hull_any: &["cpuset"],
        },
    );
}

#[test]
fn bad_memory_value() {
    let Some(mut ctx) = ctx_with_cgroup("fail-memory") else {
        return;
    };
    if !std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        eprintln!("SKIPPED bad_memory_value: no memory hierarchy");
        return;
    }
    // -1 means unlimited; other negative values are invalid.
    ctx.config["linux"]["resources"]["memory"] = json!({ "limit": -5 });
    // runc: `failed to write "-5": write .../memory.limit_in_bytes: invalid argument`
    expect_create_failure(
        &ctx,
        Expect {
            always: &["memory"],
            hull_any: &["-5"],
        },
    );
}

/// A container id that is already taken must be refused without touching the
/// existing container.
#[test]
fn duplicate_id() {
    let Some(ctx) = ctx_with_cgroup("fail-dup") else {
        return;
    };
    ctx.create().assert_ok();
    let pid = ctx.state()["pid"].as_u64().expect("pid");
    let out = ctx.create();
    out.assert_fail();
    assert!(
        out.stderr.contains("exists"),
        "should say the id exists:\n{out}"
    );
    let st = ctx.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"].as_u64(), Some(pid), "existing container replaced");
}

/// The leftover detectors themselves must see a live container; otherwise
/// the "nothing is left" assertions above would pass vacuously.
#[test]
fn leftover_detectors_see_a_live_container() {
    let Some(ctx) = ctx_with_cgroup("detector") else {
        return;
    };
    ctx.create().assert_ok();
    let pid = ctx.state()["pid"].as_u64().expect("pid") as u32;
    let procs = leaked_processes(&ctx);
    assert!(
        procs.iter().any(|(p, _)| *p == pid),
        "init {pid} not detected: {procs:?}"
    );
    assert!(
        !cgroup_dirs(&ctx.cgroup_path()).is_empty(),
        "cgroup not detected"
    );
    assert!(
        ctx.root.read_dir().expect("state root").next().is_some(),
        "no state dir"
    );
    // Container mounts live in the container's namespace, not the host's.
    assert!(host_mountinfo_mentioning(&ctx.tmp_tag()).is_empty());
}
