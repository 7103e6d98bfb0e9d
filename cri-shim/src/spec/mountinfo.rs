//! The propagation of the host mount a path lives on, from `/proc/self/mountinfo`.
//!
//! A bind mount with rshared or rslave propagation only propagates when its source's
//! mount is itself shared (or, for rslave, a slave): otherwise the container silently
//! gets a private mount. containerd checks this and fails the request; so does hull-cri.

use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use super::SpecError;

/// How a mount propagates (proc(5): optional fields `shared:N`, `master:N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagation {
    pub shared: bool,
    pub slave: bool,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The propagation of the mount containing `path` (already canonical) in `text`.
pub fn parse(text: &str, path: &Path) -> Option<Propagation> {
    let mut best: Option<(usize, Propagation)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let Some(point) = f.get(4).map(|p| unescape(p)) else {
            continue;
        };
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        let optional = f.get(6..sep).unwrap_or_default();
        let prop = Propagation {
            shared: optional.iter().any(|o| o.starts_with("shared:")),
            slave: optional.iter().any(|o| o.starts_with("master:")),
        };
        // A later line at the same depth is a mount on top of the earlier one.
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, prop));
        }
    }
    best.map(|(_, p)| p)
}

/// Reads `mountinfo` and returns the propagation of the mount containing `path`.
pub fn propagation(mountinfo: &Path, path: &Path) -> Result<Propagation, SpecError> {
    let text = std::fs::read_to_string(mountinfo).map_err(|source| SpecError::HostFile {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    Ok(parse(&text, path).unwrap_or(Propagation {
        shared: false,
        slave: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /mnt rw - tmpfs tmpfs rw
31 30 0:6 / /mnt/shared rw shared:7 - tmpfs tmpfs rw
32 30 0:7 / /mnt/sl\\040ave rw master:7 - tmpfs tmpfs rw
33 30 0:8 / /mnt/both rw shared:9 master:7 - tmpfs tmpfs rw
";

    fn p(path: &str) -> (bool, bool) {
        let r = parse(INFO, Path::new(path)).unwrap();
        (r.shared, r.slave)
    }

    #[test]
    fn finds_the_deepest_mount() {
        assert_eq!(p("/var/lib"), (true, false));
        assert_eq!(p("/mnt/x"), (false, false));
        assert_eq!(p("/mnt/shared/a/b"), (true, false));
        assert_eq!(p("/mnt/sl ave/f"), (false, true));
        assert_eq!(p("/mnt/both"), (true, true));
        // A sibling whose name merely starts like a mount point is not under it.
        assert_eq!(p("/mnt/sharedx"), (false, false));
    }
}
