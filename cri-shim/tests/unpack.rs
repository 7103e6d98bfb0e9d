//! Root integration tests of layer unpacking, snapshots and rootfs overlays. Layers are built
//! in memory with the tar crate, including hostile ones. Skips with a reason when not root.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hull_cri::digest::Digest;
use hull_cri::manifest::{Compression, ImageConfig};
use hull_cri::snapshot::{
    mount_rootfs, mount_rootfs_with, mount_volume, unmount_rootfs, MountApi, SnapshotError,
    Snapshots,
};
use hull_cri::store::{ImageRecord, LayerRecord, Store};
use hull_cri::unpack::{unpack_layer, UnpackError, UnpackOptions};
use tar::EntryType as T;

fn skip() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        eprintln!("skipping: not root");
    }
    !root
}

/// An entry of a test layer.
struct E<'a> {
    path: &'a str,
    kind: T,
    link: &'a str,
    data: &'a [u8],
    mode: u32,
    owner: (u64, u64),
    dev: (u32, u32),
    xattrs: &'a [(&'a str, &'a [u8])],
}

fn e<'a>(path: &'a str, kind: T) -> E<'a> {
    E {
        path,
        kind,
        link: "",
        data: b"",
        mode: if kind.is_dir() { 0o755 } else { 0o644 },
        owner: (0, 0),
        dev: (0, 0),
        xattrs: &[],
    }
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        data,
        ..e(path, T::Regular)
    }
}

