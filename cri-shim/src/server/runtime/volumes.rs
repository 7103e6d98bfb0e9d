//! Image volumes: request mounts whose source is an image (`Mount.image`, KEP 4639).
//!
//! Each one is a read-only overlayfs of the image's layer snapshots, mounted on the host at
//! `<container dir>/volumes/<mount index>/rootfs` before `hull create` and bound into the
//! container by the spec. The layers are kept from GC through the container record's
//! `diff_ids`; the mounts go with the container (RemoveContainer, a failed creation, or
//! the clean-up of an unfinished one at start).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tonic::Status;

use super::{internal, Runtime};
use crate::api::ContainerConfig;
use crate::snapshot;
use crate::store::ImageRecord;
use crate::sys;

/// The image of one image volume, by the index of its mount in the request.
pub(super) struct ImageVolume {
    pub index: usize,
    pub image: ImageRecord,
}

impl Runtime {
    /// Finds the image of every image volume of `config`, which must be pulled already,
    /// and records its id as the mount's `image.image_ref` (ContainerStatus reports the
    /// request's mounts). Nothing is mounted yet, so an error leaves nothing behind.
    pub(super) fn resolve_image_volumes(
        &self,
        config: &mut ContainerConfig,
    ) -> Result<Vec<ImageVolume>, Status> {
        let mut out = Vec::new();
        for (index, m) in config.mounts.iter_mut().enumerate() {
            let Some(spec) = m.image.as_mut() else {
                continue;
            };
            if spec.image.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "container config: mounts[{index}].image.image is required"
                )));
            }
            let image = self.store.resolve(&spec.image).ok_or_else(|| {
                Status::not_found(format!(
                    "container config: mounts[{index}].image: image {:?} not found: pull it first",
                    spec.image
                ))
            })?;
            spec.image_ref = image.id();
            out.push(ImageVolume { index, image });
        }
        Ok(out)
    }

    /// Mounts each volume read-only under `dir/volumes/<index>` and returns, by mount
    /// index, the directory to bind: the image's root, or its `image_sub_path`. On error
    /// the caller removes what was mounted with [`unmount_image_volumes`].
    pub(super) fn mount_image_volumes(
        &self,
        dir: &Path,
        config: &ContainerConfig,
        volumes: &[ImageVolume],
    ) -> Result<HashMap<usize, PathBuf>, Status> {
        let mut out = HashMap::new();
        for v in volumes {
            let lowers = self
                .snapshots
                .lowerdirs(&self.store, &v.image)
                .map_err(|e| {
                    internal(
                        format_args!("preparing the layers of image volume mounts[{}]", v.index),
                        &e,
                    )
                })?;
            let root = snapshot::mount_volume(&lowers, &volume_dir(dir, v.index)).map_err(|e| {
                internal(
                    format_args!("mounting image volume mounts[{}]", v.index),
                    &e,
                )
            })?;
            let sub = config
                .mounts
                .get(v.index)
                .map(|m| m.image_sub_path.as_str())
                .unwrap_or_default();
            let src = if sub.is_empty() {
                root
            } else {
                sub_path(&root, sub, v.index)?
            };
            out.insert(v.index, src);
        }
        Ok(out)
    }
}

fn volume_dir(ctr_dir: &Path, index: usize) -> PathBuf {
    ctr_dir.join("volumes").join(index.to_string())
}

/// Unmounts every image volume of the container whose directory is `ctr_dir` and removes
/// `ctr_dir/volumes`. Idempotent: no volumes is success.
pub(super) fn unmount_image_volumes(ctr_dir: &Path) -> Result<(), Status> {
    let base = ctr_dir.join("volumes");
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(internal(format_args!("reading {}", base.display()), &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| internal(format_args!("reading {}", base.display()), &e))?;
        snapshot::unmount_rootfs(&entry.path())
            .map_err(|e| internal("unmounting an image volume", &e))?;
    }
    super::remove_dir(&base)
}

/// `sub` inside the image volume mounted at `root`, as a host path without symbolic links.
///
/// The sub path comes from the request and the image from a registry: it must be relative
/// without `..`, and links in the image are resolved as if `root` were `/`
/// (`openat2(RESOLVE_IN_ROOT)`), so neither can name a host path outside the volume. The
/// volume is a read-only overlay, so the resolved path cannot change before the bind.
fn sub_path(root: &Path, sub: &str, index: usize) -> Result<PathBuf, Status> {
    let field = format!("container config: mounts[{index}].image_sub_path = {sub:?}");
    let rel = Path::new(sub);
    if rel.is_absolute()
        || sub.contains('\0')
        || rel.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(Status::invalid_argument(format!(
            "{field}: must be a relative path without \"..\""
        )));
    }
    let dir =
        File::open(root).map_err(|e| internal(format_args!("opening {}", root.display()), &e))?;
    let cpath = CString::new(rel.as_os_str().as_bytes()).expect("NUL refused above");
    let fd = sys::openat2(
        dir.as_fd(),
        &cpath,
        libc::O_PATH,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Status::invalid_argument(format!("{field}: no such file or directory in the image"))
        }
        _ => internal(format_args!("{field}: resolving it in the image"), &e),
    })?;
    // The kernel's name for what the descriptor reached: the resolved path on the host.
    let link = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let path = std::fs::read_link(&link)
        .map_err(|e| internal(format_args!("{field}: reading {}", link.display()), &e))?;
    if !path.starts_with(root) {
        return Err(Status::internal(format!(
            "{field}: resolved to {} outside the volume {}",
            path.display(),
            root.display()
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn sub_paths_resolve_inside_the_volume() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap().join("root");
        std::fs::create_dir_all(root.join("etc/conf")).unwrap();
        std::fs::write(root.join("etc/passwd"), "").unwrap();
        // Absolute and climbing links resolve as if the volume were `/`.
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../etc/conf", root.join("etc/up")).unwrap();
        assert_eq!(sub_path(&root, "etc", 0).unwrap(), root.join("etc"));
        assert_eq!(
            sub_path(&root, "etc/passwd", 0).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            sub_path(&root, "abs/conf", 0).unwrap(),
            root.join("etc/conf")
        );
        assert_eq!(sub_path(&root, "etc/up", 0).unwrap(), root.join("etc/conf"));
    }

    #[test]
    fn bad_and_missing_sub_paths_are_invalid_arguments() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for (sub, want) in [
            ("not-existing", "no such file"),
            ("/etc", "relative"),
            ("a/../../etc", "relative"),
        ] {
            let e = sub_path(&root, sub, 3).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{sub}");
            assert!(
                e.message().contains("mounts[3].image_sub_path") && e.message().contains(want),
                "{sub}: {}",
                e.message()
            );
        }
    }

    #[test]
    fn unmounting_without_volumes_is_success() {
        let d = tempfile::tempdir().unwrap();
        unmount_image_volumes(d.path()).unwrap();
        std::fs::create_dir(d.path().join("volumes")).unwrap();
        unmount_image_volumes(d.path()).unwrap();
        assert!(!d.path().join("volumes").exists());
    }
}
