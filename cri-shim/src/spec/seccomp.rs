//! `linux.seccomp`: which profile a container gets.
//!
//! The security context's `seccomp` field wins; without it the deprecated
//! `seccomp_profile_path` string is read (`runtime/default`, `docker/default`,
//! `unconfined`, `localhost/<path>`). Neither set means unconfined, containerd's default
//! (kubelet sends RuntimeDefault explicitly when its SeccompDefault is on). A privileged
//! container is never filtered.
//!
//! Localhost profiles are the Docker/containers-common format Kubernetes documents,
//! which runtime-spec's `linux.seccomp` is a subset of: rules are kept or dropped by
//! their `includes`/`excludes` (architectures as Go names, capabilities), and `archMap`
//! adds the x86_64 sub-architectures. `minKernel` conditions are taken as met.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use super::seccomp_default::default_profile;
use super::security::Caps;
use super::SpecError;
use crate::api::{self, security_profile::ProfileType};

const SC: &str = "linux.security_context";

/// A profile file larger than this is refused (Docker's default profile is ~20 KiB).
const MAX_PROFILE: u64 = 4 << 20;

/// The profile for the container, `None` for unconfined.
// The deprecated `seccomp_profile_path` is read on purpose: older kubelets send only it.
#[allow(deprecated)]
pub fn select(
    sc: &api::LinuxContainerSecurityContext,
    caps: &Caps,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if sc.privileged {
        return Ok(None);
    }
    let (field, kind, path) = match &sc.seccomp {
        Some(p) => {
            let field = format!("{SC}.seccomp");
            let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
                SpecError::invalid(
                    format!("{field}.profile_type"),
                    p.profile_type,
                    "unknown profile type",
                )
            })?;
            (field, kind, p.localhost_ref.clone())
        }
        None => {
            let field = format!("{SC}.seccomp_profile_path");
            match sc.seccomp_profile_path.as_str() {
                "" | "unconfined" => return Ok(None),
                "runtime/default" | "docker/default" => {
                    (field, ProfileType::RuntimeDefault, String::new())
                }
                s => match s.strip_prefix("localhost/") {
                    Some(p) => (field, ProfileType::Localhost, p.to_string()),
                    None => return Err(SpecError::invalid(field, s, "unknown seccomp profile")),
                },
            }
        }
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => default_profile(caps).map(Some),
        ProfileType::Localhost => load(&field, Path::new(&path), caps).map(Some),
    }
}

