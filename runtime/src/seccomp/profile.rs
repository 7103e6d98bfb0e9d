//! Docker/containers-common seccomp profiles (the `seccomp.json` that
//! podman, CRI-O and Docker ship) turned into runtime-spec form for an x86_64
//! host, as containers/common's `seccomp.LoadProfile` does before a runtime
//! ever sees them. hull itself only takes runtime-spec configs; this serves
//! the tests and the benchmark, which use the Debian containers-common profile.

use serde_json::{json, Value};

use super::SeccompError;

/// Where Debian's golang-github-containers-common installs the profile.
pub const CONTAINERS_COMMON_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Go's name of this architecture, used by the profile's includes/excludes.
const GOARCH: &str = "amd64";
const NATIVE: &str = "SCMP_ARCH_X86_64";

/// Converts a Docker-format profile for a container whose bounding set is
/// `caps`. Rules are kept or dropped by their `includes`/`excludes` arches
/// and caps; `minKernel` conditions are taken as met.
pub fn from_docker_profile(
    profile: &[u8],
    caps: &[&str],
) -> Result<oci_spec::runtime::LinuxSeccomp, SeccompError> {
    let p: Value =
        serde_json::from_slice(profile).map_err(|source| SeccompError::Profile { source })?;
    let mut archs: Vec<Value> = p["architectures"].as_array().cloned().unwrap_or_default();
    for m in p["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == NATIVE {
            archs.push(m["architecture"].clone());
            archs.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let syscalls: Vec<Value> = p["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| applies(rule, caps))
        .map(|rule| {
            let mut out = json!({ "names": rule["names"], "action": rule["action"] });
            for key in ["errnoRet", "args"] {
                if !rule[key].is_null() {
                    out[key] = rule[key].clone();
                }
            }
            out
        })
        .collect();
    let mut spec = json!({ "defaultAction": p["defaultAction"], "architectures": archs, "syscalls": syscalls });
    for key in [
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if !p[key].is_null() {
            spec[key] = p[key].clone();
        }
    }
    serde_json::from_value(spec).map_err(|source| SeccompError::Profile { source })
}

fn applies(rule: &Value, caps: &[&str]) -> bool {
    let list = |filter: &str, key: &str| -> Vec<String> {
        let items = rule[filter][key].as_array().into_iter().flatten();
        items
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let has_cap = |c: &String| caps.contains(&c.as_str());
    let (inc_arches, inc_caps) = (list("includes", "arches"), list("includes", "caps"));
    let (exc_arches, exc_caps) = (list("excludes", "arches"), list("excludes", "caps"));
    !exc_arches.iter().any(|a| a == GOARCH)
        && !exc_caps.iter().any(has_cap)
        && (inc_arches.is_empty() || inc_arches.iter().any(|a| a == GOARCH))
        && inc_caps.iter().all(has_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_rules_by_arch_and_caps() {
        let profile = br#"{
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_CHROOT"]}}
            ]}"#;
        let spec = from_docker_profile(profile, &["CAP_KILL"]).unwrap();
        let names: Vec<String> = spec
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.names().join(","))
            .collect();
        assert_eq!(names, ["read", "arch_prctl", "chroot"]);
        assert_eq!(spec.syscalls().as_ref().unwrap()[2].errno_ret(), Some(1));
        assert_eq!(spec.architectures().as_ref().unwrap().len(), 3);
        assert_eq!(spec.default_errno_ret(), Some(38));
    }
}
