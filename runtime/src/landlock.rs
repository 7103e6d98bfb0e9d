//! Landlock for the container process, from the annotation `run.oci.hull.landlock`.
//!
//! runtime-spec has no Landlock field yet (PR #1241 proposes one and is unmerged), so hull
//! reads a JSON ruleset from an annotation; docs/landlock.md documents the format. Parsing
//! is pure and names the JSON path of each error. Enforcing builds the ruleset, adds one
//! `path_beneath` rule per path (opened `O_PATH` in the container, after `pivot_root`) and
//! one `net_port` rule per port, then calls `landlock_restrict_self`.
//!
//! Kernels support Landlock in ABI versions; each adds rights. `best_effort` drops the
//! rights the running kernel lacks (and logs them); `hard_requirement` (the default) fails.

use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::sys;

/// The annotation carrying the ruleset.
pub const ANNOTATION: &str = "run.oci.hull.landlock";

/// Errors parsing or enforcing a Landlock ruleset.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("invalid landlock ruleset at {path}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid landlock ruleset at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("landlock is not available on this kernel, required by a hard_requirement ruleset")]
    Unavailable,
    #[error("landlock ABI {abi} lacks {rights}, required by a hard_requirement ruleset")]
    Incompatible { abi: u32, rights: String },
    #[error("cannot create the landlock ruleset")]
    Create(#[source] io::Error),
    #[error("cannot open landlock rule path {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot add the landlock rule for {path}")]
    AddPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot add the landlock rule for port {port}")]
    AddPort {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("cannot enforce the landlock ruleset without no_new_privs or CAP_SYS_ADMIN")]
    NeedsNoNewPrivs(#[source] io::Error),
    #[error("cannot enforce the landlock ruleset")]
    Restrict(#[source] io::Error),
}

/// One access right: its name in the annotation, its bit, the ABI that introduced it.
#[derive(Debug, Clone, Copy)]
pub struct Right {
    pub name: &'static str,
    pub bit: u64,
    pub abi: u32,
}

const fn right(name: &'static str, shift: u32, abi: u32) -> Right {
    Right {
        name,
        bit: 1 << shift,
        abi,
    }
}

/// `LANDLOCK_ACCESS_FS_*`, lowercased without the prefix.
pub const FS_RIGHTS: &[Right] = &[
    right("execute", 0, 1),
    right("write_file", 1, 1),
    right("read_file", 2, 1),
    right("read_dir", 3, 1),
    right("remove_dir", 4, 1),
    right("remove_file", 5, 1),
    right("make_char", 6, 1),
    right("make_dir", 7, 1),
    right("make_reg", 8, 1),
    right("make_sock", 9, 1),
    right("make_fifo", 10, 1),
    right("make_block", 11, 1),
    right("make_sym", 12, 1),
    right("refer", 13, 2),
    right("truncate", 14, 3),
    right("ioctl_dev", 15, 5),
];

/// `LANDLOCK_ACCESS_NET_*`.
pub const NET_RIGHTS: &[Right] = &[right("bind_tcp", 0, 4), right("connect_tcp", 1, 4)];

/// `LANDLOCK_SCOPE_*`.
pub const SCOPES: &[Right] = &[right("abstract_unix_socket", 0, 6), right("signal", 1, 6)];

/// The rights a rule on a non-directory may carry (the kernel refuses others with EINVAL).
const FILE_RIGHTS: u64 = 1 | 1 << 1 | 1 << 2 | 1 << 14 | 1 << 15;

/// What to do when the kernel's Landlock ABI lacks rights the ruleset handles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// Enforce what the kernel supports, log what was dropped; without Landlock at all,
    /// run unconfined (with a warning).
    BestEffort,
    /// Fail unless every handled right and scope is supported.
    #[default]
    HardRequirement,
}

/// A parsed ruleset. Access masks are Landlock bit masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub handled_fs: u64,
    pub handled_net: u64,
    pub scoped: u64,
    pub rules: Vec<PathRule>,
    pub net_rules: Vec<NetRule>,
    pub compatibility: Compatibility,
}

