//! Translation of runtime-spec mount options into mount attributes, propagation and
//! filesystem data.

use crate::sys::{
    MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME,
};

/// A parsed mount option list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `Some(recursive)` for bind and rbind mounts.
    pub bind: Option<bool>,
    pub attr_set: u64,
    pub attr_clear: u64,
    /// Propagation changes in order: (MS_* flag, recursive).
    pub propagation: Vec<(u64, bool)>,
    /// Options handed to the filesystem (`mode=755`, `size=64k`, `newinstance`, `sync`).
    pub data: Vec<String>,
    /// crun's and runc's `tmpcopyup`: seed a tmpfs with what the image had there.
    pub tmpcopyup: bool,
}

/// An option hull does not implement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mount option {0:?} is not supported")]
pub struct Unsupported(pub String);

fn attr(set: &mut MountOptions, flag: u64, on: bool) {
    if on {
        set.attr_set |= flag;
        set.attr_clear &= !flag;
    } else {
        set.attr_clear |= flag;
        set.attr_set &= !flag;
    }
}

fn atime(set: &mut MountOptions, mode: u64) {
    set.attr_set = (set.attr_set & !MOUNT_ATTR__ATIME) | mode;
    set.attr_clear |= MOUNT_ATTR__ATIME;
}

/// Parses `options` as config.json gives them.
pub fn parse(options: &[String]) -> Result<MountOptions, Unsupported> {
    let mut o = MountOptions::default();
    for opt in options {
        match opt.as_str() {
            "bind" => o.bind = Some(o.bind.unwrap_or(false)),
            "rbind" => o.bind = Some(true),
            "ro" => attr(&mut o, MOUNT_ATTR_RDONLY, true),
            "rw" => attr(&mut o, MOUNT_ATTR_RDONLY, false),
            "nosuid" => attr(&mut o, MOUNT_ATTR_NOSUID, true),
            "suid" => attr(&mut o, MOUNT_ATTR_NOSUID, false),
            "nodev" => attr(&mut o, MOUNT_ATTR_NODEV, true),
            "dev" => attr(&mut o, MOUNT_ATTR_NODEV, false),
            "noexec" => attr(&mut o, MOUNT_ATTR_NOEXEC, true),
            "exec" => attr(&mut o, MOUNT_ATTR_NOEXEC, false),
            "nodiratime" => attr(&mut o, MOUNT_ATTR_NODIRATIME, true),
            "diratime" => attr(&mut o, MOUNT_ATTR_NODIRATIME, false),
            "nosymfollow" => attr(&mut o, MOUNT_ATTR_NOSYMFOLLOW, true),
            "symfollow" => attr(&mut o, MOUNT_ATTR_NOSYMFOLLOW, false),
            "noatime" => atime(&mut o, MOUNT_ATTR_NOATIME),
            "strictatime" => atime(&mut o, MOUNT_ATTR_STRICTATIME),
            "relatime" => atime(&mut o, MOUNT_ATTR_RELATIME),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => o.propagation.push(propagation(opt)),
            "tmpcopyup" => o.tmpcopyup = true,
            // Defaults of mount(8) that change nothing.
            "defaults" | "async" | "atime" | "auto" | "noauto" | "nouser" | "user"
            | "norelatime" | "loud" | "_netdev" => {}
            "remount" | "idmap" | "ridmap" | "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev"
            | "rdev" | "rnoexec" | "rexec" | "rnoatime" | "rrelatime" | "rstrictatime" => {
                return Err(Unsupported(opt.clone()))
            }
            _ => o.data.push(opt.clone()),
        }
    }
    Ok(o)
}

/// MS_* propagation flag and recursion of a propagation option name.
pub fn propagation(name: &str) -> (u64, bool) {
    let recursive = name.starts_with('r');
    let flag = match name.trim_start_matches('r') {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        _ => libc::MS_UNBINDABLE,
    };
    (flag, recursive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.attr_set, MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.bind, None);
    }

    #[test]
    fn later_option_wins() {
        let o = p(&["ro", "rw"]);
        assert_eq!(o.attr_set & MOUNT_ATTR_RDONLY, 0);
        assert_ne!(o.attr_clear & MOUNT_ATTR_RDONLY, 0);
    }

    #[test]
    fn bind_kinds_and_propagation() {
        assert_eq!(p(&["bind"]).bind, Some(false));
        assert_eq!(p(&["rbind", "ro"]).bind, Some(true));
        assert_eq!(p(&["rslave"]).propagation, vec![(libc::MS_SLAVE, true)]);
        assert_eq!(p(&["private"]).propagation, vec![(libc::MS_PRIVATE, false)]);
    }

    #[test]
    fn unsupported_is_an_error() {
        assert!(parse(&["idmap".to_string()]).is_err());
    }
}
