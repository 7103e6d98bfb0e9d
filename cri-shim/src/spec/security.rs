//! Capabilities, privileged mode, masked and read-only paths, AppArmor, and the security
//! context fields hull-cri refuses.

use std::collections::BTreeSet;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

use super::host::HULL_APPARMOR_PROFILE;
use super::{built, HostFacts, SpecError};
use crate::api::{self, security_profile::ProfileType};

const SC: &str = "linux.security_context";

/// Capability names by number (linux/capability.h), 0 to 40.
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities of a non-privileged container that asks for no change: the 14 of
/// containerd's default spec (`pkg/oci/spec.go`, `populateDefaultUnixSpec`), which are
/// also Docker's defaults. Enough for a typical image's entrypoint to chown, setuid to
/// a service user and bind low ports; nothing that administers the host.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The default masked paths when the request sends none (kubelet's and containerd's
/// defaults: files that leak host information or expose kernel interfaces).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The default read-only paths when the request sends none.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The container's capability sets, by number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Bounding, effective and permitted.
    pub set: BTreeSet<u32>,
    /// Ambient (and so also inheritable, which the kernel requires of ambient ones).
    pub ambient: BTreeSet<u32>,
}

impl Caps {
    /// True when `name` (`CAP_SYS_ADMIN`) is in the bounding set.
    pub fn has(&self, name: &str) -> bool {
        number(name).is_some_and(|n| self.set.contains(&n))
    }

    /// The names of the bounding set, in number order.
    pub fn names(&self) -> Vec<&'static str> {
        self.set.iter().map(|n| CAP_NAMES[*n as usize]).collect()
    }

    /// The runtime-spec form. Inheritable holds only the ambient capabilities: a full
    /// inheritable set would let file capabilities of an image's binaries grant more
    /// (CVE-2022-24769).
    pub fn to_oci(&self) -> Result<LinuxCapabilities, SpecError> {
        let conv = |s: &BTreeSet<u32>| -> Capabilities {
            s.iter()
                .map(|n| {
                    let bare = &CAP_NAMES[*n as usize]["CAP_".len()..];
                    Capability::from_str(bare).expect("every name of CAP_NAMES is known")
                })
                .collect()
        };
        let set = conv(&self.set);
        let b = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .effective(set.clone())
            .permitted(set)
            .inheritable(conv(&self.ambient))
            .ambient(conv(&self.ambient));
        built("process.capabilities", b.build())
    }
}

/// A capability number from `NET_ADMIN`, `CAP_NET_ADMIN` or `cap_net_admin`.
fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAP_NAMES
        .iter()
        .position(|n| *n == full)
        .map(|i| u32::try_from(i).expect("41 names"))
}

/// The capabilities of the container: every one the kernel knows and hull-cri's bounding
/// set holds when privileged (as containerd gives all of its current ones), else the
/// defaults with the request's add and drop applied. "ALL" in add or drop applies first,
/// so `add: [ALL], drop: [NET_ADMIN]` is everything but NET_ADMIN and
/// `drop: [ALL], add: [CHOWN]` is only CHOWN (containerd's order).
pub fn capabilities(
    sc: &api::LinuxContainerSecurityContext,
    host: &HostFacts,
) -> Result<Caps, SpecError> {
    let all: BTreeSet<u32> = (0..=host.cap_last_cap.min(40))
        .filter(|n| host.cap_bounding & (1 << n) != 0)
        .collect();
    if sc.privileged {
        return Ok(Caps {
            set: all,
            ambient: BTreeSet::new(),
        });
    }
    let mut set: BTreeSet<u32> = DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|n| number(n))
        .collect();
    let Some(c) = &sc.capabilities else {
        return Ok(Caps {
            set,
            ambient: BTreeSet::new(),
        });
    };
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    if c.add_capabilities.iter().any(is_all) {
        set.clone_from(&all);
    }
    if c.drop_capabilities.iter().any(is_all) {
        set.clear();
    }
    let parse = |list: &str, i: usize, name: &String| {
        number(name).ok_or_else(|| {
            SpecError::invalid(
                format!("{SC}.capabilities.{list}[{i}]"),
                name,
                "unknown capability",
            )
        })
    };
    for (i, name) in c.add_capabilities.iter().enumerate() {
        if !is_all(name) {
            set.insert(parse("add_capabilities", i, name)?);
        }
    }
    for (i, name) in c.drop_capabilities.iter().enumerate() {
        if !is_all(name) {
            set.remove(&parse("drop_capabilities", i, name)?);
        }
    }
    let mut ambient = BTreeSet::new();
    for (i, name) in c.add_ambient_capabilities.iter().enumerate() {
        let n = parse("add_ambient_capabilities", i, name)?;
        // An ambient capability must also be permitted, so it joins every set.
        set.insert(n);
        ambient.insert(n);
    }
    Ok(Caps { set, ambient })
}