/// Allows `access` beneath each of `paths` (container paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub paths: Vec<PathBuf>,
    pub access: u64,
    /// Skip paths that do not exist instead of failing.
    pub optional: bool,
}

/// Allows `access` for TCP `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRule {
    pub port: u16,
    pub access: u64,
}

/// A kind of right, for deserialising names.
trait Table {
    const RIGHTS: &'static [Right];
    const WHAT: &'static str;
}
struct Fs;
struct Net;
struct Scope;
impl Table for Fs {
    const RIGHTS: &'static [Right] = FS_RIGHTS;
    const WHAT: &'static str = "filesystem access right";
}
impl Table for Net {
    const RIGHTS: &'static [Right] = NET_RIGHTS;
    const WHAT: &'static str = "network access right";
}
impl Table for Scope {
    const RIGHTS: &'static [Right] = SCOPES;
    const WHAT: &'static str = "scope";
}

/// One right named in the annotation, resolved to its bit while deserialising, so that
/// an unknown name is reported at its own JSON path.
struct Bit<T>(u64, PhantomData<T>);

impl<'de, T: Table> Deserialize<'de> for Bit<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match T::RIGHTS.iter().find(|r| r.name == name) {
            Some(r) => Ok(Bit(r.bit, PhantomData)),
            None => {
                let known: Vec<&str> = T::RIGHTS.iter().map(|r| r.name).collect();
                Err(D::Error::custom(format!(
                    "unknown {} {name:?}, expected one of: {}",
                    T::WHAT,
                    known.join(", ")
                )))
            }
        }
    }
}