/// Reads and converts a Localhost profile.
fn load(field: &str, path: &Path, caps: &Caps) -> Result<LinuxSeccomp, SpecError> {
    let read_err = |source| SpecError::SeccompRead {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    };
    if !path.is_absolute() {
        return Err(SpecError::invalid(
            field,
            path.display(),
            "a Localhost profile must be an absolute path",
        ));
    }
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() || meta.len() > MAX_PROFILE {
        return Err(read_err(std::io::Error::other(
            "not a regular file of at most 4 MiB",
        )));
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let parse_err = |source| SpecError::SeccompParse {
        field: field.to_string(),
        path: PathBuf::from(path),
        source,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(parse_err)?;
    serde_json::from_value(convert(&v, caps)).map_err(parse_err)
}

/// Go's name of this architecture, as Docker profiles' `includes.arches` use it.
const GOARCH: &str = "amd64";

/// Turns a Docker-format profile into runtime-spec form for this host and `caps`.
fn convert(p: &Value, caps: &Caps) -> Value {
    let mut archs: Vec<Value> = p["architectures"].as_array().cloned().unwrap_or_default();
    for m in p["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == "SCMP_ARCH_X86_64" {
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
        .filter(|r| applies(r, caps))
        .map(|r| {
            // Old profiles name one syscall in `name`.
            let names = if r["names"].is_null() && r["name"].is_string() {
                json!([r["name"]])
            } else {
                r["names"].clone()
            };
            let mut out = json!({ "names": names, "action": r["action"] });
            for key in ["errnoRet", "args"] {
                if !r[key].is_null() {
                    out[key] = r[key].clone();
                }
            }
            out
        })
        .collect();
    let mut out = p.clone();
    if let Some(o) = out.as_object_mut() {
        o.remove("archMap");
        o.insert("architectures".into(), Value::Array(archs));
        o.insert("syscalls".into(), Value::Array(syscalls));
    }
    out
}

fn applies(rule: &Value, caps: &Caps) -> bool {
    let list = |filter: &str, key: &str| -> Vec<String> {
        rule[filter][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let arch_ok = |a: &String| a == GOARCH;
    let (inc_arch, inc_caps) = (list("includes", "arches"), list("includes", "caps"));
    let (exc_arch, exc_caps) = (list("excludes", "arches"), list("excludes", "caps"));
    !exc_arch.iter().any(arch_ok)
        && !exc_caps.iter().any(|c| caps.has(c))
        && (inc_arch.is_empty() || inc_arch.iter().any(arch_ok))
        && inc_caps.iter().all(|c| caps.has(c))
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{Arch, LinuxSeccompAction};

    use super::*;
    use crate::spec::security::capabilities;
    use crate::spec::testutil::host;

    #[allow(deprecated)] // the old string field is under test too
    fn sc_with(
        profile: Option<(ProfileType, &str)>,
        path: &str,
    ) -> api::LinuxContainerSecurityContext {
        api::LinuxContainerSecurityContext {
            seccomp: profile.map(|(t, r)| api::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            seccomp_profile_path: path.into(),
            ..Default::default()
        }
    }

    fn pick(sc: &api::LinuxContainerSecurityContext) -> Result<Option<LinuxSeccomp>, SpecError> {
        let caps = capabilities(sc, &host()).unwrap();
        select(sc, &caps)
    }

    #[test]
    fn profile_kinds_and_deprecated_strings() {
        assert!(pick(&sc_with(None, "")).unwrap().is_none());
        assert!(pick(&sc_with(None, "unconfined")).unwrap().is_none());
        for s in ["runtime/default", "docker/default"] {
            let p = pick(&sc_with(None, s)).unwrap().unwrap();
            assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        }
        let rd = sc_with(Some((ProfileType::RuntimeDefault, "")), "unconfined");
        assert!(pick(&rd).unwrap().is_some(), "the new field wins");
        assert!(pick(&sc_with(Some((ProfileType::Unconfined, "")), ""))
            .unwrap()
            .is_none());
        let mut privileged = rd.clone();
        privileged.privileged = true;
        assert!(pick(&privileged).unwrap().is_none());
        let e = pick(&sc_with(None, "weird")).unwrap_err().to_string();
        assert!(
            e.contains("seccomp_profile_path") && e.contains("weird"),
            "{e}"
        );
    }

    #[test]
    fn localhost_profiles_load_and_convert() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]},
                           {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                            {"name":"getpid","action":"SCMP_ACT_ALLOW","comment":"old form"},
                            {"names":["set_tls"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["arm"]}},
                            {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
                            {"names":["chroot"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}}]}"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let got = pick(&sc_with(Some((ProfileType::Localhost, p)), ""))
            .unwrap()
            .unwrap();
        let names: Vec<String> = got
            .syscalls()
            .iter()
            .flatten()
            .map(|s| s.names().join(","))
            .collect();
        assert_eq!(names, ["read,write", "getpid", "chroot"]);
        assert_eq!(
            got.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
        );
        let old = pick(&sc_with(None, &format!("localhost/{p}")))
            .unwrap()
            .unwrap();
        assert_eq!(old, got);
    }

    #[test]
    fn localhost_errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.json");
        let e = pick(&sc_with(
            Some((ProfileType::Localhost, missing.to_str().unwrap())),
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.json") && e.contains("seccomp"), "{e}");
        let bad = d.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_EXPLODE"}"#).unwrap();
        let e = pick(&sc_with(
            Some((ProfileType::Localhost, bad.to_str().unwrap())),
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bad.json") && e.contains("not a valid profile"),
            "{e}"
        );
        let e = pick(&sc_with(Some((ProfileType::Localhost, "rel.json")), ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }
}