/// `linux.maskedPaths` and `linux.readonlyPaths`: none for a privileged container, the
/// request's lists, or the defaults when the request sends an empty list.
pub fn masked_and_readonly(sc: &api::LinuxContainerSecurityContext) -> (Vec<String>, Vec<String>) {
    if sc.privileged {
        return (Vec::new(), Vec::new());
    }
    let or_default = |req: &[String], def: &[&str]| {
        if req.is_empty() {
            def.iter().map(|s| s.to_string()).collect()
        } else {
            req.to_vec()
        }
    };
    (
        or_default(&sc.masked_paths, &DEFAULT_MASKED_PATHS),
        or_default(&sc.readonly_paths, &DEFAULT_READONLY_PATHS),
    )
}

/// `process.apparmorProfile`. hull refuses any profile on a host without AppArmor, so
/// RuntimeDefault (the kubelet's default) then means no profile, as containerd does;
/// a Localhost profile there is an error. A privileged container runs unconfined unless
/// it names a Localhost profile.
// The deprecated `apparmor_profile` is read on purpose: older kubelets send only it.
#[allow(deprecated)]
pub fn apparmor(
    sc: &api::LinuxContainerSecurityContext,
    host: &HostFacts,
) -> Result<Option<String>, SpecError> {
    let (field, kind, name) = match &sc.apparmor {
        Some(p) => {
            let kind = ProfileType::try_from(p.profile_type).map_err(|_| {
                SpecError::invalid(
                    format!("{SC}.apparmor.profile_type"),
                    p.profile_type,
                    "unknown profile type",
                )
            })?;
            (format!("{SC}.apparmor"), kind, p.localhost_ref.clone())
        }
        None => {
            let field = format!("{SC}.apparmor_profile");
            match sc.apparmor_profile.as_str() {
                "" | "runtime/default" => (field, ProfileType::RuntimeDefault, String::new()),
                "unconfined" => (field, ProfileType::Unconfined, String::new()),
                s => match s.strip_prefix("localhost/") {
                    Some(n) => (field, ProfileType::Localhost, n.to_string()),
                    None => return Err(SpecError::invalid(field, s, "unknown AppArmor profile")),
                },
            }
        }
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault if sc.privileged || !host.apparmor_enabled => Ok(None),
        ProfileType::RuntimeDefault => {
            if host
                .apparmor_profiles
                .iter()
                .any(|p| p == HULL_APPARMOR_PROFILE)
            {
                Ok(Some(HULL_APPARMOR_PROFILE.to_string()))
            } else {
                Err(SpecError::invalid(
                    field,
                    "RuntimeDefault",
                    format!(
                        "the AppArmor profile {HULL_APPARMOR_PROFILE:?} is not loaded \
                         (hull-cri loads it at start-up; see its log)"
                    ),
                ))
            }
        }
        ProfileType::Localhost => {
            let name = name.strip_prefix("localhost/").unwrap_or(&name).to_string();
            if name.is_empty() {
                Err(SpecError::invalid(
                    field,
                    "",
                    "Localhost needs a profile name",
                ))
            } else if !host.apparmor_enabled {
                Err(SpecError::invalid(
                    field,
                    name,
                    "AppArmor is not enabled on this host",
                ))
            } else {
                Ok(Some(name))
            }
        }
    }
}

