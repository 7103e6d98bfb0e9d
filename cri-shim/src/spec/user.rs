//! The user a container runs as: from the request's security context, else the image's
//! `User`, with names resolved in the container's own `/etc/passwd` and `/etc/group`.
//!
//! The rootfs is untrusted (it is whatever the image's layers contain), so its files are
//! opened with `openat2(RESOLVE_IN_ROOT)` (see [`crate::sys::open_in_root`]): a link
//! `/etc/passwd -> ../../../../etc/shadow` resolves inside the rootfs, never on the host.
//! Only regular files are read, and at most [`MAX_FILE`] bytes of them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::SpecError;
use crate::api::{self, SupplementalGroupsPolicy};
use crate::manifest::ImageConfig;

/// A passwd or group file larger than this is refused rather than read into memory.
const MAX_FILE: u64 = 16 << 20;

const SC: &str = "linux.security_context";

/// The ids the container process runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first (so it stays in the group list, the fix of
    /// CVE-2023-25173), then groups of /etc/group listing the user, then the request's.
    pub additional_gids: Vec<u32>,
    /// The user's name, when /etc/passwd has one.
    pub username: Option<String>,
}

/// One `/etc/passwd` line.
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line.
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The rootfs's account files, read lazily.
struct Accounts<'a> {
    rootfs: &'a Path,
    dir: Option<File>,
}