fn link<'a>(path: &'a str, kind: T, target: &'a str) -> E<'a> {
    E {
        link: target,
        ..e(path, kind)
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> key=value\n" where len counts the whole record, its own digits included.
    let body = 3 + key.len() + value.len();
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.xattrs.is_empty() {
            let mut pax = Vec::new();
            for (k, v) in e.xattrs {
                pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
            }
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(T::XHeader);
            h.set_path("pax").unwrap();
            h.set_size(pax.len() as u64);
            h.set_cksum();
            b.append(&h, &pax[..]).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.owner.0);
        h.set_gid(e.owner.1);
        h.set_mtime(1_500_000_000);
        h.set_size(e.data.len() as u64);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        if !e.link.is_empty() {
            let l = &mut h.as_old_mut().linkname;
            l[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        // Raw name bytes: set_path refuses the hostile names these tests need.
        let name = &mut h.as_old_mut().name;
        name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn root_opts() -> UnpackOptions {
    UnpackOptions::for_current_user()
}

/// Unpacks into `<outer>/dest`; returns the outer dir (to check nothing else appeared).
fn unpack_plain(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Result<(), UnpackError>) {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let r = unpack_layer(
        bytes,
        Compression::None,
        &dest,
        &Digest::of(bytes),
        &root_opts(),
    )
    .map(|_| ());
    (outer, dest, r)
}

fn only_dest(outer: &Path) {
    let names: Vec<_> = fs::read_dir(outer)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dest"], "something was written beside dest");
}

fn getxattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let key = std::ffi::CString::new(key).unwrap();
    hull_cri::sys::lgetxattr(&path, &key).ok()
}

#[test]
fn every_entry_type_with_metadata() {
    if skip() {
        return;
    }
    let bytes = layer(&[
        E {
            mode: 0o750,
            ..e("./", T::Directory)
        },
        E {
            owner: (1000, 1001),
            xattrs: &[("trusted.hull", b"v"), ("user.note", b"n")],
            ..file("etc/hosts", b"127.0.0.1 localhost\n")
        },
        E {
            mode: 0o4755,
            ..file("bin/su", b"setuid")
        },
        link("bin/sh", T::Symlink, "su"),
        link("bin/ls", T::Link, "bin/su"),
        e("run/fifo", T::Fifo),
        E {
            dev: (1, 3),
            mode: 0o666,
            ..e("dev/null", T::Char)
        },
        file("ro/inner", b"x"),
        E {
            mode: 0o555,
            owner: (7, 8),
            ..e("ro/", T::Directory)
        },
        file("ro/late", b"created after its 0555 parent entry"),
    ]);
    let (outer, dest, r) = unpack_plain(&bytes);
    r.unwrap();
    only_dest(outer.path());
    let md = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    assert_eq!(md("").mode() & 0o7777, 0o750);
    let hosts = md("etc/hosts");
    assert_eq!(
        (hosts.uid(), hosts.gid(), hosts.mode() & 0o7777),
        (1000, 1001, 0o644)
    );
    assert_eq!(hosts.mtime(), 1_500_000_000);
    assert_eq!(
        getxattr(&dest.join("etc/hosts"), "trusted.hull"),
        Some(b"v".to_vec())
    );
    assert_eq!(md("bin/su").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(fs::read_link(dest.join("bin/sh")).unwrap(), Path::new("su"));
    assert_eq!(md("bin/ls").ino(), md("bin/su").ino());
    assert!(md("run/fifo").file_type().is_fifo());
    let null = md("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o7777),
        (libc_makedev(1, 3), 0o666)
    );
    let ro = md("ro");
    assert_eq!((ro.mode() & 0o7777, ro.uid(), ro.gid()), (0o555, 7, 8));
    assert_eq!(
        ro.mtime(),
        1_500_000_000,
        "directory mtime set after its children"
    );
    assert!(dest.join("ro/late").is_file());
}

fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}

#[test]
fn hostile_layers_stay_inside() {
    if skip() {
        return;
    }
    let passwd = fs::metadata("/etc/passwd").unwrap();
    let refused: &[(&[E], &str)] = &[
        (&[file("../x", b"x")], "'..'"),
        (&[file("/abs", b"x")], "absolute"),
        (&[file("a/../../x", b"x")], "'..'"),
        // a -> /etc resolves to <dest>/etc, which does not exist: refused, nothing written.
        (
            &[link("a", T::Symlink, "/etc"), file("a/passwd", b"owned")],
            "not a directory",
        ),
        (&[link("h", T::Link, "../etc/passwd")], "outside"),
        (&[link("h", T::Link, "/etc/passwd")], "outside"),
        (
            &[
                link("d", T::Symlink, "/etc"),
                link("h", T::Link, "d/passwd"),
            ],
            "missing",
        ),
        (&[file("f", b"x"), file("f/g", b"y")], "not a directory"),
        (&[file("d/f", b"x"), e("d", T::Regular)], "non-empty"),
        (
            &[E {
                xattrs: &[("trusted.overlay.redirect", b"/x")],
                ..file("f", b"x")
            }],
            "not allowed",
        ),
    ];
    for (entries, why) in refused {
        let (outer, _dest, r) = unpack_plain(&layer(entries));
        let err = r.unwrap_err();
        assert!(err.is_bad_layer(), "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        only_dest(outer.path());
    }
    // Symlinks planted by the layer resolve inside it.
    let (outer, dest, r) = unpack_plain(&layer(&[
        e("etc/", T::Directory),
        link("a", T::Symlink, "/etc"),
        file("a/hull-escape-test", b"inside"),
        link("up", T::Symlink, "../../../.."),
        file("up/hull-up", b"inside"),
        link("s", T::Symlink, "/etc/passwd"),
        link("hs", T::Link, "s"),
        link("f", T::Symlink, "/tmp/hull-unpack-escape-target"),
        file("f", b"replaces the symlink"),
        e("tmp/", T::Directory),
        link("w", T::Symlink, "/tmp"),
        e("w/.wh.hull-whiteout-escape", T::Regular),
    ]));
    r.unwrap();
    only_dest(outer.path());
    assert_eq!(
        fs::read(dest.join("etc/hull-escape-test")).unwrap(),
        b"inside"
    );
    assert!(!Path::new("/etc/hull-escape-test").exists());
    assert_eq!(fs::read(dest.join("hull-up")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(dest.join("hs")).unwrap().is_symlink());
    assert!(fs::symlink_metadata(dest.join("f")).unwrap().is_file());
    assert!(!Path::new("/tmp/hull-unpack-escape-target").exists());
    assert!(fs::symlink_metadata(dest.join("tmp/hull-whiteout-escape"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(!Path::new("/tmp/hull-whiteout-escape").exists());
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (after.nlink(), after.mtime(), after.len()),
        (passwd.nlink(), passwd.mtime(), passwd.len())
    );
}

/// A store holding `layers` (gzip) as blobs, and an image record naming them.
fn image(store: &Store, layers: &[Vec<u8>]) -> ImageRecord {
    let layers = layers
        .iter()
        .map(|tar| {
            let gz = gzip(tar);
            let digest = Digest::of(&gz);
            store.put_blob(&digest, &gz).unwrap();
            LayerRecord {
                digest,
                diff_id: Digest::of(tar),
                size: gz.len() as u64,
                compression: Compression::Gzip,
            }
        })
        .collect::<Vec<_>>();
    let config = format!("{layers:?}").into_bytes();
    ImageRecord {
        config_digest: Digest::of(&config),
        manifest_digest: Digest::of(b"m"),
        extra_blobs: vec![],
        layers,
        repo_tags: vec![],
        repo_digests: vec![],
        size: 0,
        config: ImageConfig::default(),
    }
}

fn snapshot_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn whiteouts_and_opaque_dirs_merge_through_overlay() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let snaps = Snapshots::open(d.path()).unwrap();
    let base = layer(&[
        file("d/keep", b"k"),
        file("d/gone", b"g"),
        file("o/old", b"o"),
        file("top", b"t"),
    ]);
    let upper = layer(&[
        e("d/.wh.gone", T::Regular),
        e("o/.wh..wh..opq", T::Regular),
        file("o/new", b"n"),
        e(".wh.top", T::Regular),
    ]);
    let img = store.put_image(image(&store, &[base, upper])).unwrap();
    let lowers = snaps.lowerdirs(&store, &img).unwrap();
    assert_eq!(
        lowers[0],
        snaps.path(&img.layers[1].diff_id),
        "top-most first"
    );
    let wh = fs::symlink_metadata(lowers[0].join("d/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        getxattr(&lowers[0].join("o"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );

    let ctr = d.path().join("ctr");
    let rootfs = mount_rootfs(&lowers, &ctr).unwrap();
    assert_eq!(fs::read(rootfs.join("d/keep")).unwrap(), b"k");
    assert!(
        !rootfs.join("d/gone").exists(),
        "whiteout hides the lower file"
    );
    assert!(!rootfs.join("top").exists());
    assert!(
        !rootfs.join("o/old").exists(),
        "opaque dir hides the lower dir's content"
    );
    assert_eq!(fs::read(rootfs.join("o/new")).unwrap(), b"n");
    fs::write(rootfs.join("d/keep"), b"changed").unwrap();
    assert_eq!(fs::read(ctr.join("upper/d/keep")).unwrap(), b"changed");
    unmount_rootfs(&ctr).unwrap();
    assert!(!ctr.exists());
    unmount_rootfs(&ctr).unwrap();
    assert_eq!(
        fs::read(lowers[1].join("d/keep")).unwrap(),
        b"k",
        "lowers untouched"
    );

    // GC keeps what an image names, a pin, or keep_extra; removes the rest.
    let lone = layer(&[file("lone", b"l")]);
    let other = image(&store, &[lone]);
    snaps.unpack(&store, &other.layers[0]).unwrap();
    let pin = snaps.pin([other.layers[0].diff_id.clone()]);
    assert_eq!(snaps.gc(&store, &HashSet::new()).unwrap(), 0);
    drop(pin);
    let extra = HashSet::from([other.layers[0].diff_id.clone()]);
    assert_eq!(snaps.gc(&store, &extra).unwrap(), 0);
    assert_eq!(snaps.gc(&store, &HashSet::new()).unwrap(), 1);
    store.remove(&img.id()).unwrap();
    assert_eq!(snaps.gc(&store, &HashSet::new()).unwrap(), 2);
    assert!(snapshot_names(d.path()).is_empty());
}

#[test]
fn bad_layers_leave_nothing_behind() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let snaps = Snapshots::open(d.path()).unwrap();
    let mut wrong = image(&store, &[layer(&[file("a", b"a")])]).layers.remove(0);
    wrong.diff_id = Digest::of(b"not this layer");
    let err = snaps.unpack(&store, &wrong).unwrap_err();
    assert!(err.is_bad_layer(), "{err}");
    assert!(
        matches!(
            &err,
            SnapshotError::Unpack {
                source: UnpackError::DiffId { .. },
                ..
            }
        ),
        "{err}"
    );
    let hostile = image(&store, &[layer(&[file("a", b"a"), file("../b", b"b")])]);
    assert!(snaps
        .unpack(&store, &hostile.layers[0])
        .unwrap_err()
        .is_bad_layer());
    assert!(
        snapshot_names(d.path()).is_empty(),
        "{:?}",
        snapshot_names(d.path())
    );
    // An interrupted unpack (tmp-*) is removed at open.
    fs::create_dir_all(d.path().join("snapshots/tmp-crashed/fs")).unwrap();
    drop(snaps);
    Snapshots::open(d.path()).unwrap();
    assert!(snapshot_names(d.path()).is_empty());
}

#[test]
fn concurrent_unpacks_of_one_layer_share_one_snapshot() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(d.path()).unwrap());
    let snaps = Arc::new(Snapshots::open(d.path()).unwrap());
    let names: Vec<String> = (0..2000)
        .map(|i| format!("dir{}/file{i}", i % 20))
        .collect();
    let entries: Vec<E> = names.iter().map(|n| file(n, n.as_bytes())).collect();
    let l = image(&store, &[layer(&entries)]).layers.remove(0);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, snaps, l) = (store.clone(), snaps.clone(), l.clone());
            std::thread::spawn(move || snaps.unpack(&store, &l))
        })
        .collect();
    let paths: Vec<PathBuf> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(snapshot_names(d.path()), [l.diff_id.hex()]);
    assert_eq!(
        fs::read(paths[0].join("dir7/file1007")).unwrap(),
        b"dir7/file1007"
    );
}

#[test]
fn overlay_with_zero_one_and_many_layers() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let rootfs = mount_rootfs(&[], &d.path().join("zero")).unwrap();
    assert_eq!(fs::read_dir(&rootfs).unwrap().count(), 0);
    unmount_rootfs(&d.path().join("zero")).unwrap();

    // 80 lower dirs with long names: over a page of options for the classic mount(2).
    let long = "l".repeat(100);
    let lowers: Vec<PathBuf> = (0..80)
        .map(|i| {
            let p = d.path().join(format!("{long}-{i}"));
            fs::create_dir(&p).unwrap();
            fs::write(p.join(format!("f{i}")), b"").unwrap();
            fs::write(p.join("same"), i.to_string()).unwrap();
            p
        })
        .collect();
    for (api, n) in [
        (MountApi::Auto, 1),
        (MountApi::Auto, 80),
        (MountApi::Classic, 1),
    ]
    .into_iter()
    .chain([(MountApi::Classic, 80)])
    {
        let ctr = d.path().join(format!("ctr-{api:?}-{n}"));
        let rootfs = mount_rootfs_with(&lowers[..n], &ctr, api)
            .unwrap_or_else(|e| panic!("{api:?} {n}: {e}"));
        assert_eq!(
            fs::read_to_string(rootfs.join("same")).unwrap(),
            "0",
            "top-most first"
        );
        assert!(rootfs.join(format!("f{}", n - 1)).exists(), "{api:?} {n}");
        unmount_rootfs(&ctr).unwrap();
        assert!(!ctr.exists());
    }
    // A failed mount leaves nothing: a lower that does not exist.
    let ctr = d.path().join("bad");
    assert!(mount_rootfs(&[d.path().join("missing")], &ctr).is_err());
    assert!(!ctr.exists());
}

#[test]
fn image_volumes_are_read_only_overlays_of_any_layer_count() {
    if skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let lowers: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = d.path().join(format!("layer-{i}"));
            fs::create_dir_all(p.join("bin")).unwrap();
            fs::write(p.join("same"), i.to_string()).unwrap();
            fs::write(p.join(format!("bin/f{i}")), b"#!/bin/sh\n").unwrap();
            p
        })
        .collect();
    // Zero and one layer need padding (overlayfs wants two lower dirs without an upper).
    for n in 0..=3 {
        let vol = d.path().join(format!("vol-{n}"));
        let root = mount_volume(&lowers[..n], &vol).unwrap_or_else(|e| panic!("{n} layers: {e}"));
        assert_eq!(root, vol.join("rootfs"));
        if n > 0 {
            assert_eq!(fs::read_to_string(root.join("same")).unwrap(), "0");
            assert!(root.join(format!("bin/f{}", n - 1)).exists());
        }
        let err = fs::write(root.join("new"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{n} layers: {err}");
        unmount_rootfs(&vol).unwrap();
        assert!(!vol.exists(), "{n} layers: {} left behind", vol.display());
    }
    // The layers themselves were not touched.
    assert_eq!(fs::read_dir(&lowers[0]).unwrap().count(), 2);
    // A failed mount leaves nothing.
    let vol = d.path().join("bad");
    assert!(mount_volume(&[d.path().join("missing")], &vol).is_err());
    assert!(!vol.exists());
}

/// Not a correctness test: prints how fast a ~50 MB gzip layer unpacks. Run with
/// `cargo test -p hull-cri --test unpack -- --ignored --nocapture`.
#[test]
#[ignore]
fn unpack_speed_of_a_large_gzip_layer() {
    if skip() {
        return;
    }
    // Text-like content that compresses about 2-3x, in files of 4-200 KiB.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let words: Vec<String> = (0..4096).map(|i| format!("w{i:x}{}", i * 7919)).collect();
    let mut files = Vec::new();
    let mut total = 0;
    while total < 130 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = 4096 + (state % (200 << 10)) as usize;
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(words[(state % 4096) as usize].as_bytes());
            data.push(if state.is_multiple_of(11) {
                b'\n'
            } else {
                b' '
            });
        }
        total += data.len();
        files.push((
            format!("usr/share/d{}/f{}", files.len() % 64, files.len()),
            data,
        ));
    }
    let entries: Vec<E> = files.iter().map(|(n, d)| file(n, d)).collect();
    let tar = layer(&entries);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path()).unwrap();
    let snaps = Snapshots::open(d.path()).unwrap();
    let digest = Digest::of(&gz);
    store.put_blob(&digest, &gz).unwrap();
    let l = LayerRecord {
        digest,
        diff_id: Digest::of(&tar),
        size: gz.len() as u64,
        compression: Compression::Gzip,
    };
    let start = Instant::now();
    snaps.unpack(&store, &l).unwrap();
    let took = start.elapsed();
    let dest = d.path().join("plain");
    fs::create_dir(&dest).unwrap();
    let start = Instant::now();
    unpack_layer(&gz[..], Compression::Gzip, &dest, &l.diff_id, &root_opts()).unwrap();
    let no_sync = start.elapsed();
    eprintln!(
        "unpack: {} files, {:.1} MB gzip, {:.1} MB tar: {:.2} s via Snapshots (with syncfs), \
         {:.2} s unpack_layer alone ({:.0} MB/s of tar)",
        files.len(),
        gz.len() as f64 / 1e6,
        tar.len() as f64 / 1e6,
        took.as_secs_f64(),
        no_sync.as_secs_f64(),
        tar.len() as f64 / 1e6 / no_sync.as_secs_f64()
    );
}