fn mask<T>(bits: &[Bit<T>]) -> u64 {
    bits.iter().fold(0, |m, b| m | b.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRuleset {
    #[serde(default)]
    handled_access_fs: Vec<Bit<Fs>>,
    #[serde(default)]
    handled_access_net: Vec<Bit<Net>>,
    #[serde(default)]
    scoped: Vec<Bit<Scope>>,
    #[serde(default)]
    rules: Vec<RawPathRule>,
    #[serde(default)]
    net_rules: Vec<RawNetRule>,
    #[serde(default)]
    compatibility: Compatibility,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathRule {
    paths: Vec<PathBuf>,
    access: Vec<Bit<Fs>>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetRule {
    port: u16,
    access: Vec<Bit<Net>>,
}

fn invalid(path: String, reason: impl Into<String>) -> LandlockError {
    LandlockError::Invalid {
        path,
        reason: reason.into(),
    }
}

/// Parses the annotation's JSON. Pure: touches neither the kernel nor the filesystem.
pub fn parse(annotation: &str) -> Result<Ruleset, LandlockError> {
    let de = &mut serde_json::Deserializer::from_str(annotation);
    let raw: RawRuleset =
        serde_path_to_error::deserialize(de).map_err(|e| LandlockError::Json {
            path: e.path().to_string(),
            source: e.into_inner(),
        })?;
    let handled_fs = mask(&raw.handled_access_fs);
    let handled_net = mask(&raw.handled_access_net);
    let scoped = mask(&raw.scoped);
    if handled_fs | handled_net | scoped == 0 {
        return Err(invalid(
            ".".into(),
            "the ruleset handles no access right and no scope, so it would restrict nothing",
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        check_access(
            &format!("rules[{i}]"),
            &r.access,
            handled_fs,
            "handledAccessFs",
        )?;
        if r.paths.is_empty() {
            return Err(invalid(format!("rules[{i}].paths"), "no path given"));
        }
        if let Some(j) = r.paths.iter().position(|p| !p.is_absolute()) {
            let path = format!("rules[{i}].paths[{j}]");
            return Err(invalid(path, "paths must be absolute (container paths)"));
        }
        rules.push(PathRule {
            paths: r.paths,
            access: mask(&r.access),
            optional: r.optional,
        });
    }
    let mut net_rules = Vec::with_capacity(raw.net_rules.len());
    for (i, r) in raw.net_rules.iter().enumerate() {
        check_access(
            &format!("netRules[{i}]"),
            &r.access,
            handled_net,
            "handledAccessNet",
        )?;
        net_rules.push(NetRule {
            port: r.port,
            access: mask(&r.access),
        });
    }
    Ok(Ruleset {
        handled_fs,
        handled_net,
        scoped,
        rules,
        net_rules,
        compatibility: raw.compatibility,
    })
}

/// A rule's access must be non-empty and handled by the ruleset (the kernel refuses
/// anything else with ENOMSG or EINVAL; we say which entry is wrong instead).
fn check_access<T: Table>(
    at: &str,
    access: &[Bit<T>],
    handled: u64,
    field: &str,
) -> Result<(), LandlockError> {
    if access.is_empty() {
        return Err(invalid(format!("{at}.access"), "no access right given"));
    }
    if let Some(k) = access.iter().position(|b| b.0 & handled == 0) {
        let name = names(T::RIGHTS, access[k].0).join("");
        let reason = format!("{name:?} is not in {field}: a rule can only allow handled rights");
        return Err(invalid(format!("{at}.access[{k}]"), reason));
    }
    Ok(())
}

/// Names of the bits of `bits` in `table`.
fn names(table: &[Right], bits: u64) -> Vec<&'static str> {
    table
        .iter()
        .filter(|r| r.bit & bits != 0)
        .map(|r| r.name)
        .collect()
}

/// The bits of `table` that ABI `abi` supports.
fn supported(table: &[Right], abi: u32) -> u64 {
    table
        .iter()
        .filter(|r| r.abi <= abi)
        .fold(0, |m, r| m | r.bit)
}

/// What a ruleset becomes on a kernel of a given ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub attr: sys::LandlockRulesetAttr,
    /// Names of handled rights and scopes that were dropped, for the log.
    pub dropped: Vec<&'static str>,
}

impl Effective {
    /// True when nothing is left to enforce.
    pub fn is_empty(&self) -> bool {
        self.attr == sys::LandlockRulesetAttr::default()
    }
}

impl Ruleset {
    /// The ruleset as a kernel of Landlock ABI `abi` (0: no Landlock) can enforce it.
    /// Pure. With `hard_requirement`, any right the ABI lacks is an error.
    pub fn for_abi(&self, abi: u32) -> Result<Effective, LandlockError> {
        let fs = self.handled_fs & supported(FS_RIGHTS, abi);
        let net = self.handled_net & supported(NET_RIGHTS, abi);
        let scoped = self.scoped & supported(SCOPES, abi);
        let mut dropped = names(FS_RIGHTS, self.handled_fs & !fs);
        dropped.extend(names(NET_RIGHTS, self.handled_net & !net));
        dropped.extend(names(SCOPES, self.scoped & !scoped));
        if self.compatibility == Compatibility::HardRequirement {
            if abi == 0 {
                return Err(LandlockError::Unavailable);
            }
            if !dropped.is_empty() {
                let rights = dropped.join(", ");
                return Err(LandlockError::Incompatible { abi, rights });
            }
        }
        Ok(Effective {
            attr: sys::LandlockRulesetAttr {
                handled_access_fs: fs,
                handled_access_net: net,
                scoped,
            },
            dropped,
        })
    }

    /// Builds the ruleset and confines the calling thread, and whatever it execs, to it.
    ///
    /// Call it in the container, after `pivot_root` (paths are container paths), with
    /// no_new_privs set or CAP_SYS_ADMIN in the user namespace still held.
    pub fn enforce(&self) -> Result<(), LandlockError> {
        let abi = abi_version().unwrap_or(0);
        let eff = self.for_abi(abi)?;
        if !eff.dropped.is_empty() {
            tracing::warn!(
                "landlock ABI {abi} lacks {}: enforcing the ruleset without them",
                eff.dropped.join(", ")
            );
        }
        if eff.is_empty() {
            tracing::warn!("landlock: nothing of the ruleset is enforceable on ABI {abi}");
            return Ok(());
        }
        let ruleset = sys::landlock_create_ruleset(&eff.attr).map_err(LandlockError::Create)?;
        for rule in &self.rules {
            add_path_rule(ruleset.as_fd(), rule, eff.attr.handled_access_fs)?;
        }
        for rule in &self.net_rules {
            let access = rule.access & eff.attr.handled_access_net;
            if access != 0 {
                sys::landlock_add_port_rule(ruleset.as_fd(), rule.port, access).map_err(
                    |source| LandlockError::AddPort {
                        port: rule.port,
                        source,
                    },
                )?;
            }
        }
        sys::landlock_restrict_self(ruleset.as_fd()).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                LandlockError::NeedsNoNewPrivs(e)
            } else {
                LandlockError::Restrict(e)
            }
        })
    }
}

/// Adds one `path_beneath` rule per path of `rule`, with the rule's rights that `handled`
/// still holds. Non-directories get only the file rights (the rest cannot apply to them).
fn add_path_rule(
    ruleset: std::os::fd::BorrowedFd<'_>,
    rule: &PathRule,
    handled: u64,
) -> Result<(), LandlockError> {
    let access = rule.access & handled;
    if access == 0 {
        return Ok(());
    }
    for path in &rule.paths {
        let file = match open_rule_path(path) {
            Ok(f) => f,
            Err(e) if rule.optional && e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                let path = path.clone();
                return Err(LandlockError::Open { path, source });
            }
        };
        let is_dir = file.metadata().map(|m| m.is_dir()).map_err(|source| {
            let path = path.clone();
            LandlockError::Open { path, source }
        })?;
        let access = if is_dir { access } else { access & FILE_RIGHTS };
        if access == 0 {
            continue;
        }
        sys::landlock_add_path_rule(ruleset, file.as_fd(), access).map_err(|source| {
            let path = path.clone();
            LandlockError::AddPath { path, source }
        })?;
    }
    Ok(())
}