impl Accounts<'_> {
    /// The file's text; `None` when the rootfs has no such file.
    fn read(&mut self, name: &str) -> Result<Option<String>, SpecError> {
        if self.dir.is_none() {
            let dir = File::open(self.rootfs).map_err(|source| SpecError::OpenRootfs {
                path: self.rootfs.to_path_buf(),
                source,
            })?;
            self.dir = Some(dir);
        }
        let dir = self.dir.as_ref().expect("opened above");
        let path = PathBuf::from(name);
        let err = |source| SpecError::ReadRootfsFile {
            path: path.clone(),
            source,
        };
        let file = match crate::sys::open_in_root(dir, &path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(err(std::io::Error::other("not a regular file")));
        }
        if meta.len() > MAX_FILE {
            return Err(err(std::io::Error::other("file is larger than 16 MiB")));
        }
        let mut text = String::new();
        file.take(MAX_FILE).read_to_string(&mut text).map_err(err)?;
        Ok(Some(text))
    }

    fn passwd(&mut self) -> Result<Vec<Passwd>, SpecError> {
        let text = self.read("/etc/passwd")?.unwrap_or_default();
        Ok(fields(&text)
            .filter_map(|f| {
                Some(Passwd {
                    name: f.first()?.to_string(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                })
            })
            .collect())
    }

    fn groups(&mut self) -> Result<Vec<Group>, SpecError> {
        let text = self.read("/etc/group")?.unwrap_or_default();
        Ok(fields(&text)
            .filter_map(|f| {
                Some(Group {
                    name: f.first()?.to_string(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect())
    }
}

/// The colon-separated fields of each non-comment line; malformed lines are skipped, as
/// libc's getpwent does.
fn fields(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn id32(field: &str, v: i64) -> Result<u32, SpecError> {
    u32::try_from(v).map_err(|_| SpecError::invalid(field, v, "must be between 0 and 4294967295"))
}

/// Resolves the user of the container.
pub fn resolve(
    rootfs: &Path,
    sc: &api::LinuxContainerSecurityContext,
    image: &ImageConfig,
) -> Result<ResolvedUser, SpecError> {
    let mut acc = Accounts { rootfs, dir: None };
    let group = match &sc.run_as_group {
        Some(g) => Some(id32(&format!("{SC}.run_as_group"), g.value)?),
        None => None,
    };
    let mut user = if let Some(u) = &sc.run_as_user {
        let uid = id32(&format!("{SC}.run_as_user"), u.value)?;
        by_uid(&mut acc, uid)?
    } else if !sc.run_as_username.is_empty() {
        let field = format!("{SC}.run_as_username");
        by_name(&mut acc, &field, &sc.run_as_username)?
    } else if let Some(g) = group {
        // The CRI API: run_as_group without a user "MUST" be an error.
        return Err(SpecError::invalid(
            format!("{SC}.run_as_group"),
            g,
            "needs run_as_user or run_as_username",
        ));
    } else {
        let spec = image.config.as_ref().and_then(|c| c.user.clone());
        image_user(&mut acc, spec.as_deref().unwrap_or(""))?
    };
    if let Some(g) = group {
        user.gid = g;
    }
    user.additional_gids = vec![user.gid];
    let strict = sc.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32;
    if !strict {
        if let Some(name) = &user.username {
            for g in acc.groups()? {
                if g.members.iter().any(|m| m == name) {
                    user.additional_gids.push(g.gid);
                }
            }
        }
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        user.additional_gids
            .push(id32(&format!("{SC}.supplemental_groups[{i}]"), *g)?);
    }
    let mut seen = std::collections::HashSet::new();
    user.additional_gids.retain(|g| seen.insert(*g));
    Ok(user)
}

/// A numeric uid: its passwd entry gives the gid and the name; without one, gid 0.
fn by_uid(acc: &mut Accounts, uid: u32) -> Result<ResolvedUser, SpecError> {
    let entry = acc.passwd()?.into_iter().find(|p| p.uid == uid);
    Ok(ResolvedUser {
        uid,
        gid: entry.as_ref().map_or(0, |p| p.gid),
        additional_gids: Vec::new(),
        username: entry.map(|p| p.name),
    })
}

fn by_name(acc: &mut Accounts, field: &str, name: &str) -> Result<ResolvedUser, SpecError> {
    let entry = acc.passwd()?.into_iter().find(|p| p.name == name);
    let p = entry.ok_or_else(|| SpecError::UserNotFound {
        field: field.to_string(),
        user: name.to_string(),
    })?;
    Ok(ResolvedUser {
        uid: p.uid,
        gid: p.gid,
        additional_gids: Vec::new(),
        username: Some(p.name),
    })
}

/// The image's `User`: `uid`, `name`, `uid:gid`, `name:group` (or the mixed forms); empty
/// means root.
fn image_user(acc: &mut Accounts, spec: &str) -> Result<ResolvedUser, SpecError> {
    const FIELD: &str = "image config User";
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = if user.is_empty() {
        if group.is_some() {
            return Err(SpecError::invalid(FIELD, spec, "names a group but no user"));
        }
        by_uid(acc, 0)?
    } else if let Ok(uid) = user.parse::<u32>() {
        by_uid(acc, uid)?
    } else {
        by_name(acc, FIELD, user)?
    };
    match group {
        None => {}
        Some("") => return Err(SpecError::invalid(FIELD, spec, "has an empty group")),
        Some(g) => {
            out.gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let found = acc.groups()?.into_iter().find(|e| e.name == g);
                    found
                        .ok_or_else(|| SpecError::GroupNotFound {
                            field: FIELD.to_string(),
                            group: g.to_string(),
                        })?
                        .gid
                }
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::manifest::RunConfig;
    use crate::spec::testutil::fake_rootfs;

    fn image(user: &str) -> ImageConfig {
        let mut img: ImageConfig =
            serde_json::from_str(r#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        img.config = Some(RunConfig {
            user: Some(user.to_string()),
            ..Default::default()
        });
        img
    }

    fn sc() -> api::LinuxContainerSecurityContext {
        api::LinuxContainerSecurityContext::default()
    }

    fn ids(u: &ResolvedUser) -> (u32, u32, Vec<u32>) {
        (u.uid, u.gid, u.additional_gids.clone())
    }

    #[test]
    fn image_user_forms() {
        let root = fake_rootfs();
        let r = |s: &str| resolve(root.path(), &sc(), &image(s)).map(|u| ids(&u));
        assert_eq!(r("").unwrap(), (0, 0, vec![0, 10]));
        assert_eq!(r("1002").unwrap(), (1002, 0, vec![0]));
        assert_eq!(r("www-data").unwrap(), (33, 33, vec![33, 50000]));
        assert_eq!(r("1003:1004").unwrap(), (1003, 1004, vec![1004]));
        assert_eq!(r("www-data:1004").unwrap(), (33, 1004, vec![1004, 50000]));
        assert_eq!(r("www-data:staff").unwrap(), (33, 50, vec![50, 50000]));
        assert_eq!(r("33:staff").unwrap(), (33, 50, vec![50, 50000]));
        let e = r("ghost").unwrap_err().to_string();
        assert!(e.contains("\"ghost\"") && e.contains("/etc/passwd"), "{e}");
        let e = r("www-data:nosuchgroup").unwrap_err().to_string();
        assert!(
            e.contains("\"nosuchgroup\"") && e.contains("/etc/group"),
            "{e}"
        );
        assert!(r(":10").is_err());
        assert!(r("www-data:").is_err());
    }

    #[test]
    fn request_overrides_image() {
        let root = fake_rootfs();
        let img = image("www-data");
        let mut s = sc();
        s.run_as_user = Some(api::Int64Value { value: 1000 });
        let u = resolve(root.path(), &s, &img).unwrap();
        assert_eq!(ids(&u), (1000, 50000, vec![50000]));
        assert_eq!(u.username.as_deref(), Some("predefined"));
        s.run_as_group = Some(api::Int64Value { value: 7 });
        s.supplemental_groups = vec![8, 7, 9];
        assert_eq!(
            ids(&resolve(root.path(), &s, &img).unwrap()),
            (1000, 7, vec![7, 8, 9])
        );
        let mut s = sc();
        s.run_as_username = "nobody".into();
        assert_eq!(
            ids(&resolve(root.path(), &s, &img).unwrap()),
            (65534, 65534, vec![65534])
        );
        s.run_as_username = "ghost".into();
        let e = resolve(root.path(), &s, &img).unwrap_err().to_string();
        assert!(
            e.contains("linux.security_context.run_as_username") && e.contains("ghost"),
            "{e}"
        );
    }

    #[test]
    fn group_without_user_and_bad_ids_are_errors() {
        let root = fake_rootfs();
        let mut s = sc();
        s.run_as_group = Some(api::Int64Value { value: 5 });
        let e = resolve(root.path(), &s, &image(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("run_as_group"), "{e}");
        let mut s = sc();
        s.run_as_user = Some(api::Int64Value { value: -1 });
        let e = resolve(root.path(), &s, &image(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("run_as_user = \"-1\""), "{e}");
    }

    #[test]
    fn strict_policy_ignores_etc_group() {
        let root = fake_rootfs();
        let mut s = sc();
        s.run_as_username = "www-data".into();
        s.supplemental_groups = vec![100];
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            ids(&resolve(root.path(), &s, &image("")).unwrap()),
            (33, 33, vec![33, 100])
        );
    }

    #[test]
    fn passwd_symlink_out_of_the_rootfs_is_not_followed() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("passwd"), "evil:x:4242:4242::/:/bin/sh\n").unwrap();
        let root = outer.path().join("a/b/rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc/../../../../passwd", root.join("etc/passwd")).unwrap();
        let mut s = sc();
        s.run_as_username = "evil".into();
        let e = resolve(&root, &s, &image("")).unwrap_err();
        assert!(matches!(e, SpecError::UserNotFound { .. }), "{e}");
        // The same link with an absolute host path stays inside too.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        symlink(outer.path().join("passwd"), root.join("etc/passwd")).unwrap();
        let e = resolve(&root, &s, &image("")).unwrap_err();
        assert!(matches!(e, SpecError::UserNotFound { .. }), "{e}");
    }

    #[test]
    fn a_fifo_passwd_is_refused_not_waited_on() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let fifo = root.path().join("etc/passwd");
        let st = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let mut s = sc();
        s.run_as_username = "x".into();
        let e = resolve(root.path(), &s, &image(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/passwd"), "{e}");
    }

    #[test]
    fn no_passwd_means_gid_zero_for_numbers() {
        let root = tempfile::tempdir().unwrap();
        let u = resolve(root.path(), &sc(), &image("123")).unwrap();
        assert_eq!(ids(&u), (123, 0, vec![0]));
        assert!(resolve(root.path(), &sc(), &image("alice")).is_err());
    }
}
