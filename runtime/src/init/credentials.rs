//! The container process's identity and privileges: user and groups, capabilities,
//! rlimits, no_new_privs and umask, in runc's order.

use std::collections::HashSet;
use std::io;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capability, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

use crate::sys;

/// A failed credentials step.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("cannot set rlimit {name}")]
    Rlimit {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot set additional groups {gids:?}")]
    Groups {
        gids: Vec<u32>,
        #[source]
        source: io::Error,
    },
    #[error("cannot switch to gid {gid} (is it mapped in the container's user namespace?)")]
    Gid {
        gid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot switch to uid {uid} (is it mapped in the container's user namespace?)")]
    Uid {
        uid: u32,
        #[source]
        source: io::Error,
    },
    #[error("capability {name} is not known to this kernel")]
    UnknownCap { name: String },
    #[error("cannot set the {set} capability set")]
    Caps {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] io::Error),
}

/// Applies `process.rlimits`. Done while still privileged, so hard limits may be raised.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<(), CredError> {
    for rl in rlimits {
        sys::set_rlimit(rlimit_number(rl.typ()), rl.soft(), rl.hard()).map_err(|source| {
            CredError::Rlimit {
                name: rl.typ().to_string(),
                source,
            }
        })?;
    }
    Ok(())
}

fn rlimit_number(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => 0,
        RlimitFsize => 1,
        RlimitData => 2,
        RlimitStack => 3,
        RlimitCore => 4,
        RlimitRss => 5,
        RlimitNproc => 6,
        RlimitNofile => 7,
        RlimitMemlock => 8,
        RlimitAs => 9,
        RlimitLocks => 10,
        RlimitSigpending => 11,
        RlimitMsgqueue => 12,
        RlimitNice => 13,
        RlimitRtprio => 14,
        RlimitRttime => 15,
    }
}

fn to_caps(set: &Option<HashSet<Capability>>) -> Result<CapsHashSet, CredError> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Cap = name
            .parse()
            .map_err(|_| CredError::UnknownCap { name: name.clone() })?;
        out.insert(cap);
    }
    Ok(out)
}

/// Drops from the bounding set everything not listed. Must run before the uid change,
/// while CAP_SETPCAP is still held.
pub fn drop_bounding(c: Option<&LinuxCapabilities>) -> Result<(), CredError> {
    let keep = to_caps(&c.and_then(|c| c.bounding().clone()))?;
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| CredError::Caps {
                set: "bounding",
                source,
            })?;
        }
    }
    Ok(())
}

/// Switches to the configured user, keeping the permitted set across the change.
pub fn set_user(process: &Process) -> Result<(), CredError> {
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    // Exactly additionalGids, as runc does: the primary gid is not added.
    let gids: Vec<u32> = user.additional_gids().clone().unwrap_or_default();
    sys::set_keepcaps(true).map_err(|source| CredError::Uid { uid, source })?;
    sys::set_groups(&gids).map_err(|source| CredError::Groups {
        gids: gids.clone(),
        source,
    })?;
    nix::unistd::setresgid(gid.into(), gid.into(), gid.into()).map_err(|e| CredError::Gid {
        gid,
        source: e.into(),
    })?;
    nix::unistd::setresuid(uid.into(), uid.into(), uid.into()).map_err(|e| CredError::Uid {
        uid,
        source: e.into(),
    })?;
    sys::set_keepcaps(false).map_err(|source| CredError::Uid { uid, source })
}

/// Sets the effective, permitted, inheritable and ambient sets, after the uid change.
pub fn set_caps(c: Option<&LinuxCapabilities>) -> Result<(), CredError> {
    let get = |f: fn(&LinuxCapabilities) -> &Option<HashSet<Capability>>| {
        to_caps(&c.and_then(|c| f(c).clone()))
    };
    let err = |set| move |source| CredError::Caps { set, source };
    let ambient = get(LinuxCapabilities::ambient)?;
    caps::set(
        None,
        CapSet::Inheritable,
        &get(LinuxCapabilities::inheritable)?,
    )
    .map_err(err("inheritable"))?;
    // Effective must stay within permitted: shrink permitted last.
    caps::set(None, CapSet::Effective, &get(LinuxCapabilities::effective)?)
        .map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &get(LinuxCapabilities::permitted)?)
        .map_err(err("permitted"))?;
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    for cap in ambient {
        // Raising needs the capability in both permitted and inheritable. runc only warns
        // when it cannot (its own `runc spec` lists ambient without inheritable), and
        // configs in the wild rely on that.
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            tracing::debug!("cannot raise ambient capability {cap}: {e}");
        }
    }
    Ok(())
}

/// no_new_privs and umask, the last steps before exec.
pub fn finish(process: &Process) -> Result<(), CredError> {
    if process.no_new_privileges().unwrap_or(false) {
        sys::set_no_new_privs().map_err(CredError::NoNewPrivs)?;
    }
    sys::set_umask(process.user().umask().unwrap_or(0o022));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names_convert() {
        let set: HashSet<Capability> =
            serde_json::from_str(r#"["CAP_CHOWN","CAP_NET_BIND_SERVICE"]"#).unwrap();
        let caps = to_caps(&Some(set)).unwrap();
        assert!(caps.contains(&Cap::CAP_CHOWN));
        assert!(caps.contains(&Cap::CAP_NET_BIND_SERVICE));
        assert_eq!(caps.len(), 2);
    }

    #[test]
    fn rlimit_numbers_match_libc() {
        assert_eq!(
            rlimit_number(PosixRlimitType::RlimitNofile),
            libc::RLIMIT_NOFILE
        );
        assert_eq!(
            rlimit_number(PosixRlimitType::RlimitRttime),
            libc::RLIMIT_RTTIME
        );
        assert_eq!(
            rlimit_number(PosixRlimitType::RlimitNproc),
            libc::RLIMIT_NPROC
        );
    }
}