/// Refuses security context fields hull-cri cannot honour, rather than ignoring them.
pub fn check_unsupported(
    sc: &api::LinuxContainerSecurityContext,
    host: &HostFacts,
) -> Result<(), SpecError> {
    if let Some(se) = &sc.selinux_options {
        let set = [&se.user, &se.role, &se.r#type, &se.level]
            .iter()
            .any(|s| !s.is_empty());
        // Without SELinux a label means nothing, as runc ignores it there.
        if set && host.selinux_enabled {
            return Err(SpecError::unsupported(
                format!("{SC}.selinux_options"),
                format!("{se:?}"),
            ));
        }
    }
    let userns = sc
        .namespace_options
        .as_ref()
        .and_then(|n| n.userns_options.as_ref());
    if let Some(u) = userns {
        if u.mode != api::NamespaceMode::Node as i32 {
            return Err(SpecError::unsupported(
                format!("{SC}.namespace_options.userns_options.mode"),
                u.mode,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::host;

    fn caps(add: &[&str], drop: &[&str]) -> Result<Caps, SpecError> {
        let sc = api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: Vec::new(),
            }),
            ..Default::default()
        };
        capabilities(&sc, &host())
    }

    #[test]
    fn defaults_add_drop_and_all() {
        let def = caps(&[], &[]).unwrap();
        assert_eq!(def.set.len(), 14);
        assert!(def.has("CAP_KILL") && !def.has("CAP_SYS_ADMIN"));
        let c = caps(&["NET_ADMIN", "cap_sys_time"], &["KILL"]).unwrap();
        assert!(c.has("CAP_NET_ADMIN") && c.has("CAP_SYS_TIME") && !c.has("CAP_KILL"));
        let c = caps(&["ALL"], &["NET_ADMIN"]).unwrap();
        assert_eq!(c.set.len(), 40);
        assert!(!c.has("CAP_NET_ADMIN") && c.has("CAP_SYS_ADMIN"));
        let c = caps(&["CHOWN"], &["ALL"]).unwrap();
        assert_eq!(c.names(), ["CAP_CHOWN"]);
        let c = caps(&[], &["all"]).unwrap();
        assert!(c.set.is_empty());
        let e = caps(&["NET_WIZARD"], &[]).unwrap_err().to_string();
        assert!(
            e.contains("capabilities.add_capabilities[0]") && e.contains("NET_WIZARD"),
            "{e}"
        );
    }

    #[test]
    fn privileged_gets_every_known_capability() {
        let sc = api::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        let mut h = host();
        assert_eq!(capabilities(&sc, &h).unwrap().set.len(), 41);
        h.cap_last_cap = 37;
        assert_eq!(capabilities(&sc, &h).unwrap().set.len(), 38);
        // A bounding set without CAP_SYS_RESOURCE (24), as in this project's CI shell.
        h.cap_bounding = 0x1ff_feff_ffff;
        let c = capabilities(&sc, &h).unwrap();
        assert_eq!(c.set.len(), 37);
        assert!(!c.has("CAP_SYS_RESOURCE") && c.has("CAP_SYS_ADMIN"));
        let all = api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!capabilities(&all, &h).unwrap().has("CAP_SYS_RESOURCE"));
        assert_eq!(masked_and_readonly(&sc), (Vec::new(), Vec::new()));
    }

    #[test]
    fn ambient_caps_join_every_set() {
        let sc = api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_ambient_capabilities: vec!["NET_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = capabilities(&sc, &host()).unwrap();
        let oci = c.to_oci().unwrap();
        assert!(oci
            .ambient()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        assert!(oci
            .inheritable()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        assert!(oci
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        assert_eq!(oci.inheritable().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn masked_paths_default_only_when_empty() {
        let mut sc = api::LinuxContainerSecurityContext::default();
        let (m, r) = masked_and_readonly(&sc);
        assert!(m.contains(&"/proc/kcore".to_string()) && m.len() == 11);
        assert!(r.contains(&"/proc/sys".to_string()) && r.len() == 5);
        sc.masked_paths = vec!["/proc/x".into()];
        sc.readonly_paths = vec!["/proc/y".into()];
        assert_eq!(
            masked_and_readonly(&sc),
            (vec!["/proc/x".to_string()], vec!["/proc/y".to_string()])
        );
    }

    fn aa(
        sc: &api::LinuxContainerSecurityContext,
        h: &HostFacts,
    ) -> Result<Option<String>, SpecError> {
        apparmor(sc, h)
    }

    #[test]
    fn apparmor_follows_the_host() {
        let mut sc = api::LinuxContainerSecurityContext {
            apparmor: Some(api::SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        };
        let mut h = host();
        assert_eq!(aa(&sc, &h).unwrap(), None, "no AppArmor: no profile");
        h.apparmor_enabled = true;
        assert!(aa(&sc, &h)
            .unwrap_err()
            .to_string()
            .contains("hull-default"));
        h.apparmor_profiles = vec!["hull-default".into()];
        assert_eq!(aa(&sc, &h).unwrap().as_deref(), Some("hull-default"));
        sc.privileged = true;
        assert_eq!(aa(&sc, &h).unwrap(), None);
        sc.apparmor = Some(api::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "my-prof".into(),
        });
        assert_eq!(aa(&sc, &h).unwrap().as_deref(), Some("my-prof"));
        h.apparmor_enabled = false;
        let e = aa(&sc, &h).unwrap_err().to_string();
        assert!(e.contains("my-prof") && e.contains("not enabled"), "{e}");
        sc.apparmor = Some(api::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
        assert_eq!(aa(&sc, &h).unwrap(), None);
    }

    #[test]
    #[allow(deprecated)] // the old string field is under test
    fn deprecated_apparmor_field() {
        let mut h = host();
        h.apparmor_enabled = true;
        let mut sc = api::LinuxContainerSecurityContext {
            apparmor_profile: "localhost/p1".into(),
            ..Default::default()
        };
        assert_eq!(aa(&sc, &h).unwrap().as_deref(), Some("p1"));
        sc.apparmor_profile = "unconfined".into();
        assert_eq!(aa(&sc, &h).unwrap(), None);
        sc.apparmor_profile = "bogus".into();
        let e = aa(&sc, &h).unwrap_err().to_string();
        assert!(e.contains("apparmor_profile") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn user_namespaces_are_refused() {
        let sc = api::LinuxContainerSecurityContext {
            namespace_options: Some(api::NamespaceOption {
                userns_options: Some(api::UserNamespace {
                    mode: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = check_unsupported(&sc, &host()).unwrap_err().to_string();
        assert!(e.contains("userns_options.mode"), "{e}");
    }
}