/// Opens a rule path `O_PATH` from the process root. Symlinks are followed (the root is
/// the container's by now), magic links (`/proc/*/fd/*`, `/proc/*/root`) are not.
fn open_rule_path(path: &Path) -> io::Result<std::fs::File> {
    let fd = sys::openat2(
        sys::cwd(),
        path,
        libc::O_PATH,
        0,
        sys::RESOLVE_NO_MAGICLINKS,
    )?;
    Ok(std::fs::File::from(fd))
}

/// The Landlock ABI version of the running kernel, or `None` when Landlock is not built
/// in or disabled at boot.
pub fn abi_version() -> Option<u32> {
    sys::landlock_abi_version().ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::report::chain;

    fn err(json: &str) -> String {
        chain(&parse(json).expect_err(json))
    }

    fn fs(names: &[&str]) -> u64 {
        names
            .iter()
            .map(|n| FS_RIGHTS.iter().find(|r| r.name == *n).unwrap().bit)
            .fold(0, |m, b| m | b)
    }

    #[test]
    fn parses_a_full_ruleset() {
        let r = parse(
            r#"{"handledAccessFs":["read_file","write_file","execute","read_dir"],
                "rules":[{"paths":["/usr","/bin"],"access":["read_file","execute","read_dir"]},
                         {"paths":["/opt"],"access":["read_file"],"optional":true}],
                "handledAccessNet":["bind_tcp","connect_tcp"],
                "netRules":[{"port":80,"access":["connect_tcp"]}],
                "scoped":["signal"],
                "compatibility":"best_effort"}"#,
        )
        .unwrap();
        assert_eq!(
            r.handled_fs,
            fs(&["read_file", "write_file", "execute", "read_dir"])
        );
        assert_eq!(r.handled_net, 0b11);
        assert_eq!(r.scoped, 0b10);
        assert_eq!(
            r.rules[0].paths,
            [PathBuf::from("/usr"), PathBuf::from("/bin")]
        );
        assert_eq!(r.rules[0].access, fs(&["read_file", "execute", "read_dir"]));
        assert!(!r.rules[0].optional && r.rules[1].optional);
        assert_eq!(
            r.net_rules,
            [NetRule {
                port: 80,
                access: 0b10
            }]
        );
        assert_eq!(r.compatibility, Compatibility::BestEffort);
    }

    #[test]
    fn hard_requirement_is_the_default() {
        let r = parse(r#"{"handledAccessFs":["make_sym"]}"#).unwrap();
        assert_eq!(r.compatibility, Compatibility::HardRequirement);
        assert!(r.rules.is_empty() && r.net_rules.is_empty());
    }

    #[test]
    fn unknown_names_are_reported_at_their_path() {
        let e = err(
            r#"{"handledAccessFs":["read_file"],"rules":[{"paths":["/"],"access":["read_file","fly"]}]}"#,
        );
        assert!(e.starts_with("invalid landlock ruleset at rules[0].access[1]: unknown filesystem access right \"fly\", expected one of: execute, "), "{e}");
        let e = err(r#"{"handledAccessNet":["bind_udp"]}"#);
        assert!(
            e.contains("at handledAccessNet[0]: unknown network access right \"bind_udp\""),
            "{e}"
        );
        let e = err(r#"{"scoped":["ptrace"]}"#);
        assert!(e.contains("at scoped[0]: unknown scope \"ptrace\""), "{e}");
        let e = err(r#"{"handledAccessFs":["read_file"],"compatibility":"maybe"}"#);
        assert!(
            e.contains("at compatibility: unknown variant `maybe`"),
            "{e}"
        );
    }

    #[test]
    fn structural_errors_name_the_path() {
        for (json, at) in [
            (
                r#"{"handledAccessFs":["read_file"],"rulez":[]}"#,
                "at rulez: unknown field `rulez`",
            ),
            (
                r#"{"handledAccessFs":"read_file"}"#,
                "at handledAccessFs: invalid type",
            ),
            (
                r#"{"handledAccessNet":["bind_tcp"],"netRules":[{"port":70000,"access":["bind_tcp"]}]}"#,
                "at netRules[0].port: invalid value: integer `70000`",
            ),
            (
                r#"{"handledAccessFs":["read_file"],"rules":[{"access":["read_file"]}]}"#,
                "at rules[0]: missing field `paths`",
            ),
            (r#"{"handledAccessFs":["#, "at handledAccessFs: EOF"),
        ] {
            let e = err(json);
            assert!(e.contains(at), "{json}: {e}");
        }
    }

    #[test]
    fn semantic_errors_name_the_path() {
        for (json, want) in [
            (r#"{}"#, "at .: the ruleset handles no access right"),
            (
                r#"{"handledAccessFs":["read_file"],"rules":[{"paths":["/a"],"access":["read_file","execute"]}]}"#,
                "at rules[0].access[1]: \"execute\" is not in handledAccessFs",
            ),
            (
                r#"{"handledAccessFs":["read_file"],"rules":[{"paths":["/a"],"access":[]}]}"#,
                "at rules[0].access: no access right given",
            ),
            (
                r#"{"handledAccessFs":["read_file"],"rules":[{"paths":[],"access":["read_file"]}]}"#,
                "at rules[0].paths: no path given",
            ),
            (
                r#"{"handledAccessFs":["read_file"],"rules":[{"paths":["/a","usr"],"access":["read_file"]}]}"#,
                "at rules[0].paths[1]: paths must be absolute",
            ),
            (
                r#"{"handledAccessFs":["read_file"],"netRules":[{"port":80,"access":["bind_tcp"]}]}"#,
                "at netRules[0].access[0]: \"bind_tcp\" is not in handledAccessNet",
            ),
        ] {
            let e = err(json);
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    fn all_rights() -> Ruleset {
        parse(
            r#"{"handledAccessFs":["execute","read_file","refer","truncate","ioctl_dev"],
                "handledAccessNet":["bind_tcp"],"scoped":["signal","abstract_unix_socket"],
                "compatibility":"best_effort"}"#,
        )
        .unwrap()
    }

    #[test]
    fn best_effort_drops_what_the_abi_lacks() {
        let r = all_rights();
        let e = r.for_abi(6).unwrap();
        assert!(e.dropped.is_empty());
        assert_eq!(e.attr.handled_access_fs, r.handled_fs);
        let e = r.for_abi(3).unwrap();
        assert_eq!(
            e.dropped,
            ["ioctl_dev", "bind_tcp", "abstract_unix_socket", "signal"]
        );
        assert_eq!(
            e.attr.handled_access_fs,
            fs(&["execute", "read_file", "refer", "truncate"])
        );
        assert_eq!((e.attr.handled_access_net, e.attr.scoped), (0, 0));
        let e = r.for_abi(1).unwrap();
        assert_eq!(e.attr.handled_access_fs, fs(&["execute", "read_file"]));
        assert_eq!(&e.dropped[..3], ["refer", "truncate", "ioctl_dev"]);
        let e = r.for_abi(0).unwrap();
        assert!(e.is_empty());
        assert_eq!(e.dropped.len(), 8);
    }

    #[test]
    fn hard_requirement_refuses_a_downgrade() {
        let mut r = all_rights();
        r.compatibility = Compatibility::HardRequirement;
        assert!(r.for_abi(6).is_ok());
        assert_eq!(
            chain(&r.for_abi(5).unwrap_err()),
            "landlock ABI 5 lacks abstract_unix_socket, signal, required by a hard_requirement ruleset"
        );
        assert!(matches!(r.for_abi(0), Err(LandlockError::Unavailable)));
    }

    #[test]
    fn abi_version_is_consistent() {
        // Either answer is fine; it must not panic, and a version is at least 1.
        if let Some(v) = abi_version() {
            assert!(v >= 1);
        }
    }

    /// Set for the re-executed test binary: a directory the child must not write into.
    const CHILD_ENV: &str = "HULL_LANDLOCK_TEST_DIR";

    /// Runs only inside the child started by `enforce_confines_a_child_process`, so that
    /// the restriction never applies to the test runner.
    #[test]
    fn enforce_child() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let mut r = parse(
            r#"{"handledAccessFs":["read_file","write_file","make_reg","read_dir","truncate"],
                "rules":[{"paths":["/usr"],"access":["read_file","read_dir"]},
                         {"paths":["/nonexistent/x"],"access":["read_file"],"optional":true}],
                "handledAccessNet":["bind_tcp"],
                "compatibility":"best_effort"}"#,
        )
        .unwrap();
        let usr_file = std::fs::read_dir("/usr/bin")
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .unwrap()
            .path();
        let exe = std::env::current_exe().unwrap();
        sys::set_no_new_privs().unwrap();
        r.enforce().unwrap();

        std::fs::File::open(&usr_file).expect("/usr stays readable");
        std::fs::read_dir("/usr").expect("/usr stays listable");
        let denied = |e: io::Error| assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
        denied(std::fs::File::create(dir.join("x")).unwrap_err());
        denied(std::fs::File::open(&exe).unwrap_err());
        if abi_version().unwrap() >= 4 {
            denied(std::net::TcpListener::bind("127.0.0.1:0").unwrap_err());
        }
        // A missing path is an error unless the rule is optional.
        r.rules[1].optional = false;
        let e = r.enforce().unwrap_err();
        assert!(matches!(e, LandlockError::Open { .. }), "{e:?}");
    }

    #[test]
    fn enforce_confines_a_child_process() {
        if abi_version().is_none() {
            eprintln!("skipping: landlock is not available on this kernel");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "landlock::tests::enforce_child",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the child test did not run: {text}"
        );
        assert!(!dir.path().join("x").exists());
    }
}
